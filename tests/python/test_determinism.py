"""Results do not depend on the thread count: the same px_denoise / px_sample call run in
fresh processes with OMP_NUM_THREADS=1 and =2 gives bit-identical outputs. Also, in
process, px_set_num_threads(1) vs (2), and a sample's result does not depend on which
other samples share its batch (what makes px_sample's chunking invisible)."""
import ctypes
import os
import subprocess
import sys

import pytest
import torch

import pxdiff
import pxfixtures
from conftest import ROOT, SMALL, check, fptr, lib, make_design, rel_err, sampler_config

# Wide enough that GEMMs are cut into several row and column tiles (c_token 640 -> 2x 1280
# transition columns; S * N = 3 * 333 rows), so thread scheduling has something to vary.
DIMS = dict(SMALL, c_token=640, c_atom=48, atom_heads=3)

SCRIPT = r"""
import ctypes, sys, torch
sys.path[:0] = [{python!r}, {ref!r}, {tests!r}]
import pxdiff, pxfixtures
from conftest import check, fptr, lib, make_design, sampler_config
dims = {dims!r}
torch.manual_seed(0)
model = pxfixtures.random_model(dims, seed=3)
dm = pxdiff.DiffusionModule.from_torch(model)
inp = pxfixtures.random_features_for(dims, n_token=37, atoms_per_token=9, n_chains=2, seed=4)
N = inp.feats["atom_to_token_idx"].shape[0]
x = pxfixtures.random_coords(3, N, scale=30.0, seed=5)
out = {{}}
out["denoise_distinct"] = dm(x, torch.tensor([0.5, 16.0, 400.0]), inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
out["denoise_shared"] = dm(x, torch.tensor([7.0, 7.0, 7.0]), inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
h = make_design(dm, inp)
c = sampler_config(n_step=4, seed=99)
xs = torch.empty(3, N, 3)
check(lib.px_sample(dm._m, h, ctypes.byref(c), 0, 3, 3, fptr(xs), pxdiff._lib.PROGRESS_FN(0), None))
out["sample"] = xs
lib.px_design_free(h)
torch.save(out, sys.argv[1])
"""


def run_in_subprocess(tmp_path, threads):
    script = SCRIPT.format(python=os.path.join(ROOT, "python"), ref=os.path.join(ROOT, "tests", "ref"),
                           tests=os.path.join(ROOT, "tests", "python"), dims=DIMS)
    path = str(tmp_path / f"out_{threads}.pt")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_DYNAMIC="false")
    r = subprocess.run([sys.executable, "-c", script, path], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"subprocess with OMP_NUM_THREADS={threads} failed:\n{r.stderr[-3000:]}"
    return torch.load(path)


def test_thread_count_subprocesses(tmp_path):
    one = run_in_subprocess(tmp_path, 1)
    two = run_in_subprocess(tmp_path, 2)
    for name in one:
        assert torch.isfinite(one[name]).all(), name
        assert torch.equal(one[name], two[name]), (
            f"{name}: OMP_NUM_THREADS=1 vs 2 differ (rel {rel_err(two[name], one[name]):.3g})")


@pytest.fixture(scope="module")
def wide():
    model = pxfixtures.random_model(DIMS, seed=7)
    dm = pxdiff.DiffusionModule.from_torch(model)
    inp = pxfixtures.random_features_for(DIMS, n_token=29, atoms_per_token=(5, 8, 11, 4, 14, 7), seed=8)
    return dm, inp


def denoise(dm, h, x, t):
    x = x.contiguous()
    t = t.contiguous()
    out = torch.empty_like(x)
    check(lib.px_denoise(dm._m, h, x.shape[0], fptr(x), fptr(t), fptr(out)))
    return out


def denoise_at_counts(dm, inp, x, t, set_threads, counts):
    """denoise(x, t) on a fresh design (the design cache too) after set_threads(n), per count."""
    outs = []
    for n in counts:
        set_threads(n)
        h = make_design(dm, inp)
        try:
            outs.append(denoise(dm, h, x, t))
        finally:
            lib.px_design_free(h)
    return outs


def test_set_num_threads_in_process(wide):
    dm, inp = wide
    N = inp.feats["atom_to_token_idx"].shape[0]
    x = pxfixtures.random_coords(3, N, seed=9)
    t = torch.tensor([0.2, 20.0, 2000.0])
    try:
        outs = denoise_at_counts(dm, inp, x, t, pxdiff.set_num_threads, (1, 2, 1))
    finally:
        pxdiff.set_num_threads(0)
    assert torch.equal(outs[0], outs[1]), "px_set_num_threads(1) vs (2) differ"
    assert torch.equal(outs[0], outs[2])


def test_module_set_num_threads(wide):
    """DiffusionModule.set_num_threads (px_model_set_num_threads): the module's own count, the
    same bits at 1, 3 and the process's count, a bad count refused as the input error it is."""
    dm, inp = wide
    N = inp.feats["atom_to_token_idx"].shape[0]
    x = pxfixtures.random_coords(3, N, seed=11)
    t = torch.tensor([0.3, 30.0, 900.0])
    try:
        assert dm.set_num_threads(2) is dm  # chains, like set_backend
        outs = denoise_at_counts(dm, inp, x, t, dm.set_num_threads, (1, 3, 0))
        with pytest.raises(pxdiff.PxdiffInputError, match="threads"):
            dm.set_num_threads(-1)
    finally:
        dm.set_num_threads(0)
    assert all(torch.isfinite(o).all() for o in outs)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2]), "per-module thread counts differ"


@pytest.mark.parametrize("shared", [True, False])
def test_denoise_batch_invariance(wide, shared):
    """A sample's x_denoised is the same whether it is denoised alone or with others
    (pxdiff.h promises px_sample gives the same coordinates for any chunking)."""
    dm, inp = wide
    N = inp.feats["atom_to_token_idx"].shape[0]
    x = pxfixtures.random_coords(4, N, seed=10)
    t = torch.full((4,), 5.0) if shared else torch.tensor([5.0, 0.5, 50.0, 500.0])
    h = make_design(dm, inp)
    try:
        all4 = denoise(dm, h, x, t)
        diffs = []
        for s in range(4):
            one = denoise(dm, h, x[s:s + 1].clone(), t[s:s + 1].clone())
            if not torch.equal(one[0], all4[s]):
                diffs.append((s, (one[0] - all4[s]).abs().max().item(), rel_err(one[0], all4[s])))
        two = denoise(dm, h, x[1:3].clone(), t[1:3].clone())
        if not torch.equal(two, all4[1:3]):
            diffs.append(("1:3", (two - all4[1:3]).abs().max().item(), rel_err(two, all4[1:3])))
    finally:
        lib.px_design_free(h)
    assert not diffs, "batch composition changes results (sample, max abs diff, rel): " + repr(diffs)
