"""The design condition embedder (src/model/embedder.h) against the float64 reference
tests/ref/pxembed_ref.py (docs/design-spec.md section 8), through ctypes.

Random weights and features at awkward sizes (tokens not a multiple of anything, atoms not
a multiple of 32, one-atom tokens, a token without atoms, one token of one atom), at
reduced and at the released widths; every comparison ||engine - ref|| / ||ref|| <= 1e-4 and
finite, outputs poisoned with NaN before the call.  Also: the reference against upstream's
own outputs (tests/data/embedder, as tests/test_embedder.c compares the engine), loading a
torch.save checkpoint with "module." prefixes, and the bf16 mode."""
import ctypes
import math
import os

import pytest
import torch

import pxembed_ref
from conftest import ROOT, TOL, assert_close, lib, rel_err
from pxdiff._lib import Features, c_float_p, c_int64_p, check

_vp = ctypes.c_void_p
lib.px_embedder_load.restype = ctypes.c_int
lib.px_embedder_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(_vp)]
lib.px_embedder_from_arrays.restype = ctypes.c_int
lib.px_embedder_from_arrays.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(c_float_p),
                                        ctypes.POINTER(ctypes.c_int), ctypes.POINTER(c_int64_p), ctypes.POINTER(_vp)]
lib.px_embedder_free.restype = None
lib.px_embedder_free.argtypes = [_vp]
lib.px_embed.restype = ctypes.c_int
lib.px_embed.argtypes = [_vp, ctypes.POINTER(Features), c_float_p, c_float_p, c_int64_p,
                         ctypes.POINTER(ctypes.c_uint8), ctypes.c_int, c_float_p, c_float_p]
lib.px_embedder_n_params.restype = ctypes.c_int64
lib.px_embedder_n_params.argtypes = [_vp]
PX_EMBED_FP32, PX_EMBED_BF16 = 0, 1
PX_ERR_WEIGHTS = -3

SMALL = dict(c_atom=32, c_atompair=8, c_token=48, c_s_inputs=40, c_z=16, n_blocks=3, n_heads=4)


def fp(t):
    return ctypes.cast(t.data_ptr(), c_float_p)


class Embedder:
    """The engine's embedder built from a state dict (names with the prefix)."""

    def __init__(self, state=None, path=None):
        self.h = _vp()
        if path is not None:
            check(lib.px_embedder_load(path.encode(), ctypes.byref(self.h)))
            return
        names = list(state)
        self._keep = [state[k].float().contiguous() for k in names]
        shapes = [torch.tensor(list(t.shape), dtype=torch.int64) for t in self._keep]
        self._shapes = shapes
        n = len(names)
        c_names = (ctypes.c_char_p * n)(*[k.encode() for k in names])
        c_data = (c_float_p * n)(*[fp(t) for t in self._keep])
        c_nd = (ctypes.c_int * n)(*[t.dim() for t in self._keep])
        c_sh = (c_int64_p * n)(*[ctypes.cast(s.data_ptr(), c_int64_p) for s in shapes])
        check(lib.px_embedder_from_arrays(n, c_names, c_data, c_nd, c_sh, ctypes.byref(self.h)))

    def __del__(self):
        if getattr(self, "h", None):
            lib.px_embedder_free(self.h)

    def __call__(self, inp, c_s_inputs, c_z, dtype=PX_EMBED_FP32):
        f = inp["feats"]
        T, N = inp["restype"].shape[0], f["ref_pos"].shape[0]
        keep = {k: f[k].float().contiguous() for k in ("ref_pos", "ref_charge", "ref_mask", "ref_element",
                                                         "ref_atom_name_chars")}
        for k in ("ref_space_uid", "atom_to_token_idx"):
            keep[k] = f[k].long().contiguous()
        feats = Features(n_token=T, n_atom=N)
        for k in ("ref_pos", "ref_charge", "ref_mask", "ref_element", "ref_atom_name_chars"):
            setattr(feats, k, fp(keep[k]))
        for k in ("ref_space_uid", "atom_to_token_idx"):
            setattr(feats, k, ctypes.cast(keep[k].data_ptr(), c_int64_p))
        restype = inp["restype"].float().contiguous()
        hotspot = inp["hotspot"].float().contiguous()
        templ = inp["templ"].long().contiguous()
        mask = inp["templ_mask"].to(torch.uint8).contiguous()
        s = torch.full((T, c_s_inputs), float("nan"))
        z = torch.full((T, T, c_z), float("nan"))
        check(lib.px_embed(self.h, ctypes.byref(feats), fp(restype), fp(hotspot),
                           ctypes.cast(templ.data_ptr(), c_int64_p),
                           ctypes.cast(mask.data_ptr(), ctypes.POINTER(ctypes.c_uint8)), dtype, fp(s), fp(z)))
        return s, z


def random_inputs(atoms_per_token, seed, n_binder=None, pos_scale=1.5):
    """Features of len(atoms_per_token) tokens (0 allowed but not for the last): random
    reference positions, elements, name characters, charges, a few masked atoms; restype
    one-hot (binder tokens: index 32), a few hotspots, a template with a random mask."""
    g = torch.Generator().manual_seed(seed)
    apt = list(atoms_per_token)
    T = len(apt)
    a2t = torch.cat([torch.full((n,), t, dtype=torch.long) for t, n in enumerate(apt)])
    N = a2t.shape[0]
    ref_pos = pos_scale * torch.randn(N, 3, generator=g) + 3.0 * torch.randn(T, 3, generator=g)[a2t]
    charge = torch.zeros(N)
    pick = torch.rand(N, generator=g)
    charge[pick < 0.1] = 1.0
    charge[pick > 0.95] = -1.0
    mask = (torch.rand(N, generator=g) > 0.08).float()
    el = torch.tensor([5, 6, 7, 15])[torch.randint(0, 4, (N,), generator=g)]
    chars = torch.randint(0, 64, (N, 4), generator=g)
    feats = {
        "ref_pos": ref_pos, "ref_charge": charge, "ref_mask": mask,
        "ref_element": torch.nn.functional.one_hot(el, 128).float(),
        "ref_atom_name_chars": torch.nn.functional.one_hot(chars, 64).reshape(N, 256).float(),
        # residues share a uid; two neighbouring tokens share one too (as ligand atoms would)
        "ref_space_uid": torch.where(a2t == 1, torch.zeros_like(a2t), a2t),
        "atom_to_token_idx": a2t,
    }
    nb = T // 3 if n_binder is None else n_binder
    rt = torch.randint(0, 21, (T,), generator=g)
    rt[T - nb:] = 32
    restype = torch.nn.functional.one_hot(rt, 36).float()
    hotspot = (torch.rand(T, generator=g) < 0.2).float()
    hotspot[T - nb:] = 0
    templ = torch.randint(0, 64, (T, T), generator=g)
    tmask = torch.zeros(T, T, dtype=torch.bool)
    tgt = torch.rand(T, generator=g) > 0.1
    tgt[T - nb:] = False
    tmask = tgt[:, None] & tgt[None, :]
    templ = torch.where(tmask, templ, torch.randint(0, 64, (T, T), generator=g))  # ignored where unmasked
    return {"feats": feats, "restype": restype, "hotspot": hotspot, "templ": templ, "templ_mask": tmask}


def reference(state, inp):
    m = pxembed_ref.model_from_state(state)
    f64 = {k: (v.double() if v.is_floating_point() else v) for k, v in inp["feats"].items()}
    with torch.no_grad():
        return m(f64, inp["restype"].double(), inp["hotspot"].double(), inp["templ"], inp["templ_mask"])


CASES = {
    # 7 tokens, 33 atoms: one padded query trunk of 1 atom
    "t7_n33": (dict(atoms=[5, 4, 6, 1, 7, 3, 7]), 1),
    # one token of one atom
    "single_atom": (dict(atoms=[1]), 2),
    # one-atom tokens only, 45 of them
    "one_atom_tokens": (dict(atoms=[1] * 45), 3),
    # a token without atoms (its mean is 0), several trunks: 29 tokens, N = 157
    "zero_atom_token": (dict(atoms=[6, 0, 9, 4, 1, 8, 5, 7, 3, 6, 2, 9, 5, 4, 8, 1, 6, 7, 3, 5, 9, 2, 4, 6, 8, 5, 3, 7, 4]), 4),
    # many trunks, N = 333 (not a multiple of 32), 37 tokens of 9
    "n333": (dict(atoms=[9] * 37), 5),
}


def _atoms(spec):
    return spec["atoms"]


@pytest.fixture(scope="module")
def small_pair():
    state = pxembed_ref.random_state_dict(SMALL, seed=1, scale=1.5)
    return state, Embedder(state)


@pytest.mark.parametrize("case", list(CASES))
def test_random_small(small_pair, case):
    state, emb = small_pair
    spec, seed = CASES[case]
    inp = random_inputs(_atoms(spec), seed)
    s, z = emb(inp, SMALL["c_s_inputs"], SMALL["c_z"])
    s_ref, z_ref = reference(state, inp)
    assert torch.isfinite(s).all() and torch.isfinite(z).all()
    assert_close(s, s_ref, f"{case}: s_inputs")
    assert_close(z, z_ref, f"{case}: z_trunk")
    assert torch.equal(z, z_ref.float()), "z_trunk is a lookup: exact"


def test_random_released_widths():
    state = pxembed_ref.random_state_dict(None, seed=2)
    emb = Embedder(state)
    assert lib.px_embedder_n_params(emb.h) == sum(t.numel() for t in state.values()) == 1243311
    inp = random_inputs([5, 8, 1, 11, 4, 14, 7, 9, 6, 1, 10, 8, 7], seed=6)
    s, z = emb(inp, 449, 128)
    s_ref, z_ref = reference(state, inp)
    e = assert_close(s, s_ref, "released widths: s_inputs")
    assert_close(z, z_ref, "released widths: z_trunk")
    # the atom transformer matters at these weights: without its residual updates the
    # result moves far outside the bound (so the comparison above covers it)
    cut = {k: (torch.zeros_like(v) if ("attention.linear_o" in k or "linear_nobias_b" in k) else v)
           for k, v in state.items()}
    s_cut, _ = reference(cut, inp)
    assert rel_err(s_cut, s_ref) > 100 * TOL, rel_err(s_cut, s_ref)
    print(f"released widths: s_inputs {e:.2e}; without the transformer {rel_err(s_cut, s_ref):.2e}")


def test_bf16_mode(small_pair):
    state, emb = small_pair
    inp = random_inputs(_atoms(CASES["zero_atom_token"][0]), 7)
    s32, z32 = emb(inp, SMALL["c_s_inputs"], SMALL["c_z"])
    s16, z16 = emb(inp, SMALL["c_s_inputs"], SMALL["c_z"], PX_EMBED_BF16)
    # torch's own round-to-nearest-even conversion of the fp32 result
    assert torch.equal(s16, s32.to(torch.bfloat16).float())
    assert not torch.equal(s16, s32)
    assert torch.equal(z16, z32)
    s_ref, _ = reference(state, inp)
    assert 1e-5 < rel_err(s16, s_ref) < 4e-3


def load_file(path):
    """A safetensors file's F32 / F16 tensors (the format: u64 header length, JSON header,
    raw little-endian data), read here so that the test needs no safetensors package."""
    import json
    import struct

    import numpy as np
    with open(path, "rb") as fh:
        raw = fh.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": np.float32, "F16": np.float16}[e["dtype"]]
        a, b = e["data_offsets"]
        arr = np.frombuffer(raw[base + a:base + b], dtype=dt).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.astype(np.float32))
    return out


def test_reference_matches_upstream():
    """The reference itself against upstream's outputs (the fixtures the C test uses)."""
    d = os.path.join(ROOT, "tests", "data", "embedder")
    state = load_file(os.path.join(d, "weights.safetensors"))
    m = pxembed_ref.model_from_state(state)
    for task in ("small", "quick_start"):
        x = load_file(os.path.join(d, task + ".safetensors"))
        N, T = x["ref_pos"].shape[0], x["restype"].shape[0]
        feats = {
            "ref_pos": x["ref_pos"].double(), "ref_charge": x["ref_charge"].double(),
            "ref_mask": x["ref_mask"].double(),
            "ref_element": torch.nn.functional.one_hot(x["ref_element_idx"].long(), 128).double(),
            "ref_atom_name_chars": torch.nn.functional.one_hot(x["ref_atom_name_idx"].long(), 64).reshape(N, 256).double(),
            "ref_space_uid": x["ref_space_uid"].long(), "atom_to_token_idx": x["atom_to_token_idx"].long(),
        }
        with torch.no_grad():
            s, z = m(feats, x["restype"].double(), x["hotspot"].double(), x["conditional_templ"].long(),
                     x["conditional_templ_mask"].bool())
        assert_close(s, x["s_inputs"], f"{task}: reference vs upstream s_inputs")
        if "z_trunk" in x:
            assert torch.equal(z.float(), x["z_trunk"])
        else:
            assert torch.equal(z[x["z_rows"].long()].float(), x["z_slice"])


def test_load_pt_with_module_prefix(tmp_path):
    """A torch.save checkpoint {"model": {"module." + name: tensor}} with the diffusion
    module's tensors beside (ignored) loads through the .pt reader; a missing or mis-shaped
    tensor fails naming it."""
    state = pxembed_ref.random_state_dict(SMALL, seed=3)
    ck = {"module." + k: v for k, v in state.items()}
    ck["module.diffusion_module.layernorm_s.weight"] = torch.ones(7)
    path = tmp_path / "ck.pt"
    torch.save({"model": ck, "step": 3}, path)
    emb = Embedder(path=str(path))
    inp = random_inputs([3, 5, 1, 6], seed=8)
    s, z = emb(inp, SMALL["c_s_inputs"], SMALL["c_z"])
    s_ref, z_ref = reference(state, inp)
    assert_close(s, s_ref, ".pt: s_inputs")
    assert torch.equal(z, z_ref.float())
    from pxdiff._lib import lib as _l
    name = "design_condition_embedder.input_embedder.atom_attention_encoder.small_mlp.5.weight"
    for variant in ("missing", "shape"):
        bad = dict(ck)
        if variant == "missing":
            del bad["module." + name]
        else:
            bad["module." + name] = torch.zeros(8, 9)
        p2 = tmp_path / f"bad_{variant}.pt"
        torch.save({"model": bad}, p2)
        h = _vp()
        rc = lib.px_embedder_load(str(p2).encode(), ctypes.byref(h))
        msg = _l.px_last_error().decode()
        assert rc == PX_ERR_WEIGHTS and not h.value, (variant, rc)
        assert name in msg and "\n" not in msg, msg


def test_convert_keeps_the_embedder(tmp_path):
    """pxdiff convert writes the embedder's tensors beside the diffusion module's when the
    checkpoint has them (the converted file gives the same embeddings), none when it has
    none, and refuses a checkpoint whose embedder tensors do not load."""
    import pxfixtures
    from pxdiff._lib import lib as _l
    lib.px_convert_to_safetensors.restype = ctypes.c_int
    lib.px_convert_to_safetensors.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    dm_state = pxfixtures.random_state_dict(pxfixtures.SMALL_DIMS, seed=4)
    src = str(tmp_path / "ck.pt")
    pxfixtures.save_released_layout(src, dm_state, extra=True)  # embedder tensors at the tsv's shapes
    dst = str(tmp_path / "ck.safetensors")
    assert lib.px_convert_to_safetensors(src.encode(), dst.encode()) == 0, _l.px_last_error().decode()
    a, b = Embedder(path=src), Embedder(path=dst)
    inp = random_inputs([4, 7, 1, 5, 9], seed=9)
    sa, za = a(inp, 449, 128)
    sb, zb = b(inp, 449, 128)
    assert torch.isfinite(sa).all() and torch.equal(sa, sb) and torch.equal(za, zb)
    # without the subtree: converted as before, and the embedder is not in the output
    src2, dst2 = str(tmp_path / "dm.pt"), str(tmp_path / "dm.safetensors")
    pxfixtures.save_released_layout(src2, dm_state, extra=False)
    assert lib.px_convert_to_safetensors(src2.encode(), dst2.encode()) == 0, _l.px_last_error().decode()
    h = _vp()
    assert lib.px_embedder_load(dst2.encode(), ctypes.byref(h)) == PX_ERR_WEIGHTS and not h.value
    # a broken subtree: refused, naming the tensor, no output written
    bad = torch.load(src)
    name = "design_condition_embedder.input_embedder.input_map.bias"
    del bad["model"]["module." + name]
    src3, dst3 = str(tmp_path / "bad.pt"), str(tmp_path / "bad.safetensors")
    torch.save(bad, src3)
    assert lib.px_convert_to_safetensors(src3.encode(), dst3.encode()) == PX_ERR_WEIGHTS
    assert name in _l.px_last_error().decode()
    assert not os.path.exists(dst3)
