"""The sampler against the reference: px_sampler_step vs pxref.sampler_step with the same
injected rotation/translation/noise; px_noise_schedule vs pxref.noise_schedule (and the
CUDA table); px_eta vs pxref.eta_schedule; px_sample's determinism and split invariance,
and a short px_sample run vs pxref.sample_diffusion fed the engine's own random streams."""
import ctypes
import math

import numpy as np
import pytest
import torch

import pxdiff
import pxfixtures
import pxref
from conftest import TOL, assert_close, check, fptr, lib, make_design, rel_err, sampler_config

ETA_TYPES = ["const", "linear", "poly", "cos", "piecewise", "piecewise_65", "piecewise_70"]


def f32(v):
    return float(np.float32(v))


def ulp_diff(a, b):
    ai = a.contiguous().view(torch.int32).long()
    bi = b.contiguous().view(torch.int32).long()
    return (ai - bi).abs()


def engine_schedule(n, bf16, **kw):
    c = sampler_config(n_step=n, schedule_bf16=int(bf16), **kw)
    out = torch.full((n + 1,), float("nan"))
    check(lib.px_noise_schedule(ctypes.byref(c), fptr(out)))
    return out


# --------------------------------------------------------------- schedule ----
@pytest.mark.parametrize("n", [400, 200, 100, 50, 10, 1, 7, 1000])
def test_schedule_bf16_exact(n):
    e = engine_schedule(n, True)
    r = pxref.noise_schedule(n, "bfloat16")
    assert e[-1] == 0
    assert torch.equal(e, r), f"bf16 schedule n={n}: {int((e != r).sum())} entries differ"
    try:
        cu = pxref.cuda_schedule_table(n, "bfloat16")
    except KeyError:
        return
    assert torch.equal(e, cu)
    if n == 400:
        assert e[0].item() == 2544.0
        assert len(set(e.tolist())) == 204
        assert sum(1 for k in range(n) if e[k] == e[k + 1]) == 197


@pytest.mark.parametrize("n", [400, 200, 100, 50, 10, 1, 7, 1000])
def test_schedule_fp32(n):
    """The float32 schedule: the engine reproduces CUDA's powf, so it matches upstream's
    CUDA table bit for bit, and pxref's CPU formula (torch.pow on the CPU) within 1 ulp."""
    e = engine_schedule(n, False)
    r = pxref.noise_schedule(n, "float32")
    d = ulp_diff(e, r)
    assert int(d.max()) <= 1, f"fp32 schedule n={n}: {int(d.max())} ulp from pxref's CPU formula"
    try:
        cu = pxref.cuda_schedule_table(n, "float32")
    except KeyError:
        return
    assert torch.equal(e, cu), f"fp32 schedule n={n}: {int((e != cu).sum())} entries differ from CUDA"


@pytest.mark.parametrize("kw", [dict(s_max=80.0, s_min=2.0 ** -10, rho=5.0, sigma_data=10.0),
                                dict(s_max=250.0, s_min=f32(1e-4), rho=7.0, sigma_data=16.0)])
def test_schedule_other_parameters(kw):
    """Non-default s_max/s_min/rho/sigma (values exactly representable in float32, since the
    config holds floats): bf16 exact; fp32 within 2 ulp (pow's 1 ulp, then sigma x)."""
    for n in (37, 200):
        assert torch.equal(engine_schedule(n, True, **kw), pxref.noise_schedule(n, "bfloat16", **kw))
        d = ulp_diff(engine_schedule(n, False, **kw), pxref.noise_schedule(n, "float32", **kw))
        assert int(d.max()) <= 2, f"{kw} n={n}: {int(d.max())} ulp"


def test_schedule_rejects_bad_config():
    out = torch.empty(11)
    for kw in (dict(n_step=0), dict(n_step=10, rho=0.0), dict(n_step=10, s_min=-1.0),
               dict(n_step=10, sigma_data=float("nan"))):
        c = sampler_config(**kw)
        assert lib.px_noise_schedule(ctypes.byref(c), fptr(out)) != 0, kw


# -------------------------------------------------------------------- eta ----
@pytest.mark.parametrize("kind", ETA_TYPES)
def test_eta(kind):
    for n, lo, hi in ((400, 1.0, 2.5), (9, 1.0, 2.5), (50, 0.5, 3.0)):
        if kind == "const":
            hi = lo
        c = sampler_config(n_step=n, eta_type=lib.px_eta_type_from_name(kind.encode()),
                           eta_min=lo, eta_max=hi)
        ref = pxref.eta_schedule(kind, n, eta_min=lo, eta_max=hi)
        got = [lib.px_eta(ctypes.byref(c), k) for k in range(n)]
        for k in range(n):
            assert got[k] == f32(ref[k]), f"eta {kind} n={n} k={k}: {got[k]} vs {ref[k]}"


def test_eta_default():
    c = sampler_config()
    ref = pxref.eta_schedule(2.5, 400)
    assert all(lib.px_eta(ctypes.byref(c), k) == ref[k] for k in range(400))


# ------------------------------------------------------------ sampler_step ----
@pytest.fixture(scope="module")
def design(small):
    inp = small.inputs(n_token=9, seed=31)
    h = make_design(small.dm, inp)
    yield inp, h
    lib.px_design_free(h)


def step_pairs():
    s = pxref.noise_schedule(400, "bfloat16")
    n = len(s) - 1
    same = next(k for k in range(n) if s[k] == s[k + 1])
    low = next(k for k in range(n) if 0 < s[k + 1] <= 0.01)
    return [
        ("first", s[0].item(), s[1].item()),
        ("middle", s[200].item(), s[201].item()),
        ("t_cur == t_prev", s[same].item(), s[same + 1].item()),
        ("gamma = 0 (t_cur <= 0.01)", s[low].item(), s[low + 1].item()),
        ("t_cur = 0", s[n - 1].item(), 0.0),
        ("gamma_min edge", 0.05, f32(0.01)),
        ("plain", 1.0, 0.5),
    ]


def run_engine_step(small, h, x, t_prev, t_cur, eta, rot, trans, noise, **cfg):
    c = sampler_config(**cfg)
    xe = x.float().contiguous().clone()
    S = x.shape[0]
    rp = fptr(rot) if rot is not None else None
    tp = fptr(trans) if trans is not None else None
    check(lib.px_sampler_step(small.dm._m, h, ctypes.byref(c), S, fptr(xe), t_prev, t_cur, eta,
                              rp, tp, fptr(noise)))
    return xe


@pytest.mark.parametrize("case", range(7))
def test_sampler_step(small, design, case):
    inp, h = design
    label, t_prev, t_cur = step_pairs()[case]
    N = inp.feats["atom_to_token_idx"].shape[0]
    S = 3
    g = torch.Generator().manual_seed(100 + case)
    x = (max(t_prev, 1.0) * torch.randn(S, N, 3, generator=g)).float()
    rot = pxref.random_rotation(S, g, torch.float32).contiguous()
    trans = torch.randn(S, 3, generator=g).float()
    noise = torch.randn(S, N, 3, generator=g).float()
    n_step = 400
    for kind, lo, hi, k in (("const", 2.5, 2.5, 17), ("piecewise_65", 1.0, 2.5, 300),
                            ("cos", 1.0, 2.5, 123), ("linear", 0.5, 3.0, 399)):
        eta = pxref.eta_schedule(kind, n_step, eta_min=lo, eta_max=hi)[k]
        c = sampler_config(n_step=n_step, eta_type=lib.px_eta_type_from_name(kind.encode()),
                           eta_min=lo, eta_max=hi)
        eta_e = lib.px_eta(ctypes.byref(c), k)
        assert eta_e == f32(eta)
        out = run_engine_step(small, h, x, t_prev, t_cur, eta_e, rot, trans, noise)
        with torch.no_grad():
            ref = pxref.sampler_step(
                small.m64, x.double(), t_prev, t_cur, f32(eta), rot.double(), trans.double(),
                noise.double(), pxfixtures.cast_feats(inp.feats, torch.float64), inp.s_inputs.double(),
                inp.s_trunk.double(), inp.z_trunk.double(), gamma0=1.0, gamma_min=f32(0.01),
                noise_scale_lambda=f32(1.003))
        assert torch.isfinite(out).all()
        assert_close(out, ref, f"step {label} ({t_prev}, {t_cur}) eta {kind}={eta}")


def test_sampler_step_gamma_and_lambda(small, design):
    """Non-default gamma0 / gamma_min / noise_scale_lambda are honoured."""
    inp, h = design
    N = inp.feats["atom_to_token_idx"].shape[0]
    g = torch.Generator().manual_seed(7)
    x = (20 * torch.randn(2, N, 3, generator=g)).float()
    rot = pxref.random_rotation(2, g, torch.float32).contiguous()
    trans = torch.randn(2, 3, generator=g).float()
    noise = torch.randn(2, N, 3, generator=g).float()
    for gamma0, gamma_min, lam, t_prev, t_cur in ((0.5, 1.0, 1.1, 20.0, 10.0), (0.8, 15.0, 0.9, 20.0, 10.0)):
        out = run_engine_step(small, h, x, t_prev, t_cur, 1.5, rot, trans, noise, gamma0=gamma0,
                              gamma_min=gamma_min, noise_scale_lambda=lam)
        with torch.no_grad():
            ref = pxref.sampler_step(
                small.m64, x.double(), t_prev, t_cur, 1.5, rot.double(), trans.double(), noise.double(),
                pxfixtures.cast_feats(inp.feats, torch.float64), inp.s_inputs.double(),
                inp.s_trunk.double(), inp.z_trunk.double(), gamma0=f32(gamma0), gamma_min=f32(gamma_min),
                noise_scale_lambda=f32(lam))
        assert_close(out, ref, f"gamma0={gamma0} gamma_min={gamma_min} lambda={lam}")


def test_sampler_step_without_augmentation(small, design):
    """rot = NULL: no centring and no rotation/translation; the rest as upstream."""
    inp, h = design
    N = inp.feats["atom_to_token_idx"].shape[0]
    g = torch.Generator().manual_seed(8)
    x = (10 * torch.randn(2, N, 3, generator=g) + 5).float()
    noise = torch.randn(2, N, 3, generator=g).float()
    t_prev, t_cur, eta = 12.0, 9.0, 2.5
    out = run_engine_step(small, h, x, t_prev, t_cur, eta, None, None, noise)
    lam = f32(1.003)
    t_hat = t_prev * 2.0
    x_noisy = x.double() + lam * math.sqrt(t_hat ** 2 - t_prev ** 2) * noise.double()
    with torch.no_grad():
        x_den = small.m64(x_noisy, torch.full((2,), t_hat, dtype=torch.float64),
                          pxfixtures.cast_feats(inp.feats, torch.float64), inp.s_inputs.double(),
                          inp.s_trunk.double(), inp.z_trunk.double())
    ref = x_noisy + eta * (t_cur - t_hat) * (x_noisy - x_den) / t_hat
    assert_close(out, ref, "step without augmentation")


# -------------------------------------------------------------- px_sample ----
PROGRESS = pxdiff._lib.PROGRESS_FN


def run_sample(small, h, N, first, n, chunk, progress=None, **cfg):
    c = sampler_config(**cfg)
    out = torch.full((n, N, 3), float("nan"))
    cb = progress if progress is not None else PROGRESS(0)
    check(lib.px_sample(small.dm._m, h, ctypes.byref(c), first, n, chunk, fptr(out), cb, None))
    return out


@pytest.fixture(scope="module")
def sample_design(small):
    inp = small.inputs(n_token=5, atoms_per_token=(3, 7, 5), seed=41)
    h = make_design(small.dm, inp)
    yield inp, h, inp.feats["atom_to_token_idx"].shape[0]
    lib.px_design_free(h)


SAMPLE_CFG = dict(n_step=8, seed=1234)


@pytest.fixture(scope="module")
def sample_all(small, sample_design):
    """Samples [0, 4) of SAMPLE_CFG in one chunk."""
    inp, h, N = sample_design
    return run_sample(small, h, N, 0, 4, 4, **SAMPLE_CFG)


def test_sample_repeatable(small, sample_design, sample_all):
    inp, h, N = sample_design
    a = sample_all
    assert torch.isfinite(a).all()
    assert a.abs().max() > 0
    b = run_sample(small, h, N, 0, 4, 4, **SAMPLE_CFG)
    assert torch.equal(a, b), "same seed, same call: outputs differ"
    # samples are distinct from each other
    assert rel_err(a[0], a[1]) > 1e-2


def test_sample_first_offset(small, sample_design):
    """Samples [0, 4) equal samples [0, 2) + [2, 4) (same chunk size in every call)."""
    inp, h, N = sample_design
    a = run_sample(small, h, N, 0, 4, 2, **SAMPLE_CFG)
    lo = run_sample(small, h, N, 0, 2, 2, **SAMPLE_CFG)
    hi = run_sample(small, h, N, 2, 2, 2, **SAMPLE_CFG)
    assert torch.equal(a, torch.cat([lo, hi])), "[0,4) != [0,2) + [2,4)"
    one = run_sample(small, h, N, 3, 1, 1, **SAMPLE_CFG)
    single = [run_sample(small, h, N, i, 1, 1, **SAMPLE_CFG) for i in range(4)]
    assert torch.equal(torch.cat(single)[3], one[0])


@pytest.mark.parametrize("chunk", [1, 3])
def test_sample_chunk_invariance(small, sample_design, sample_all, chunk):
    """pxdiff.h: "any split into calls or chunks gives the same coordinates"."""
    inp, h, N = sample_design
    c = run_sample(small, h, N, 0, 4, chunk, **SAMPLE_CFG)
    assert torch.equal(sample_all, c), (
        f"chunk {chunk} vs 4: outputs differ (max abs diff {(sample_all - c).abs().max().item():.3g}, "
        f"rel {rel_err(c, sample_all):.3g})")


def test_sample_split_mixed_chunks(small, sample_design, sample_all):
    """[0, 2) in one chunk + [2, 4) one sample at a time vs [0, 4) in one chunk."""
    inp, h, N = sample_design
    lo = run_sample(small, h, N, 0, 2, 2, **SAMPLE_CFG)
    hi = run_sample(small, h, N, 2, 2, 1, **SAMPLE_CFG)
    assert torch.equal(sample_all, torch.cat([lo, hi])), "[0,4) != [0,2) + [2,4) with other chunks"


def test_sample_seed_matters(small, sample_design, sample_all):
    inp, h, N = sample_design
    d = run_sample(small, h, N, 0, 4, 4, n_step=8, seed=1235)
    assert torch.isfinite(d).all()
    for s in range(4):
        assert rel_err(d[s], sample_all[s]) > 1e-2


def test_sample_progress_and_cancel(small, sample_design):
    inp, h, N = sample_design
    calls = []

    def prog(user, done, total, step, n_step):
        calls.append((done, total, step, n_step))
        return 0

    cb = PROGRESS(prog)
    run_sample(small, h, N, 0, 3, 2, progress=cb, n_step=4, seed=5)
    assert calls[-1] == (3, 3, 4, 4)
    assert any(c[2] == 1 for c in calls)

    def stop(user, done, total, step, n_step):
        return 1 if step >= 2 else 0

    with pytest.raises(pxdiff.PxdiffError, match="cancel"):
        run_sample(small, h, N, 0, 2, 2, progress=PROGRESS(stop), n_step=4, seed=5)


def test_sample_bad_arguments(small, sample_design):
    inp, h, N = sample_design
    out = torch.zeros(2, N, 3)
    for first, n, chunk, n_step in ((0, 0, 1, 3), (-1, 2, 1, 3), (0, 2, 0, 3), (0, 2, 1, 0)):
        c = sampler_config(n_step=n_step)
        rc = lib.px_sample(small.dm._m, h, ctypes.byref(c), first, n, chunk, fptr(out), PROGRESS(0), None)
        assert rc != 0, (first, n, chunk, n_step)
        assert lib.px_last_error().decode(), "no error message"


def rng_normal(seed, sample, step, purpose, n):
    out = torch.empty(n)
    lib.px_rng_normal(seed, sample, step, purpose, fptr(out), n)
    return out


def test_sample_matches_reference(small, sample_design):
    """A short px_sample run vs pxref.sample_diffusion fed the engine's streams (x0, noise,
    translation exactly; rotations rebuilt from the same quaternion normals, which the
    engine keeps in double: they agree to ~1e-8)."""
    inp, h, N = sample_design
    seed, n, n_step, first = 77, 2, 10, 3
    got = run_sample(small, h, N, first, n, 2, n_step=n_step, seed=seed, eta_type=0,
                     eta_min=2.5, eta_max=2.5)

    def draw(step):
        if step < 0:
            return None, None, torch.stack([rng_normal(seed, first + s, 0, 0, N * 3).reshape(N, 3)
                                            for s in range(n)]).double()
        rots, trs, nz = [], [], []
        for s in range(n):
            q = rng_normal(seed, first + s, step, 1, 4).double()
            q = q / q.norm()
            w, x, y, z = q.tolist()
            rots.append(torch.tensor([
                [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]], dtype=torch.float64))
            trs.append(rng_normal(seed, first + s, step, 2, 3).double())
            nz.append(rng_normal(seed, first + s, step, 3, N * 3).reshape(N, 3).double())
        return torch.stack(rots).float().double(), torch.stack(trs), torch.stack(nz)

    with torch.no_grad():
        ref = pxref.sample_diffusion(
            small.m64, pxfixtures.cast_feats(inp.feats, torch.float64), inp.s_inputs.double(),
            inp.s_trunk.double(), inp.z_trunk.double(), n_sample=n,
            schedule=pxref.noise_schedule(n_step, "bfloat16"), eta=2.5, gamma0=1.0,
            gamma_min=f32(0.01), noise_scale_lambda=f32(1.003), draw=draw, dtype=torch.float64)
    assert torch.isfinite(got).all()
    e = assert_close(got, ref, "px_sample vs reference sampler (10 steps)")
    print(f"px_sample vs reference sampler: rel err {e:.3g}")
