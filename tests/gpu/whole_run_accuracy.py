#!/usr/bin/env python3
"""Accuracy of a whole sampling run, per precision (issue 13), on a GPU machine.

    PXDIFF_UPSTREAM_PROTENIX=<dir holding protenix/ and pxdesign/> \\
    PYTHONPATH=python:tests/ref PXDIFF_LIB=$PWD/build/libpxdiff.so \\
    python3 tests/gpu/whole_run_accuracy.py [--sizes 100+50,250+80] [--steps 400] [--json out.json]

CPU smoke test (tiny size, few steps; Debian's torch 1.13 is enough):

    PXDIFF_UPSTREAM_PROTENIX=third_party/fullport/src PYTHONPATH=python:tests/ref \\
    PXDIFF_LIB=$PWD/build/libpxdiff.so build/venv-test/bin/python \\
    tests/gpu/whole_run_accuracy.py --device cpu --sizes 20+5 --steps 3

A call's relative error says little about 400 Euler steps, each feeding the next. This runs
PXDesign's own sampling loop (pxdesign.model.generator.sample_diffusion, upstream's code, read
from $PXDIFF_UPSTREAM_PROTENIX, never committed) with PXDesign's defaults (gamma0 1.0,
gamma_min 0.01, lambda 1.003, eta const 2.5, bfloat16 noise schedule, one chunk of 10
samples), once with upstream Protenix's DiffusionModule in eager fp32 (TF32 off) as the
denoiser -- the reference -- and once per pxdiff precision (fp32, tf32, fp16, bf16) through
the Python module (--via dropin: through the drop-in, AcceleratedDiffusionModule), re-seeding torch and numpy before each run so the loop draws the same
noise, rotations and translations. Weights: random, of the released shapes
(pxfixtures.random_model); features: synthetic (pxfixtures.random_features), PXDesign-like
(s_trunk zero, s_inputs rounded to bfloat16 as in the default run). The default sizes are
150 tokens / 1000 atoms and 330 tokens / 2320 atoms.

Metric: per sample, the per-atom RMS distance (Angstrom) between its final coordinates and
the reference's; the mean over samples is gated. Scale: the RMS distance between two
different samples of the reference (mean over consecutive pairs). Gates: the backend's
default precision (fp16 on CUDA) <= 0.05 A, fp32 <= 0.001 A, bf16 on the CPU <= 0.05 A; tf32 and
bf16 on CUDA are reported.
Non-finite coordinates never pass.

On CUDA it also keeps the per-call bound: tests/gpu/check_cuda.py's precision sweep (tf32,
fp16, bf16 against fp32 at every t_hat of the 400-step schedule, first to last; <= 2e-3,
bf16 <= 1e-2) at the same sizes (--skip-per-call to leave it out).

Prints PASS/FAIL per row, writes JSON to --json, prints a markdown table last, exits
nonzero on a FAIL. Budget: about 2-3 minutes on an H200 (the upstream reference dominates:
~125 ms per call at 330 tokens, 400 calls)."""
import argparse
import importlib
import json
import math
import os
import sys
import time
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for _p in (os.path.join(ROOT, "python"), os.path.join(ROOT, "tests", "ref"), HERE):
    if _p not in sys.path:
        sys.path.insert(1, _p)

import pxdiff  # noqa: E402
import pxfixtures as fx  # noqa: E402
import pxref  # noqa: E402

FAIL = []
GATES = {"fp32": 1e-3, "default": 0.05}  # Angstrom; "default": the backend's default precision

# PXDesign's defaults (pxdesign infer / pipeline; docs: SPEC "Defaults").
GAMMA0, GAMMA_MIN, LAMBDA, ETA = 1.0, 0.01, 1.003, {"type": "const", "min": 2.5, "max": 2.5}


# ------------------------------------------------------------------ upstream --
class _Rotation:
    """Stand-in for scipy's Rotation where scipy is not installed: uniformly random
    rotations (normalised 4-d Gaussian -> unit quaternion) drawn from numpy's global
    generator, as scipy's Rotation.random does. Reference and pxdiff runs both use it, and
    the global generator is re-seeded before each run, so they see the same rotations."""

    def __init__(self, m):
        self._m = m

    @classmethod
    def random(cls, num=None, random_state=None):
        n = 1 if num is None else int(num)
        q = np.random.normal(size=(n, 4))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        x, y, z, w = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
        m = np.empty((n, 3, 3))
        m[:, 0, 0] = 1 - 2 * (y * y + z * z)
        m[:, 0, 1] = 2 * (x * y - z * w)
        m[:, 0, 2] = 2 * (x * z + y * w)
        m[:, 1, 0] = 2 * (x * y + z * w)
        m[:, 1, 1] = 1 - 2 * (x * x + z * z)
        m[:, 1, 2] = 2 * (y * z - x * w)
        m[:, 2, 0] = 2 * (x * z - y * w)
        m[:, 2, 1] = 2 * (y * z + x * w)
        m[:, 2, 2] = 1 - 2 * (x * x + y * y)
        return cls(m if num is not None else m[0])

    def as_matrix(self):
        return self._m


def _stub_missing_modules():
    """Modules upstream imports that the diffusion path does not use (or, for scipy's
    Rotation, uses only through Rotation.random): stubbed when not installed, as
    tests/ref/check_pxref.py::_import_upstream does."""
    try:
        importlib.import_module("scipy.spatial.transform")
        importlib.import_module("scipy.stats")
        have_scipy = True
    except Exception:  # not installed, or installed against another numpy
        have_scipy = False
    if not have_scipy:
        scipy = types.ModuleType("scipy")
        spatial = types.ModuleType("scipy.spatial")
        transform = types.ModuleType("scipy.spatial.transform")
        stats = types.ModuleType("scipy.stats")
        transform.Rotation = _Rotation

        class _TruncNorm:  # parameter initialisers only; never called here
            def std(self, *a, **k):
                return 1.0

            def rvs(self, *a, size=1, **k):
                return np.zeros(size)

        stats.truncnorm = _TruncNorm()
        scipy.spatial, spatial.transform, scipy.stats = spatial, transform, stats
        sys.modules.update({"scipy": scipy, "scipy.spatial": spatial, "scipy.spatial.transform": transform,
                            "scipy.stats": stats})
    try:
        importlib.import_module("optree")
    except ImportError:
        sys.modules["optree"] = types.ModuleType("optree")
    return have_scipy


def import_upstream():
    """(Protenix's DiffusionModule class, PXDesign's sample_diffusion) from
    $PXDIFF_UPSTREAM_PROTENIX (a directory holding both the protenix/ and pxdesign/
    packages: Protenix tag v0.5.0+pxd and PXDesign)."""
    root = os.environ.get("PXDIFF_UPSTREAM_PROTENIX")
    if not root:
        sys.exit("PXDIFF_UPSTREAM_PROTENIX is not set: it must name a directory holding upstream's "
                 "protenix/ and pxdesign/ packages (e.g. third_party/fullport/src)")
    for pkg in ("protenix", "pxdesign"):
        if not os.path.isdir(os.path.join(root, pkg)):
            sys.exit(f"$PXDIFF_UPSTREAM_PROTENIX={root} has no {pkg}/ package")
    have_scipy = _stub_missing_modules()
    root = os.path.abspath(root)
    if root not in sys.path:
        sys.path.append(root)
    from protenix.model.modules.diffusion import DiffusionModule as UDM
    from pxdesign.model.generator import sample_diffusion
    return UDM, sample_diffusion, have_scipy


def upstream_module(UDM, model):
    """Upstream's DiffusionModule with the dims and weights of a pxref model (strict load)."""
    d = model.dims
    um = UDM(sigma_data=d["sigma_data"], c_atom=d["c_atom"], c_atompair=d["c_atompair"], c_token=d["c_token"],
             c_s=d["c_s"], c_z=d["c_z"], c_s_inputs=d["c_s_inputs"],
             atom_encoder={"n_blocks": d["atom_enc_blocks"], "n_heads": d["atom_heads"]},
             transformer={"n_blocks": d["n_blocks"], "n_heads": d["n_heads"]},
             atom_decoder={"n_blocks": d["atom_dec_blocks"], "n_heads": d["atom_heads"]})
    um.load_state_dict(model.state_dict(), strict=True)
    return um.eval()


# --------------------------------------------------------------------- runs --
def features(n_target, n_binder, seed, device):
    """PXDesign-like synthetic inputs: 8 atoms per target token, 4 per binder token (a
    backbone), three chains, s_trunk zero, s_inputs rounded to bfloat16 (the default run's
    embedder runs under autocast); everything on `device`."""
    inp = fx.random_features(n_token=n_target + n_binder, atoms_per_token=[8] * n_target + [4] * n_binder,
                             n_chains=3, seed=seed, s_trunk_zero=True)
    feats = {k: v.to(device) for k, v in inp.feats.items()}
    s_inputs = inp.s_inputs.to(torch.bfloat16).to(torch.float32).to(device)
    return feats, s_inputs, inp.s_trunk.to(device), inp.z_trunk.to(device)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def run_loop(sample_diffusion, denoiser, inputs, schedule, n_sample, seed, device):
    """One chunk of PXDesign's loop from a fresh seed; returns (coords [S, N, 3] on the CPU,
    float64), seconds)."""
    feats, s_inputs, s_trunk, z_trunk = inputs
    torch.manual_seed(seed)  # CPU and every CUDA device
    np.random.seed(seed)     # scipy's Rotation.random draws from numpy's global generator
    sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        x = sample_diffusion(denoise_net=denoiser, input_feature_dict=feats, s_inputs=s_inputs,
                             s_trunk=s_trunk, z_trunk=z_trunk, noise_schedule=schedule, N_sample=n_sample,
                             gamma0=GAMMA0, gamma_min=GAMMA_MIN, noise_scale_lambda=LAMBDA,
                             step_scale_eta=ETA, diffusion_chunk_size=None, inplace_safe=False,
                             attn_chunk_size=None)
    sync(device)
    return x.detach().to("cpu", torch.float64), time.perf_counter() - t0


def rms_per_sample(a, b):
    """Per-atom RMS distance of each sample (Angstrom); inf where either is not finite."""
    d = ((a - b) ** 2).sum(-1).mean(-1).sqrt()
    bad = ~(torch.isfinite(a).flatten(1).all(1) & torch.isfinite(b).flatten(1).all(1))
    d[bad] = math.inf
    return d


def pxdiff_engine(model, device, precision):
    dm = pxdiff.DiffusionModule.from_torch(model)
    dm.set_backend(device, None if precision == "default" else precision)
    return dm


def default_precision(model, device):
    return pxdiff_engine(model, device, "default").precision


def gate_for(precision, default_name):
    """The tightest gate that applies (fp32 keeps its own when it is the default, on the CPU)."""
    gates = [GATES[k] for k in (precision, "default" if precision == default_name else None) if k in GATES]
    return min(gates) if gates else None


def per_call(model, sizes, every):
    """tests/gpu/check_cuda.py's sweep (tf32/fp16/bf16 vs fp32 at every `every`-th t_hat of
    the 400-step schedule); its bound breaks land in check_cuda.FAIL."""
    import check_cuda
    out = {}
    for nt, nb in sizes:
        out[f"{nt}+{nb}"] = check_cuda.precision_policy(model, nt, nb, 10, every=every)
    FAIL.extend("per-call: " + f for f in check_cuda.FAIL)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--sizes", default="100+50,250+80", help="target+binder tokens, comma-separated")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--samples", type=int, default=10, help="N_sample (one chunk)")
    ap.add_argument("--precisions", default=None,
                    help="pxdiff precisions (default: fp32,tf32,fp16,bf16 on cuda, fp32 on cpu)")
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--via", default="module", choices=("module", "dropin"),
                    help="pxdiff.DiffusionModule as the denoiser, or the drop-in (AcceleratedDiffusionModule "
                         "around upstream's module, as pxdiff.enable_acceleration installs it)")
    ap.add_argument("--skip-per-call", action="store_true", help="leave out check_cuda's per-call sweep")
    ap.add_argument("--per-call-every", type=int, default=1, help="per-call sweep: every k-th noise level")
    ap.add_argument("--gate-default", type=float, default=GATES["default"],
                    help="gate (A) of the backend's default precision")
    ap.add_argument("--gate-fp32", type=float, default=GATES["fp32"], help="gate (A) of fp32")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    GATES.update(default=args.gate_default, fp32=args.gate_fp32)
    device = args.device
    if device == "cpu":  # the CPU's bf16 (AVX512_BF16) is held to the default precision's gate
        GATES["bf16"] = args.gate_default
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch (use --device cpu for the smoke test)")
    sizes = [tuple(int(v) for v in s.split("+")) for s in args.sizes.split(",")]
    precisions = (args.precisions or ("fp32,tf32,fp16,bf16" if device == "cuda" else "fp32")).split(",")
    if device == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))

    # The reference in true float32: no TF32 anywhere (also the loop's own arithmetic).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if hasattr(torch, "set_float32_matmul_precision"):
        torch.set_float32_matmul_precision("highest")

    UDM, sample_diffusion, have_scipy = import_upstream()
    card = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    print(f"device: {card} | torch {torch.__version__} | pxdiff {pxdiff.version()} | "
          f"scipy {'real' if have_scipy else 'stand-in Rotation'} | {args.steps} steps, "
          f"{args.samples} samples, seed {args.seed}", flush=True)

    model = fx.random_model(None, seed=0).eval()
    um = upstream_module(UDM, model).to(device)
    default_name = default_precision(model, device)
    print(f"pxdiff default precision on {device}: {default_name}", flush=True)
    schedule = pxref.noise_schedule(args.steps, "bfloat16").to(device)

    report = {"via": args.via, "device": card, "torch": torch.__version__, "pxdiff": pxdiff.version(), "steps": args.steps,
              "samples": args.samples, "seed": args.seed, "default_precision": default_name,
              "scipy": "real" if have_scipy else "stand-in",
              "gates_angstrom": {p: gate_for(p, default_name) for p in precisions}, "sizes": []}
    for nt, nb in sizes:
        inputs = features(nt, nb, seed=7 + nt, device=device)
        N = inputs[0]["ref_pos"].shape[0]
        label = f"{nt}+{nb}"
        print(f"== {label} tokens ({nt + nb}), {N} atoms", flush=True)
        ref, ref_s = run_loop(sample_diffusion, um, inputs, schedule, args.samples, args.seed, device)
        if not torch.isfinite(ref).all():
            FAIL.append(f"{label}: the upstream reference run is not finite")
        pairs = [rms_per_sample(ref[i:i + 1], ref[i + 1:i + 2]).item() for i in range(ref.shape[0] - 1)]
        scale = float(np.mean(pairs)) if pairs else float("nan")
        print(f"  upstream eager fp32: {ref_s:.1f} s; RMS between two of its samples {scale:.2f} A", flush=True)
        entry = {"tokens": nt + nb, "target_binder": label, "atoms": N, "reference_s": ref_s,
                 "scale_rms_between_samples": scale, "rows": {}}
        for p in precisions:
            if args.via == "dropin":
                # As pxdiff.enable_acceleration installs it: the original module kept for
                # fallback, which would make the row agree with the reference trivially.
                net = pxdiff.accel.AcceleratedDiffusionModule(um, backend=device,
                                                              precision=None if p == "default" else p)
                dm = net.pxdiff_engine
            else:
                net = dm = pxdiff_engine(model, device, p)
            got, s = run_loop(sample_diffusion, net, inputs, schedule, args.samples, args.seed, device)
            if args.via == "dropin" and (not net.active or net.pxdiff_stats.calls != args.steps):
                FAIL.append(f"{p} at {label}: the drop-in fell back to PyTorch ({net.pxdiff_failed}) or "
                            f"made {net.pxdiff_stats.calls} engine calls, not {args.steps}")
            d = rms_per_sample(got, ref)
            mean, worst = d.mean().item(), d.max().item()
            gate = gate_for(dm.precision, default_name)
            ok = gate is None or (math.isfinite(mean) and mean <= gate)
            name = dm.precision + (" (default)" if dm.precision == default_name else "")
            verdict = "info" if gate is None else ("PASS" if ok else "FAIL")
            print(f"  {verdict} {name} {label}: mean RMS to upstream fp32 {mean:.4g} A (max {worst:.4g})"
                  + (f", gate {gate:g} A" if gate is not None else "") + f"; {s:.1f} s", flush=True)
            if not ok:
                FAIL.append(f"{name} at {label}: {mean:.4g} A > {gate:g} A")
            entry["rows"][dm.precision] = {"default": dm.precision == default_name, "backend": dm.backend,
                                           "rms_mean": mean, "rms_max": worst, "per_sample": d.tolist(),
                                           "gate": gate, "pass": ok if gate is not None else None,
                                           "seconds": s, "via": args.via}
            del dm, net
        report["sizes"].append(entry)
    del um
    if device == "cuda" and not args.skip_per_call:
        print("== per call (tests/gpu/check_cuda.py precision sweep)", flush=True)
        report["per_call_rel_err_vs_fp32"] = per_call(model, sizes, args.per_call_every)
    report["fails"] = FAIL
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, args.json)

    if FAIL:
        print("FAILED: " + "; ".join(FAIL))
    else:
        print("all whole-run gates passed")
    print(f"\nWhole {args.steps}-step runs of PXDesign's sample_diffusion, {args.samples} samples, {card}: "
          "mean over samples of the per-atom RMS distance of the final coordinates to upstream eager fp32's\n")
    print("| tokens | atoms | precision | RMS to upstream fp32 (A) | worst sample (A) | gate (A) | result "
          "| between two designs (A) |")
    print("|---|---|---|---|---|---|---|---|")
    for e in report["sizes"]:
        for p, r in e["rows"].items():
            print(f"| {e['tokens']} | {e['atoms']} | {p}{' (default)' if r['default'] else ''} | "
                  f"{r['rms_mean']:.4g} | {r['rms_max']:.4g} | {'-' if r['gate'] is None else r['gate']} | "
                  f"{'-' if r['pass'] is None else ('PASS' if r['pass'] else 'FAIL')} | "
                  f"{e['scale_rms_between_samples']:.3g} |")
    sys.exit(1 if FAIL else 0)


if __name__ == "__main__":
    main()
