"""Fixtures for pxdiff tests: random weights, checkpoints in the released layout,
and synthetic but realistic features.  Runs with torch 1.13 (/usr/bin/python3).
"""

import math
import os
import sys
from collections import namedtuple
from typing import Dict, List, Optional, Sequence, Union

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pxref  # noqa: E402

# The repository's copy of the reference tables (tests/data/reference/README.md says where each
# came from). Nothing outside the repository is read: a missing file is an error, never a skip.
REFERENCE_DIR = pxref.REFERENCE_DIR
TSV_PATH = os.path.join(REFERENCE_DIR, "pxdesign_v0.1.0_params.tsv")

DEFAULT_DIMS = dict(
    c_s=384, c_z=128, c_s_inputs=449, c_token=768, c_atom=128, c_atompair=16,
    n_blocks=16, n_heads=16, atom_enc_blocks=4, atom_dec_blocks=4, atom_heads=4,
    sigma_data=16.0, n_fourier=256,
)

# small dims for fast tests (head dims 16 and 8)
SMALL_DIMS = dict(
    c_s=32, c_z=16, c_s_inputs=24, c_token=64, c_atom=32, c_atompair=8,
    n_blocks=2, n_heads=4, atom_enc_blocks=2, atom_dec_blocks=2, atom_heads=4,
    sigma_data=16.0, n_fourier=16,
)


def read_tsv(path: str = TSV_PATH):
    """[(name, shape tuple, dtype str)] of the released model."""
    rows = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            name, shape, dtype = line.split("\t")
            rows.append((name, tuple(int(v) for v in shape.split("x")), dtype))
    return rows


def build_model(dims: Optional[dict] = None, **kw) -> pxref.DiffusionModule:
    d = dict(DEFAULT_DIMS)
    d.update(dims or {})
    d.update(kw)
    return pxref.DiffusionModule(**d)


def _fill(name: str, shape, g: torch.Generator) -> torch.Tensor:
    leaf = name.rsplit(".", 1)[-1]
    if name.endswith("fourier_embedding.w"):
        return torch.randn(shape, generator=g)
    if name.endswith("fourier_embedding.b"):
        return torch.rand(shape, generator=g)
    parent = name.rsplit(".", 2)[-2] if name.count(".") >= 1 else ""
    is_ln = parent.startswith("layernorm")
    if is_ln and leaf == "weight":
        return 1 + 0.1 * torch.randn(shape, generator=g)
    if is_ln and leaf == "bias":
        return 0.1 * torch.randn(shape, generator=g)
    if leaf == "bias":
        return 0.1 * torch.randn(shape, generator=g)
    assert leaf == "weight" and len(shape) == 2, name
    bound = 1 / math.sqrt(shape[1])  # PyTorch default Linear init bound
    return (2 * torch.rand(shape, generator=g) - 1) * bound


def random_state_dict(dims: Optional[dict] = None, seed: int = 0, **kw) -> Dict[str, torch.Tensor]:
    """Random float32 weights for every tensor of DiffusionModule(dims) (names without prefix).
    Linear weights ~ U(-1/sqrt(in), 1/sqrt(in)); LN weights 1 + 0.1 N; biases 0.1 N;
    fourier w ~ N(0,1), b ~ U(0,1)."""
    model = build_model(dims, **kw)
    g = torch.Generator().manual_seed(seed)
    return {k: _fill(k, tuple(v.shape), g).to(torch.float32) for k, v in model.state_dict().items()}


def random_model(dims: Optional[dict] = None, seed: int = 0, dtype=torch.float32, **kw) -> pxref.DiffusionModule:
    model = build_model(dims, **kw)
    model.load_state_dict(random_state_dict(dims, seed, **kw), strict=True)
    return model.to(dtype).eval()


def design_condition_tensors(seed: int = 1, path: str = TSV_PATH) -> Dict[str, torch.Tensor]:
    """Random tensors for every design_condition_embedder.* row of the tsv (tsv shapes)."""
    g = torch.Generator().manual_seed(seed)
    return {
        name: 0.02 * torch.randn(shape, generator=g)
        for name, shape, _ in read_tsv(path)
        if name.startswith("design_condition_embedder.")
    }


def save_released_layout(
    path: str,
    state_dict: Dict[str, torch.Tensor],
    extra: bool = True,
    prefix: str = "module.",
    torch_save_kwargs: Optional[dict] = None,
    training_state: bool = True,
    dtype: Optional[torch.dtype] = None,
    seed: int = 1,
):
    """torch.save a checkpoint in the released layout:
    {"model": {prefix + "diffusion_module." + k: v, [prefix + design_condition_embedder.*]},
     and, when training_state, "optimizer" (nested Adam-like state), "step", "scheduler", "misc"}.
    dtype converts the model tensors (e.g. torch.bfloat16) to test the reader's conversion."""
    model = {}
    for k, v in state_dict.items():
        t = v.detach().cpu().contiguous()
        model[prefix + "diffusion_module." + k] = t.to(dtype) if dtype is not None else t
    if extra:
        for k, v in design_condition_tensors(seed).items():
            model[prefix + k] = v.to(dtype) if dtype is not None else v
    ckpt = {"model": model}
    if training_state:
        names = list(state_dict.keys())[:3]
        ckpt["optimizer"] = {
            "state": {
                i: {
                    "step": torch.tensor(float(1000 + i)),
                    "exp_avg": torch.zeros_like(state_dict[n]),
                    "exp_avg_sq": torch.full_like(state_dict[n], 1e-8),
                }
                for i, n in enumerate(names)
            },
            "param_groups": [
                {"lr": 1.8e-3, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.0, "params": [0, 1, 2]}
            ],
        }
        ckpt["step"] = 123456
        ckpt["scheduler"] = {"last_epoch": 123456, "base_lrs": [1.8e-3], "_step_count": 123457}
        ckpt["misc"] = [None, True, 3, 2.5, "text", (1, 2, (3,)), {"nested": {"t": torch.arange(4)}}]
    torch.save(ckpt, path, **(torch_save_kwargs or {}))
    return path


# ----------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------

Inputs = namedtuple("Inputs", ["feats", "s_inputs", "s_trunk", "z_trunk"])

# element indices of C, N, O, S in a 128-way one-hot (value = atomic number - 1 style)
_ELEMENTS = [5, 6, 7, 15]


def random_features(
    n_token: int = 24,
    atoms_per_token: Union[int, Sequence[int]] = (5, 8, 11, 4, 14, 7),
    n_chains: int = 3,
    seed: int = 0,
    c_s_inputs: int = 449,
    c_s: int = 384,
    c_z: int = 128,
    s_trunk_zero: bool = True,
    mask_fraction: float = 0.1,
    dtype=torch.float32,
) -> Inputs:
    """Synthetic inputs.

    n_token tokens split into n_chains chains (contiguous, as even as possible).
    atoms_per_token: an int (same for all), or a sequence cycled over tokens;
    0 is allowed (a token with no atoms: its encoder mean is 0).
    Chains alternate between two entities so that sym_id takes several values;
    residue_index restarts at 1 per chain (with a gap of 2 in the middle of chain 0);
    token_index = arange(T); ref_space_uid = token number (one uid per residue);
    atom_to_token_idx ascending; ref_mask has ~mask_fraction zeros; some charges +-1.
    s_trunk is 0 (PXDesign) unless s_trunk_zero=False.
    """
    g = torch.Generator().manual_seed(seed)
    T = n_token
    if isinstance(atoms_per_token, int):
        apt = [atoms_per_token] * T
    else:
        apt = [int(atoms_per_token[i % len(atoms_per_token)]) for i in range(T)]
    n_chains = max(1, min(n_chains, T))
    bounds = [round(i * T / n_chains) for i in range(n_chains + 1)]
    asym = torch.zeros(T, dtype=torch.long)
    res = torch.zeros(T, dtype=torch.long)
    ent = torch.zeros(T, dtype=torch.long)
    sym = torch.zeros(T, dtype=torch.long)
    sym_count = {}
    for c in range(n_chains):
        lo, hi = bounds[c], bounds[c + 1]
        e = c % 2
        sym_count[e] = sym_count.get(e, -1) + 1
        asym[lo:hi] = c
        ent[lo:hi] = e
        sym[lo:hi] = sym_count[e]
        r = torch.arange(1, hi - lo + 1)
        if c == 0 and hi - lo > 4:
            r[(hi - lo) // 2:] += 2  # a gap in numbering
        res[lo:hi] = r
    tok_index = torch.arange(T, dtype=torch.long)

    a2t = torch.cat([torch.full((n,), t, dtype=torch.long) for t, n in enumerate(apt)]) if sum(apt) else torch.zeros(0, dtype=torch.long)
    N = a2t.shape[0]
    assert N > 0, "need at least one atom"
    # ref_pos is a per-residue reference conformer: a few Angstrom around its origin
    ref_pos = 1.5 * torch.randn(N, 3, generator=g) + 0.5 * torch.randn(T, 3, generator=g)[a2t]
    charge = torch.zeros(N)
    pick = torch.rand(N, generator=g)
    charge[pick < 0.08] = 1.0
    charge[pick > 0.95] = -1.0
    charge[(pick >= 0.5) & (pick < 0.52)] = 0.5
    mask = (torch.rand(N, generator=g) >= mask_fraction).float()
    if mask.sum() == 0:
        mask[0] = 1
    el = torch.tensor(_ELEMENTS)[torch.randint(0, len(_ELEMENTS), (N,), generator=g)]
    ref_element = torch.nn.functional.one_hot(el, 128).float()
    chars = torch.randint(0, 64, (N, 4), generator=g)
    ref_atom_name_chars = torch.nn.functional.one_hot(chars, 64).reshape(N, 256).float()
    feats = {
        "ref_pos": ref_pos.to(dtype),
        "ref_charge": charge.to(dtype),
        "ref_mask": mask.to(dtype),
        "ref_element": ref_element.to(dtype),
        "ref_atom_name_chars": ref_atom_name_chars.to(dtype),
        "ref_space_uid": a2t.clone(),
        "atom_to_token_idx": a2t,
        "asym_id": asym,
        "residue_index": res,
        "entity_id": ent,
        "token_index": tok_index,
        "sym_id": sym,
    }
    s_inputs = torch.randn(T, c_s_inputs, generator=g).to(dtype)
    if s_trunk_zero:
        s_trunk = torch.zeros(T, c_s, dtype=dtype)
    else:
        s_trunk = torch.randn(T, c_s, generator=g).to(dtype)
    z_trunk = torch.randn(T, T, c_z, generator=g).to(dtype)
    return Inputs(feats, s_inputs, s_trunk, z_trunk)


def random_features_for(dims: Optional[dict] = None, **kw) -> Inputs:
    """random_features with the c_s_inputs / c_s / c_z of a model's dims."""
    d = dict(DEFAULT_DIMS)
    d.update(dims or {})
    return random_features(c_s_inputs=d["c_s_inputs"], c_s=d["c_s"], c_z=d["c_z"], **kw)


def random_coords(n_sample: int, n_atom: int, scale: float = 10.0, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n_sample, n_atom, 3, generator=g)).to(dtype)


def cast_feats(feats: Dict[str, torch.Tensor], dtype) -> Dict[str, torch.Tensor]:
    """Floating-point features converted to dtype, integer ones kept."""
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in feats.items()}
