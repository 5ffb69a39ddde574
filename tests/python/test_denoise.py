"""px_denoise end to end and module by module against the float64 reference (pxref).

Every comparison: ||engine - ref|| / ||ref|| <= 1e-4 and finite, the engine fed the
float32 inputs, the reference the same values upcast to float64."""
import math

import pytest
import torch

import pxdiff
import pxfixtures
import pxref
from conftest import SMALL, TOL, assert_close, get_pair, lib, rel_err

LEVELS = [1e-3, 0.1, 1.0, 16.0, 160.0, 2560.0]

# Feature variants (keyword arguments of pxfixtures.random_features).
VARIANTS = {
    # 12 tokens of 4..14 atoms: N = 98, not a multiple of 32; 3 chains, 2 entities
    "basic": dict(n_token=12, seed=3),
    # one token
    "single_token": dict(n_token=1, atoms_per_token=7, n_chains=1, seed=4),
    # one token of one atom (N = 1 < 32)
    "single_atom": dict(n_token=1, atoms_per_token=1, n_chains=1, seed=5),
    # a token with no atoms (its encoder mean is 0), including the first and the last
    "zero_atom_tokens": dict(n_token=9, atoms_per_token=(0, 6, 3, 0, 11, 5, 2, 9, 0), seed=6),
    # several chains, entities and sym ids
    "many_chains": dict(n_token=30, atoms_per_token=(3, 5, 8), n_chains=7, seed=7),
    # half of ref_mask zero
    "ref_mask_zeros": dict(n_token=10, mask_fraction=0.5, seed=8),
    # non-zero s_trunk (PXDesign passes 0; the engine must implement it) and every
    # atom charged (arcsinh of values in about [-4, 4]); see make_inputs
    "s_trunk": dict(n_token=11, s_trunk_zero=False, seed=9),
    # N a multiple of 32 (no padded query rows), several trunks
    "n_multiple_of_32": dict(n_token=16, atoms_per_token=8, seed=10),
    # many trunks: N = 333
    "many_trunks": dict(n_token=37, atoms_per_token=9, n_chains=2, seed=11),
}


def n_atoms(inp):
    return inp.feats["atom_to_token_idx"].shape[0]


def make_inputs(pair, variant):
    inp = pair.inputs(**VARIANTS[variant])
    if variant == "s_trunk":
        g = torch.Generator().manual_seed(99)
        inp.feats["ref_charge"] = 1.5 * torch.randn(n_atoms(inp), generator=g)
        assert (inp.s_trunk != 0).all()
    return inp


def check_call(pair, inp, x, t, what):
    ref = pair.reference(inp, x, t)
    out = pair.dm(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all(), f"{what}: non-finite output"
    return assert_close(out, ref["x_denoised"], what)


# ------------------------------------------------------------ end to end -----
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants(small, variant):
    inp = make_inputs(small, variant)
    N = n_atoms(inp)
    if variant == "zero_atom_tokens":
        counts = torch.bincount(inp.feats["atom_to_token_idx"], minlength=9)
        assert (counts == 0).sum() == 3
    if variant == "ref_mask_zeros":
        assert (inp.feats["ref_mask"] == 0).sum() >= 3
    # samples 1 and 3, distinct noise levels per sample and a shared one
    x1 = pxfixtures.random_coords(1, N, seed=1)
    check_call(small, inp, x1, torch.tensor([16.0]), f"{variant} S=1")
    x3 = pxfixtures.random_coords(3, N, seed=2)
    check_call(small, inp, x3, torch.tensor([0.1, 16.0, 2560.0]), f"{variant} S=3 distinct t")
    check_call(small, inp, x3, torch.tensor([1.0, 1.0, 1.0]), f"{variant} S=3 shared t")


@pytest.mark.parametrize("t", LEVELS)
def test_noise_levels(small, t):
    inp = small.inputs(**VARIANTS["basic"])
    N = n_atoms(inp)
    # coordinates on the scale the sampler feeds at this level
    scale = math.sqrt(16.0 ** 2 + t ** 2)
    x1 = pxfixtures.random_coords(1, N, scale=scale, seed=3)
    check_call(small, inp, x1, torch.tensor([t]), f"t={t} S=1")
    x3 = pxfixtures.random_coords(3, N, scale=scale, seed=4)
    check_call(small, inp, x3, torch.full((3,), t), f"t={t} S=3 shared")


def test_all_levels_one_call(small):
    """Six samples, each its own noise level (the per-sample t_hat path)."""
    inp = small.inputs(**VARIANTS["basic"])
    x = pxfixtures.random_coords(len(LEVELS), n_atoms(inp), scale=30.0, seed=5)
    check_call(small, inp, x, torch.tensor(LEVELS), "6 levels in one call")


def test_partially_shared_levels(small):
    """Some equal, some distinct t_hat: must take the per-sample path correctly."""
    inp = small.inputs(**VARIANTS["basic"])
    x = pxfixtures.random_coords(4, n_atoms(inp), seed=6)
    check_call(small, inp, x, torch.tensor([5.0, 5.0, 5.0, 7.0]), "t = 5,5,5,7")


def test_scalar_t_broadcasts(small):
    inp = small.inputs(**VARIANTS["basic"])
    x = pxfixtures.random_coords(3, n_atoms(inp), seed=7)
    out = small.dm(x, torch.tensor(4.0), inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    ref = small.reference(inp, x, torch.full((3,), 4.0))
    assert_close(out, ref["x_denoised"], "0-d t_hat")


def test_device_entry_points_on_cpu(small):
    """On the CPU backend the device-pointer entry points take host memory: the per-sample
    one equals px_denoise, and the shared-level one broadcasts its single t_hat."""
    import ctypes
    inp = small.inputs(**VARIANTS["basic"])
    x = pxfixtures.random_coords(3, n_atoms(inp), seed=14)
    t3 = torch.full((3,), 6.0)
    want = small.dm(x, t3, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    design, _ = small.dm.design(inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    fp = lambda v: ctypes.cast(v.data_ptr(), ctypes.POINTER(ctypes.c_float))
    for name, t in (("px_denoise_device", t3), ("px_denoise_device_shared_t", torch.tensor([6.0]))):
        out = torch.full_like(x, float("nan"))
        assert getattr(lib, name)(small.dm._m, design, 3, fp(x), fp(t), fp(out)) == 0, lib.px_last_error()
        assert torch.equal(out, want), name
    # Bad calls fail with a message, on this entry point too.
    out = torch.full_like(x, float("nan"))
    assert lib.px_denoise_device_shared_t(small.dm._m, design, 0, fp(x), fp(t3), fp(out)) != 0
    assert b"n_sample" in lib.px_last_error()
    assert lib.px_denoise_device_shared_t(small.dm._m, design, 3, None, fp(t3), fp(out)) != 0
    assert b"NULL" in lib.px_last_error()
    assert torch.isnan(out).all()
    # An expanded (stride-0) t_hat through the module on the CPU: same result.
    out = small.dm(x, torch.tensor([6.0]).expand(3), inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    assert torch.equal(out, want)


def test_released_dims():
    """One end-to-end case at PXDesign v0.1.0's dims (16 blocks x 16 heads, 768 / 128)."""
    pair = get_pair("default", {}, seed=0)
    inp = pair.inputs(n_token=20, atoms_per_token=(5, 8, 11, 4, 14, 6), seed=12)
    N = n_atoms(inp)
    assert N % 32 != 0 and N > 128
    x = pxfixtures.random_coords(2, N, scale=40.0, seed=8)
    t = torch.tensor([0.5, 160.0])
    ref = pair.reference(inp, x, t)
    h, dprobe = pair.design_probe(inp)
    try:
        out, cprobe = pair.denoise_probe(h, x, t)
        assert_close(out, ref["x_denoised"], "released dims x_denoised")
        for name in ("s", "a_enc", "q_skip", "a_in", "a_trans", "a_ln", "r_update"):
            assert_close(cprobe[name], ref[name], f"released dims {name}")
        assert_close(dprobe["pair_z"], ref["pair_z"], "released dims pair_z")
        # shared t through the Python call path
        out2 = pair.dm(x, torch.tensor([3.0, 3.0]), inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
        ref2 = pair.reference(inp, x, torch.tensor([3.0, 3.0]))
        assert_close(out2, ref2["x_denoised"], "released dims shared t")
    finally:
        lib.px_design_free(h)


# ------------------------------------------------------------ intermediates --
def compare_intermediates(pair, inp, x, t, label):
    """Every probe intermediate vs forward_intermediates. Returns the errors."""
    N = n_atoms(inp)
    ref = pair.reference(inp, x, t)
    h, dp = pair.design_probe(inp)
    errs = {}
    try:
        out, cp = pair.denoise_probe(h, x, t)
    finally:
        lib.px_design_free(h)
    S = x.shape[0]
    # design-level (the reference expands them over samples: take sample 0)
    errs["s0"] = assert_close(dp["s0"], pair.s0_reference(inp), f"{label}: s0")
    errs["pair_z"] = assert_close(dp["pair_z"], ref["pair_z"], f"{label}: pair_z")
    errs["c"] = assert_close(dp["c"], ref["c_skip"][0], f"{label}: c")
    # p in the trunk layout [n_trunks, 32, 128, c_atompair], padding included
    p_ref = ref["p_skip"][0]
    assert p_ref.shape[:3] == (pxref.n_trunks(N), 32, 128)
    assert dp["p"].size == p_ref.numel(), "p probe size differs from the trunk layout"
    errs["p"] = assert_close(dp["p"], p_ref, f"{label}: p")
    mask = pxref.trunk_pair_mask(N)
    p_eng = torch.from_numpy(dp["p"]).reshape(p_ref.shape)
    assert_close(p_eng[mask], p_ref[mask], f"{label}: p (real query/key pairs)")
    # call-level
    shared = bool((t == t[0]).all())
    s_ref = ref["s"][:1] if shared else ref["s"]
    assert cp["s"].size == s_ref.numel(), (
        f"{label}: s probe has {cp['s'].size} values; expected Ss={1 if shared else S}")
    errs["s"] = assert_close(cp["s"], s_ref, f"{label}: s")
    for name in ("a_enc", "q_skip", "a_in", "a_trans", "a_ln", "r_update"):
        errs[name] = assert_close(cp[name], ref[name], f"{label}: {name}")
    errs["x_denoised"] = assert_close(out, ref["x_denoised"], f"{label}: x_denoised")
    return errs


@pytest.mark.parametrize("variant", ["basic", "zero_atom_tokens", "s_trunk", "single_atom", "many_trunks"])
def test_intermediates(small, variant):
    inp = make_inputs(small, variant)
    N = n_atoms(inp)
    x = pxfixtures.random_coords(3, N, scale=20.0, seed=9)
    compare_intermediates(small, inp, x, torch.tensor([0.01, 16.0, 800.0]), f"{variant} distinct")
    compare_intermediates(small, inp, x, torch.tensor([2.0, 2.0, 2.0]), f"{variant} shared")


# ------------------------------------------------------------ call variants --
def test_use_conditioning_false(small):
    inp = small.inputs(n_token=10, s_trunk_zero=False, seed=13)
    x = pxfixtures.random_coords(2, n_atoms(inp), seed=10)
    t = torch.tensor([3.0, 30.0])
    ref = small.reference(inp, x, t, use_conditioning=False)
    out = small.dm(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk, use_conditioning=False)
    assert_close(out, ref["x_denoised"], "use_conditioning=False")
    # and it differs from the conditioned call
    out_c = small.dm(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    assert rel_err(out_c, out) > 1e-3
    # upstream's own forward() with the flag agrees too
    with torch.no_grad():
        up = small.m64(x.double(), t.double(), pxfixtures.cast_feats(inp.feats, torch.float64),
                       inp.s_inputs.double(), inp.s_trunk.double(), inp.z_trunk.double(),
                       use_conditioning=False)
    assert_close(out, up, "use_conditioning=False vs forward()")


def test_batch_dim(small):
    """Features with a leading batch dim of 1 and x_noisy [1, S, N, 3], t [1, S]."""
    inp = small.inputs(**VARIANTS["basic"])
    N = n_atoms(inp)
    x = pxfixtures.random_coords(3, N, seed=11)
    t = torch.tensor([0.5, 5.0, 50.0])
    ref = small.reference(inp, x, t)
    bf = {k: v.unsqueeze(0) for k, v in inp.feats.items()}
    out = small.dm(x.unsqueeze(0), t.unsqueeze(0), bf, inp.s_inputs.unsqueeze(0),
                   inp.s_trunk.unsqueeze(0), inp.z_trunk.unsqueeze(0))
    assert out.shape == (1, 3, N, 3)
    assert_close(out[0], ref["x_denoised"], "batched inputs")
    # unbatched features with batched coordinates, and float64 inputs (cast, returned as f64)
    out64 = small.dm(x.double(), t.double(), pxfixtures.cast_feats(inp.feats, torch.float64),
                     inp.s_inputs.double(), inp.s_trunk.double(), inp.z_trunk.double())
    assert out64.dtype == torch.float64
    assert_close(out64, ref["x_denoised"], "float64 inputs")


def test_design_cache_reuse(small):
    """Alternating designs through one module: the cache is rebuilt, results stay right."""
    a = small.inputs(n_token=8, seed=20)
    b = small.inputs(n_token=13, seed=21)
    for inp in (a, b, a):
        x = pxfixtures.random_coords(2, n_atoms(inp), seed=12)
        check_call(small, inp, x, torch.tensor([1.5, 1.5]), "cache reuse")
    # same shapes, one feature changed: must not reuse the old cache
    c = small.inputs(n_token=8, seed=20)
    c.z_trunk.add_(1.0)
    x = pxfixtures.random_coords(2, n_atoms(c), seed=12)
    check_call(small, c, x, torch.tensor([1.5, 1.5]), "changed z_trunk")


def test_output_aliases_input(small):
    """px_denoise allows x_out == x_noisy."""
    from conftest import fptr, make_design
    inp = small.inputs(**VARIANTS["basic"])
    x = pxfixtures.random_coords(2, n_atoms(inp), seed=13)
    t = torch.tensor([2.0, 20.0])
    ref = small.reference(inp, x, t)
    h = make_design(small.dm, inp)
    try:
        buf = x.clone().contiguous()
        assert lib.px_denoise(small.dm._m, h, 2, fptr(buf), fptr(t), fptr(buf)) == 0
    finally:
        lib.px_design_free(h)
    assert_close(buf, ref["x_denoised"], "aliased output")


# ------------------------------------------------------------ error paths ----
def expect_error(fn, *words):
    with pytest.raises(pxdiff.PxdiffError) as ei:
        fn()
    msg = str(ei.value)
    assert msg, "empty error message"
    for w in words:
        assert w.lower() in msg.lower(), f"message {msg!r} lacks {w!r}"
    return msg


class ErrCase:
    """Inputs and a call wrapper for the error-path tests."""

    def __init__(self, pair):
        self.pair = pair
        self.inp = inp = pair.inputs(**VARIANTS["basic"])
        self.N = n_atoms(inp)
        self.T = inp.s_inputs.shape[0]
        self.x = pxfixtures.random_coords(2, self.N, seed=14)
        self.t = torch.tensor([1.0, 2.0])

    def call(self, feats=None, s_inputs=None, s_trunk=None, z_trunk=None, x=None, t=None):
        inp = self.inp
        return self.pair.dm(self.x if x is None else x, self.t if t is None else t,
                            inp.feats if feats is None else feats,
                            inp.s_inputs if s_inputs is None else s_inputs,
                            inp.s_trunk if s_trunk is None else s_trunk,
                            inp.z_trunk if z_trunk is None else z_trunk)

    def with_feat(self, name, value):
        f = dict(self.inp.feats)
        f[name] = value
        return f

    def still_works(self):
        check_call(self.pair, self.inp, self.x, self.t, "after errors")


@pytest.fixture
def err(small):
    return ErrCase(small)


def test_error_shapes(err):
    T, N = err.T, err.N
    expect_error(lambda: err.call(s_inputs=torch.zeros(T, SMALL["c_s_inputs"] + 1)), "s_inputs")
    expect_error(lambda: err.call(s_trunk=torch.zeros(T + 1, SMALL["c_s"])), "s_trunk")
    expect_error(lambda: err.call(z_trunk=torch.zeros(T, T - 1, SMALL["c_z"])), "z_trunk")
    expect_error(lambda: err.call(z_trunk=torch.zeros(T, T)), "z_trunk")
    expect_error(lambda: err.call(x=torch.zeros(2, N + 1, 3)), "x_noisy")
    expect_error(lambda: err.call(x=torch.zeros(2, N, 4)), "x_noisy")
    expect_error(lambda: err.call(t=torch.tensor([1.0, 2.0, 3.0])), "t_hat")
    expect_error(lambda: err.call(feats=err.with_feat("ref_element", torch.zeros(N, 127))), "ref_element")
    expect_error(lambda: err.call(feats=err.with_feat("asym_id", torch.zeros(T + 1, dtype=torch.long))),
                 "asym_id")
    expect_error(lambda: err.call(feats=err.with_feat("ref_space_uid", torch.zeros(N - 1, dtype=torch.long))),
                 "ref_space_uid")
    f = dict(err.inp.feats)
    del f["ref_charge"]
    expect_error(lambda: err.call(feats=f), "ref_charge")
    err.still_works()


def test_error_atom_count_mismatch(err):
    """A per-atom feature with a different atom count than atom_to_token_idx."""
    N = err.N
    # N + 2 rows of 3: not reshapeable to [N, -1]
    expect_error(lambda: err.call(feats=err.with_feat("ref_pos", torch.zeros(N + 2, 3))), "ref_pos")
    expect_error(lambda: err.call(feats=err.with_feat("ref_mask", torch.ones(N + 1))), "ref_mask")
    expect_error(lambda: err.call(feats=err.with_feat("ref_atom_name_chars", torch.zeros(N - 1, 256))),
                 "ref_atom_name_chars")
    err.still_works()


def nan_at(tensor, idx=0, value=float("nan")):
    t2 = tensor.clone()
    t2.view(-1)[idx] = value
    return t2


def test_error_nonfinite(err):
    inp = err.inp
    expect_error(lambda: err.call(feats=err.with_feat("ref_pos", nan_at(inp.feats["ref_pos"], 5))),
                 "ref_pos", "nan")
    expect_error(lambda: err.call(feats=err.with_feat("ref_charge", nan_at(inp.feats["ref_charge"], 1,
                                                                             float("inf")))), "ref_charge")
    expect_error(lambda: err.call(s_inputs=nan_at(inp.s_inputs, 7)), "s_inputs", "nan")
    expect_error(lambda: err.call(z_trunk=nan_at(inp.z_trunk, 11)), "z_trunk", "nan")
    expect_error(lambda: err.call(s_trunk=nan_at(inp.s_trunk, 3)), "s_trunk", "nan")
    expect_error(lambda: err.call(x=nan_at(err.x, 4)), "x_noisy", "nan")
    expect_error(lambda: err.call(t=torch.tensor([1.0, float("nan")])), "t_hat")
    expect_error(lambda: err.call(t=torch.tensor([1.0, 0.0])), "t_hat")
    expect_error(lambda: err.call(t=torch.tensor([-1.0, 1.0])), "t_hat")
    err.still_works()


def test_error_atom_to_token(err):
    a2t = err.inp.feats["atom_to_token_idx"]
    bad = a2t.clone()
    bad[-1] = err.T
    expect_error(lambda: err.call(feats=err.with_feat("atom_to_token_idx", bad)), "atom_to_token_idx", "range")
    bad = a2t.clone()
    bad[0] = -1
    expect_error(lambda: err.call(feats=err.with_feat("atom_to_token_idx", bad)), "atom_to_token_idx", "range")
    bad = a2t.clone()
    k = int((a2t > 0).nonzero()[0])  # first atom of token 1
    bad[k], bad[k - 1] = a2t[k - 1], a2t[k]
    expect_error(lambda: err.call(feats=err.with_feat("atom_to_token_idx", bad)), "atom_to_token_idx",
                 "ascending")
    err.still_works()
