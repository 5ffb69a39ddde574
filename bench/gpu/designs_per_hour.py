#!/usr/bin/env python3
"""Designs per hour of `pxdiff design` on one GPU with its defaults (automatic chunk, default
precision, 400 steps) at several design sizes (issue 15's speed table). The target is PD-L1
(5o45 chain A, crop 1-116, hotspots of the quick start); the binder length sets the size:
150 / 330 / 620 tokens. Random weights of the released shapes (speed does not depend on them).

    PYTHONPATH=tests/ref:tests/gpu python3 bench/gpu/designs_per_hour.py --pxdiff build-cuda/pxdiff \
        --work /tmp/dph [--sizes 150,330,620] [--designs 50]
"""
import argparse
import json
import os

from check_contexts import checkpoint, design, summaries


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pxdiff", default="build-cuda/pxdiff")
    ap.add_argument("--work", default="/tmp/pxdiff-dph")
    ap.add_argument("--sizes", default="150,330,620")
    ap.add_argument("--designs", type=int, default=50)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    ckpt = os.path.join(a.work, "pxdesign_v0.1.0.pt")
    if not os.path.exists(ckpt):
        checkpoint(ckpt)
    rows = []
    for tokens in map(int, a.sizes.split(",")):
        task = os.path.join(a.work, f"t{tokens}.yaml")
        with open(task, "w") as f:
            f.write(f'task_name: t{tokens}\ntarget:\n  file: "tests/data/structures/5o45.cif"\n  chains:\n    A:\n'
                    f'      crop: ["1-116"]\n      hotspots: [40, 99, 107]\nbinder_length: {tokens - 116}\n')
        out = os.path.join(a.work, f"out{tokens}")
        r, dt = design(a.pxdiff, ckpt, [task], out, "--N_sample", a.designs, "--seeds", 1)
        s = summaries(out)
        spd = s[0]["timings"]["s_per_design"] if r.returncode == 0 and s else float("nan")
        chunk = s[0]["settings"]["chunk"] if s else None
        rows.append((tokens, chunk, spd, dt))
        print(f"{tokens} tokens: chunk {chunk}, {spd:.4f} s/design, {3600 / spd:.0f} designs/hour "
              f"(wall {dt:.1f} s incl. load, featurize, embed)", flush=True)
    print("| tokens | chunk | s/design | designs/hour | wall (s) |\n|---|---|---|---|---|")
    for t, c, spd, dt in rows:
        print(f"| {t} | {c} | {spd:.4f} | {3600 / spd:.0f} | {dt:.1f} |")
    with open(os.path.join(a.work, "dph.json"), "w") as f:
        json.dump(rows, f)


if __name__ == "__main__":
    main()
