"""PyTorch reference of PXDesign's design condition embedder (docs/design-spec.md section 8),
written for this project from that text, on pxref's primitives (Linear, the atom transformer
with local attention, the trunk layout: docs/spec.md).  Everything is computed in the dtype
of the parameters, so `DesignConditionEmbedder(...).double()` is a float64 reference.

State-dict names are the released checkpoint's `design_condition_embedder.*` names without
that prefix.

    s_inputs = input_map([a, restype, plddt = 0, hotspot, add_feat, add_feat])
      a[t] = mean over token t's atoms of relu(Lin_q(q)),
      q = AtomTransformer(q = c, s = c, z = p)   (AtomAttentionEncoder without coordinates)
      add_feat = one_hot(0, 4)
    z_trunk[i, j] = E[mask[i, j] * (1 + templ[i, j])]
"""
import os
import sys
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pxref  # noqa: E402
from pxref import Linear  # noqa: E402

PREFIX = "design_condition_embedder."
N_EXTRA = 36 + 1 + 1 + 4 + 4

RELEASED = dict(c_atom=128, c_atompair=16, c_token=384, c_s_inputs=449, c_z=128, n_blocks=3, n_heads=4)


class AtomEncoderNoCoords(nn.Module):
    """Algorithm 5 without r, s, z (steps 1-2, 4-6 of design-spec 8.1)."""

    def __init__(self, c_atom, c_atompair, c_token, n_blocks, n_heads):
        super().__init__()
        self.linear_no_bias_ref_pos = Linear(3, c_atom)
        self.linear_no_bias_ref_charge = Linear(1, c_atom)
        self.linear_no_bias_f = Linear(1 + 128 + 256, c_atom)
        self.linear_no_bias_d = Linear(3, c_atompair)
        self.linear_no_bias_invd = Linear(1, c_atompair)
        self.linear_no_bias_v = Linear(1, c_atompair)
        self.linear_no_bias_cl = Linear(c_atom, c_atompair)
        self.linear_no_bias_cm = Linear(c_atom, c_atompair)
        self.small_mlp = nn.Sequential(
            nn.ReLU(), Linear(c_atompair, c_atompair), nn.ReLU(), Linear(c_atompair, c_atompair),
            nn.ReLU(), Linear(c_atompair, c_atompair))
        self.atom_transformer = pxref.AtomTransformer(c_atom, c_atompair, n_blocks, n_heads)
        self.linear_no_bias_q = Linear(c_atom, c_token)

    def forward(self, feats, n_token):
        dt = self.linear_no_bias_f.weight.dtype
        pos = feats["ref_pos"].to(dt)
        n = pos.shape[0]
        mask = feats["ref_mask"].to(dt).reshape(n, 1)
        # 1. c
        f = torch.cat([mask, feats["ref_element"].to(dt).reshape(n, 128),
                       feats["ref_atom_name_chars"].to(dt).reshape(n, 256)], dim=-1)
        c = (self.linear_no_bias_ref_pos(pos)
             + self.linear_no_bias_ref_charge(torch.asinh(feats["ref_charge"].to(dt)).reshape(n, 1))
             + self.linear_no_bias_f(f)) * mask
        # 2. p in the trunk layout: padded slots read position 0 and uid 0
        uid = feats["ref_space_uid"].long()
        pq, pk = pxref.to_query_trunks(pos, -2), pxref.to_key_trunks(pos, -2)
        uq, uk = pxref.to_query_trunks(uid, -1), pxref.to_key_trunks(uid, -1)
        d = pq[:, :, None, :] - pk[:, None, :, :]
        v = (uq[:, :, None] == uk[:, None, :]).to(dt)[..., None]
        both = pxref.trunk_pair_mask(n).to(dt)[..., None]
        p = (self.linear_no_bias_d(d) * v * both
             + self.linear_no_bias_invd(1.0 / (1.0 + (d * d).sum(-1, keepdim=True))) * v
             + self.linear_no_bias_v(v))
        # 4. c terms (padded atoms: c = 0) and the small MLP
        cq, ck = pxref.to_query_trunks(c, -2), pxref.to_key_trunks(c, -2)
        p = p + self.linear_no_bias_cl(F.relu(cq))[:, :, None, :] + self.linear_no_bias_cm(F.relu(ck))[:, None, :, :]
        p = p + self.small_mlp(p)
        # 3, 5. q = c, the atom transformer with s = c
        q = self.atom_transformer(c, c, p)
        # 6. token mean (sum / max(count, 1))
        return pxref.mean_atom_to_token(F.relu(self.linear_no_bias_q(q)), feats["atom_to_token_idx"], n_token)


class InputEmbedder(nn.Module):
    def __init__(self, c_atom, c_atompair, c_token, c_s_inputs, n_blocks, n_heads):
        super().__init__()
        self.atom_attention_encoder = AtomEncoderNoCoords(c_atom, c_atompair, c_token, n_blocks, n_heads)
        self.input_map = Linear(c_token + N_EXTRA, c_s_inputs, bias=True)


class TemplateEmbedder(nn.Module):
    def __init__(self, c_z):
        super().__init__()
        self.embedder = nn.Embedding(65, c_z)


class DesignConditionEmbedder(nn.Module):
    def __init__(self, c_atom=128, c_atompair=16, c_token=384, c_s_inputs=449, c_z=128, n_blocks=3, n_heads=4):
        super().__init__()
        self.input_embedder = InputEmbedder(c_atom, c_atompair, c_token, c_s_inputs, n_blocks, n_heads)
        self.condition_template_embedder = TemplateEmbedder(c_z)

    def forward(self, feats: Dict[str, torch.Tensor], restype, hotspot, templ, templ_mask):
        """(s_inputs [T, c_s_inputs], z_trunk [T, T, c_z]) in the parameters' dtype."""
        dt = self.input_embedder.input_map.weight.dtype
        T = restype.shape[0]
        a = self.input_embedder.atom_attention_encoder(feats, T)
        add_feat = F.one_hot(torch.zeros(T, dtype=torch.long), 4).to(dt)
        x = torch.cat([a, restype.to(dt), torch.zeros(T, 1, dtype=dt), hotspot.to(dt).reshape(T, 1),
                       add_feat, add_feat], dim=-1)
        s_inputs = self.input_embedder.input_map(x)
        idx = templ_mask.long() * (1 + templ.long())
        z = self.condition_template_embedder.embedder.weight[idx]
        return s_inputs, z


def random_state_dict(dims=None, seed=0, scale=1.0):
    """Random float32 tensors for every parameter (names with PREFIX): matrices
    N(0, (scale / sqrt(fan_in))^2), vectors (biases, LayerNorm weights) 1 + 0.2 N(0,1) for
    LayerNorm weights and 0.3 N(0, 1) otherwise, the embedding N(0, 1)."""
    d = dict(RELEASED)
    d.update(dims or {})
    m = DesignConditionEmbedder(**d)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in m.state_dict().items():
        if name.endswith("embedder.weight"):
            t = torch.randn(p.shape, generator=g)
        elif p.dim() == 2:
            t = torch.randn(p.shape, generator=g) * (scale / p.shape[1] ** 0.5)
        elif ".layernorm" in name and name.rsplit(".", 2)[-2].startswith("layernorm"):
            t = 1.0 + 0.2 * torch.randn(p.shape, generator=g)
        else:
            t = 0.3 * torch.randn(p.shape, generator=g)
        out[PREFIX + name] = t.float()
    return out


def model_from_state(state, dtype=torch.float64):
    """The reference module holding these tensors (names with PREFIX), widths read off them."""
    enc = PREFIX + "input_embedder.atom_attention_encoder."
    blocks = {k.split("blocks.")[1].split(".")[0] for k in state if "blocks." in k}
    d = dict(
        c_atom=state[enc + "linear_no_bias_ref_pos.weight"].shape[0],
        c_atompair=state[enc + "linear_no_bias_d.weight"].shape[0],
        c_token=state[enc + "linear_no_bias_q.weight"].shape[0],
        c_s_inputs=state[PREFIX + "input_embedder.input_map.weight"].shape[0],
        c_z=state[PREFIX + "condition_template_embedder.embedder.weight"].shape[1],
        n_blocks=len(blocks),
        n_heads=state[enc + "atom_transformer.diffusion_transformer.blocks.0.attention_pair_bias.linear_nobias_z.weight"].shape[0],
    )
    m = DesignConditionEmbedder(**d)
    m.load_state_dict({k[len(PREFIX):]: v for k, v in state.items()}, strict=True)
    return m.to(dtype)
