#!/usr/bin/python3
"""CPU benchmark: one denoise call, pxdiff vs the project's PyTorch reference, same run.

    make && /usr/bin/python3 bench/bench_cpu.py [--sizes 60+20:560:2,250+80:2320:10] [--reps 5]
        [--threads N] [--skip-reference] [--no-header] [--precisions fp32,bf16]

(bench/cpu_device.sh runs it for 1, 4 and 16 threads on a many-core machine.)

Both sides get the same random weights (written once with torch.save in the released
layout and loaded by pxdiff from that file) and inputs of the same size. PyTorch runs
the reference module (tests/ref/pxref.py: upstream's computation, recomputing everything
each call) in float32 with torch.no_grad(); pxdiff runs `build/pxdiff bench` in a
subprocess so that neither side's BLAS thread settings touch the other's. Each side: one
warm-up call, then the median of --reps calls. Prints a markdown table."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "ref")]
# Upstream's baseline, optional: PXDIFF_UPSTREAM_PROTENIX=third_party/protenix (see docs/benchmarks.md).

import torch  # noqa: E402

import pxfixtures as fx  # noqa: E402


def atoms_list(n_token, n_atom):
    return [n_atom // n_token + (1 if t < n_atom % n_token else 0) for t in range(n_token)]


def torch_call_ms(model, n_target, n_binder, n_atom, n_sample, reps):
    T = n_target + n_binder
    inp = fx.random_features(n_token=T, atoms_per_token=atoms_list(T, n_atom), n_chains=2, seed=1)
    x = fx.random_coords(n_sample, n_atom, scale=20.0, seed=2)
    t = torch.full((n_sample,), 12.5)
    times = []
    with torch.no_grad():
        model(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)  # warm-up
        for _ in range(reps):
            a = time.perf_counter()
            model(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
            times.append(time.perf_counter() - a)
    return 1e3 * statistics.median(times)


def upstream_model(model):
    """Upstream Protenix's DiffusionModule (tag v0.5.0+pxd) with the same weights, when
    $PXDIFF_UPSTREAM_PROTENIX points at a checkout (fetched, never committed); else None."""
    import check_pxref
    return check_pxref.upstream_like(model)


def pxdiff_call_ms(ckpt, n_target, n_binder, n_atom, n_sample, reps, threads, precision="fp32"):
    exe = os.environ.get("PXDIFF_CLI") or os.path.join(ROOT, "build", "pxdiff")  # another build: PXDIFF_CLI
    cmd = [exe, "bench", "--checkpoint", ckpt, "--tokens", str(n_target + n_binder),
           "--binder", str(n_binder), "--atoms", str(n_atom), "--samples", str(n_sample),
           "--reps", str(reps), "--threads", str(threads), "--device", "cpu", "--precision", precision.split("/")[0]]
    env = dict(os.environ)
    if "/" in precision:  # bf16/avx512: the vdpbf16ps kernel where the default is AMX's
        env["PXDIFF_CPU_BF16_KERNEL"] = precision.split("/", 1)[1]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    m = re.search(r"median ([0-9.]+) ms", out)
    if not m:
        raise RuntimeError("unexpected pxdiff bench output:\n" + out)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="60+20:560:2,250+80:2320:10",
                    help="comma-separated TARGET+BINDER:ATOMS:SAMPLES")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--px-reps", type=int, default=None, help="pxdiff's timed calls (default: --reps)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--skip-reference", action="store_true",
                    help="do not time the project's PyTorch reference (when upstream Protenix is timed)")
    ap.add_argument("--no-header", action="store_true", help="print the table's rows only")
    ap.add_argument("--precisions", default="fp32",
                    help="pxdiff's CPU precisions to time, comma-separated (fp32, bf16, bf16/avx512: bf16 on "
                         "the vdpbf16ps kernel where AMX is the default): one column each")
    args = ap.parse_args()
    precs = args.precisions.split(",")
    torch.set_num_threads(args.threads)
    model = fx.random_model(None, seed=0)
    model.eval()
    upstream = upstream_model(model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "random_weights.pt")
        fx.save_released_layout(ckpt, model.state_dict())
        for spec in args.sizes.split(","):
            toks, n_atom, n_sample = spec.split(":")
            n_target, n_binder = (int(v) for v in toks.split("+"))
            n_atom, n_sample = int(n_atom), int(n_sample)
            pxs = [pxdiff_call_ms(ckpt, n_target, n_binder, n_atom, n_sample, args.px_reps or args.reps, args.threads, p)
                   for p in precs]
            px = pxs[0]
            up = torch_call_ms(upstream, n_target, n_binder, n_atom, n_sample, args.reps) if upstream else None
            pt = None if args.skip_reference and up else torch_call_ms(model, n_target, n_binder, n_atom, n_sample,
                                                                        args.reps)
            rows.append((n_target, n_binder, n_atom, n_sample, pt, pxs, up))
            fmt = lambda v: f"{v:.1f}" if v else "not run"  # noqa: E731
            print(f"# {spec}, {args.threads} threads: torch reference {fmt(pt)} ms, upstream {fmt(up)} ms, "
                  + ", ".join(f"pxdiff {p} {v:.1f} ms" for p, v in zip(precs, pxs)),
                  file=sys.stderr, flush=True)
    # The BLAS torch actually resolved (Debian's torch links libblas.so.3 through alternatives).
    libs = sorted({ln.split()[-1] for ln in open("/proc/self/maps") if "blas" in ln.lower()}) \
        if os.path.exists("/proc/self/maps") else []
    blas = ", ".join(os.path.basename(p) for p in libs) or "unknown"
    exe = os.environ.get("PXDIFF_CLI") or os.path.join(ROOT, "build", "pxdiff")
    info = subprocess.run([exe, "info"], capture_output=True, text=True).stdout
    px_blas = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("blas:")), "unknown")
    if not args.no_header:
        print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; torch {torch.__version__} ({blas}); "
              f"pxdiff BLAS: {px_blas}; median of {args.reps} calls (pxdiff {args.px_reps or args.reps}) after a warm-up\n")
        extra = "".join(f" pxdiff {p} ms/call | pxdiff {p}/upstream |" for p in precs[1:])
        print("| threads | tokens (target+binder) | atoms | samples | upstream Protenix ms/call | project's PyTorch reference ms/call | pxdiff ms/call | pxdiff/reference | pxdiff/upstream | pxdiff s/design (400 steps) |"
              + extra)
        print("|---|---|---|---|---|---|---|---|---|---|" + "---|---|" * (len(precs) - 1))
    for n_target, n_binder, n_atom, n_sample, pt, pxs, up in rows:
        px = pxs[0]
        ups = f"{up:.1f}" if up else "not run"
        pts = f"{pt:.1f}" if pt else "not run"
        ptr = f"{px / pt:.3f}" if pt else "-"
        upr = f"{px / up:.3f}" if up else "-"
        extra = "".join(f" {v:.1f} | {v / up:.3f} |" if up else f" {v:.1f} | - |" for v in pxs[1:])
        print(f"| {args.threads} | {n_target}+{n_binder} | {n_atom} | {n_sample} | {ups} | {pts} | {px:.1f} | {ptr} | {upr} | "
              f"{px * 400 / n_sample / 1e3:.2f} |" + extra, flush=True)


def cpu_model():
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()

if __name__ == "__main__":
    main()
