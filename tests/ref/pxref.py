"""PyTorch reference for pxdiff: PXDesign's diffusion module and sampler (docs/spec.md).

Written for this project from docs/spec.md and from reading the upstream sources
(Protenix tag v0.5.0+pxd, PXDesign v0.1.0) for facts.  Runs with torch 1.13
(Debian's /usr/bin/python3).  Everything is computed in the dtype of the module
parameters, so `DiffusionModule(...).double()` gives a float64 reference, and
everything is recomputed at every call, as upstream does (this file doubles as
the PyTorch baseline for benchmarks).

State-dict names equal the released checkpoint's `diffusion_module.*` names
without that prefix, so `load_state_dict(strict=True)` works on the released
tensors.

Conventions (facts read off upstream):
  * LayerNorm eps 1e-5, biased variance.
  * Local atom attention: trunks of 32 queries, key window of 128 atoms
    starting 48 atoms before the trunk; keys outside [0, N) and padded query
    rows get -1e10 added to their logits (the pair bias is still added there).
    Padded atoms read position 0, space uid 0, token index 0 and c = 0.
  * Encoder's token mean: sum over a token's atoms divided by max(count, 1),
    so a token with no atoms gets 0 (upstream's scatter_mean clamps count at 1).
  * Augmentation (Protenix centre_random_augmentation + rot_vec_mul):
    x <- x - mean_atoms(x) (per sample, unmasked), then
    x_new[s, i, :] = R[s] @ x[s, i, :] + u[s]      (i.e. x @ R^T + u)
    with rot_vec_mul written out as r[i,0]*x + r[i,1]*y + r[i,2]*z.
    Random draw order per step upstream: rotations (scipy Rotation.random,
    numpy global RNG), then translation torch.randn([S,1,3]), then noise
    torch.randn([S,N,3]) (drawn even when gamma = 0).
"""

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

N_QUERIES = 32
N_KEYS = 128
MASK_INF = 1e10
LN_EPS = 1e-5


# ----------------------------------------------------------------------------
# primitives
# ----------------------------------------------------------------------------


class Linear(nn.Module):
    """y = x W^T (+ b); W stored [out, in].  Parameters start at zero: the
    weights are meant to be loaded (released tensors or pxfixtures)."""

    def __init__(self, c_in: int, c_out: int, bias: bool = False):
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.weight = nn.Parameter(torch.zeros(c_out, c_in))
        if bias:
            self.bias = nn.Parameter(torch.zeros(c_out))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class LayerNorm(nn.Module):
    def __init__(self, c: int, scale: bool = True, offset: bool = True):
        super().__init__()
        self.c = c
        if scale:
            self.weight = nn.Parameter(torch.ones(c))
        else:
            self.register_parameter("weight", None)
        if offset:
            self.bias = nn.Parameter(torch.zeros(c))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.layer_norm(x, (self.c,), self.weight, self.bias, LN_EPS)


class AdaLN(nn.Module):
    """AF3 Algorithm 26: sigmoid(Lin_s(LN_s(s))) * LN(a) + Lin_nobias_s(LN_s(s))."""

    def __init__(self, c_a: int, c_s: int):
        super().__init__()
        self.layernorm_a = LayerNorm(c_a, scale=False, offset=False)
        self.layernorm_s = LayerNorm(c_s, scale=True, offset=False)
        self.linear_s = Linear(c_s, c_a, bias=True)
        self.linear_nobias_s = Linear(c_s, c_a)

    def s_terms(self, s):
        """(gate, shift) from s alone: sigmoid(Lin_s(LN_s(s))), Lin_nobias_s(LN_s(s))."""
        sn = self.layernorm_s(s)
        return torch.sigmoid(self.linear_s(sn)), self.linear_nobias_s(sn)

    def forward(self, a, s):
        gate, shift = self.s_terms(s)
        return gate * self.layernorm_a(a) + shift


class Transition(nn.Module):
    """AF3 Algorithm 11 (hidden = n * c)."""

    def __init__(self, c: int, n: int = 2):
        super().__init__()
        self.layernorm1 = LayerNorm(c)
        self.linear_no_bias_a = Linear(c, n * c)
        self.linear_no_bias_b = Linear(c, n * c)
        self.linear_no_bias = Linear(n * c, c)

    def forward(self, x):
        xn = self.layernorm1(x)
        return self.linear_no_bias(F.silu(self.linear_no_bias_a(xn)) * self.linear_no_bias_b(xn))


# ----------------------------------------------------------------------------
# atom trunk layout (local attention)
# ----------------------------------------------------------------------------


def n_trunks(n_atom: int) -> int:
    return (n_atom + N_QUERIES - 1) // N_QUERIES


def trunk_query_index(n_atom: int, device=None):
    """[n_trunks, 32] atom index of each query slot and validity (index < N)."""
    nt = n_trunks(n_atom)
    idx = torch.arange(nt * N_QUERIES, device=device).reshape(nt, N_QUERIES)
    return idx, idx < n_atom


def trunk_key_index(n_atom: int, device=None):
    """[n_trunks, 128] atom index j = 32 b - 48 + m of each key slot and validity."""
    nt = n_trunks(n_atom)
    start = N_QUERIES * torch.arange(nt, device=device) - (N_KEYS - N_QUERIES) // 2
    idx = start[:, None] + torch.arange(N_KEYS, device=device)[None, :]
    return idx, (idx >= 0) & (idx < n_atom)


def trunk_pair_mask(n_atom: int, device=None):
    """[n_trunks, 32, 128] bool: query and key both real atoms."""
    _, vq = trunk_query_index(n_atom, device)
    _, vk = trunk_key_index(n_atom, device)
    return vq[:, :, None] & vk[:, None, :]


def _gather_atoms(x, idx, valid, dim):
    """Gather atoms along `dim` at idx (any shape); invalid slots read as 0."""
    dim = dim % x.dim()
    flat = idx.clamp(0, max(x.shape[dim] - 1, 0)).reshape(-1)
    out = x.index_select(dim, flat)
    out = out.reshape(x.shape[:dim] + idx.shape + x.shape[dim + 1:])
    v = valid.reshape((1,) * dim + valid.shape + (1,) * (x.dim() - dim - 1))
    zero = torch.zeros((), dtype=out.dtype, device=out.device)
    return torch.where(v, out, zero)


def to_query_trunks(x, dim: int = -2):
    """[..., N, ...] -> [..., n_trunks, 32, ...]; padding reads 0."""
    n = x.shape[dim]
    idx, valid = trunk_query_index(n, x.device)
    return _gather_atoms(x, idx, valid, dim)


def to_key_trunks(x, dim: int = -2):
    """[..., N, ...] -> [..., n_trunks, 128, ...]; out-of-range reads 0."""
    n = x.shape[dim]
    idx, valid = trunk_key_index(n, x.device)
    return _gather_atoms(x, idx, valid, dim)


def from_query_trunks(x, n_atom: int):
    """[..., n_trunks, 32, c] -> [..., N, c] (drops padded rows)."""
    return x.reshape(x.shape[:-3] + (-1, x.shape[-1]))[..., :n_atom, :]


def local_attention(q, k, v, bias_trunk, n_atom: int):
    """Windowed attention in the trunk layout.

    q, k, v: [..., H, N, d] (q already scaled); bias_trunk: [..., H, n_trunks, 32, 128].
    Returns [..., H, N, d].  Masked logits get -1e10 added (upstream convention).
    """
    qt = to_query_trunks(q, -2)  # [..., H, nt, 32, d]
    kt = to_key_trunks(k, -2)  # [..., H, nt, 128, d]
    vt = to_key_trunks(v, -2)
    logits = qt @ kt.transpose(-1, -2) + bias_trunk
    mask = trunk_pair_mask(n_atom, q.device)
    neg = torch.zeros(mask.shape, dtype=logits.dtype, device=q.device)
    neg = neg.masked_fill(~mask, -MASK_INF)
    logits = logits + neg
    p = torch.softmax(logits, dim=-1)
    o = p @ vt  # [..., H, nt, 32, d]
    o = o.reshape(o.shape[:-3] + (-1, o.shape[-1]))
    return o[..., :n_atom, :]


# ----------------------------------------------------------------------------
# attention / transformer blocks
# ----------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, c: int, n_heads: int):
        super().__init__()
        assert c % n_heads == 0
        self.n_heads = n_heads
        self.d = c // n_heads
        self.linear_q = Linear(c, c, bias=True)
        self.linear_k = Linear(c, c)
        self.linear_v = Linear(c, c)
        self.linear_o = Linear(c, c)
        self.linear_g = Linear(c, c)

    def _heads(self, x):  # [..., L, H*d] -> [..., H, L, d]
        return x.reshape(x.shape[:-1] + (self.n_heads, self.d)).transpose(-2, -3)

    def forward(self, q_x, kv_x, bias, n_atom: Optional[int] = None):
        """bias: [..., H, Q, K] (full) or [..., H, nt, 32, 128] (local, n_atom given)."""
        q = self._heads(self.linear_q(q_x)) / math.sqrt(self.d)
        k = self._heads(self.linear_k(kv_x))
        v = self._heads(self.linear_v(kv_x))
        if n_atom is None:
            p = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)
            o = p @ v
        else:
            o = local_attention(q, k, v, bias, n_atom)
        o = o.transpose(-2, -3)  # [..., L, H, d]
        g = torch.sigmoid(self.linear_g(q_x))
        o = o * g.reshape(g.shape[:-1] + (self.n_heads, self.d))
        return self.linear_o(o.reshape(o.shape[:-2] + (-1,)))


class AttentionPairBias(nn.Module):
    """AF3 Algorithm 24 with has_s = True."""

    def __init__(self, c_a: int, c_s: int, c_z: int, n_heads: int, cross_attention: bool):
        super().__init__()
        self.cross_attention = cross_attention
        self.n_heads = n_heads
        self.layernorm_a = AdaLN(c_a, c_s)
        if cross_attention:
            self.layernorm_kv = AdaLN(c_a, c_s)
        self.attention = Attention(c_a, n_heads)
        self.layernorm_z = LayerNorm(c_z, scale=True, offset=False)
        self.linear_nobias_z = Linear(c_z, n_heads)
        self.linear_a_last = Linear(c_s, c_a, bias=True)

    def pair_bias(self, z, local: bool):
        """Per-head bias Lin_z(LN(z)), heads moved in front of the pair axes:
        z [..., Q, K, c_z] -> [..., H, Q, K]; local: z [..., nt, 32, 128, c] -> [..., H, nt, 32, 128]."""
        b = self.linear_nobias_z(self.layernorm_z(z))
        return b.movedim(-1, -4 if local else -3)

    def forward(self, a, s, z, n_atom: Optional[int] = None):
        a_n = self.layernorm_a(a, s)
        # cross-attention mode: kv = AdaLN_kv applied to the already normalised a_n
        kv = self.layernorm_kv(a_n, s) if self.cross_attention else a_n
        o = self.attention(a_n, kv, self.pair_bias(z, n_atom is not None), n_atom)
        return torch.sigmoid(self.linear_a_last(s)) * o


class ConditionedTransitionBlock(nn.Module):
    """AF3 Algorithm 25 (n = 2)."""

    def __init__(self, c_a: int, c_s: int, n: int = 2):
        super().__init__()
        self.adaln = AdaLN(c_a, c_s)
        self.linear_nobias_a1 = Linear(c_a, n * c_a)
        self.linear_nobias_a2 = Linear(c_a, n * c_a)
        self.linear_nobias_b = Linear(n * c_a, c_a)
        self.linear_s = Linear(c_s, c_a, bias=True)

    def forward(self, a, s):
        a_n = self.adaln(a, s)
        b = F.silu(self.linear_nobias_a1(a_n)) * self.linear_nobias_a2(a_n)
        return torch.sigmoid(self.linear_s(s)) * self.linear_nobias_b(b)


class DiffusionTransformerBlock(nn.Module):
    def __init__(self, c_a, c_s, c_z, n_heads, cross_attention):
        super().__init__()
        self.attention_pair_bias = AttentionPairBias(c_a, c_s, c_z, n_heads, cross_attention)
        self.conditioned_transition_block = ConditionedTransitionBlock(c_a, c_s)

    def forward(self, a, s, z, n_atom: Optional[int] = None):
        a = a + self.attention_pair_bias(a, s, z, n_atom)
        return a + self.conditioned_transition_block(a, s)


class DiffusionTransformer(nn.Module):
    """AF3 Algorithm 23.  Full attention when n_atom is None, else local atom attention
    with z in the trunk layout [..., n_trunks, 32, 128, c_z]."""

    def __init__(self, c_a, c_s, c_z, n_blocks, n_heads, cross_attention=False):
        super().__init__()
        self.blocks = nn.ModuleList(
            [DiffusionTransformerBlock(c_a, c_s, c_z, n_heads, cross_attention) for _ in range(n_blocks)]
        )

    def forward(self, a, s, z, n_atom: Optional[int] = None):
        for blk in self.blocks:
            a = blk(a, s, z, n_atom)
        return a


class AtomTransformer(nn.Module):
    def __init__(self, c_atom, c_atompair, n_blocks, n_heads):
        super().__init__()
        self.diffusion_transformer = DiffusionTransformer(
            c_atom, c_atom, c_atompair, n_blocks, n_heads, cross_attention=True
        )

    def forward(self, q, c, p):
        """q, c [..., N, c_atom]; p [..., n_trunks, 32, 128, c_atompair]."""
        n_atom = q.shape[-2]
        assert p.shape[-3] == N_QUERIES and p.shape[-2] == N_KEYS and p.shape[-4] == n_trunks(n_atom)
        return self.diffusion_transformer(q, c, p, n_atom)


# ----------------------------------------------------------------------------
# token <-> atom helpers
# ----------------------------------------------------------------------------


def broadcast_token_to_atom(x_token, atom_to_token_idx):
    """[..., T, c] -> [..., N, c]."""
    return x_token.index_select(-2, atom_to_token_idx.long())


def mean_atom_to_token(x_atom, atom_to_token_idx, n_token: int):
    """[..., N, c] -> [..., T, c]: mean over each token's atoms, 0 for a token with none."""
    idx = atom_to_token_idx.long()
    out = torch.zeros(x_atom.shape[:-2] + (n_token, x_atom.shape[-1]), dtype=x_atom.dtype, device=x_atom.device)
    out = out.index_add(-2, idx, x_atom)
    count = torch.bincount(idx, minlength=n_token).to(x_atom.dtype).clamp(min=1)
    return out / count[:, None]


def token_pair_to_trunks(z_token, atom_to_token_idx):
    """[..., T, T, c] -> [..., n_trunks, 32, 128, c]: z[tok(q), tok(k)]; padded atoms -> token 0."""
    n = atom_to_token_idx.shape[-1]
    qi, qv = trunk_query_index(n, z_token.device)
    ki, kv = trunk_key_index(n, z_token.device)
    tok = atom_to_token_idx.long()
    tq = torch.where(qv, tok[qi.clamp(0, n - 1)], torch.zeros_like(qi))  # [nt, 32]
    tk = torch.where(kv, tok[ki.clamp(0, n - 1)], torch.zeros_like(ki))  # [nt, 128]
    return z_token[..., tq[:, :, None], tk[:, None, :], :]


# ----------------------------------------------------------------------------
# conditioning
# ----------------------------------------------------------------------------


def relpe_features(feats: Dict[str, torch.Tensor], r_max: int = 32, s_max: int = 2, dtype=torch.float32):
    """AF3 Algorithm 3 one-hot features [T, T, 4 r_max + 2 s_max + 7]."""
    asym, res = feats["asym_id"].long(), feats["residue_index"].long()
    ent, tok, sym = feats["entity_id"].long(), feats["token_index"].long(), feats["sym_id"].long()
    same_chain = asym[:, None] == asym[None, :]
    same_res = res[:, None] == res[None, :]
    same_ent = ent[:, None] == ent[None, :]
    far_r = torch.full_like(same_chain, 2 * r_max + 1, dtype=torch.long)
    d_res = torch.where(same_chain, (res[:, None] - res[None, :] + r_max).clamp(0, 2 * r_max), far_r)
    d_tok = torch.where(same_chain & same_res, (tok[:, None] - tok[None, :] + r_max).clamp(0, 2 * r_max), far_r)
    far_s = torch.full_like(same_ent, 2 * s_max + 1, dtype=torch.long)
    d_chain = torch.where(same_ent, (sym[:, None] - sym[None, :] + s_max).clamp(0, 2 * s_max), far_s)
    return torch.cat(
        [
            F.one_hot(d_res, 2 * r_max + 2),
            F.one_hot(d_tok, 2 * r_max + 2),
            same_ent[..., None].long(),
            F.one_hot(d_chain, 2 * s_max + 2),
        ],
        dim=-1,
    ).to(dtype)


class RelativePositionEncoding(nn.Module):
    def __init__(self, c_z: int, r_max: int = 32, s_max: int = 2):
        super().__init__()
        self.r_max, self.s_max = r_max, s_max
        self.linear_no_bias = Linear(4 * r_max + 2 * s_max + 7, c_z)

    def forward(self, feats):
        x = relpe_features(feats, self.r_max, self.s_max, self.linear_no_bias.weight.dtype)
        return self.linear_no_bias(x.to(self.linear_no_bias.weight.device))


class FourierEmbedding(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        # parameters (not trained) so that they are in state_dict and follow .double()
        self.w = nn.Parameter(torch.zeros(c), requires_grad=False)
        self.b = nn.Parameter(torch.zeros(c), requires_grad=False)

    def forward(self, tau):
        """tau [...] -> [..., c]: cos(2 pi (tau w + b))."""
        return torch.cos(2 * math.pi * (tau[..., None] * self.w + self.b))


class DiffusionConditioning(nn.Module):
    """AF3 Algorithm 21."""

    def __init__(self, c_z, c_s, c_s_inputs, sigma_data, n_fourier):
        super().__init__()
        self.sigma_data = sigma_data
        self.relpe = RelativePositionEncoding(c_z)
        self.layernorm_z = LayerNorm(2 * c_z, scale=True, offset=False)
        self.linear_no_bias_z = Linear(2 * c_z, c_z)
        self.transition_z1 = Transition(c_z)
        self.transition_z2 = Transition(c_z)
        self.layernorm_s = LayerNorm(c_s + c_s_inputs, scale=True, offset=False)
        self.linear_no_bias_s = Linear(c_s + c_s_inputs, c_s)
        self.fourier_embedding = FourierEmbedding(n_fourier)
        self.layernorm_n = LayerNorm(n_fourier, scale=True, offset=False)
        self.linear_no_bias_n = Linear(n_fourier, c_s)
        self.transition_s1 = Transition(c_s)
        self.transition_s2 = Transition(c_s)

    def pair(self, feats, z_trunk):
        """pair_z [T, T, c_z] (independent of noise level and sample)."""
        z = torch.cat([z_trunk, self.relpe(feats)], dim=-1)
        z = self.linear_no_bias_z(self.layernorm_z(z))
        z = z + self.transition_z1(z)
        return z + self.transition_z2(z)

    def single0(self, s_inputs, s_trunk):
        """s0 = Lin_s(LN([s_trunk, s_inputs])) [T, c_s]."""
        return self.linear_no_bias_s(self.layernorm_s(torch.cat([s_trunk, s_inputs], dim=-1)))

    def noise_embedding(self, t_hat):
        """Lin_n(LN(fourier(log(t/sigma)/4))) [S, c_s]."""
        n = self.fourier_embedding(torch.log(t_hat / self.sigma_data) / 4)
        return self.linear_no_bias_n(self.layernorm_n(n))

    def single(self, t_hat, s_inputs, s_trunk):
        """s [S, T, c_s]."""
        s = self.single0(s_inputs, s_trunk).unsqueeze(-3) + self.noise_embedding(t_hat).unsqueeze(-2)
        s = s + self.transition_s1(s)
        return s + self.transition_s2(s)

    def forward(self, t_hat, feats, s_inputs, s_trunk, z_trunk):
        """Returns (s [S, T, c_s], pair_z [T, T, c_z])."""
        return self.single(t_hat, s_inputs, s_trunk), self.pair(feats, z_trunk)


# ----------------------------------------------------------------------------
# atom attention encoder / decoder
# ----------------------------------------------------------------------------


class AtomAttentionEncoder(nn.Module):
    """AF3 Algorithm 5 with coordinates (Protenix layout)."""

    def __init__(self, c_atom, c_atompair, c_token, c_s, c_z, n_blocks, n_heads):
        super().__init__()
        self.linear_no_bias_ref_pos = Linear(3, c_atom)
        self.linear_no_bias_ref_charge = Linear(1, c_atom)
        self.linear_no_bias_f = Linear(1 + 128 + 256, c_atom)
        self.linear_no_bias_d = Linear(3, c_atompair)
        self.linear_no_bias_invd = Linear(1, c_atompair)
        self.linear_no_bias_v = Linear(1, c_atompair)
        self.layernorm_s = LayerNorm(c_s, scale=True, offset=False)
        self.linear_no_bias_s = Linear(c_s, c_atom)
        self.layernorm_z = LayerNorm(c_z, scale=True, offset=False)
        self.linear_no_bias_z = Linear(c_z, c_atompair)
        self.linear_no_bias_r = Linear(3, c_atom)
        self.linear_no_bias_cl = Linear(c_atom, c_atompair)
        self.linear_no_bias_cm = Linear(c_atom, c_atompair)
        self.small_mlp = nn.Sequential(
            nn.ReLU(),
            Linear(c_atompair, c_atompair),
            nn.ReLU(),
            Linear(c_atompair, c_atompair),
            nn.ReLU(),
            Linear(c_atompair, c_atompair),
        )
        self.atom_transformer = AtomTransformer(c_atom, c_atompair, n_blocks, n_heads)
        self.linear_no_bias_q = Linear(c_atom, c_token)

    def _dtype(self):
        return self.linear_no_bias_f.weight.dtype

    def atom_single(self, feats):
        """c from reference features only [N, c_atom] (step 1)."""
        dt = self._dtype()
        n = feats["ref_pos"].shape[-2]
        c = self.linear_no_bias_ref_pos(feats["ref_pos"].to(dt))
        c = c + self.linear_no_bias_ref_charge(torch.arcsinh(feats["ref_charge"].to(dt)).reshape(n, 1))
        f = torch.cat(
            [
                feats["ref_mask"].to(dt).reshape(n, 1),
                feats["ref_element"].to(dt).reshape(n, 128),
                feats["ref_atom_name_chars"].to(dt).reshape(n, 256),
            ],
            dim=-1,
        )
        c = c + self.linear_no_bias_f(f)
        return c * feats["ref_mask"].to(dt).reshape(n, 1)

    def atom_pair_ref(self, feats):
        """p from reference positions and space uids, trunk layout [nt, 32, 128, c_ap] (step 2)."""
        dt = self._dtype()
        pos = feats["ref_pos"].to(dt)
        uid = feats["ref_space_uid"].long()
        n = pos.shape[-2]
        pq, pk = to_query_trunks(pos, -2), to_key_trunks(pos, -2)  # [nt,32,3], [nt,128,3]
        uq, uk = to_query_trunks(uid, -1), to_key_trunks(uid, -1)
        d = pq[:, :, None, :] - pk[:, None, :, :]
        v = (uq[:, :, None] == uk[:, None, :]).to(dt)[..., None]
        mask = trunk_pair_mask(n, pos.device).to(dt)[..., None]
        p = self.linear_no_bias_d(d) * v * mask
        p = p + self.linear_no_bias_invd(1 / (1 + (d * d).sum(-1, keepdim=True))) * v
        return p + self.linear_no_bias_v(v)

    def conditioning(self, feats, s_trunk, z):
        """(c, p) before the noisy positions: c [..., N, c_atom], p [..., nt, 32, 128, c_ap].
        s_trunk [..., T, c_s]; z [..., T, T, c_z] (the conditioned pair_z)."""
        tok = feats["atom_to_token_idx"].long()
        c = self.atom_single(feats) + broadcast_token_to_atom(
            self.linear_no_bias_s(self.layernorm_s(s_trunk)), tok
        )
        p = self.atom_pair_ref(feats) + token_pair_to_trunks(self.linear_no_bias_z(self.layernorm_z(z)), tok)
        cq = to_query_trunks(c, -2)  # [..., nt, 32, c]
        ck = to_key_trunks(c, -2)  # [..., nt, 128, c]
        p = p + self.linear_no_bias_cl(F.relu(cq))[..., :, :, None, :] + self.linear_no_bias_cm(F.relu(ck))[..., :, None, :, :]
        p = p + self.small_mlp(p)
        return c, p

    def forward(self, feats, r, s_trunk, z):
        """r [S, N, 3]; s_trunk [(S,) T, c_s]; z [(S,) T, T, c_z].
        Returns a_token [S, T, c_token], q_skip [S, N, c_atom], c_skip, p_skip."""
        c, p = self.conditioning(feats, s_trunk, z)
        q = c + self.linear_no_bias_r(r)
        q = self.atom_transformer(q, c, p)
        a = mean_atom_to_token(F.relu(self.linear_no_bias_q(q)), feats["atom_to_token_idx"], s_trunk.shape[-2])
        return a, q, c, p


class AtomAttentionDecoder(nn.Module):
    """AF3 Algorithm 6."""

    def __init__(self, c_token, c_atom, c_atompair, n_blocks, n_heads):
        super().__init__()
        self.linear_no_bias_a = Linear(c_token, c_atom)
        self.layernorm_q = LayerNorm(c_atom, scale=True, offset=False)
        self.linear_no_bias_out = Linear(c_atom, 3)
        self.atom_transformer = AtomTransformer(c_atom, c_atompair, n_blocks, n_heads)

    def forward(self, feats, a, q_skip, c_skip, p_skip):
        q = broadcast_token_to_atom(self.linear_no_bias_a(a), feats["atom_to_token_idx"].long()) + q_skip
        q = self.atom_transformer(q, c_skip, p_skip)
        return self.linear_no_bias_out(self.layernorm_q(q))


# ----------------------------------------------------------------------------
# diffusion module
# ----------------------------------------------------------------------------


class DiffusionModule(nn.Module):
    """AF3 Algorithm 20 as in Protenix v0.5.0+pxd (PXDesign v0.1.0 dims by default)."""

    def __init__(
        self,
        c_s: int = 384,
        c_z: int = 128,
        c_s_inputs: int = 449,
        c_token: int = 768,
        c_atom: int = 128,
        c_atompair: int = 16,
        n_blocks: int = 16,
        n_heads: int = 16,
        atom_enc_blocks: int = 4,
        atom_dec_blocks: int = 4,
        atom_heads: int = 4,
        sigma_data: float = 16.0,
        n_fourier: int = 256,
    ):
        super().__init__()
        self.dims = dict(
            c_s=c_s, c_z=c_z, c_s_inputs=c_s_inputs, c_token=c_token, c_atom=c_atom,
            c_atompair=c_atompair, n_blocks=n_blocks, n_heads=n_heads,
            atom_enc_blocks=atom_enc_blocks, atom_dec_blocks=atom_dec_blocks,
            atom_heads=atom_heads, sigma_data=sigma_data, n_fourier=n_fourier,
        )
        self.sigma_data = sigma_data
        self.diffusion_conditioning = DiffusionConditioning(c_z, c_s, c_s_inputs, sigma_data, n_fourier)
        self.atom_attention_encoder = AtomAttentionEncoder(
            c_atom, c_atompair, c_token, c_s, c_z, atom_enc_blocks, atom_heads
        )
        self.layernorm_s = LayerNorm(c_s, scale=True, offset=False)
        self.linear_no_bias_s = Linear(c_s, c_token)
        self.diffusion_transformer = DiffusionTransformer(c_token, c_s, c_z, n_blocks, n_heads)
        self.layernorm_a = LayerNorm(c_token, scale=True, offset=False)
        self.atom_attention_decoder = AtomAttentionDecoder(c_token, c_atom, c_atompair, atom_dec_blocks, atom_heads)

    @property
    def dtype(self):
        return self.layernorm_a.weight.dtype

    # --- sub-module entry points (for per-module comparisons) -----------------

    def conditioning(self, t_hat, feats, s_inputs, s_trunk, z_trunk):
        """(s [S, T, c_s], pair_z [T, T, c_z])."""
        dt = self.dtype
        return self.diffusion_conditioning(t_hat.to(dt), feats, s_inputs.to(dt), s_trunk.to(dt), z_trunk.to(dt))

    def encoder(self, feats, r_noisy, s_trunk, pair_z):
        """(a_token, q_skip, c_skip, p_skip); s_trunk/pair_z with or without sample axis."""
        return self.atom_attention_encoder(feats, r_noisy, s_trunk, pair_z)

    def token_transformer(self, a, s, pair_z):
        return self.diffusion_transformer(a, s, pair_z)

    def decoder(self, feats, a, q_skip, c_skip, p_skip):
        return self.atom_attention_decoder(feats, a, q_skip, c_skip, p_skip)

    def forward_intermediates(self, x_noisy, t_hat_noise_level, input_feature_dict, s_inputs, s_trunk, z_trunk):
        """Every intermediate of one denoising call, as a dict:
        r_noisy, s, pair_z, a_enc, q_skip, c_skip, p_skip, a_in (a_enc + Lin(LN(s))),
        a_trans (token transformer output), a_ln, r_update, x_denoised."""
        dt = self.dtype
        feats = input_feature_dict
        x = x_noisy.to(dt)
        t = t_hat_noise_level.to(dt)
        S = x.shape[-3]
        assert t.shape[-1] == S
        out = {}
        r = x / torch.sqrt(self.sigma_data ** 2 + t ** 2)[..., None, None]
        out["r_noisy"] = r
        s, pair_z = self.conditioning(t, feats, s_inputs, s_trunk, z_trunk)
        out["s"], out["pair_z"] = s, pair_z
        # upstream expands s_trunk and pair_z over samples and computes per sample
        s_trunk_e = s_trunk.to(dt).unsqueeze(-3).expand(S, -1, -1)
        z_e = pair_z.unsqueeze(-4).expand(S, -1, -1, -1)
        a, q_skip, c_skip, p_skip = self.encoder(feats, r, s_trunk_e, z_e)
        out.update(a_enc=a, q_skip=q_skip, c_skip=c_skip, p_skip=p_skip)
        a = a + self.linear_no_bias_s(self.layernorm_s(s))
        out["a_in"] = a
        a = self.diffusion_transformer(a, s, z_e)
        out["a_trans"] = a
        a = self.layernorm_a(a)
        out["a_ln"] = a
        r_update = self.decoder(feats, a, q_skip, c_skip, p_skip)
        out["r_update"] = r_update
        ratio = (t / self.sigma_data)[..., None, None]
        out["x_denoised"] = 1 / (1 + ratio ** 2) * x + t[..., None, None] / torch.sqrt(1 + ratio ** 2) * r_update
        return out

    def forward(self, x_noisy, t_hat_noise_level, input_feature_dict, s_inputs, s_trunk, z_trunk,
                inplace_safe: bool = False, chunk_size: Optional[int] = None, use_conditioning: bool = True):
        """x_noisy [S, N, 3], t_hat [S] -> x_denoised [S, N, 3].
        inplace_safe / chunk_size are accepted for upstream call compatibility and change nothing;
        use_conditioning=False zeroes s_trunk and z_trunk as upstream does."""
        if not use_conditioning:
            s_trunk, z_trunk = 0 * s_trunk, 0 * z_trunk
        return self.forward_intermediates(
            x_noisy, t_hat_noise_level, input_feature_dict, s_inputs, s_trunk, z_trunk
        )["x_denoised"]


# ----------------------------------------------------------------------------
# sampler
# ----------------------------------------------------------------------------


def _bf16(x: torch.Tensor) -> torch.Tensor:
    """Round a float32 tensor to bfloat16 (nearest even) and back to float32."""
    return x.to(torch.bfloat16).to(torch.float32)


def noise_schedule(
    n_step: int,
    dtype: Union[str, torch.dtype] = "bfloat16",
    s_max: float = 160.0,
    s_min: float = 4e-4,
    rho: float = 7.0,
    sigma_data: float = 16.0,
) -> torch.Tensor:
    """PXDesign's InferenceNoiseScheduler, [n_step + 1] float32, last entry 0.

    t_i = sigma (s_max^(1/rho) + i (1/n) (s_min^(1/rho) - s_max^(1/rho)))^rho.
    dtype "float32": every operation in float32 in upstream order
        ((i * fp32(1/n)) * fp32(d)), fp32(s_max^(1/rho)) + ., ^rho, sigma *.
    dtype "bfloat16": the same operations, each result rounded to bfloat16
        (as CUDA's bf16 kernels do: compute in float32, round), i itself too.
    """
    if isinstance(dtype, torch.dtype):
        dtype = {torch.float32: "float32", torch.bfloat16: "bfloat16"}[dtype]
    assert dtype in ("float32", "bfloat16")
    rnd = _bf16 if dtype == "bfloat16" else (lambda v: v)
    f32 = torch.float32
    hi = s_max ** (1 / rho)  # python double, as upstream
    diff = s_min ** (1 / rho) - hi
    i = rnd(torch.arange(n_step + 1, dtype=f32))
    v = rnd(i * torch.tensor(1 / n_step, dtype=f32))
    v = rnd(v * torch.tensor(diff, dtype=f32))
    v = rnd(torch.tensor(hi, dtype=f32) + v)
    v = rnd(torch.pow(v, torch.tensor(rho, dtype=f32)))
    v = rnd(torch.tensor(sigma_data, dtype=f32) * v)
    v[-1] = 0
    return v


# tests/data/reference of this repository (its README says where each table came from).
REFERENCE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "reference")
SCHEDULE_FILE = os.path.join(REFERENCE_DIR, "noise_schedules_cuda.txt")


def cuda_schedule_table(n_step: int, dtype: str = "float32", path: str = SCHEDULE_FILE) -> torch.Tensor:
    """Upstream's schedule exactly as computed on CUDA (from tests/data/reference/noise_schedules_cuda.txt;
    only the step counts listed there).  The float32 column differs from `noise_schedule(n, "float32")`
    by 1 ulp at a few entries: CUDA's powf is not correctly rounded (errors up to ~0.8 ulp) and
    differs from the CPU pow; the bfloat16 column is reproduced exactly by `noise_schedule`."""
    vals = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            n, dt, _, h, _ = line.split()
            if int(n) == n_step and dt == dtype:
                vals.append(float.fromhex(h))
    if not vals:
        raise KeyError("no CUDA schedule for %d steps / %s" % (n_step, dtype))
    return torch.tensor(vals, dtype=torch.float32)


def eta_schedule(eta: Union[float, dict, str] = 2.5, n_step: int = 400, eta_min: float = None, eta_max: float = None):
    """Per-step eta list (length n_step), K = n_step + 1 as upstream (T = len(schedule)).

    eta: a float (constant), a dict {"type", "min", "max"}, or a type name with
    eta_min / eta_max.  Types: const, linear, poly, cos, piecewise, piecewise_65, piecewise_70.
    """
    if isinstance(eta, (int, float)):
        return [float(eta)] * n_step
    if isinstance(eta, str):
        eta = {"type": eta, "min": eta_min, "max": eta_max}
    kind, lo, hi = eta["type"], float(eta["min"]), float(eta["max"])
    K = n_step + 1
    out = []
    for k in range(n_step):
        f = k / K
        if kind == "const":
            assert lo == hi
            e = lo
        elif kind == "linear":
            e = lo + (hi - lo) * f
        elif kind == "poly":
            e = lo + (hi - lo) * f ** 2
        elif kind == "cos":
            e = lo + 0.5 * (hi - lo) * (1 - math.cos(math.pi * f))
        elif kind == "piecewise":
            e = lo if f < 0.5 else hi
        elif kind == "piecewise_65":
            e = lo if f < 0.65 else hi
        elif kind == "piecewise_70":
            e = lo if f < 0.70 else hi
        else:
            raise ValueError("unsupported eta schedule " + kind)
        out.append(e)
    return out


def centre_and_augment(x, rot, trans):
    """x [S, N, 3] -> R (x - mean) + u per sample, i.e. (x - mean) @ R^T + u.
    rot [S, 3, 3], trans [S, 3].  Written as upstream's rot_vec_mul."""
    x = x - x.mean(dim=-2, keepdim=True)
    r = rot.to(x.dtype)[:, None, :, :]  # [S, 1, 3, 3]
    px, py, pz = x.unbind(-1)
    y = torch.stack(
        [
            r[..., 0, 0] * px + r[..., 0, 1] * py + r[..., 0, 2] * pz,
            r[..., 1, 0] * px + r[..., 1, 1] * py + r[..., 1, 2] * pz,
            r[..., 2, 0] * px + r[..., 2, 1] * py + r[..., 2, 2] * pz,
        ],
        dim=-1,
    )
    return y + trans.to(x.dtype)[:, None, :]


def random_rotation(n: int, generator: Optional[torch.Generator] = None, dtype=torch.float64):
    """Uniform random rotations [n, 3, 3] from normalised Gaussian quaternions."""
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(n, 3, 3)
    return R.to(dtype)


def sampler_step(
    module: DiffusionModule,
    x: torch.Tensor,
    t_prev,
    t_cur,
    eta: float,
    rot: torch.Tensor,
    trans: torch.Tensor,
    noise: torch.Tensor,
    input_feature_dict,
    s_inputs,
    s_trunk,
    z_trunk,
    gamma0: float = 1.0,
    gamma_min: float = 0.01,
    noise_scale_lambda: float = 1.003,
    return_intermediates: bool = False,
):
    """One step of PXDesign's sample_diffusion with injected randomness.

    centre -> x = R x + u (x @ R^T + u) -> gamma/t_hat -> x_noisy = x + lambda sqrt(t_hat^2 - t_prev^2) noise
    -> x_den = D(x_noisy, t_hat) -> x = x_noisy + eta (t_cur - t_hat) (x_noisy - x_den) / t_hat.
    Scalars are 0-d tensors in x's dtype, operations in upstream's order.
    """
    dt_ = x.dtype
    S = x.shape[0]
    tp = torch.as_tensor(t_prev, dtype=dt_)
    tc = torch.as_tensor(t_cur, dtype=dt_)
    x = centre_and_augment(x, rot, trans)
    gamma = float(gamma0) if bool(tc > gamma_min) else 0
    t_hat = tp * (gamma + 1)
    delta_noise = torch.sqrt(t_hat ** 2 - tp ** 2)
    x_noisy = x + noise_scale_lambda * delta_noise * noise.to(dt_)
    t_hat_s = t_hat.reshape(1).expand(S)
    x_den = module(x_noisy, t_hat_s, input_feature_dict, s_inputs, s_trunk, z_trunk).to(dt_)
    delta = (x_noisy - x_den) / t_hat_s[..., None, None]
    dtime = tc - t_hat
    x_new = x_noisy + eta * dtime[..., None, None] * delta
    if return_intermediates:
        return x_new, dict(x_aug=x, t_hat=t_hat, x_noisy=x_noisy, x_denoised=x_den)
    return x_new


def sample_diffusion(
    module: DiffusionModule,
    input_feature_dict,
    s_inputs,
    s_trunk,
    z_trunk,
    n_sample: int = 1,
    n_step: int = 400,
    schedule: Optional[torch.Tensor] = None,
    eta=2.5,
    gamma0: float = 1.0,
    gamma_min: float = 0.01,
    noise_scale_lambda: float = 1.003,
    seed: int = 0,
    draw=None,
    dtype=None,
):
    """Full sampler loop.  Randomness from a torch.Generator(seed) unless `draw` is given:
    draw(step) -> (rot [S,3,3], trans [S,3], noise [S,N,3]); x0 then drawn as
    draw(-1)[2] scaled by t_0."""
    dtype = dtype or module.dtype
    if schedule is None:
        schedule = noise_schedule(n_step, "bfloat16")
    schedule = schedule.to(dtype)
    n_step = schedule.shape[0] - 1
    etas = eta_schedule(eta, n_step)
    n_atom = input_feature_dict["atom_to_token_idx"].shape[-1]
    g = torch.Generator().manual_seed(seed)
    if draw is None:
        def draw(step):
            rot = random_rotation(n_sample, g, dtype)
            trans = torch.randn(n_sample, 3, generator=g, dtype=torch.float64).to(dtype)
            noise = torch.randn(n_sample, n_atom, 3, generator=g, dtype=torch.float64).to(dtype)
            return rot, trans, noise
    x = schedule[0] * draw(-1)[2]
    for k in range(n_step):
        rot, trans, noise = draw(k)
        x = sampler_step(
            module, x, schedule[k], schedule[k + 1], etas[k], rot, trans, noise,
            input_feature_dict, s_inputs, s_trunk, z_trunk, gamma0, gamma_min, noise_scale_lambda,
        )
    return x
