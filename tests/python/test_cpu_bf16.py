"""The CPU's bf16 precision (AVX512_BF16; src/cpu/gemm_bf16.c, src/model/cpu_bf16.c).

- per call: against the same engine at fp32 (itself ~4e-7 from the float64 reference), within
  the GPU's per-call bound 2e-3 at every noise level of the 400-step schedule, at small widths
  (the test's speed; bench/cpu_bf16_percall.py sweeps the released widths, docs/benchmarks.md);
- the token blocks at bf16 are counted (px_model_x16_blocks), the gate's block list
  (PXDIFF_CPU_BF16_BLOCKS) decides which, and with no block admitted the call is bit-identical
  to fp32 (blocks that do not pass stay fp32);
- results do not depend on the thread count;
- on a machine without AVX512_BF16, or with PXDIFF_CPU_BF16=0, asking for bf16 fails with the
  reason, and `pxdiff info` says so;
- where the kernel is AMX's (tdpbf16ps), PXDIFF_CPU_BF16_KERNEL=avx512 runs the vdpbf16ps one
  instead (another order of the same sums: other bits, the same bound), and `pxdiff info` names
  the kernel either way.
The whole 400-step run's gate (<= 0.05 A) is tests/gpu/whole_run_accuracy.py --device cpu
(docs/benchmarks.md gives the measurement).
"""
import os
import subprocess
import sys

import pytest
import torch

import pxdiff
import pxfixtures
import pxref
from conftest import SANITIZED, rel_err

HAVE_BF16 = pxdiff.cpu_bf16_name().startswith(("AVX512_BF16", "AMX"))
HAVE_AMX = pxdiff.cpu_bf16_name().startswith("AMX")
needs_bf16 = pytest.mark.skipif(not HAVE_BF16, reason=f"no CPU bf16 here: {pxdiff.cpu_bf16_name()}")

# Small widths, 4 token blocks (K = 64 and 128: the kernel's K tails are test_cpu_gemm_bf16's).
DIMS = dict(pxfixtures.SMALL_DIMS, n_blocks=4)


def schedule_t_hats(n_step=400):
    """Every distinct t_hat of PXDesign's 400-step sampler (gamma 1 above 0.01, as
    tests/gpu/check_cuda.py sweeps on the GPU)."""
    t = pxref.noise_schedule(n_step, "bfloat16")
    hats = set()
    for k in range(n_step):
        tp, tc = float(t[k]), float(t[k + 1])
        hats.add(float(torch.tensor(tp * ((1.0 if tc > 0.01 else 0.0) + 1.0), dtype=torch.float32)))
    return sorted(hats)


@pytest.fixture(scope="module")
def engines():
    model = pxfixtures.random_model(DIMS, seed=3)
    e32 = pxdiff.DiffusionModule.from_torch(model)
    e32.set_backend("cpu", "fp32")
    ebf = pxdiff.DiffusionModule.from_torch(model)
    ebf.set_backend("cpu", "bf16")
    inp = pxfixtures.random_features_for(DIMS, n_token=24, seed=4)
    return model, e32, ebf, inp


def call(e, inp, x, t):
    return e(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)


@needs_bf16
def test_per_call_error_every_level(engines):
    _, e32, ebf, inp = engines
    assert ebf.precision == "bf16" and ebf.x16_blocks == DIMS["n_blocks"]
    assert e32.precision == "fp32" and e32.x16_blocks == 0
    N = inp.feats["ref_pos"].shape[0]
    S = 2
    worst, at = 0.0, None
    hats = schedule_t_hats()
    if SANITIZED:
        hats = hats[::8]  # memory checks need no sweep; the unsanitized suite takes every level
    for i, th in enumerate(hats):
        x = pxfixtures.random_coords(S, N, scale=max(th, 1.0), seed=200 + i)
        t = torch.full((S,), th)
        err = rel_err(call(ebf, inp, x, t), call(e32, inp, x, t))  # inf when not finite
        if not err <= worst:
            worst, at = err, th
    assert worst <= 2e-3, f"bf16 vs fp32: {worst:.3g} at t_hat {at} (bound 2e-3)"
    assert worst > 0, "bf16 gave fp32's bits: the bf16 GEMMs did not run"


@needs_bf16
def test_gate_block_list_and_fp32_blocks(engines, monkeypatch):
    model, e32, _, inp = engines
    N = inp.feats["ref_pos"].shape[0]
    x = pxfixtures.random_coords(2, N, scale=16.0, seed=9)
    t = torch.tensor([16.0, 3.0])
    want = call(e32, inp, x, t)
    monkeypatch.setenv("PXDIFF_CPU_BF16_BLOCKS", "")  # no block admitted: every block fp32
    e = pxdiff.DiffusionModule.from_torch(model)
    e.set_backend("cpu", "bf16")
    assert e.precision == "bf16" and e.x16_blocks == 0
    assert torch.equal(call(e, inp, x, t), want)
    monkeypatch.setenv("PXDIFF_CPU_BF16_BLOCKS", "1-2")
    e.set_backend("cpu", "bf16")
    assert e.x16_blocks == 2
    got = call(e, inp, x, t)
    assert not torch.equal(got, want) and rel_err(got, want) <= 2e-3
    e.set_backend("cpu", "fp32")  # back to fp32: the copies are gone, fp32's bits again
    assert e.precision == "fp32" and e.x16_blocks == 0
    assert torch.equal(call(e, inp, x, t), want)


@needs_bf16
def test_thread_count_independent(engines):
    _, _, ebf, inp = engines
    N = inp.feats["ref_pos"].shape[0]
    x = pxfixtures.random_coords(3, N, scale=10.0, seed=11)
    t = torch.tensor([10.0, 0.5, 160.0])
    before = pxdiff.num_threads()
    try:
        pxdiff.set_num_threads(1)
        one = call(ebf, inp, x, t)
        pxdiff.set_num_threads(3)
        three = call(ebf, inp, x, t)
    finally:
        pxdiff.set_num_threads(before)
    assert torch.equal(one, three)


def test_unavailable_bf16_says_why():
    paths = [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), d) for d in ("ref",)]
    paths.append(os.path.dirname(os.path.dirname(os.path.abspath(pxdiff.__file__))))
    env = dict(os.environ, PXDIFF_CPU_BF16="0",
               PYTHONPATH=os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]))
    code = ("import pxdiff, pxfixtures\n"
            "e = pxdiff.DiffusionModule.from_torch(pxfixtures.random_model(pxfixtures.SMALL_DIMS, seed=0))\n"
            "try:\n    e.set_backend('cpu', 'bf16')\nexcept pxdiff.PxdiffBackendError as err:\n"
            "    print('refused:', err)\nelse:\n    print('accepted')\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused:") and "bf16" in r.stdout and "PXDIFF_CPU_BF16=0" in r.stdout, r.stdout
    if not HAVE_BF16:
        assert "AVX512_BF16" in pxdiff.cpu_bf16_name()
    exe = os.path.join(os.path.dirname(os.path.abspath(pxdiff._lib.lib._name)), "pxdiff")
    if os.path.exists(exe):
        out = subprocess.run([exe, "info"], env=env, capture_output=True, text=True, timeout=60).stdout
        assert "cpu precisions: fp32; bf16: off (PXDIFF_CPU_BF16=0)" in out, out


@pytest.mark.skipif(not HAVE_AMX, reason=f"no AMX kernel here: {pxdiff.cpu_bf16_name()}")
def test_amx_and_forced_avx512_kernel(engines, tmp_path):
    _, e32, ebf, inp = engines
    N = inp.feats["ref_pos"].shape[0]
    x = pxfixtures.random_coords(2, N, scale=16.0, seed=21)
    t = torch.tensor([16.0, 0.7])
    want, amx = call(e32, inp, x, t), call(ebf, inp, x, t)
    out = tmp_path / "avx512.pt"
    paths = [os.path.dirname(os.path.abspath(__file__)),
             os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ref"),
             os.path.dirname(os.path.dirname(os.path.abspath(pxdiff.__file__)))]
    env = dict(os.environ, PXDIFF_CPU_BF16_KERNEL="avx512",
               PYTHONPATH=os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]))
    code = ("import sys, torch, pxdiff, pxfixtures\n"
            "from test_cpu_bf16 import DIMS, call\n"
            "assert pxdiff.cpu_bf16_name().startswith('AVX512_BF16'), pxdiff.cpu_bf16_name()\n"
            "e = pxdiff.DiffusionModule.from_torch(pxfixtures.random_model(DIMS, seed=3))\n"
            "e.set_backend('cpu', 'bf16')\n"
            "inp = pxfixtures.random_features_for(DIMS, n_token=24, seed=4)\n"
            "x = pxfixtures.random_coords(2, inp.feats['ref_pos'].shape[0], scale=16.0, seed=21)\n"
            "torch.save(call(e, inp, x, torch.tensor([16.0, 0.7])), sys.argv[1])\n")
    r = subprocess.run([sys.executable, "-c", code, str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    avx = torch.load(out)
    assert rel_err(amx, want) <= 2e-3 and rel_err(avx, want) <= 2e-3
    assert not torch.equal(amx, avx), "PXDIFF_CPU_BF16_KERNEL=avx512 gave the AMX kernel's bits"
    exe = os.path.join(os.path.dirname(os.path.abspath(pxdiff._lib.lib._name)), "pxdiff")
    if os.path.exists(exe):
        out_amx = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=60).stdout
        out_avx = subprocess.run([exe, "info"], env=env, capture_output=True, text=True, timeout=60).stdout
        assert "bf16: AMX kernel" in out_amx, out_amx
        assert "bf16: AVX512_BF16 kernel" in out_avx and "PXDIFF_CPU_BF16_KERNEL=avx512" in out_avx, out_avx
