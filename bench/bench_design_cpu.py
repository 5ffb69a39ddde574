"""Featurization + condition embedding of a task: upstream PXDesign vs `pxdiff featurize`, same
machine, same run (docs/benchmarks.md, "pxdiff design").

Upstream runs in this process through the reference harness (upstream code fetched into the
git-ignored third_party/fullport, never committed; its README is docs/benchmarks.md's
"Reproducing"): its YAML -> JSON -> bioassembly -> InferenceDataset path (featurize) and its
DesignConditionEmbedder in float32 with random weights of the released shapes (embed), each
timed after a warm-up, median of --reps. pxdiff: `pxdiff bench --task` on the same task with the
same embedder weights, the same protocol (first call, then the median of --reps more in the
same process). Both also cold: a fresh upstream process doing the task once (interpreter,
imports, featurize, embed: what `pxdesign infer` spends before its first step) against the
whole `pxdiff featurize` command (start, load the checkpoint, featurize, embed, write the
bundle).

    cd <repo> && FULLPORT=$PWD/third_party/fullport third_party/fullport/venv/bin/python \\
        bench/bench_design_cpu.py [--task tests/data/tasks/PDL1_quick_start.yaml] [--reps 5]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FP = os.environ.get("FULLPORT", os.path.join(ROOT, "third_party", "fullport"))
os.environ.setdefault("PROTENIX_DATA_ROOT_DIR", os.path.join(FP, "ccd"))
sys.path[:0] = [os.path.join(FP, "src"), os.path.join(ROOT, "tests", "ref")]

import torch  # noqa: E402

import pxembed_ref  # noqa: E402
import pxfixtures  # noqa: E402


def upstream(task, reps, state=None):
    import json
    import numpy as np
    from pxdesign.utils.inputs import process_input_file
    from pxdesign.utils.infer import convert_to_bioassembly_dict
    from pxdesign.data.infer_data_pipeline import InferenceDataset
    from ml_collections.config_dict import ConfigDict  # noqa: F401
    from pxdesign.configs.configs_base import configs as base
    from protenix.config import parse_configs
    from pxdesign.model.embedders import DesignConditionEmbedder

    times_f, times_e = [], []
    feats = None
    for r in range(reps + 1):
        out = tempfile.mkdtemp()
        t0 = time.perf_counter()
        jp = process_input_file(task, out_dir=out)
        tasks = json.load(open(jp))
        for x in tasks:
            convert_to_bioassembly_dict(x, out)
        jp = os.path.join(out, "input_tasks.json")
        json.dump(tasks, open(jp, "w"))
        ds = InferenceDataset(input_json_path=jp, use_msa=True)
        data, atom_array, err = ds[0]
        assert not err, err
        dt = time.perf_counter() - t0
        if r:
            times_f.append(dt)
        feats = data["input_feature_dict"]
    cfg = parse_configs(configs={**base}, arg_str="", fill_required_with_null=True)
    m = DesignConditionEmbedder(cfg).eval()
    if state is None:
        state = pxembed_ref.random_state_dict(None, seed=3)
    m.load_state_dict({k[len(pxembed_ref.PREFIX):]: v for k, v in state.items()}, strict=True)
    with torch.no_grad():
        for r in range(reps + 1):
            t0 = time.perf_counter()
            m(dict(feats), chunk_size=cfg.infer_setting.chunk_size)
            dt = time.perf_counter() - t0
            if r:
                times_e.append(dt)
    med = lambda v: statistics.median(v) if v else None  # noqa: E731 (reps 0: one cold pass)
    return med(times_f), med(times_e), state, feats


def pxdiff_run(task, state, reps):
    tmp = tempfile.mkdtemp()
    ckpt = os.path.join(tmp, "w.pt")
    # The embedder at the released shapes; a small diffusion module with the widths it must
    # agree with (featurize loads it only to check them).
    dims = dict(pxfixtures.SMALL_DIMS, c_s_inputs=449, c_z=128)
    model = {"diffusion_module." + k: v for k, v in pxfixtures.random_state_dict(dims, seed=1).items()}
    model.update(state)
    torch.save({"model": model}, ckpt)
    exe = os.path.join(ROOT, "build", "pxdiff")
    wall = []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        subprocess.run([exe, "featurize", "-i", task, "--checkpoint", ckpt, "--out", os.path.join(tmp, "b"),
                        "--dtype", "fp32"], capture_output=True, text=True, cwd=ROOT, check=True)
        if r:
            wall.append(time.perf_counter() - t0)
    p = subprocess.run([exe, "bench", "--task", task, "--checkpoint", ckpt, "--dtype", "fp32", "--reps", str(reps)],
                       capture_output=True, text=True, cwd=ROOT, check=True)
    med = {}
    for stage in ("parse", "featurize", "embed"):
        m = re.search(r"^\s+" + stage + r"\s+([0-9.]+)\s+([0-9.]+)$", p.stdout, re.M)
        med[stage] = float(m.group(2))
    # Upstream's featurization starts from the files (YAML -> JSON -> parse the structure ->
    # features): pxdiff's row is its parse (task file and structure) plus its featurize.
    return med["parse"] + med["featurize"], med["embed"], statistics.median(wall), ckpt


def cold_child(task, state_path):
    """One upstream pass in this fresh process (the parent times the whole process)."""
    upstream(task, 0, state=torch.load(state_path))


def upstream_cold(task, state, reps):
    tmp = tempfile.mkdtemp()
    sp = os.path.join(tmp, "state.pt")
    torch.save(state, sp)
    wall = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, os.path.abspath(__file__), "--task", task, "--cold-child", sp],
                       check=True, cwd=ROOT, capture_output=True)
        wall.append(time.perf_counter() - t0)
    return statistics.median(wall)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default=os.path.join(ROOT, "tests", "data", "tasks", "PDL1_quick_start.yaml"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cold-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.chdir(ROOT)  # the task's structure path is relative to the current directory
    torch.set_num_threads(os.cpu_count())
    if a.cold_child:
        cold_child(a.task, a.cold_child)
        return
    uf, ue, state, feats = upstream(a.task, a.reps)
    pf, pe, pw, _ = pxdiff_run(a.task, state, a.reps)
    uc = upstream_cold(a.task, state, max(1, a.reps // 2))
    T, N = feats["token_index"].shape[0], feats["atom_to_token_idx"].shape[0]
    print(f"task {os.path.basename(a.task)}: {T} tokens, {N} atoms; {os.cpu_count()} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), pxdiff {os.environ.get('PXDIFF_NUM_THREADS', 'default')} threads; "
          f"warm rows: median of {a.reps} after a warm-up, same protocol both sides")
    print("| stage | upstream (s) | pxdiff (s) | ratio |")
    print("|---|---|---|---|")
    print(f"| featurize (from the files: parse included on both sides) | {uf:.3f} | {pf:.4f} | 1/{uf / pf:.0f} |")
    print(f"| condition embedder (fp32) | {ue:.3f} | {pe:.4f} | 1/{ue / pe:.0f} |")
    print(f"| both | {uf + ue:.3f} | {pf + pe:.4f} | 1/{(uf + ue) / (pf + pe):.0f} |")
    print(f"| cold: a fresh process's first design (upstream: interpreter, imports, featurize, embed; pxdiff: the whole "
          f"`pxdiff featurize` command, load and bundle included) | {uc:.3f} | {pw:.3f} | 1/{uc / pw:.0f} |")


if __name__ == "__main__":
    main()
