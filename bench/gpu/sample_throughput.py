#!/usr/bin/env python3
"""Whole-sampler throughput on a GPU: `pxdiff sample` end to end (400 steps, chunks of 10,
PXDesign's defaults) on a random checkpoint in the released layout and a synthetic bundle,
against the per-design time implied by upstream eager fp32 (call time x 400 / 10).

    PYTHONPATH=python:tests/ref python3 bench/gpu/sample_throughput.py [--tokens 250+80] [--samples 10]

Prints s/design from pxdiff's summary.json; the upstream figure is measured in the same
run when $PXDIFF_UPSTREAM_PROTENIX is set (else only pxdiff's is printed)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "tests", "ref"), os.path.join(ROOT, "tests", "gpu")]

import pxfixtures as fx  # noqa: E402
import pxdiff.bundle  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", default="250+80")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--precision", default="default")
    args = ap.parse_args()
    model = fx.random_model(None, seed=0).eval()
    tmp = tempfile.mkdtemp()
    ckpt = os.path.join(tmp, "w.pt")
    # extra=False: the design_condition_embedder subtree is ignored by pxdiff; leaving it out
    # keeps the file small.
    fx.save_released_layout(ckpt, model.state_dict(), extra=False)
    for size in args.tokens.split(","):
        run_size(args, model, ckpt, tmp, size)


def run_size(args, model, ckpt, tmp, size):
    nt, nb = (int(v) for v in size.split("+"))
    inp = fx.random_features(n_token=nt + nb, atoms_per_token=[8] * nt + [4] * nb, n_chains=2, seed=3)
    # Realistic atom names for the mmCIF writer ("CA": chars are ASCII - 32, space-padded).
    n_atom = inp.feats["ref_pos"].shape[0]
    chars = torch.tensor([ord(c) - 32 for c in "CA  "])
    inp.feats["ref_atom_name_chars"] = torch.nn.functional.one_hot(chars, 64).reshape(1, 256).float().expand(n_atom, 256).contiguous()
    if True:
        bundle, out = os.path.join(tmp, f"b{size}.safetensors"), os.path.join(tmp, f"out{size}")
        pxdiff.bundle.write(bundle, inp.feats, inp.s_inputs, None, inp.z_trunk)
        cmd = [os.path.join(ROOT, "build", "pxdiff"), "sample", "--checkpoint", ckpt, "--bundle", bundle,
               "--samples", str(args.samples), "--steps", str(args.steps), "--out", out, "--device", "cuda",
               "--precision", args.precision, "--quiet"]
        t0 = time.time()
        subprocess.run(cmd, check=True)
        wall = time.time() - t0
        summary = json.load(open(os.path.join(out, "summary.json")))
    timings = summary.get("timings", summary)
    print(json.dumps({"tokens": size, "atoms": int(inp.feats["ref_pos"].shape[0]), "samples": args.samples,
                      "steps": args.steps, "wall_s": round(wall, 2), "pxdiff_timings": timings}, indent=1))
    if os.environ.get("PXDIFF_UPSTREAM_PROTENIX"):
        import check_cuda
        um = check_cuda.upstream_module(model).cuda()
        S = args.samples
        fc = {k: v.cuda() for k, v in inp.feats.items()}
        x = torch.randn(S, inp.feats["ref_pos"].shape[0], 3, device="cuda") * 20
        t = torch.full((S,), 12.5, device="cuda")
        torch.backends.cuda.matmul.allow_tf32 = False
        with torch.no_grad():
            ms = check_cuda.time_cuda(lambda: um(x, t, fc, inp.s_inputs.cuda(), inp.s_trunk.cuda(), inp.z_trunk.cuda()), 5)
        print(f"upstream eager fp32: {ms:.1f} ms per call -> {ms * args.steps / S / 1e3:.2f} s/design "
              f"(denoiser only; PXDesign's loop adds its own host work)")


if __name__ == "__main__":
    main()
