#!/usr/bin/env python3
"""Per-kernel and per-group GPU time of one denoise call from bench/gpu/profile.sh's ncu
summary (ncu --print-summary per-kernel over `pxdiff bench --reps 1`: the warm-up call and
one timed call, so totals are divided by 2).

    python3 bench/gpu/ncu_breakdown.py ncu_summary.txt [calls=2]"""
import re
import sys

GROUPS = [  # first match wins
    ("local attention (atom blocks)", r"k_attention_tc_local|k_attention_tc<32, 32>"),
    ("full attention (token blocks)", r"k_attention_tc<|k_attention_h16"),
    ("LayerNorm / AdaLN / residual+AdaLN", r"k_row_ln|k_layernorm|k_gated_residual"),
    ("SwiGLU", r"k_swiglu"),
    ("token<->atom maps, s-side gates, EDM, misc", r"k_atoms_to_tokens|k_tokens_to_atoms|k_add_rows|k_activation|k_edm|k_fourier|k_rows_plus|k_relu|k_to_half|k_sampler"),
    ("GEMMs (cuBLASLt / cuBLAS)", r"gemm|Kernel2|cutlass|xmma|nvjet"),
]


def parse(path):
    rows, cur = [], None
    for line in open(path):
        m = re.match(r"\s{2}(\S.*?) \((\d+), (\d+), (\d+)\)x\((\d+), (\d+), (\d+)\).*Invocations (\d+)", line)
        if m:
            cur = (m.group(1), tuple(int(v) for v in m.group(2, 3, 4)), int(m.group(8)))
            continue
        m = re.match(r"\s+gpu__time_duration.sum\s+(\S+)\s+\S+\s+\S+\s+(\S+)", line)
        if m and cur:
            avg = float(m.group(2).replace(",", "")) * {"ms": 1e3, "ns": 1e-3}.get(m.group(1), 1.0)
            rows.append((cur[0], cur[1], cur[2], avg))
            cur = None
    return rows


# Kernels that run once per model or design, not per call (16-bit weight copies at set-up).
ONCE = r"k_to_half_flat"


def main():
    rows = parse(sys.argv[1])
    once = [r for r in rows if re.search(ONCE, r[0])]
    rows = [r for r in rows if not re.search(ONCE, r[0])]
    if once:
        print(f"set-up kernels left out: {sum(n * avg for _, _, n, avg in once) / 1e3:.2f} ms ({ONCE})")
    calls = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    total = sum(n * avg for _, _, n, avg in rows) / calls
    print(f"kernel time per call: {total / 1e3:.2f} ms\n")
    groups = {}
    for name, grid, n, avg in rows:
        g = next((g for g, pat in GROUPS if re.search(pat, name)), "other")
        groups[g] = groups.get(g, 0.0) + n * avg / calls
    print("| kernels | ms per call | share |\n|---|---|---|")
    for g, us in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"| {g} | {us / 1e3:.2f} | {100 * us / total:.0f}% |")
    print("\nlargest kernels (us per call, launches per call, mean us):")
    for name, grid, n, avg in sorted(rows, key=lambda r: -r[2] * r[3])[:40]:
        print(f"  {n * avg / calls:8.1f}  {n / calls:5.1f} x {avg:7.2f}  {name[:100]}")


if __name__ == "__main__":
    main()
