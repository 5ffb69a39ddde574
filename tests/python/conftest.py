"""Shared helpers for the engine-vs-reference tests (tests/python).

Run as:  PYTHONPATH=python:tests/ref /usr/bin/python3 -m pytest -q tests/python
(the paths are also added here, so a bare `pytest tests/python` works from the repo root).

The engine (libpxdiff via ctypes) is compared with the float64 PyTorch reference
tests/ref/pxref.py: the same float32 weights and inputs, upcast exactly to float64.
"""
import copy
import ctypes
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The suite runs on the sanitizer build (scripts/run-tests.sh BUILD sanitize): tests that only
# repeat work the unsanitized run already checks may do less of it there.
SANITIZED = os.environ.get("PXDIFF_SANITIZED") == "1"
for _p in (os.path.join(ROOT, "python"), os.path.join(ROOT, "tests", "ref")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import pxdiff  # noqa: E402
import pxfixtures  # noqa: E402
import pxref  # noqa: E402
from pxdiff._lib import Features, SamplerConfig, c_float_p, check, lib  # noqa: E402

torch.set_num_threads(1)  # the reference is small; leave the 2 cores to the engine

TOL = 1e-4  # the project's bound: ||engine - ref|| / ||ref||

# Small but not trivial dims: head dims 16 (token) and 8 (atom), 2 blocks each.
SMALL = dict(pxfixtures.SMALL_DIMS)

# ---------------------------------------------------------------- probes ----
PROBE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, c_float_p, ctypes.c_int64)
_vp = ctypes.c_void_p
lib.px_design_create_probe.restype = ctypes.c_int
lib.px_design_create_probe.argtypes = [_vp, ctypes.POINTER(Features), PROBE_FN, _vp, ctypes.POINTER(_vp)]
lib.px_denoise_probe.restype = ctypes.c_int
lib.px_denoise_probe.argtypes = [_vp, _vp, ctypes.c_int, c_float_p, c_float_p, c_float_p, PROBE_FN, _vp]


class Collector:
    """A probe callback that copies every intermediate into a dict of float32 numpy arrays."""

    def __init__(self):
        self.out = {}

        def cb(user, name, data, n):
            self.out[name.decode()] = np.ctypeslib.as_array(data, shape=(int(n),)).copy()

        self.fn = PROBE_FN(cb)


def fptr(t):
    return ctypes.cast(t.data_ptr(), c_float_p)


def rel_err(a, b):
    """||a - b|| / ||b|| in float64; inf when either holds NaN/Inf."""
    a = torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a).double().reshape(-1)
    b = torch.as_tensor(np.asarray(b) if not torch.is_tensor(b) else b).double().reshape(-1)
    assert a.numel() == b.numel(), (a.numel(), b.numel())
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return math.inf
    den = b.norm().item()
    num = (a - b).norm().item()
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return num / den


def assert_close(a, b, what, tol=TOL):
    e = rel_err(a, b)
    assert e <= tol, f"{what}: relative error {e:.3g} > {tol:g}"
    return e


# ------------------------------------------------------------ models --------
class Pair:
    """A random reference model (float32 and float64 copies) and the engine built from it."""

    def __init__(self, dims, seed=0):
        self.dims = dict(pxfixtures.DEFAULT_DIMS)
        self.dims.update(dims)
        self.m32 = pxfixtures.random_model(dims, seed=seed)
        self.m64 = copy.deepcopy(self.m32).double()
        self.dm = pxdiff.DiffusionModule.from_torch(self.m32)

    def inputs(self, **kw):
        return pxfixtures.random_features_for(self.dims, **kw)

    def reference(self, inp, x, t, use_conditioning=True):
        """float64 forward_intermediates on the float32 inputs upcast."""
        s_trunk, z_trunk = inp.s_trunk, inp.z_trunk
        if not use_conditioning:
            s_trunk, z_trunk = 0 * s_trunk, 0 * z_trunk
        with torch.no_grad():
            return self.m64.forward_intermediates(
                x.double(), torch.as_tensor(t, dtype=torch.float32).double(),
                pxfixtures.cast_feats(inp.feats, torch.float64), inp.s_inputs.double(),
                s_trunk.double(), z_trunk.double())

    def s0_reference(self, inp):
        with torch.no_grad():
            return self.m64.diffusion_conditioning.single0(inp.s_inputs.double(), inp.s_trunk.double())

    def design_probe(self, inp):
        """(design handle, intermediates) from px_design_create_probe; caller frees the handle."""
        feats, keep = self.dm._features(inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
        col = Collector()
        h = ctypes.c_void_p()
        check(lib.px_design_create_probe(self.dm._m, ctypes.byref(feats), col.fn, None, ctypes.byref(h)))
        return h, col.out

    def denoise_probe(self, design, x, t):
        x = x.float().contiguous()
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).contiguous()
        out = torch.empty_like(x)
        col = Collector()
        check(lib.px_denoise_probe(self.dm._m, design, x.shape[0], fptr(x), fptr(t), fptr(out), col.fn, None))
        return out, col.out


_pairs = {}


def get_pair(name, dims, seed=0):
    """Session-wide cache of model pairs (building one at the released dims takes seconds)."""
    key = (name, seed)
    if key not in _pairs:
        _pairs[key] = Pair(dims, seed)
    return _pairs[key]


@pytest.fixture(scope="session")
def small():
    return get_pair("small", SMALL, seed=0)


def make_design(dm, inp):
    """A fresh px_design for these inputs (caller frees with lib.px_design_free)."""
    feats, keep = dm._features(inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    h = ctypes.c_void_p()
    check(lib.px_design_create(dm._m, ctypes.byref(feats), ctypes.byref(h)))
    return h


def sampler_config(**kw):
    c = SamplerConfig()
    lib.px_sampler_config_default(ctypes.byref(c))
    for k, v in kw.items():
        setattr(c, k, v)
    return c
