"""Self-checks of the PyTorch reference (pxref) and fixtures (pxfixtures).

Run: /usr/bin/python3 tests/ref/check_pxref.py   (exits nonzero on failure)
Each check verifies the reference against something computed differently.
"""

import math
import os
import sys
import tempfile
import traceback

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pxref  # noqa: E402
import pxfixtures as fx  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))
FAILS = []


def check(name):
    def deco(fn):
        def run():
            try:
                with torch.no_grad():
                    fn()
                print("ok   " + name)
            except Exception:
                FAILS.append(name)
                print("FAIL " + name)
                traceback.print_exc()
        run.__name__ = fn.__name__
        CHECKS.append(run)
        return run
    return deco


CHECKS = []


def close(a, b, tol, what=""):
    err = (a - b).abs().max().item() if a.numel() else 0.0
    scale = max(b.abs().max().item() if b.numel() else 0.0, 1.0)
    assert err <= tol * scale, "%s: max err %.3g > %.3g (scale %.3g)" % (what, err, tol * scale, scale)


# ----------------------------------------------------------------------------


@check("state_dict names and shapes equal the tsv's diffusion_module.* rows")
def _():
    rows = {n[len("diffusion_module."):]: s for n, s, _ in fx.read_tsv() if n.startswith("diffusion_module.")}
    sd = fx.build_model().state_dict()
    mine = {k: tuple(v.shape) for k, v in sd.items()}
    assert list(rows) == list(rows) and set(rows) == set(mine), set(rows) ^ set(mine)
    bad = [k for k in rows if rows[k] != mine[k]]
    assert not bad, bad[:5]
    total = sum(math.prod(s) for _, s, _ in fx.read_tsv())
    assert total == 139011392, total


@check("bfloat16 schedule equals CUDA's exactly (400/200/100/50/10 steps)")
def _():
    for n in (400, 200, 100, 50, 10):
        mine = pxref.noise_schedule(n, "bfloat16")
        ref = pxref.cuda_schedule_table(n, "bfloat16")
        assert torch.equal(mine, ref), (n, (mine != ref).nonzero().flatten()[:5])
    s = pxref.noise_schedule(400, "bfloat16")
    assert s[0].item() == 2544.0 and s[-1].item() == 0.0
    assert len(set(s.tolist())) == 204
    assert int((s[1:] == s[:-1]).sum()) == 197


@check("float32 schedule: CUDA table exact; portable formula within 1 ulp of CUDA")
def _():
    import numpy as np
    n_diff = 0
    for n in (400, 200, 100, 50, 10):
        ref = pxref.cuda_schedule_table(n, "float32")
        mine = pxref.noise_schedule(n, "float32")
        assert mine.shape == ref.shape
        ulp = torch.from_numpy(np.spacing(ref.numpy()))
        assert ((mine - ref).abs() <= ulp).all(), n
        n_diff += int((mine != ref).sum())
        # the formula in float64 agrees to float32 rounding
        i = torch.arange(n + 1, dtype=torch.float64)
        exact = 16 * (160 ** (1 / 7) + i / n * (4e-4 ** (1 / 7) - 160 ** (1 / 7))) ** 7
        exact[-1] = 0
        close(ref.double(), exact, 1e-6, "fp32 schedule vs float64")
    print("     (portable float32 formula differs from CUDA by 1 ulp at %d of 863 entries)" % n_diff)


@check("eta schedules")
def _():
    assert pxref.eta_schedule(2.5, 400) == [2.5] * 400
    assert pxref.eta_schedule({"type": "const", "min": 2.5, "max": 2.5}, 4) == [2.5] * 4
    e = pxref.eta_schedule({"type": "piecewise_65", "min": 1.0, "max": 2.5}, 400)
    K = 401
    assert e == [1.0 if k / K < 0.65 else 2.5 for k in range(400)]
    assert e.index(2.5) == 261
    e = pxref.eta_schedule("cos", 10, 1.0, 2.0)
    assert abs(e[0] - 1.0) < 1e-12 and abs(e[5] - (1 + 0.5 * (1 - math.cos(math.pi * 5 / 11)))) < 1e-12


def upstream_style_key_trunks(x, n):
    """Key trunks built the other way: pad 48 left, right to 32 nt + 96, unfold(128, step 32)."""
    nt = pxref.n_trunks(n)
    pad_left = 48
    pad_right = 32 * nt + 48 - n
    xp = F.pad(x.movedim(-2, -1), (pad_left, pad_right)).movedim(-1, -2) if x.dim() > 1 else F.pad(x, (pad_left, pad_right))
    if x.dim() > 1:
        return xp.unfold(-2, 128, 32).movedim(-1, -2)
    return xp.unfold(-1, 128, 32)


@check("trunk layout: query/key trunks and mask vs pad+unfold construction")
def _():
    for n in (1, 5, 31, 32, 33, 64, 100, 130, 200, 257):
        x = torch.randn(n, 3, dtype=torch.float64)
        nt = pxref.n_trunks(n)
        kt = pxref.to_key_trunks(x)
        assert kt.shape == (nt, 128, 3)
        assert torch.equal(kt, upstream_style_key_trunks(x, n))
        uid = torch.arange(1, n + 1)
        assert torch.equal(pxref.to_key_trunks(uid, -1), upstream_style_key_trunks(uid, n))
        qt = pxref.to_query_trunks(x)
        xp = F.pad(x, (0, 0, 0, 32 * nt - n)).reshape(nt, 32, 3)
        assert torch.equal(qt, xp)
        # mask: query real and key index in [0, n), built by explicit loops
        mask = pxref.trunk_pair_mask(n)
        ref = torch.zeros(nt, 32, 128, dtype=torch.bool)
        for b in range(nt):
            for i in range(32):
                if 32 * b + i >= n:
                    continue
                for m in range(128):
                    j = 32 * b - 48 + m
                    ref[b, i, m] = 0 <= j < n
        assert torch.equal(mask, ref), n
        # every real query sees itself
        for l in range(n):
            b, i = divmod(l, 32)
            assert mask[b, i, l - 32 * b + 48]


@check("local attention equals dense windowed attention (float64)")
def _():
    g = torch.Generator().manual_seed(0)
    H, d = 3, 5
    for n in (1, 7, 32, 45, 96, 150, 261):
        nt = pxref.n_trunks(n)
        q = torch.randn(2, H, n, d, generator=g, dtype=torch.float64)
        k = torch.randn(2, H, n, d, generator=g, dtype=torch.float64)
        v = torch.randn(2, H, n, d, generator=g, dtype=torch.float64)
        bias_t = torch.randn(2, H, nt, 32, 128, generator=g, dtype=torch.float64)
        out = pxref.local_attention(q, k, v, bias_t, n)
        # dense: scatter the window bias into [n, n], -inf outside the window
        dense = torch.full((2, H, n, n), float("-inf"), dtype=torch.float64)
        for l in range(n):
            b, i = divmod(l, 32)
            lo = 32 * b - 48
            for j in range(max(0, lo), min(n, lo + 128)):
                dense[:, :, l, j] = bias_t[:, :, b, i, j - lo]
        ref = torch.softmax(q @ k.transpose(-1, -2) + dense, -1) @ v
        close(out, ref, 1e-12, "n=%d" % n)


@check("relative position encoding features vs explicit loops")
def _():
    inp = fx.random_features(n_token=40, atoms_per_token=1, n_chains=4, seed=2)
    f = inp.feats
    f = dict(f)
    f["residue_index"] = f["residue_index"].clone()
    f["residue_index"][3] = f["residue_index"][2]  # two tokens in one residue
    feat = pxref.relpe_features(f)
    T = 40
    assert feat.shape == (T, T, 139)
    for i in range(T):
        for j in range(T):
            sc = int(f["asym_id"][i]) == int(f["asym_id"][j])
            sr = int(f["residue_index"][i]) == int(f["residue_index"][j])
            se = int(f["entity_id"][i]) == int(f["entity_id"][j])
            dr = min(max(int(f["residue_index"][i] - f["residue_index"][j]) + 32, 0), 64) if sc else 65
            dt = min(max(int(f["token_index"][i] - f["token_index"][j]) + 32, 0), 64) if sc and sr else 65
            dc = min(max(int(f["sym_id"][i] - f["sym_id"][j]) + 2, 0), 4) if se else 5
            ref = torch.zeros(139)
            ref[dr] = 1
            ref[66 + dt] = 1
            ref[132] = float(se)
            ref[133 + dc] = 1
            assert torch.equal(feat[i, j], ref), (i, j)


@check("encoder pair features p and c vs dense per-atom-pair formulas")
def _():
    d = fx.SMALL_DIMS
    m = fx.random_model(d, seed=4, dtype=torch.float64)
    inp = fx.random_features_for(d, n_token=14, atoms_per_token=[9, 0, 13, 4], n_chains=2, seed=5, s_trunk_zero=False)
    f = fx.cast_feats(inp.feats, torch.float64)
    enc = m.atom_attention_encoder
    s_trunk = inp.s_trunk.double()
    pair_z = m.diffusion_conditioning.pair(f, inp.z_trunk.double())
    c, p = enc.conditioning(f, s_trunk, pair_z)
    n = f["ref_pos"].shape[0]
    tok = f["atom_to_token_idx"]
    W = lambda lin: lin.weight  # noqa: E731
    # c, dense
    feat = torch.cat([f["ref_mask"][:, None], f["ref_element"], f["ref_atom_name_chars"]], -1)
    c_ref = (f["ref_pos"] @ W(enc.linear_no_bias_ref_pos).T + torch.arcsinh(f["ref_charge"])[:, None] @ W(enc.linear_no_bias_ref_charge).T
             + feat @ W(enc.linear_no_bias_f).T) * f["ref_mask"][:, None]
    s_atom = F.layer_norm(s_trunk, (s_trunk.shape[-1],), enc.layernorm_s.weight, None, 1e-5) @ W(enc.linear_no_bias_s).T
    c_ref = c_ref + s_atom[tok]
    close(c, c_ref, 1e-12, "c")
    zz = F.layer_norm(pair_z, (pair_z.shape[-1],), enc.layernorm_z.weight, None, 1e-5) @ W(enc.linear_no_bias_z).T
    mlp = [enc.small_mlp[1], enc.small_mlp[3], enc.small_mlp[5]]
    checked = 0
    for l in range(n):
        b, i = divmod(l, 32)
        for mm in range(0, 128, 3):
            j = 32 * b - 48 + mm
            if not (0 <= j < n):
                continue
            dv = f["ref_pos"][l] - f["ref_pos"][j]
            v = float(int(f["ref_space_uid"][l]) == int(f["ref_space_uid"][j]))
            pr = W(enc.linear_no_bias_d) @ dv * v + W(enc.linear_no_bias_invd)[:, 0] / (1 + dv.dot(dv)) * v + W(enc.linear_no_bias_v)[:, 0] * v
            pr = pr + zz[tok[l], tok[j]] + W(enc.linear_no_bias_cl) @ F.relu(c_ref[l]) + W(enc.linear_no_bias_cm) @ F.relu(c_ref[j])
            h = pr
            for lin in mlp:
                h = lin.weight @ F.relu(h)
            pr = pr + h
            close(p[b, i, mm], pr, 1e-12, "p[%d,%d,%d]" % (b, i, mm))
            checked += 1
    assert checked > 100


@check("atom-to-token mean (token with no atoms -> 0) and broadcast")
def _():
    tok = torch.tensor([0, 0, 2, 2, 2, 4])
    x = torch.arange(12, dtype=torch.float64).reshape(6, 2)
    out = pxref.mean_atom_to_token(x, tok, 5)
    ref = torch.tensor([[1, 2], [0, 0], [6, 7], [0, 0], [10, 11]], dtype=torch.float64)
    assert torch.equal(out, ref), out
    assert torch.equal(pxref.broadcast_token_to_atom(ref, tok), ref[tok])


def small_setup(seed=0, dtype=torch.float32, **kw):
    d = fx.SMALL_DIMS
    m = fx.random_model(d, seed=seed, dtype=dtype)
    args = dict(n_token=12, atoms_per_token=[5, 0, 9, 14, 3], n_chains=3, seed=seed + 1)
    args.update(kw)
    inp = fx.random_features_for(d, **args)
    return m, inp


@check("forward equals explicit composition of the sub-modules; fp32 vs fp64")
def _():
    m, inp = small_setup(seed=6, s_trunk_zero=False)
    f = inp.feats
    n = f["ref_pos"].shape[0]
    x = fx.random_coords(3, n, seed=7)
    t = torch.tensor([300.0, 16.0, 0.02])
    out = m.forward_intermediates(x, t, f, *inp[1:])
    # composition by hand
    r = x / torch.sqrt(16.0 ** 2 + t ** 2)[:, None, None]
    s, z = m.conditioning(t, f, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    a, q, c, p = m.encoder(f, r, inp.s_trunk, z)  # no sample axis on s_trunk / z: broadcast
    close(a, out["a_enc"], 1e-5, "a_enc")
    close(p.expand_as(out["p_skip"]), out["p_skip"], 1e-6, "p_skip")
    a = a + m.linear_no_bias_s(m.layernorm_s(s))
    a = m.token_transformer(a, s, z)
    a = m.layernorm_a(a)
    ru = m.decoder(f, a, q, c, p)
    close(ru, out["r_update"], 1e-5, "r_update")
    xd = x * (16.0 ** 2 / (16.0 ** 2 + t ** 2))[:, None, None] + (t * 16.0 / torch.sqrt(16.0 ** 2 + t ** 2))[:, None, None] * ru
    close(xd, out["x_denoised"], 1e-5, "x_denoised")
    # float64 agreement
    m64 = fx.random_model(fx.SMALL_DIMS, seed=6, dtype=torch.float64)
    out64 = m64.forward_intermediates(x.double(), t.double(), fx.cast_feats(f, torch.float64),
                                      *(v.double() for v in inp[1:]))
    for k in ("s", "pair_z", "a_enc", "a_trans", "r_update", "x_denoised"):
        close(out[k].double(), out64[k], 1e-5, k)
    # token with no atoms: its encoder mean is 0
    assert out["a_enc"][:, 1].abs().max().item() == 0.0
    assert all(torch.isfinite(v).all() for v in out.values())


@check("samples are independent (batch of 3 == 3 single calls)")
def _():
    m, inp = small_setup(seed=8)
    n = inp.feats["ref_pos"].shape[0]
    x = fx.random_coords(3, n, seed=9)
    t = torch.tensor([80.0, 3.0, 0.5])
    both = m(x, t, inp.feats, *inp[1:])
    for i in range(3):
        one = m(x[i:i + 1], t[i:i + 1], inp.feats, *inp[1:])
        close(one[0], both[i], 1e-5, "sample %d" % i)


@check("edge cases: single token, N < 32, N multiple of 32, N = 1")
def _():
    d = fx.SMALL_DIMS
    m = fx.random_model(d, seed=10)
    for T, apt in ((1, 7), (1, 1), (4, 8), (3, [40, 1, 23])):
        inp = fx.random_features_for(d, n_token=T, atoms_per_token=apt, n_chains=2, seed=11)
        n = inp.feats["ref_pos"].shape[0]
        y = m(fx.random_coords(2, n, seed=12), torch.tensor([10.0, 1.0]), inp.feats, *inp[1:])
        assert y.shape == (2, n, 3) and torch.isfinite(y).all()


@check("default dims with random weights: finite, O(1-10) activations")
def _():
    m = fx.random_model(seed=3)
    inp = fx.random_features(n_token=16, atoms_per_token=[5, 8, 11, 4, 14, 7], n_chains=3, seed=4)
    n = inp.feats["ref_pos"].shape[0]
    x = fx.random_coords(2, n, seed=5)
    out = m.forward_intermediates(x, torch.tensor([2544.0, 0.01]), inp.feats, *inp[1:])
    for k, v in out.items():
        assert torch.isfinite(v).all(), k
        if k not in ("x_denoised",):
            assert 0.05 < v.std().item() and v.abs().max().item() < 20, (k, v.std().item(), v.abs().max().item())


@check("augmentation: centre, then x_new = R x + u (x @ R^T + u)")
def _():
    g = torch.Generator().manual_seed(13)
    x = torch.randn(4, 17, 3, generator=g, dtype=torch.float64) + 5
    R = pxref.random_rotation(4, g)
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(4, 3, 3), atol=1e-12)
    assert torch.allclose(torch.det(R), torch.ones(4, dtype=torch.float64))
    u = torch.randn(4, 3, generator=g, dtype=torch.float64)
    y = pxref.centre_and_augment(x, R, u)
    xc = x - x.mean(1, keepdim=True)
    close(y, xc @ R.transpose(-1, -2) + u[:, None, :], 1e-12, "x @ R^T + u")
    close(y[2, 5], R[2] @ xc[2, 5] + u[2], 1e-12, "R x + u")


@check("sampler step: gamma rule, noise scale, Euler update")
def _():
    m, inp = small_setup(seed=14, dtype=torch.float64)
    f = fx.cast_feats(inp.feats, torch.float64)
    rest = [v.double() for v in inp[1:]]
    n = f["ref_pos"].shape[0]
    g = torch.Generator().manual_seed(15)
    x = torch.randn(2, n, 3, generator=g, dtype=torch.float64) * 30
    R = pxref.random_rotation(2, g)
    u = torch.randn(2, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(2, n, 3, generator=g, dtype=torch.float64)
    for tp, tc, eta in ((40.0, 35.0, 2.5), (0.02, 0.005, 1.0), (7.0, 7.0, 1.5)):
        y, info = pxref.sampler_step(m, x, tp, tc, eta, R, u, eps, f, *rest, return_intermediates=True)
        gamma = 1.0 if tc > 0.01 else 0.0
        th = tp * (1 + gamma)
        xa = (x - x.mean(1, keepdim=True)) @ R.transpose(-1, -2) + u[:, None]
        xn = xa + 1.003 * math.sqrt(th * th - tp * tp) * eps
        xd = m(xn, torch.full((2,), th, dtype=torch.float64), f, *rest)
        ref = xn + eta * (tc - th) * (xn - xd) / th
        assert abs(info["t_hat"].item() - th) < 1e-12
        close(y, ref, 1e-10, "step %g->%g" % (tp, tc))
    # a few full steps run and stay finite
    out = pxref.sample_diffusion(m, f, *rest, n_sample=2, schedule=pxref.noise_schedule(5, "bfloat16"), eta=2.5, seed=1)
    assert out.shape == (2, n, 3) and torch.isfinite(out).all()


@check("checkpoint in released layout: round trip through torch.load + strict load")
def _():
    d = fx.SMALL_DIMS
    sd = fx.random_state_dict(d, seed=16)
    with tempfile.TemporaryDirectory() as tmp:
        for prefix, kw, dt in (("module.", {}, None), ("", {}, None), ("module.", {}, torch.bfloat16)):
            path = os.path.join(tmp, "ck.pt")
            fx.save_released_layout(path, sd, extra=True, prefix=prefix, torch_save_kwargs=kw, dtype=dt)
            ck = torch.load(path, map_location="cpu")
            assert set(ck) >= {"model", "optimizer", "step"}
            model = ck["model"]
            first = next(iter(model))
            if first.startswith("module."):  # upstream: decided from the first key, strip 7 chars
                model = {k[7:]: v for k, v in model.items()}
            dm = {k[len("diffusion_module."):]: v.float() for k, v in model.items() if k.startswith("diffusion_module.")}
            dc = {k for k in model if k.startswith("design_condition_embedder.")}
            assert dc == {n for n, _, _ in fx.read_tsv() if n.startswith("design_condition_embedder.")}
            mm = fx.build_model(d)
            mm.load_state_dict(dm, strict=True)
            if dt is None:
                assert all(torch.equal(mm.state_dict()[k], sd[k]) for k in sd)
        fx.save_released_layout(os.path.join(tmp, "legacy.pt"), sd, torch_save_kwargs={"_use_new_zipfile_serialization": False})
        torch.load(os.path.join(tmp, "legacy.pt"))


def _import_upstream():
    """Import Protenix's DiffusionModule from $PXDIFF_UPSTREAM_PROTENIX (a checkout of tag
    v0.5.0+pxd, e.g. `git archive v0.5.0+pxd protenix | tar -x -C DIR`), stubbing the
    modules it imports but the diffusion module does not use (scipy, optree)."""
    root = os.environ.get("PXDIFF_UPSTREAM_PROTENIX")
    if not root:
        return None
    stub = tempfile.mkdtemp(prefix="pxref_stubs_")
    os.makedirs(os.path.join(stub, "scipy", "spatial"))
    for rel, text in (
        ("scipy/__init__.py", ""),
        ("scipy/spatial/__init__.py", ""),
        ("scipy/spatial/transform.py", "class Rotation:\n    pass\n"),
        ("scipy/stats.py", "import numpy\nclass _T:\n    def std(self, *a, **k):\n        return 1.0\n"
                           "    def rvs(self, *a, size=1, **k):\n        return numpy.zeros(size)\ntruncnorm = _T()\n"),
        ("optree.py", ""),
    ):
        with open(os.path.join(stub, rel), "w") as f:
            f.write(text)
    for path in (root, stub):
        if path not in sys.path:
            sys.path.append(path)
    from protenix.model.modules.diffusion import DiffusionModule as UDM
    return UDM


def upstream_like(model):
    """Upstream's DiffusionModule with the dims and weights of a pxref model (for the
    benchmarks), or None when $PXDIFF_UPSTREAM_PROTENIX is not set."""
    UDM = _import_upstream()
    if UDM is None:
        return None
    d = model.dims
    um = UDM(sigma_data=d["sigma_data"], c_atom=d["c_atom"], c_atompair=d["c_atompair"], c_token=d["c_token"],
             c_s=d["c_s"], c_z=d["c_z"], c_s_inputs=d["c_s_inputs"],
             atom_encoder={"n_blocks": d["atom_enc_blocks"], "n_heads": d["atom_heads"]},
             transformer={"n_blocks": d["n_blocks"], "n_heads": d["n_heads"]},
             atom_decoder={"n_blocks": d["atom_dec_blocks"], "n_heads": d["atom_heads"]})
    um.load_state_dict(model.state_dict(), strict=True)
    return um.eval()


@check("optional: bitwise equal to upstream Protenix in float32 ($PXDIFF_UPSTREAM_PROTENIX)")
def _():
    UDM = _import_upstream()
    if UDM is None:
        print("     (skipped: PXDIFF_UPSTREAM_PROTENIX not set)")
        return
    d = dict(fx.SMALL_DIMS, n_fourier=256)
    um = UDM(sigma_data=d["sigma_data"], c_atom=d["c_atom"], c_atompair=d["c_atompair"], c_token=d["c_token"],
             c_s=d["c_s"], c_z=d["c_z"], c_s_inputs=d["c_s_inputs"],
             atom_encoder={"n_blocks": d["atom_enc_blocks"], "n_heads": d["atom_heads"]},
             transformer={"n_blocks": d["n_blocks"], "n_heads": d["n_heads"]},
             atom_decoder={"n_blocks": d["atom_dec_blocks"], "n_heads": d["atom_heads"]})
    um.load_state_dict(fx.random_state_dict(d, seed=21), strict=True)
    um.eval()
    m = fx.random_model(d, seed=21)
    inp = fx.random_features_for(d, n_token=14, atoms_per_token=[5, 0, 9, 14, 3], n_chains=3, seed=22, s_trunk_zero=False)
    n = inp.feats["ref_pos"].shape[0]
    x = fx.random_coords(3, n, seed=23)
    t = torch.tensor([2544.0, 16.0, 0.02])
    yu = um(x, t, inp.feats, *inp[1:])
    ym = m(x, t, inp.feats, *inp[1:])
    assert torch.equal(yu, ym), (yu - ym).abs().max().item()


if __name__ == "__main__":
    for c in CHECKS:
        c()
    if FAILS:
        print("%d check(s) failed: %s" % (len(FAILS), ", ".join(FAILS)))
        sys.exit(1)
    print("all %d checks passed" % len(CHECKS))
