#!/usr/bin/python3
"""The CPU's bf16 precision against its fp32, one call at every noise level of the 400-step
schedule (the GPU precisions' per-call gate: relative error <= 2e-3 at every level).

    PXDIFF_LIB=build/libpxdiff.so PYTHONPATH=python:tests/ref python3 bench/cpu_bf16_percall.py \
        [--size 60+20:2] [--every 1] [--threads N]

Random weights of the released shapes (16 token blocks), synthetic features (8 atoms per target
token, 4 per binder token), coordinates at the level's scale. pxdiff fp32 is the reference: it is
~4e-7 from the float64 reference and <= 6e-7 from upstream Protenix (docs/benchmarks.md), so
its difference from bf16 is bf16's error. Prints the worst level; exits 1 over the bound or on
a non-finite output."""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "tests", "ref")]

import torch  # noqa: E402

import pxdiff  # noqa: E402
import pxfixtures as fx  # noqa: E402
import pxref  # noqa: E402


def schedule_t_hats(n_step=400):
    t = pxref.noise_schedule(n_step, "bfloat16")
    hats = set()
    for k in range(n_step):
        tp, tc = float(t[k]), float(t[k + 1])
        hats.add(float(torch.tensor(tp * ((1.0 if tc > 0.01 else 0.0) + 1.0), dtype=torch.float32)))
    return sorted(hats)


def rel(a, b):
    a, b = a.double(), b.double()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - b).norm() / b.norm()).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="60+20:2", help="TARGET+BINDER:SAMPLES")
    ap.add_argument("--every", type=int, default=1, help="every k-th noise level")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--bound", type=float, default=2e-3)
    args = ap.parse_args()
    if args.threads:
        pxdiff.set_num_threads(args.threads)
    toks, S = args.size.split(":")
    nt, nb = (int(v) for v in toks.split("+"))
    S = int(S)
    model = fx.random_model(None, seed=0)
    e32 = pxdiff.DiffusionModule.from_torch(model)
    e32.set_backend("cpu", "fp32")
    ebf = pxdiff.DiffusionModule.from_torch(model)
    ebf.set_backend("cpu", "bf16")
    inp = fx.random_features(n_token=nt + nb, atoms_per_token=[8] * nt + [4] * nb, n_chains=3, seed=5,
                             s_trunk_zero=False)
    N = inp.feats["ref_pos"].shape[0]
    hats = schedule_t_hats()[::args.every]
    worst, at, t0 = 0.0, None, time.time()
    for i, th in enumerate(hats):
        x = fx.random_coords(S, N, scale=max(th, 1.0), seed=100 + i)
        t = torch.full((S,), th)
        y32 = e32(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
        err = rel(ebf(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk), y32)
        if not err <= worst:
            worst, at = err, th
    ok = worst <= args.bound
    print(f"{'PASS' if ok else 'FAIL'} cpu bf16 ({ebf.x16_blocks} token blocks at bf16; {pxdiff.cpu_bf16_name()}) vs "
          f"cpu fp32 at {nt}+{nb} tokens, {N} atoms, {S} samples: worst {worst:.3e} at t_hat {at} over "
          f"{len(hats)} levels (bound {args.bound:g}); {time.time() - t0:.1f} s", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
