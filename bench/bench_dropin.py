"""The drop-in's speed inside a PyTorch process, as PXDesign runs it: torch imported, its
threads never set (after `import torch` OpenMP may be at 1 thread), the diffusion module
replaced by pxdiff.enable_acceleration, one denoise call per sampler step.

    # upstream Protenix's DiffusionModule (the real one), in the harness's venv:
    PYTHONPATH=python:third_party/fullport/src third_party/fullport/venv/bin/python \
        bench/bench_dropin.py [--sizes 80:560:2,196:1250:2] [--reps 5] [--exe build/pxdiff]
    # without upstream's code: the project's PyTorch reference (tests/ref/pxref.py) instead
    PYTHONPATH=python build/venv-test/bin/python bench/bench_dropin.py

Per size (TOKENS:ATOMS:SAMPLES): upstream's module and the accelerated one on the same random
weights (released dims) and inputs; one warm-up call each (the engine builds its design cache
there, as in a sampling loop), then the median of --reps calls; the engine's relative
difference from upstream; and `pxdiff bench` at the same size in a subprocess, for the
in-process overhead. Prints the thread settings it ran with and a markdown table."""
import argparse
import ctypes
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "tests", "ref")]

import torch  # noqa: E402  (threads deliberately left as `import torch` sets them)

import pxdiff  # noqa: E402
import pxfixtures as fx  # noqa: E402


def upstream_module(model):
    """Protenix's own DiffusionModule with the weights of `model`, when importable."""
    try:
        from protenix.model.modules.diffusion import DiffusionModule as UDM
    except ImportError:
        return None, "the project's PyTorch reference (tests/ref/pxref.py)"
    d = model.dims
    um = UDM(sigma_data=d["sigma_data"], c_atom=d["c_atom"], c_atompair=d["c_atompair"],
             c_token=d["c_token"], c_s=d["c_s"], c_z=d["c_z"], c_s_inputs=d["c_s_inputs"],
             atom_encoder={"n_blocks": d["atom_enc_blocks"], "n_heads": d["atom_heads"]},
             transformer={"n_blocks": d["n_blocks"], "n_heads": d["n_heads"]},
             atom_decoder={"n_blocks": d["atom_dec_blocks"], "n_heads": d["atom_heads"]})
    um.load_state_dict(model.state_dict(), strict=True)
    return um.eval(), "upstream Protenix's DiffusionModule"


def atoms_list(n_token, n_atom):
    return [n_atom // n_token + (1 if t < n_atom % n_token else 0) for t in range(n_token)]


def time_calls(fn, reps):
    fn()  # warm-up (the engine's design cache)
    ts = []
    for _ in range(reps):
        a = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - a)
    return 1e3 * statistics.median(ts)


def cli_bench_ms(exe, ckpt, n_token, n_atom, n_sample, reps):
    cmd = [exe, "bench", "--checkpoint", ckpt, "--tokens", str(n_token), "--atoms", str(n_atom),
           "--samples", str(n_sample), "--reps", str(reps), "--device", "cpu"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"median ([0-9.]+) ms", out)
    return float(m.group(1)) if m else None


def host_threads():
    out = {"torch": torch.get_num_threads()}
    for lib, fn, key in (("libgomp.so.1", "omp_get_max_threads", "OpenMP"),
                         ("libopenblas.so.0", "openblas_get_num_threads", "OpenBLAS")):
        try:
            out[key] = int(getattr(ctypes.CDLL(lib), fn)())
        except (OSError, AttributeError):
            out[key] = None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="80:560:2,196:1250:2", help="TOKENS:ATOMS:SAMPLES,...")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--exe", default=os.path.join(ROOT, "build", "pxdiff"),
                    help="the pxdiff CLI for `pxdiff bench` (skipped when absent)")
    a = ap.parse_args()
    before = host_threads()
    model = fx.random_model(None, seed=0).eval()
    up, up_name = upstream_module(model)
    if up is None:
        up = model
    holder = torch.nn.Module()
    holder.diffusion_module = up
    acc = pxdiff.enable_acceleration(holder, verbose=False)
    if acc is None:
        sys.exit("pxdiff: acceleration could not be enabled (see the warning above)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "w.pt")
        fx.save_released_layout(ckpt, model.state_dict())
        for spec in a.sizes.split(","):
            T, N, S = (int(v) for v in spec.split(":"))
            inp = fx.random_features(n_token=T, atoms_per_token=atoms_list(T, N), n_chains=2, seed=1)
            x = fx.random_coords(S, N, scale=20.0, seed=2)
            t = torch.full((S,), 12.5)
            args = (x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
            with torch.no_grad():
                ref = up(*args)
                out = acc(*args)
                err = ((out.double() - ref.double()).norm() / ref.double().norm()).item()
                t_up = time_calls(lambda: up(*args), a.reps)
                t_acc = time_calls(lambda: acc(*args), a.reps)
            t_cli = cli_bench_ms(a.exe, ckpt, T, N, S, a.reps) if os.path.exists(a.exe) else None
            rows.append((T, N, S, t_up, t_acc, t_cli, err))
            print(f"# {spec}: upstream {t_up:.1f} ms, drop-in {t_acc:.1f} ms, pxdiff bench {t_cli} ms, "
                  f"rel. diff {err:.1e}", file=sys.stderr, flush=True)
    after = host_threads()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"upstream: {up_name}; torch {torch.__version__}; engine threads {pxdiff.num_threads()}; "
          f"host threads before {before}, after {after}; load average {load}; "
          f"median of {a.reps} calls after a warm-up\n")
    print("| tokens | atoms | samples | upstream ms/call | drop-in ms/call | drop-in/upstream | "
          "`pxdiff bench` ms/call | drop-in/bench | rel. diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for T, N, S, tu, ta, tc, err in rows:
        tcs = f"{tc:.1f}" if tc else "-"
        rb = f"{ta / tc:.2f}" if tc else "-"
        print(f"| {T} | {N} | {S} | {tu:.1f} | {ta:.1f} | {ta / tu:.2f} | {tcs} | {rb} | {err:.1e} |")


if __name__ == "__main__":
    main()
