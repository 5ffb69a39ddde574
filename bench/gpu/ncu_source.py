#!/usr/bin/env python3
"""Where one kernel waits and what it asks of shared memory, by instruction, from ncu's source
page (GPU round seven, docs/benchmarks.md). On the device:

    PXDIFF_ATT_BENCH=only ncu --clock-control none --section SourceCounters --section WarpStateStats \\
        -k regex:k_attention_h16in --launch-skip 477 --launch-count 1 -o /tmp/att build/tests/test_cuda_attention
    ncu -i /tmp/att.ncu-rep --page source --csv --print-source sass > att_src.csv
    python3 bench/gpu/ncu_source.py att_src.csv [top=30]

(--launch-skip 477: the fp16-input launches before the one of 100 samples of 330 tokens with
the fp16 bias, in the bench's order; 424 for the fp32 bias's.) Prints the instructions with the most stall samples, the stall reasons summed, and the
shared-memory wavefronts (and their excess over the ideal: bank conflicts) by instruction kind."""
import csv
import re
import sys


def num(x):
    try:
        return float(x.replace(",", ""))
    except ValueError:
        return 0.0


def kind(src):
    for pat, name in (("LDGSTS.E.BYPASS.128", "LDGSTS.128"), ("LDGSTS", "LDGSTS (other)"), ("LDSM", "LDSM"),
                      (r"\bLDS\b|LDS\.", "LDS"), (r"\bSTS\b|STS\.", "STS"), ("UTMALDG|UBLKCP", "bulk copies")):
        if re.search(pat, src):
            return name
    return "other"


def main():
    rows = list(csv.reader(open(sys.argv[1], errors="replace")))
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    hi = next(i for i, r in enumerate(rows) if "Source" in r and "Address" in r)
    h, data = rows[hi], [r for r in rows[hi + 1:] if len(r) == len(rows[hi])]
    col = {name: h.index(name) for name in h}
    src, stall = col["Source"], col["Warp Stall Sampling (All Samples)"]
    total = sum(num(r[stall]) for r in data) or 1.0
    print(f"stall samples: {total:.0f}; the {top} instructions with the most:")
    for r in sorted(data, key=lambda r: -num(r[stall]))[:top]:
        print(f"  {100 * num(r[stall]) / total:5.1f}%  exec {r[col['Instructions Executed']]:>9}  {r[src].strip()[:80]}")
    print("stall reasons (samples):")
    for name in h:
        if name.startswith("stall_") and "Not Issued" not in name:
            s = sum(num(r[col[name]]) for r in data)
            if s:
                print(f"  {name[6:]:<20} {s:8.0f}")
    wf, ex = col.get("L1 Wavefronts Shared"), col.get("L1 Wavefronts Shared Excessive")
    if wf is None:
        return
    by = {}
    for r in data:
        w = num(r[wf])
        if w:
            k = by.setdefault(kind(r[src]), [0.0, 0.0])
            k[0] += w
            k[1] += num(r[ex]) if ex is not None else 0.0
    allw = sum(v[0] for v in by.values()) or 1.0
    print(f"shared-memory wavefronts: {allw / 1e6:.2f} M")
    for k, (w, e) in sorted(by.items(), key=lambda kv: -kv[1][0]):
        print(f"  {k:<16} {w / 1e6:7.2f} M ({100 * w / allw:4.1f}%), excessive {e / 1e6:6.2f} M")


if __name__ == "__main__":
    main()
