"""Drop-in acceleration of a live PXDesign model.

    import pxdiff
    pxdiff.enable_acceleration(model)        # after the checkpoint is loaded

replaces `model.diffusion_module` by an AcceleratedDiffusionModule: an nn.Module with
upstream's forward signature that keeps the original module (for fallback; its parameters
stay reachable under the same state_dict names) and runs each call in the engine.

- backend: None/"auto" follows the module's device (CUDA parameters -> CUDA backend, else
  CPU); "cpu" or "cuda" forces one. precision: None (the backend's default), "fp32",
  "tf32", "bf16". $PXDIFF_BACKEND / $PXDIFF_PRECISION apply when the arguments are None.
- PXDIFF_DISABLE=1 leaves the model untouched.
- Any failure, at set-up or during a call, logs one warning (logger "pxdiff") naming the
  cause, and the original PyTorch module serves the rest of the run.

Tensors go to the engine by pointer when they are already float32, contiguous and where the
engine computes (CPU tensors for the CPU backend; CUDA tensors when the library has the
device entry point px_denoise_device); anything else is converted once, and the checks say
so in `stats`. The design cache is keyed by the identity and version counter of the
feature tensors, so the per-step calls of a sampling loop move no feature data at all.
"""
import ctypes
import logging
import os
import sys
import time

from ._lib import PROGRESS_FN, SamplerConfig, _torch, c_float_p, lib, shared_level, torch_stream
from . import errors
from .errors import PxdiffBackendError, PxdiffError, PxdiffInputError  # noqa: F401

__all__ = ["enable_acceleration", "disable_acceleration", "AcceleratedDiffusionModule",
           "acceleration_disabled", "cuda_device_count", "engine_of"]

log = logging.getLogger("pxdiff")

DISABLE_ENV = "PXDIFF_DISABLE"
_TRUE = ("1", "true", "yes", "on")

# ----------------------------------------------------------- C declarations --
_vp = ctypes.c_void_p
_optional_sig = {
    "px_cuda_device_count": (ctypes.c_int, []),
    "px_model_set_backend": (ctypes.c_int, [_vp, ctypes.c_int, ctypes.c_int]),
    "px_model_backend_name": (ctypes.c_char_p, [_vp]),
    "px_model_precision_name": (ctypes.c_char_p, [_vp]),
    "px_model_x16_blocks": (ctypes.c_int, [_vp]),
    "px_device_from_name": (ctypes.c_int, [ctypes.c_char_p]),
    "px_precision_from_name": (ctypes.c_int, [ctypes.c_char_p]),
    # Requested of the C library (docs/dropin.md, "C support"); used when present.
    "px_set_cuda_stream": (ctypes.c_int, [_vp, _vp]),
    "px_denoise_device": (ctypes.c_int, [_vp, _vp, ctypes.c_int, c_float_p, c_float_p, c_float_p]),
    "px_denoise_device_shared_t": (ctypes.c_int, [_vp, _vp, ctypes.c_int, c_float_p, c_float_p, c_float_p]),
    "px_sample_schedule": (ctypes.c_int, [_vp, _vp, ctypes.POINTER(SamplerConfig), c_float_p,
                                          ctypes.c_int, ctypes.c_int, ctypes.c_int, c_float_p,
                                          PROGRESS_FN, _vp]),
    "px_rng_rotation": (None, [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32, c_float_p]),
    "px_rng_translation": (None, [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32, c_float_p]),
}


def has_symbol(name, _lib=None):
    try:
        getattr(_lib or lib, name)
        return True
    except AttributeError:
        return False


for _name, (_res, _args) in _optional_sig.items():
    if has_symbol(_name):
        _f = getattr(lib, _name)
        _f.restype = _res
        _f.argtypes = _args

_DEVICE = {"auto": 0, "cpu": 1, "cuda": 2}
_PRECISION = {None: -1, "default": -1, "fp32": 0, "tf32": 1, "bf16": 2, "fp16": 3}


def check(rc, _lib=None):
    """errors.check against this module's library (tests substitute `lib`)."""
    return errors.check(rc, _lib or lib)


def acceleration_disabled():
    return os.environ.get(DISABLE_ENV, "").strip().lower() in _TRUE


def cuda_device_count():
    """CUDA devices the engine can use (0 when built without CUDA)."""
    return int(lib.px_cuda_device_count()) if has_symbol("px_cuda_device_count") else 0


def _ptr(t):
    return ctypes.cast(t.data_ptr(), c_float_p)


# ------------------------------------------------------------------ bridge --
class BridgeStats:
    """What the bridge did: calls by pointer, conversions (with the reason), host trips."""

    def __init__(self):
        self.calls = 0
        self.zero_copy = 0
        self.converted = {}  # reason -> count
        self.host_round_trips = 0
        self.design_builds = 0
        self.design_reuses = 0

    def note(self, reason):
        self.converted[reason] = self.converted.get(reason, 0) + 1

    def as_dict(self):
        return dict(calls=self.calls, zero_copy=self.zero_copy, converted=dict(self.converted),
                    host_round_trips=self.host_round_trips, design_builds=self.design_builds,
                    design_reuses=self.design_reuses)


def engine_tensor(t, where, name, stats=None):
    """t as a float32, contiguous, grad-free tensor on `where` ("cpu" or a CUDA device);
    the tensor itself (zero copy) when it already is one, else one conversion (noted)."""
    torch = _torch()
    if not torch.is_tensor(t):
        raise PxdiffInputError(f"{name} is not a tensor ({type(t).__name__})")
    t = t.detach()
    dev = torch.device(where)
    reasons = []
    if t.device.type != dev.type or (dev.type == "cuda" and dev.index is not None
                                     and t.device.index != dev.index):
        reasons.append(f"{name}: {t.device} -> {dev}")
    if t.dtype != torch.float32:
        reasons.append(f"{name}: {str(t.dtype).replace('torch.', '')} -> float32")
    if not t.is_contiguous():
        reasons.append(f"{name}: not contiguous")
    if not reasons:
        return t
    if stats is not None:
        for r in reasons:
            stats.note(r)
    return t.to(device=dev, dtype=torch.float32).contiguous()


# ----------------------------------------------------------- the nn.Module --
_FEATURE_KEYS = ("ref_pos", "ref_charge", "ref_mask", "ref_element", "ref_atom_name_chars",
                 "ref_space_uid", "atom_to_token_idx", "asym_id", "residue_index", "entity_id",
                 "token_index", "sym_id")


def _module_device(module):
    torch = _torch()
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def _resolve_backend(backend, module_device):
    """(engine device name "cpu"/"cuda", why) from the argument, $PXDIFF_BACKEND and the
    module's device."""
    if backend is None:
        backend = os.environ.get("PXDIFF_BACKEND") or None
    b = (backend or "auto").strip().lower()
    if b in ("gpu", "cuda:0"):
        b = "cuda"
    if b not in _DEVICE:
        raise PxdiffInputError(f"unknown backend {backend!r} (auto, cpu or cuda)")
    if b == "auto":
        if module_device.type == "cuda":
            n = cuda_device_count()
            if n == 0:
                raise PxdiffBackendError(
                    f"the module is on {module_device} but this libpxdiff has no usable CUDA "
                    "device (built without CUDA?); the CPU engine would be slower than PyTorch "
                    "on the GPU")
            return "cuda", f"module parameters on {module_device}"
        return "cpu", f"module parameters on {module_device}"
    if b == "cuda" and cuda_device_count() == 0:
        raise PxdiffBackendError("backend 'cuda' asked for, but this libpxdiff has no usable CUDA device")
    return b, f"backend {b!r} asked for"


def _resolve_precision(precision):
    if precision is None:
        precision = os.environ.get("PXDIFF_PRECISION") or None
    p = precision.strip().lower() if isinstance(precision, str) else precision
    if p not in _PRECISION:
        raise PxdiffInputError(f"unknown precision {precision!r} (fp32, tf32, bf16, fp16 or default)")
    return p


def _nn():
    import torch.nn as nn
    return nn


def _make_class():
    nn = _nn()

    class AcceleratedDiffusionModule(nn.Module):
        """PXDesign's DiffusionModule, computed by the pxdiff engine.

        Shares the original module's parameters, buffers and sub-modules (so state_dict names,
        .to(), .eval() and load_state_dict behave as before); calls run in the engine, or in
        the original module when acceleration is off, failed, or autograd is needed."""

        def __init__(self, original, backend=None, precision=None):
            super().__init__()
            object.__setattr__(self, "_pxdiff_original", original)
            # share, not copy: names and parameter objects stay those of the original
            self._parameters = original._parameters
            self._buffers = original._buffers
            self._modules = original._modules
            self.training = original.training
            self.pxdiff_backend_arg = backend
            self.pxdiff_precision_arg = precision
            self.pxdiff_engine = None
            self.pxdiff_failed = None  # the cause, once failed
            self.pxdiff_info = {}
            self.pxdiff_stats = BridgeStats()
            self._pxdiff_stale = True
            self._pxdiff_design = None  # (refs, versions, design handle, n_atom)
            self._build_engine()

        # -- nn.Module plumbing ---------------------------------------------------
        @property
        def original(self):
            return self.__dict__["_pxdiff_original"]

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                orig = self.__dict__.get("_pxdiff_original")
                if orig is None:
                    raise
                return getattr(orig, name)

        def train(self, mode=True):
            super().train(mode)
            self.original.training = mode
            return self

        def _apply(self, fn, *args, **kwargs):
            out = super()._apply(fn, *args, **kwargs)
            self._pxdiff_stale = True  # weights may have moved or changed type
            return out

        def _load_from_state_dict(self, *args, **kwargs):
            self._pxdiff_stale = True  # new weights: copy them again at the next call
            return super()._load_from_state_dict(*args, **kwargs)

        def extra_repr(self):
            if self.pxdiff_failed:
                return f"pxdiff: off ({self.pxdiff_failed})"
            i = self.pxdiff_info
            return f"pxdiff: {i.get('backend', '?')} {_precision_label(i)}"

        # -- engine ---------------------------------------------------------------
        @property
        def active(self):
            return self.pxdiff_failed is None and self.pxdiff_engine is not None

        def _build_engine(self):
            from . import DiffusionModule
            t0 = time.monotonic()
            dev = _module_device(self.original)
            name, why = _resolve_backend(self.pxdiff_backend_arg, dev)
            prec = _resolve_precision(self.pxdiff_precision_arg)
            self.pxdiff_engine = None
            self._pxdiff_design = None
            eng = DiffusionModule.from_torch(self.original)
            if has_symbol("px_model_set_backend"):
                check(lib.px_model_set_backend(eng._m, _DEVICE[name], _PRECISION[prec]))
                bname = lib.px_model_backend_name(eng._m).decode()
                pname = lib.px_model_precision_name(eng._m).decode()
            elif name != "cpu" or prec not in (None, "default", "fp32"):
                raise PxdiffBackendError("this libpxdiff has no backend selection (px_model_set_backend)")
            else:
                bname, pname = "cpu", "fp32"
            d = eng.dims
            self.pxdiff_engine = eng
            self.pxdiff_info = dict(
                backend=bname, precision=pname, reason=why, module_device=str(dev),
                n_params=eng.n_params, setup_s=time.monotonic() - t0,
                token_blocks=d.n_token_blocks, enc_blocks=d.n_enc_blocks,
                dec_blocks=d.n_dec_blocks, device_pointers=has_symbol("px_denoise_device"),
                # token blocks on 16-bit GEMM inputs (fp16: those whose range is proven)
                x16_blocks=(lib.px_model_x16_blocks(eng._m) if has_symbol("px_model_x16_blocks") else 0),
                engine_device=("cuda" if bname.startswith("cuda") else "cpu"),
                **{"threads_" + k: v for k, v in thread_info().items()})
            self._pxdiff_stale = False

        def pxdiff_fail(self, cause):
            """Switch the engine off for the rest of the run, with one warning."""
            if self.pxdiff_failed is not None:
                return
            self.pxdiff_failed = str(cause)
            self.pxdiff_engine = None
            self._pxdiff_design = None
            log.warning("pxdiff: %s; the PyTorch diffusion module runs instead for the rest "
                        "of this run", cause)

        def pxdiff_ready(self):
            """The engine, rebuilt when the weights changed; None when off."""
            if self.pxdiff_failed is not None:
                return None
            if self._pxdiff_stale or self.pxdiff_engine is None:
                self._build_engine()
            return self.pxdiff_engine

        def pxdiff_design(self, input_feature_dict, s_inputs, s_trunk, z_trunk):
            """(design handle, n_atom) for these inputs. The same tensor objects, unmodified
            (same version counters), reuse the last design without touching their data."""
            eng = self.pxdiff_ready()
            f = input_feature_dict
            refs = [f.get(k) for k in _FEATURE_KEYS] + [s_inputs, s_trunk, z_trunk]
            vers = [getattr(t, "_version", None) for t in refs]
            c = self._pxdiff_design
            if (c is not None and c[2] is eng._design and len(c[0]) == len(refs)
                    and all(a is b for a, b in zip(c[0], refs)) and c[1] == vers):
                self.pxdiff_stats.design_reuses += 1
                return c[3], c[4]
            design, n_atom = eng.design(f, s_inputs, s_trunk, z_trunk)
            self.pxdiff_stats.design_builds += 1
            self._pxdiff_design = (refs, vers, eng._design, design, n_atom)
            return design, n_atom

        # -- the call -------------------------------------------------------------
        def forward(self, x_noisy, t_hat_noise_level, input_feature_dict, s_inputs, s_trunk,
                    z_trunk, inplace_safe=False, chunk_size=None, use_conditioning=True):
            torch = _torch()
            orig = self.original
            needs_grad = self.training or (torch.is_grad_enabled() and any(
                torch.is_tensor(t) and t.requires_grad
                for t in (x_noisy, t_hat_noise_level, s_inputs, s_trunk, z_trunk)))
            if self.pxdiff_failed is None and not needs_grad:
                try:
                    return self._engine_forward(x_noisy, t_hat_noise_level, input_feature_dict,
                                                s_inputs, s_trunk, z_trunk, use_conditioning)
                except Exception as e:  # noqa: BLE001 - any failure: fall back, once
                    self.pxdiff_fail(f"engine call failed: {type(e).__name__}: {e}")
            return orig(x_noisy=x_noisy, t_hat_noise_level=t_hat_noise_level,
                        input_feature_dict=input_feature_dict, s_inputs=s_inputs,
                        s_trunk=s_trunk, z_trunk=z_trunk, inplace_safe=inplace_safe,
                        chunk_size=chunk_size, use_conditioning=use_conditioning)

        def _engine_forward(self, x_noisy, t_hat, f, s_inputs, s_trunk, z_trunk,
                            use_conditioning):
            torch = _torch()
            st = self.pxdiff_stats
            eng = self.pxdiff_ready()
            if not use_conditioning:  # upstream zeroes the trunk conditioning
                s_trunk = torch.zeros_like(s_trunk)
                z_trunk = torch.zeros_like(z_trunk)
            design, N = self.pxdiff_design(f, s_inputs, s_trunk, z_trunk)
            if not torch.is_tensor(x_noisy) or x_noisy.dim() < 2 or x_noisy.shape[-1] != 3 \
                    or x_noisy.shape[-2] != N:
                shape = tuple(x_noisy.shape) if torch.is_tensor(x_noisy) else type(x_noisy)
                raise PxdiffInputError(f"x_noisy has shape {shape}; expected [..., {N}, 3]")
            lead = tuple(x_noisy.shape[:-2])
            S = 1
            for v in lead:
                S *= int(v)
            dev = x_noisy.device
            on_device = (dev.type == "cuda" and self.pxdiff_info.get("engine_device") == "cuda"
                         and has_symbol("px_denoise_device"))
            where = dev if on_device else torch.device("cpu")
            x = engine_tensor(x_noisy, where, "x_noisy", st).reshape(S, N, 3)
            t = torch.as_tensor(t_hat, device=x_noisy.device if torch.is_tensor(x_noisy) else None)
            t = t.detach().reshape(-1)
            if t.numel() not in (1, S):
                raise PxdiffInputError(f"t_hat_noise_level has {t.numel()} values for {S} samples")
            # One level for all samples (upstream expands a scalar): pass it once, so the
            # engine computes the token conditioning once per call.
            shared = on_device and shared_level(t) and has_symbol("px_denoise_device_shared_t")
            if shared:
                t = engine_tensor(t[:1], where, "t_hat_noise_level", st)
            else:
                t = engine_tensor(t, where, "t_hat_noise_level", st)
                if t.numel() == 1 and S > 1:
                    t = t.expand(S).contiguous()
            out = torch.empty((S, N, 3), device=where, dtype=torch.float32)
            if on_device:
                with torch.cuda.device(dev):
                    stream = torch_stream(torch, dev)
                    if has_symbol("px_set_cuda_stream"):
                        check(lib.px_set_cuda_stream(eng._m, ctypes.c_void_p(stream)))
                    call = lib.px_denoise_device_shared_t if shared else lib.px_denoise_device
                    check(call(eng._m, design, S, _ptr(x), _ptr(t), _ptr(out)))
            else:
                if dev.type != "cpu":
                    st.host_round_trips += 1
                check(lib.px_denoise(eng._m, design, S, _ptr(x), _ptr(t), _ptr(out)))
            st.calls += 1
            if x.data_ptr() == x_noisy.data_ptr():
                st.zero_copy += 1
            out = out.reshape(*lead, N, 3)
            if out.device != dev or out.dtype != x_noisy.dtype:
                out = out.to(device=dev, dtype=x_noisy.dtype)
            return out

    return AcceleratedDiffusionModule


_CLASS = None


def _cls():
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_class()
    return _CLASS


def __getattr__(name):  # module attribute AcceleratedDiffusionModule, built on first use
    if name == "AcceleratedDiffusionModule":
        return _cls()
    raise AttributeError(name)


def is_accelerated(module):
    return _CLASS is not None and isinstance(module, _CLASS)


def engine_of(module):
    """The active AcceleratedDiffusionModule behind `module` (itself, or a model's
    diffusion_module), or None."""
    if not is_accelerated(module):
        module = getattr(module, "diffusion_module", None)
    if is_accelerated(module) and module.active:
        return module
    return None


# ---------------------------------------------------------------- enabling --
def _banner(lines, stream=None):
    stream = stream or sys.stderr
    rule = "=" * 64
    stream.write("\n".join([rule] + lines + [rule]) + "\n")
    stream.flush()


def _precision_label(info):
    """"tf32", or "fp16, 16-bit GEMM inputs in 24/24 token blocks" (at fp16 the blocks whose
    inputs fp16's range cannot be proven to hold run TF32)."""
    p = info.get("precision", "?")
    if p in ("fp16", "bf16"):
        p += f", 16-bit GEMM inputs in {info.get('x16_blocks', 0)}/{info.get('token_blocks', '?')} token blocks"
    return p


def thread_info():
    """The CPU backend's threads: {"engine": n, "source": why, "torch": torch's own count
    (None when torch is not imported)}. The engine keeps its own count (px_num_threads), so
    torch's setting (1 after `import torch` on a small machine) neither lowers it nor is
    changed by it."""
    from . import _threads_source, num_threads
    torch = sys.modules.get("torch")
    return dict(engine=num_threads(), source=_threads_source(),
                torch=(torch.get_num_threads() if torch is not None else None))


def _threads_label(info):
    return (f"{info.get('threads_engine')} CPU threads ({info.get('threads_source')}; "
            f"torch's own setting, {info.get('threads_torch')}, is left as it is)")


def enable_acceleration(model, backend=None, precision=None, verbose=True):
    """Replace model.diffusion_module by the engine-backed module (call it after the
    checkpoint is loaded). Returns the AcceleratedDiffusionModule, or None when acceleration
    is disabled or could not be set up (the model is then untouched)."""
    if acceleration_disabled():
        if verbose:
            _banner([f"pxdiff: acceleration disabled ({DISABLE_ENV}="
                     f"{os.environ.get(DISABLE_ENV)}); PXDesign's PyTorch diffusion module runs"])
        return None
    dm = getattr(model, "diffusion_module", None)
    if is_accelerated(dm):
        return dm if dm.active else None
    nn = _nn()
    if not isinstance(dm, nn.Module):
        log.warning("pxdiff: %s has no diffusion_module to accelerate; PyTorch runs",
                    type(model).__name__)
        return None
    try:
        acc = _cls()(dm, backend=backend, precision=precision)
    except Exception as e:  # noqa: BLE001
        log.warning("pxdiff: set-up failed (%s: %s); PXDesign's PyTorch diffusion module runs",
                    type(e).__name__, e)
        return None
    model.diffusion_module = acc
    if verbose:
        i = acc.pxdiff_info
        _banner([
            "pxdiff: engine-backed diffusion module enabled",
            f"  backend {i['backend']} ({_precision_label(i)}): {i['reason']}",
            f"  weights copied once: {i['n_params'] / 1e6:.1f} M values, "
            f"{i['token_blocks']} token blocks, {i['enc_blocks']}+{i['dec_blocks']} atom blocks, "
            f"{i['setup_s']:.1f} s",
        ] + ([f"  engine: {_threads_label(i)}"] if i.get("engine_device") == "cpu" else []) + [
            "  sampling runs whole chunks in the engine; on any failure PyTorch takes over",
            f"  turn off with {DISABLE_ENV}=1; check with `python -m pxdiff.selftest`",
        ])
    return acc


def disable_acceleration(model):
    """Put the original PyTorch module back; returns it (None if nothing was replaced)."""
    dm = getattr(model, "diffusion_module", None)
    if not is_accelerated(dm):
        return None
    orig = dm.original
    orig.training = dm.training
    model.diffusion_module = orig
    dm.pxdiff_engine = None
    return orig
