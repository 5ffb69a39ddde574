#!/usr/bin/env python3
"""Where a call's wall time goes between its kernels: an nsys GPU trace, kernel by kernel.

ncu times each kernel alone (caches flushed, clocks fixed), so its sum says nothing of the
gaps between kernels of a graph replay, nor of the ramp each launch pays while the previous
one drains. This reads nsys's per-kernel trace of a run of `pxdiff bench` (graphs replayed,
`--cuda-graph-trace=node` so each kernel of a graph is its own row), splits it into calls at
gaps longer than --call-gap us (the host's synchronisation between timed calls), drops the
first --skip calls (warm-up, design cache), and prints per call: kernels, the sum of kernel
durations, the sum of the gaps between them, the wall from the first start to the last end,
and the kinds of neighbour pairs with the largest gaps.

  nsys profile --cuda-graph-trace=node -o /tmp/p -f true build/pxdiff bench --device cuda ...
  nsys stats --report cuda_gpu_trace --format csv -o /tmp/p /tmp/p.nsys-rep
  python3 bench/gpu/nsys_gaps.py /tmp/p_cuda_gpu_trace.csv
"""
import argparse
import csv
import re
import statistics
import sys


def kind(name):
    """A short kernel family: cuBLAS's nvjet / sm90 kernels as 'gemm', ours by their name."""
    n = name.strip('"')
    if n.startswith("nvjet") or "gemm" in n.lower() or n.startswith("sm90_") or n.startswith("sm80_"):
        return "gemm"
    m = re.match(r"(?:void )?([A-Za-z_0-9]+)", n)
    return m.group(1) if m else n[:30]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--call-gap", type=float, default=30.0, help="us: a longer gap ends a call")
    ap.add_argument("--skip", type=int, default=2, help="calls dropped at the start")
    a = ap.parse_args()
    rows = []
    with open(a.csv, newline="") as f:
        lines = [l for l in f if l.count(",") > 3]
    rd = csv.DictReader(lines)
    for r in rd:
        start = r.get("Start (ns)") or r.get("Start")
        dur = r.get("Duration (ns)") or r.get("Duration")
        name = r.get("Name") or r.get("Kernel Name") or ""
        if start is None or dur is None:
            continue
        # memcpy / memset rows have names in square brackets
        if name.startswith("[") or "memcpy" in name.lower() or "memset" in name.lower():
            continue
        rows.append((int(float(start)), int(float(dur)), name))
    if not rows:
        sys.exit("nsys_gaps: no kernel rows in %s" % a.csv)
    rows.sort()
    calls, cur = [], [rows[0]]
    for prev, r in zip(rows, rows[1:]):
        if r[0] - (prev[0] + prev[1]) > a.call_gap * 1000:
            calls.append(cur)
            cur = []
        cur.append(r)
    calls.append(cur)
    calls = calls[a.skip:]
    if not calls:
        sys.exit("nsys_gaps: fewer than %d calls" % (a.skip + 1))
    per = []
    pairs = {}
    for c in calls:
        ksum = sum(d for _, d, _ in c)
        gaps = [max(0, b[0] - (p[0] + p[1])) for p, b in zip(c, c[1:])]
        wall = c[-1][0] + c[-1][1] - c[0][0]
        per.append((len(c), ksum, sum(gaps), wall))
        for p, b, g in zip(c, c[1:], gaps):
            k = (kind(p[2]), kind(b[2]))
            pairs.setdefault(k, []).append(g)
    med = lambda i: statistics.median(x[i] for x in per)
    print("calls %d (after %d skipped); per call (median): kernels %d, kernel time %.3f ms, gaps %.3f ms, wall %.3f ms"
          % (len(per), a.skip, med(0), med(1) / 1e6, med(2) / 1e6, med(3) / 1e6))
    n = len(per)
    tab = sorted(((sum(v) / n, len(v) / n, statistics.median(v), k) for k, v in pairs.items()), reverse=True)
    print("neighbour pairs by gap time per call: us per call, pairs per call, median gap us, before -> after")
    for tot, cnt, mg, k in tab[:15]:
        print("  %8.1f %6.1f %7.2f  %s -> %s" % (tot / 1e3, cnt, mg / 1e3, k[0], k[1]))


if __name__ == "__main__":
    main()
