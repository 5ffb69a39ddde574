"""Featurization + condition embedding of a task: upstream PXDesign vs `pxdiff featurize`, same
machine, same run (docs/benchmarks.md, "pxdiff design").

Upstream runs in this process through the reference harness (upstream code fetched into the
git-ignored third_party/fullport, never committed; its README is docs/benchmarks.md's
"Reproducing"): its YAML -> JSON -> bioassembly -> InferenceDataset path (featurize) and its
DesignConditionEmbedder in float32 with random weights of the released shapes (embed), each
timed after a warm-up, median of --reps. pxdiff: `pxdiff featurize` on the same task with the
same embedder weights, whose own featurize/embed timings (printed) exclude loading; the whole
command's wall time is reported too.

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


def upstream(task, reps):
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
    state = pxembed_ref.random_state_dict(None, seed=3)
    m.load_state_dict({k[len(pxembed_ref.PREFIX):]: v for k, v in state.items()}, strict=True)
    with torch.no_grad():
        for r in range(reps + 1):
            t0 = time.perf_counter()
            m(dict(feats), chunk_size=cfg.infer_setting.chunk_size)
            dt = time.perf_counter() - t0
            if r:
                times_e.append(dt)
    return statistics.median(times_f), statistics.median(times_e), state, feats


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
    feat, emb, wall = [], [], []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        p = subprocess.run([exe, "featurize", "-i", task, "--checkpoint", ckpt, "--out", os.path.join(tmp, "b"),
                            "--dtype", "fp32"], capture_output=True, text=True, cwd=ROOT, check=True)
        w = time.perf_counter() - t0
        m = re.search(r"featurize ([0-9.]+) s, embed ([0-9.]+) s", p.stderr)
        if r:
            feat.append(float(m.group(1)))
            emb.append(float(m.group(2)))
            wall.append(w)
    return statistics.median(feat), statistics.median(emb), statistics.median(wall)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default=os.path.join(ROOT, "tests", "data", "tasks", "PDL1_quick_start.yaml"))
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    os.chdir(ROOT)  # the task's structure path is relative to the current directory
    torch.set_num_threads(os.cpu_count())
    uf, ue, state, feats = upstream(a.task, a.reps)
    pf, pe, pw = pxdiff_run(a.task, state, a.reps)
    T, N = feats["token_index"].shape[0], feats["atom_to_token_idx"].shape[0]
    print(f"task {os.path.basename(a.task)}: {T} tokens, {N} atoms; {os.cpu_count()} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); median of {a.reps}")
    print("| stage | upstream (s) | pxdiff (s) | ratio |")
    print("|---|---|---|---|")
    print(f"| featurize | {uf:.3f} | {pf:.4f} | 1/{uf / pf:.0f} |")
    print(f"| condition embedder (fp32) | {ue:.3f} | {pe:.4f} | 1/{ue / pe:.0f} |")
    print(f"| both | {uf + ue:.3f} | {pf + pe:.4f} | 1/{(uf + ue) / (pf + pe):.0f} |")
    print(f"| `pxdiff featurize` whole command (load, featurize, embed, write the bundle) | | {pw:.3f} | |")


if __name__ == "__main__":
    main()
