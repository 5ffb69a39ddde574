#!/usr/bin/env python3
"""`pxdiff design` on a GPU against upstream's sampling of the same work, in one run
(docs/benchmarks.md, "pxdiff design").

    PXDIFF_UPSTREAM_PROTENIX=third_party/fullport/src PYTHONPATH=python:tests/ref \\
        python3 bench/gpu/design_gpu.py [--samples 100] [--upstream-samples 10] [--out DIR]

Random weights of the released shapes (diffusion module and condition embedder) are saved as
one checkpoint in the released layout. pxdiff: the whole `pxdiff design` run of PXDesign's
quick-start task (parse, featurize, embed, sample --samples designs at 400 steps, write),
timed end to end and from its summary.json. Upstream: PXDesign's own sampler loop
(pxdesign/model/generator.py sample_diffusion, chunks of 10, PXDesign's defaults) over Protenix's
DiffusionModule in eager float32 (autocast off, as PXDesign runs the sampler), on the same
features and embedding (read back from `pxdiff featurize`), timed for --upstream-samples designs
and scaled to --samples (each chunk of 10 is an independent run of the same cost). Upstream's
featurizer and embedder need its Python stack, absent on the GPU machine: they are timed on the
CPU by bench/bench_design_cpu.py and added in docs/benchmarks.md."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "tests", "ref")]

import torch  # noqa: E402

import pxembed_ref  # noqa: E402
import pxfixtures as fx  # noqa: E402

TASK = os.path.join(ROOT, "tests", "data", "tasks", "PDL1_quick_start.yaml")


def sh(cmd, **kw):
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, **kw)
    if r.returncode:
        print(r.stdout, r.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return time.time() - t0, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--upstream-samples", type=int, default=10)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--out", default=tempfile.mkdtemp())
    a = ap.parse_args()
    exe = os.path.join(ROOT, "build", "pxdiff")
    tmp = tempfile.mkdtemp()
    ckpt = os.path.join(tmp, "pxdesign_v0.1.0.pt")
    dm_state = fx.random_state_dict(None, seed=0)
    em_state = pxembed_ref.random_state_dict(None, seed=1)
    model = {"module.diffusion_module." + k: v for k, v in dm_state.items()}
    model.update({"module." + k: v for k, v in em_state.items()})
    torch.save({"model": model}, ckpt)
    print(torch.cuda.get_device_name(0), "torch", torch.__version__, flush=True)

    # ---- pxdiff: the whole run
    out = os.path.join(a.out, "design")
    wall, r = sh([exe, "design", "-i", TASK, "-o", out, "--checkpoint", ckpt, "--N_sample", str(a.samples),
                  "--N_step", str(a.steps), "--seeds", "1", "--device", "cuda"])
    print(r.stdout.strip())
    summ = json.load(open(os.path.join(out, "PDL1_quick_start", "seed_1", "summary.json")))
    t = summ["timings"]
    print(f"pxdiff design: {a.samples} designs x {a.steps} steps: wall {wall:.2f} s (load, featurize, embed, "
          f"sample, write); featurize {t['featurize_s']:.4f} s, embed {t['embed_s']:.4f} s, design cache "
          f"{t['design_s']:.3f} s, sampling {t['sampling_s']:.2f} s = {t['s_per_design']:.4f} s/design", flush=True)

    # ---- the same features and embedding for upstream
    bundle = os.path.join(tmp, "qs.bundle")
    sh([exe, "featurize", "-i", TASK, "--checkpoint", ckpt, "--out", bundle, "--seed", "1"])
    import pxdiff.bundle
    b = pxdiff.bundle.read(bundle)
    feats = {k: v.cuda() for k, v in b["input_feature_dict"].items()}
    s_inputs, z = b["s_inputs"].float().cuda(), b["z_trunk"].float().cuda()
    T = s_inputs.shape[0]
    s_trunk = torch.zeros(T, 384, device="cuda")

    import check_pxref
    UDM = check_pxref._import_upstream()
    if UDM is None:
        print("upstream: PXDIFF_UPSTREAM_PROTENIX not set; skipped")
        return
    sys.path.append(os.environ["PXDIFF_UPSTREAM_PROTENIX"])
    from pxdesign.model.generator import sample_diffusion
    from protenix.model.generator import InferenceNoiseScheduler
    ref = fx.random_model(None, seed=0)
    ref.load_state_dict(dm_state)
    um = check_pxref.upstream_like(ref).cuda().eval()
    sched = InferenceNoiseScheduler()(N_step=a.steps, device=torch.device("cuda"), dtype=torch.bfloat16).float()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    n_up = a.upstream_samples
    with torch.no_grad():
        # warm-up: a few steps
        sample_diffusion(um, feats, s_inputs, s_trunk, z, sched[:4], N_sample=min(10, n_up), gamma0=1.0,
                         gamma_min=0.01, noise_scale_lambda=1.003,
                         step_scale_eta={"type": "const", "min": 2.5, "max": 2.5}, diffusion_chunk_size=10)
        torch.cuda.synchronize()
        t0 = time.time()
        x = sample_diffusion(um, feats, s_inputs, s_trunk, z, sched, N_sample=n_up, gamma0=1.0, gamma_min=0.01,
                             noise_scale_lambda=1.003, step_scale_eta={"type": "const", "min": 2.5, "max": 2.5},
                             diffusion_chunk_size=10)
        torch.cuda.synchronize()
        up = time.time() - t0
    assert torch.isfinite(x).all()
    per = up / n_up
    print(f"upstream sample_diffusion (eager fp32): {n_up} designs x {a.steps} steps in {up:.2f} s = {per:.3f} s/design; "
          f"{a.samples} designs: {per * a.samples:.1f} s", flush=True)
    print(f"sampling ratio: pxdiff {t['s_per_design']:.4f} vs upstream {per:.3f} s/design = 1/{per / t['s_per_design']:.1f}")
    print(f"whole run (pxdiff wall incl. load and writing) vs upstream sampling alone for {a.samples}: "
          f"{wall:.1f} s vs {per * a.samples:.1f} s = 1/{per * a.samples / wall:.1f}")
    print(json.dumps({"pxdiff_wall_s": wall, "pxdiff_timings": t, "upstream_s_per_design": per,
                      "samples": a.samples, "steps": a.steps}))


if __name__ == "__main__":
    main()
