#!/usr/bin/env python3
"""Where the drop-in's per-call time goes over the CLI's call (issue 13, item 3), on a GPU.

    PYTHONPATH=python:tests/ref PXDIFF_LIB=build/libpxdiff.so python3 bench/gpu/dropin_overhead.py \
        [--sizes 100+50,250+80,500+120] [--reps 50] [--exe build/pxdiff]

Per size (target+binder tokens, 8 atoms per target token and 4 per binder token, 10 samples,
default precision), each the median of --reps calls, each call synchronised (as the CLI's):
  cli      `pxdiff bench` (px_denoise: host arrays in and out, one host wait)
  accel    the drop-in (enable_acceleration's module) on CUDA tensors, features on the GPU,
           t_hat expanded as upstream's sampler passes it
  module   pxdiff.DiffusionModule on the same tensors
  ctypes   px_denoise_device_shared_t alone, pointers made once (the C side of the call)
  host     the drop-in's host time alone (call entry to return, the GPU idle before)
and the top of a cProfile of the drop-in's host side. Prints a markdown table last."""
import argparse
import cProfile
import ctypes
import io
import pstats
import re
import statistics
import subprocess
import time

import torch

import pxdiff
import pxfixtures as fx
from pxdiff._lib import c_float_p, lib


def features(nt, nb):
    apt = [8] * nt + [4] * nb
    return fx.random_features(n_token=nt + nb, atoms_per_token=apt, n_chains=3, seed=3, s_trunk_zero=False)


def timed(fn, reps):
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


def host_only(fn, reps):
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        a = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - a)
    torch.cuda.synchronize()
    return 1e3 * statistics.median(ts)


def cli_ms(exe, nt, nb, n_atom, reps):
    out = subprocess.run([exe, "bench", "--device", "cuda", "--tokens", str(nt + nb), "--binder", str(nb),
                          "--atoms", str(n_atom), "--samples", "10", "--reps", str(reps)],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"median ([0-9.]+) ms", out).group(1))


class Holder(torch.nn.Module):
    def __init__(self, dm):
        super().__init__()
        self.diffusion_module = dm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100+50,250+80,500+120")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--exe", default="build/pxdiff")
    a = ap.parse_args()
    model = fx.random_model(None, seed=0).cuda().eval()
    holder = Holder(model)
    acc = pxdiff.enable_acceleration(holder, backend="cuda", verbose=False)
    eng = acc.pxdiff_engine
    print("device:", torch.cuda.get_device_name(0), "| engine", eng.backend, eng.precision, flush=True)
    rows = []
    for size in a.sizes.split(","):
        nt, nb = (int(v) for v in size.split("+"))
        inp = features(nt, nb)
        N = inp.feats["ref_pos"].shape[0]
        S = 10
        f = {k: v.cuda() for k, v in inp.feats.items()}
        si, st, zt = inp.s_inputs.cuda(), inp.s_trunk.cuda(), inp.z_trunk.cuda()
        x = fx.random_coords(S, N, scale=20.0, seed=4).cuda()
        t = torch.full((1,), 12.5, device="cuda").expand(S)
        with torch.no_grad():
            r = {"size": size, "atoms": N}
            r["cli"] = cli_ms(a.exe, nt, nb, N, a.reps)
            r["accel"] = timed(lambda: acc(x, t, f, si, st, zt), a.reps)
            r["module"] = timed(lambda: eng(x, t, f, si, st, zt), a.reps)
            design, _ = eng.design(f, si, st, zt)
            out = torch.empty_like(x)
            t1 = t[:1].contiguous()
            px, pt, po = (ctypes.cast(v.data_ptr(), c_float_p) for v in (x, t1, out))
            stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
            lib.px_set_cuda_stream(eng._m, stream)
            r["ctypes"] = timed(lambda: lib.px_denoise_device_shared_t(eng._m, design, S, px, pt, po), a.reps)
            r["host"] = host_only(lambda: acc(x, t, f, si, st, zt), a.reps)
            # back-to-back (how a sampler loop runs: the host work overlaps the GPU's)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(a.reps):
                acc(x, t, f, si, st, zt)
            torch.cuda.synchronize()
            r["accel_loop"] = 1e3 * (time.perf_counter() - t0) / a.reps
            pr = cProfile.Profile()
            pr.enable()
            for _ in range(20):
                acc(x, t, f, si, st, zt)
            pr.disable()
            torch.cuda.synchronize()
            s = io.StringIO()
            pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12)
            print(f"-- {size}: cProfile of 20 drop-in calls (host side)\n" + s.getvalue()[-2500:], flush=True)
        print("  ", r, flush=True)
        rows.append(r)
    keys = ["cli", "accel", "module", "ctypes", "host", "accel_loop"]
    print("\n| tokens | atoms | " + " | ".join(keys) + " | accel - cli |")
    print("|---" * (len(keys) + 3) + "|")
    for r in rows:
        print(f"| {r['size']} | {r['atoms']} | " + " | ".join(f"{r[k]:.3f}" for k in keys)
              + f" | {r['accel'] - r['cli']:+.3f} |")


if __name__ == "__main__":
    main()
