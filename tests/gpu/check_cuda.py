#!/usr/bin/env python3
"""CUDA backend checks and timings, run on a GPU machine (the `device` tool).

    PYTHONPATH=python:tests/ref python3 tests/gpu/check_cuda.py [--quick] [--sizes ...]

1. Accuracy at awkward sizes: CUDA fp32 / tf32 / bf16 and CPU fp32 against the float64
   PyTorch reference (tests/ref/pxref.py, run on the GPU in float64), at noise levels
   1e-3 .. 2544, shared and per-sample t_hat.
2. Precision policy at benchmark sizes: tf32 and bf16 against CUDA fp32 at every distinct
   t_hat of PXDesign's default 400-step schedule (bf16-rounded, gamma0 = 1).
3. Timings (median of reps, after warm-up, same process, same card): pxdiff at each
   precision vs upstream Protenix's DiffusionModule eager fp32 (when
   $PXDIFF_UPSTREAM_PROTENIX points at a checkout of tag v0.5.0+pxd) and vs the
   project's PyTorch reference; peak GPU memory of each.
Exits nonzero when an accuracy bound is broken. Prints a summary table last."""
import argparse
import gc
import json
import os
import statistics
import sys
import time

import torch

import pxdiff
import pxfixtures as fx
import pxref
from pxdiff._lib import lib

FAIL = []


def rel(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - b).norm() / b.norm()).item()


def check(name, err, bound):
    ok = err <= bound
    print(f"  {'ok ' if ok else 'BAD'} {name}: {err:.3e} (bound {bound:.0e})", flush=True)
    if not ok:
        FAIL.append(name)


def features(n_target, n_binder, seed=1, awkward=False):
    apt = [8] * n_target + [4] * n_binder
    if awkward:
        apt = [(7 + 3 * i) % 13 for i in range(n_target + n_binder)]
        apt[0] = max(apt[0], 1)
    return fx.random_features(n_token=n_target + n_binder, atoms_per_token=apt, n_chains=3,
                              seed=seed, s_trunk_zero=False)


def engine(model, device, precision):
    dm = pxdiff.DiffusionModule.from_torch(model)
    dm.set_backend(device, precision)
    return dm


def accuracy(model):
    print("== accuracy vs float64 reference (awkward sizes)", flush=True)
    ref64 = fx.random_model(None, seed=0, dtype=torch.float64).cuda()
    ref64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    engines = {"cuda-fp32": engine(model, "cuda", "fp32"), "cuda-tf32": engine(model, "cuda", "tf32"),
               "cuda-fp16": engine(model, "cuda", "fp16"), "cuda-bf16": engine(model, "cuda", "bf16"),
               "cpu-fp32": engine(model, "cpu", "fp32")}
    bounds = {"cuda-fp32": 1e-4, "cpu-fp32": 1e-4, "cuda-tf32": 2e-3, "cuda-fp16": 2e-3, "cuda-bf16": 1e-2}
    worst = {k: 0.0 for k in engines}
    for (nt, nb, S) in ((13, 7, 3), (1, 0, 2), (60, 20, 2)):
        inp = features(nt, nb, seed=nt, awkward=True)
        N = inp.feats["ref_pos"].shape[0]
        x = fx.random_coords(S, N, scale=15.0, seed=nt + 1)
        feats64 = {k: (v.double() if v.is_floating_point() else v).cuda() for k, v in inp.feats.items()}
        levels = [torch.full((S,), v) for v in (1e-3, 0.1, 1.0, 16.0, 160.0, 2544.0)]
        levels.append(torch.tensor([2544.0, 3.0, 0.01][:S] + [1.0] * max(0, S - 3)))
        for t in levels:
            with torch.no_grad():
                want = ref64(x.double().cuda(), t.double().cuda(), feats64, inp.s_inputs.double().cuda(),
                             inp.s_trunk.double().cuda(), inp.z_trunk.double().cuda())
            for k, e in engines.items():
                got = e(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
                worst[k] = max(worst[k], rel(got, want))
                if k.startswith("cuda"):
                    # Device-pointer path (CUDA tensors in and out, caller's stream, noise
                    # embedding on the device): against the reference like the host path,
                    # and in fp32 against the host path of the same engine.
                    got_dev = e(x.cuda(), t.cuda(), inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
                    assert got_dev.is_cuda
                    kd = k + " device-pointer path"
                    worst[kd] = max(worst.get(kd, 0.0), rel(got_dev, want))
                    if k == "cuda-fp32":
                        kh = "cuda-fp32 device-pointer vs host path"
                        worst[kh] = max(worst.get(kh, 0.0), rel(got_dev, got))
                    if bool((t == t[0]).all()):
                        # One level, passed as upstream's sampler does (expanded, stride 0):
                        # the shared-level entry point.
                        got_sh = e(x.cuda(), t[:1].cuda().expand(S), inp.feats, inp.s_inputs, inp.s_trunk,
                                   inp.z_trunk)
                        ks = k + " shared-level path"
                        worst[ks] = max(worst.get(ks, 0.0), rel(got_sh, want))
                        if k == "cuda-fp32":
                            kh = "cuda-fp32 shared-level vs host path"
                            worst[kh] = max(worst.get(kh, 0.0), rel(got_sh, got))
        print(f"  size {nt}+{nb} tokens, {N} atoms, {S} samples: " +
              ", ".join(f"{k} {v:.2e}" for k, v in worst.items()), flush=True)
    for k in engines:
        check(f"{k} vs float64 reference, worst over sizes and noise levels", worst[k], bounds[k])
        if k.startswith("cuda"):
            check(f"{k} device-pointer path vs float64 reference", worst[k + " device-pointer path"], bounds[k])
            check(f"{k} shared-level path vs float64 reference", worst[k + " shared-level path"], bounds[k])
    check("cuda-fp32 device-pointer path vs host path", worst["cuda-fp32 device-pointer vs host path"], 1e-5)
    check("cuda-fp32 shared-level path vs host path", worst["cuda-fp32 shared-level vs host path"], 1e-5)
    del ref64
    torch.cuda.empty_cache()
    return worst


def schedule_t_hats(n_step=400):
    t = pxref.noise_schedule(n_step, "bfloat16")
    hats = set()
    for k in range(n_step):
        tp, tc = float(t[k]), float(t[k + 1])
        gamma = 1.0 if tc > 0.01 else 0.0
        hats.add(float(torch.tensor(tp * (gamma + 1.0), dtype=torch.float32)))
    return sorted(hats)


def precision_policy(model, nt, nb, S, every=1):
    print(f"== tf32/fp16/bf16 vs fp32 (CUDA) at {nt}+{nb} tokens, {S} samples, every t_hat of the schedule",
          flush=True)
    inp = features(nt, nb, seed=5)
    N = inp.feats["ref_pos"].shape[0]
    e32, etf, ehf, ebf = (engine(model, "cuda", p) for p in ("fp32", "tf32", "fp16", "bf16"))
    hats = schedule_t_hats()[::every]
    worst = {"tf32": (0.0, None), "fp16": (0.0, None), "bf16": (0.0, None)}
    for i, th in enumerate(hats):
        x = fx.random_coords(S, N, scale=max(th, 1.0), seed=100 + i)
        t = torch.full((S,), th)
        y32 = e32(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
        for k, e in (("tf32", etf), ("fp16", ehf), ("bf16", ebf)):
            err = rel(e(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk), y32)
            if err > worst[k][0]:
                worst[k] = (err, th)
    for k, (err, th) in worst.items():
        print(f"  {k}: worst {err:.3e} at t_hat {th} over {len(hats)} levels", flush=True)
        check(f"{k} vs fp32 at {nt}+{nb} tokens (default-precision bound 2e-3; bf16: 1e-2)", err,
              1e-2 if k == "bf16" else 2e-3)
    return {k: v[0] for k, v in worst.items()}


def time_cuda(fn, reps):
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        a = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - a)
    return 1e3 * statistics.median(ts)


def sample_designs(dm, inp, S, n_step, seed, host_loop):
    """px_sample over one chunk; host_loop forces the host sampler loop on the GPU."""
    import ctypes
    from pxdiff._lib import PROGRESS_FN, SamplerConfig
    c = SamplerConfig()
    lib.px_sampler_config_default(ctypes.byref(c))
    c.n_step, c.seed = n_step, seed
    design, N = dm.design(inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    out = torch.full((S, N, 3), float("nan"))
    if host_loop:
        os.environ["PXDIFF_HOST_SAMPLER"] = "1"
    try:
        rc = lib.px_sample(dm._m, design, ctypes.byref(c), 7, S, S,
                           ctypes.cast(out.data_ptr(), ctypes.POINTER(ctypes.c_float)), PROGRESS_FN(0), None)
    finally:
        os.environ.pop("PXDIFF_HOST_SAMPLER", None)
    if rc != 0:
        raise RuntimeError(lib.px_last_error().decode())
    return out


def sampler(model):
    """The whole sampler on the GPU (coordinates on the device for the whole chunk) against
    the host sampler loop on the GPU and against the CPU engine: same seed, same designs."""
    print("== sampler: device loop vs host loop vs CPU (40 steps, 3 samples)", flush=True)
    inp = features(20, 9, seed=11, awkward=True)
    res = {}
    for dev, prec in (("cuda", "fp32"), ("cuda", "tf32"), ("cuda", "fp16"), ("cpu", "fp32")):
        dm = engine(model, dev, prec)
        res[f"{dev}-{prec}"] = sample_designs(dm, inp, 3, 40, 1234, host_loop=False)
        if dev == "cuda":
            res[f"{dev}-{prec}-hostloop"] = sample_designs(dm, inp, 3, 40, 1234, host_loop=True)
    for k, v in res.items():
        assert torch.isfinite(v).all(), k
    check("sampler cuda-fp32: device loop vs host loop", rel(res["cuda-fp32"], res["cuda-fp32-hostloop"]), 1e-5)
    check("sampler cuda-tf32: device loop vs host loop", rel(res["cuda-tf32"], res["cuda-tf32-hostloop"]), 2e-3)
    check("sampler cuda-fp32 vs cpu-fp32 designs", rel(res["cuda-fp32"], res["cpu-fp32"]), 1e-4)
    check("sampler cuda-tf32 vs cpu-fp32 designs", rel(res["cuda-tf32"], res["cpu-fp32"]), 2e-3)
    check("sampler cuda-fp16 vs cpu-fp32 designs", rel(res["cuda-fp16"], res["cpu-fp32"]), 2e-3)


def lanes(model):
    """Large calls run their two sample halves in concurrent lanes: same result as one lane
    (fp32: within rounding, GEMMs of half the rows round differently; tf32 likewise)."""
    print("== lanes: two concurrent halves vs one lane (250+80 tokens, 10 samples)", flush=True)
    inp = features(250, 80, seed=5)
    N = inp.feats["ref_pos"].shape[0]
    x = fx.random_coords(10, N, scale=20.0, seed=6)
    t = torch.full((10,), 9.0)
    for prec, bound in (("fp32", 1e-5), ("tf32", 2e-3), ("fp16", 2e-3)):
        got = {}
        for n in ("1", "2"):
            os.environ["PXDIFF_LANES"] = n
            try:
                e = engine(model, "cuda", prec)  # a fresh engine: graphs are per design
                got[n] = e(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
                got[n + "dev"] = e(x.cuda(), torch.full((1,), 9.0, device="cuda").expand(10), inp.feats,
                                   inp.s_inputs, inp.s_trunk, inp.z_trunk).cpu()
            finally:
                os.environ.pop("PXDIFF_LANES", None)
        check(f"{prec}: two lanes vs one lane (host path)", rel(got["2"], got["1"]), bound)
        check(f"{prec}: two lanes vs one lane (device path)", rel(got["2dev"], got["1dev"]), bound)


def fp16_guard(model):
    """fp16 stores a token or atom block's GEMM inputs in 16 bits only when bounds from its
    weights (src/model/fp16_range.c) keep them in fp16's range. Blowing up the transition AdaLN's
    shift of every block (token and atom) makes every block fall back to TF32 operands: fp16 must then give
    TF32's result exactly. With every other block refused, it stays within the bound."""
    import re
    print("== fp16 range guard (blocks whose inputs could leave fp16's range keep TF32)", flush=True)
    # the token blocks' and (issue 13) the atom blocks' transition AdaLN shifts
    pat = re.compile(r"^(diffusion_module\.)?(?P<atom>atom_attention_(en|de)coder\.atom_transformer\.)?"
                     r"diffusion_transformer\.blocks\.(?P<k>\d+)\.conditioned_transition_block"
                     r"\.adaln\.linear_nobias_s\.weight$")
    inp = features(60, 20, seed=21)
    N = inp.feats["ref_pos"].shape[0]
    x = fx.random_coords(3, N, scale=10.0, seed=22)
    t = torch.full((3,), 4.0)
    for every, label in ((1, "every block refused"), (2, "every other block refused")):
        m2 = fx.random_model(None, seed=0).eval()
        sd = {k: v.clone() for k, v in model.state_dict().items()}
        hit = 0
        for k in sd:
            mt = pat.match(k)
            if mt and int(mt.group("k")) % every == 0:
                # the SwiGLU bound grows 9e4x (token) / 9e6x (atom): past 2^10 * 65504
                sd[k] *= 3000.0 if mt.group("atom") else 300.0
                hit += 1
        assert hit > 0, "no transition AdaLN shift weights found"
        m2.load_state_dict(sd)
        engines = {p: engine(m2, "cuda", p) for p in ("fp32", "tf32", "fp16")}
        y = {p: e(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk) for p, e in engines.items()}
        assert all(torch.isfinite(v).all() for v in y.values()), label
        e16 = engines["fp16"]
        print(f"  {label}: fp16 token blocks {e16.x16_blocks}, atom blocks {getattr(e16, 'x16_atom_blocks', '?')}",
              flush=True)
        if every == 1:
            assert e16.x16_blocks == 0 and getattr(e16, "x16_atom_blocks", 0) == 0, label
            check(f"fp16 with {label} vs tf32 (identical)", rel(y["fp16"], y["tf32"]), 0.0)
        else:
            check(f"fp16 with {label} vs fp32", rel(y["fp16"], y["fp32"]), 2e-3)


def precision_switch(model):
    """At fp16 the token matrices' fp32 device copies are freed (only their fp16 copies are
    read); switching one engine fp16 -> tf32 -> fp16 -> fp32 must restore them exactly: each
    result equals a fresh engine's at that precision."""
    print("== precision switches on one engine (fp16 frees fp32 token matrices, others restore them)", flush=True)
    inp = features(40, 12, seed=31)
    N = inp.feats["ref_pos"].shape[0]
    x = fx.random_coords(3, N, scale=8.0, seed=32)
    t = torch.full((3,), 2.5)
    run = lambda e: e(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    fresh = {p: run(engine(model, "cuda", p)) for p in ("fp16", "tf32", "fp32")}
    e = engine(model, "cuda", "fp16")
    assert e.x16_blocks > 0, "no token block runs fp16 operands"
    for p in ("fp16", "tf32", "fp16", "fp32", "fp16"):
        e.set_backend("cuda", p)
        check(f"switched engine at {p} vs a fresh {p} engine (identical)", rel(run(e), fresh[p]), 0.0)


def upstream_module(model):
    import check_pxref
    return check_pxref.upstream_like(model)


def timings(model, sizes, reps, S=10):
    print("== timings", flush=True)
    rows = []
    um = upstream_module(model)
    um_cuda = um.cuda() if um is not None else None
    ref_cuda = fx.random_model(None, seed=0).cuda().eval()
    ref_cuda.load_state_dict(model.state_dict())
    for nt, nb in sizes:
        inp = features(nt, nb, seed=3)
        N = inp.feats["ref_pos"].shape[0]
        x = fx.random_coords(S, N, scale=20.0, seed=4)
        t = torch.full((S,), 12.5)
        row = {"tokens": f"{nt}+{nb}", "atoms": N, "samples": S}
        fc = {k: v.cuda() for k, v in inp.feats.items()}
        args = (x.cuda(), t.cuda(), fc, inp.s_inputs.cuda(), inp.s_trunk.cuda(), inp.z_trunk.cuda())
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        for name, mod in (("upstream_eager_fp32", um_cuda), ("pxref_eager_fp32", ref_cuda)):
            if mod is None:
                continue
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            with torch.no_grad():
                row[name + "_ms"] = time_cuda(lambda: mod(*args), reps)
            # Activations above what was allocated before the call, plus the module's own
            # weights: the module's total, comparable to pxdiff's (which includes its weights).
            weights = sum(p.numel() * p.element_size() for p in mod.parameters())
            row[name + "_peak_gib"] = (torch.cuda.max_memory_allocated() - base + weights) / 2 ** 30
        for p in ("fp32", "tf32", "fp16", "bf16"):
            # One engine alive at a time, so its peak is its own: weights (and 16-bit
            # copies), design cache, workspace.
            gc.collect()
            base_px = lib.px_cuda_memory_in_use()
            lib.px_cuda_memory_reset_peak()
            e = engine(model, "cuda", p)
            e(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)  # design cache
            row[f"pxdiff_{p}_ms"] = time_cuda(lambda: e(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk), reps)
            row[f"pxdiff_{p}_peak_gib"] = (lib.px_cuda_memory_peak() - base_px) / 2 ** 30
            # As upstream's sampler calls the module: tensors on the GPU, t_hat one level
            # expanded over the samples (the drop-in's path: nothing crosses to the host).
            xd, td = x.cuda(), torch.full((1,), 12.5, device="cuda").expand(S)
            e(xd, td, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
            row[f"pxdiff_{p}_dev_ms"] = time_cuda(lambda: e(xd, td, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk), reps)
            row[f"pxdiff_{p}_peak_gib"] = max(row[f"pxdiff_{p}_peak_gib"],
                                              (lib.px_cuda_memory_peak() - base_px) / 2 ** 30)
            del e
        print("  " + json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="250+80")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--every", type=int, default=1, help="check every k-th schedule level")
    ap.add_argument("--policy-sizes", default="250+80", help="sizes for the tf32/bf16-vs-fp32 sweep")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    lib.px_cuda_memory_peak.restype = lib.px_model_n_params.restype
    lib.px_cuda_memory_in_use.restype = lib.px_model_n_params.restype
    print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| pxdiff cuda devices:",
          lib.px_cuda_device_count(), flush=True)
    model = fx.random_model(None, seed=0).eval()
    out = {}
    if not args.skip_accuracy:
        out["accuracy"] = accuracy(model)
        sampler(model)
        lanes(model)
        fp16_guard(model)
        precision_switch(model)
        out["policy"] = {}
        for size in args.policy_sizes.split(","):
            nt, nb = (int(v) for v in size.split("+"))
            out["policy"][size] = precision_policy(model, nt, nb, 10, every=args.every)
    sizes = [tuple(int(v) for v in s.split("+")) for s in args.sizes.split(",")]
    out["timings"] = timings(model, sizes, args.reps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    print("\n| tokens | atoms | " + " | ".join(k for k in out["timings"][0] if k.endswith("_ms")) + " |")
    for r in out["timings"]:
        print(f"| {r['tokens']} | {r['atoms']} | " + " | ".join(f"{r[k]:.2f}" for k in r if k.endswith("_ms")) + " |")
    if FAIL:
        print("FAILED:", ", ".join(FAIL))
        sys.exit(1)
    print("all CUDA checks passed")


if __name__ == "__main__":
    main()
