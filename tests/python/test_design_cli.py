"""`pxdiff design`, `pxdiff featurize` and `pxdiff demo` end to end (src/cli/cmd_design.c,
cmd_featurize.c, design_run.c, design_output.c).

A small random model (diffusion module and design condition embedder, in the released
checkpoint layout) designs binders for PXDesign's quick-start task (tests/data/tasks) on the
CPU. Checked: PXDesign's output tree; every CIF against the layout upstream's DataDumper
writes (tests/data/output/pdl1_quick_start.cif, made by upstream's own writer) token for
token except the coordinates; the files read by gemmi and biotite; determinism for a seed;
`featurize` + `sample --bundle` giving exactly `design`'s coordinates; resume after an
interrupt giving byte-identical files; refusals that change nothing on disk; bad inputs
failing with one line and no output."""
import filecmp
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

import pxembed_ref
import pxfixtures
from conftest import ROOT, SANITIZED

try:
    import gemmi
except ImportError:  # pragma: no cover
    gemmi = None
try:
    import biotite.structure.io.pdbx as biotite_pdbx
except ImportError:  # pragma: no cover
    biotite_pdbx = None

TASK = os.path.join(ROOT, "tests", "data", "tasks", "PDL1_quick_start.yaml")
UPSTREAM_CIF = os.path.join(ROOT, "tests", "data", "output", "pdl1_quick_start.cif")
SMALL_EMBED = dict(c_atom=32, c_atompair=8, c_token=32, c_s_inputs=pxfixtures.SMALL_DIMS["c_s_inputs"],
                   c_z=pxfixtures.SMALL_DIMS["c_z"], n_blocks=2, n_heads=4)


def _cli():
    lib_path = os.environ.get("PXDIFF_LIB")
    for cand in ([os.path.join(os.path.dirname(lib_path), "pxdiff")] if lib_path else []) + [
            os.path.join(ROOT, "build", "pxdiff")]:
        if os.path.exists(cand):
            return cand
    raise FileNotFoundError("pxdiff CLI not built (make)")


def run(*args, timeout=600, **kw):
    # The task files name their structure relative to the current directory, as PXDesign does.
    r = subprocess.run([_cli(), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Diffusion module (SMALL dims) + condition embedder (small) in the released layout."""
    d = tmp_path_factory.mktemp("ckpt")
    model = {"module.diffusion_module." + k: v for k, v in pxfixtures.random_state_dict(pxfixtures.SMALL_DIMS, seed=5).items()}
    model.update({"module." + k: v for k, v in pxembed_ref.random_state_dict(SMALL_EMBED, seed=6).items()})
    path = d / "pxdesign_v0.1.0.pt"
    torch.save({"model": model}, str(path))
    return path


def tree(d):
    out = []
    for root, dirs, files in os.walk(d):
        for x in dirs + files:
            p = os.path.join(root, x)
            out.append(os.path.relpath(p, d) + ("/" if os.path.isdir(p) else ""))
    return sorted(out)


def design(ckpt, out, *extra, task=TASK):
    return run("design", "-i", task, "-o", out, "--checkpoint", ckpt, "--device", "cpu", *extra)


def tokens(line):
    return line.split()


def atom_rows(path):
    """_atom_site rows as token lists, and the lines outside the atom_site loop."""
    lines = open(path).read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("_atom_site."))
    cols = []
    i = start
    while lines[i].startswith("_atom_site."):
        cols.append(lines[i].strip())
        i += 1
    rows = []
    while i < len(lines) and lines[i] not in ("#", "") and not lines[i].startswith("#"):
        rows.append(lines[i].split())
        i += 1
    return lines[:start], cols, rows, lines[i:]


def coords(path):
    _, cols, rows, _ = atom_rows(path)
    ix = [cols.index("_atom_site.Cartn_" + c) for c in "xyz"]
    return np.array([[float(r[k]) for k in ix] for r in rows], dtype=np.float32)


# ------------------------------------------------------------------ the tree ----

def test_design_tree_and_upstream_layout(ckpt, tmp_path):
    out = tmp_path / "run"
    rc, so, se = design(ckpt, out, "--N_sample", 3, "--N_step", 3, "--seeds", "7,8", "--chunk", 2)
    assert rc == 0, se
    name = "PDL1_quick_start"
    want = ["ERR/", "config.yaml", "input_tasks.json", name + ".json", name + "/"]
    for s in (7, 8):
        base = f"{name}/seed_{s}"
        want += [base + "/", base + "/predictions/", base + "/SUCCESS_FILE", base + "/summary.json"]
        want += [f"{base}/predictions/{name}_sample_{i}.cif" for i in range(3)]
    assert tree(out) == sorted(want)
    assert open(out / name / "seed_7" / "SUCCESS_FILE").read() == '{"prediction": true}'
    # <stem>.json is PXDesign's JSON form of the YAML task (byte-equal to upstream's, per
    # tests/data/tasks/*.expected.json)
    assert open(out / (name + ".json")).read() == open(os.path.join(ROOT, "tests/data/tasks/PDL1_quick_start.expected.json")).read()
    summary = json.load(open(out / name / "seed_8" / "summary.json"))
    assert summary["complete"] and summary["seed"] == 8 and summary["n_tokens"] == 196 and summary["n_atoms"] == 1250
    assert [f["cif"] for f in summary["files"]] == [f"predictions/{name}_sample_{i}.cif" for i in range(3)]
    # Every line as upstream's DataDumper writes it (its own output for this task, committed),
    # except the coordinates, the data-block/entry name (the task name comes from the file stem)
    # and pxdiff's completeness trailer.
    up_head, up_cols, up_rows, up_tail = atom_rows(UPSTREAM_CIF)
    for s in (7, 8):
        for i in range(3):
            p = out / name / f"seed_{s}" / "predictions" / f"{name}_sample_{i}.cif"
            head, cols, rows, tail = atom_rows(p)
            norm = lambda ls: [tokens(l.replace("PDL1_quick_start", name).replace("sample_0", "sample_X"))
                               for l in ls]
            assert norm([l.replace(f"sample_{i}", "sample_0") for l in head]) == norm(up_head)
            assert cols == up_cols
            assert len(rows) == len(up_rows) == 1250
            ix = {cols.index("_atom_site.Cartn_" + c) for c in "xyz"}
            for r, u in zip(rows, up_rows):
                assert [t for k, t in enumerate(r) if k not in ix] == [t for k, t in enumerate(u) if k not in ix]
            assert tail[-1].startswith("# pxdiff-complete run=") and tail[:-1] == up_tail
            assert np.isfinite(coords(p)).all()


@pytest.mark.skipif(gemmi is None or biotite_pdbx is None, reason="needs gemmi and biotite (make test's venv)")
def test_design_files_read_by_gemmi_and_biotite(ckpt, tmp_path):
    out = tmp_path / "run"
    rc, so, se = design(ckpt, out, "--N_sample", 1, "--N_step", 2, "--seeds", "3")
    assert rc == 0, se
    p = str(out / "PDL1_quick_start" / "seed_3" / "predictions" / "PDL1_quick_start_sample_0.cif")
    st = gemmi.read_structure(p)
    chains = {ch.name: ch for ch in st[0]}
    assert sorted(chains) == ["A0", "B0"]
    assert {r.name for r in chains["B0"]} == {"xpb"} and len(chains["B0"]) == 80
    assert sum(len(r) for r in chains["B0"]) == 4 * 80 + 1
    assert chains["A0"][0].name == "ASN"
    arr = biotite_pdbx.get_structure(biotite_pdbx.CIFFile.read(p), model=1)
    assert len(arr) == 1250
    assert set(arr.chain_id) == {"A0", "B0"}
    assert set(arr.element) <= {"C", "N", "O", "S"}
    assert list(arr.atom_name[-5:]) == ["N", "CA", "C", "O", "OXT"]
    np.testing.assert_array_equal(arr.coord.astype(np.float32), coords(p))


# --------------------------------------------------------------- determinism ----

def test_design_seed_determinism_and_featurize_sample_agree(ckpt, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, seed in ((a, 11), (b, 11), (c, 12)):
        rc, so, se = design(ckpt, d, "--N_sample", 2, "--N_step", 3, "--seeds", seed, "--quiet")
        assert rc == 0, se
        assert so == "" and se == ""
    fa = a / "PDL1_quick_start" / "seed_11" / "predictions" / "PDL1_quick_start_sample_1.cif"
    fb = b / "PDL1_quick_start" / "seed_11" / "predictions" / "PDL1_quick_start_sample_1.cif"
    fc = c / "PDL1_quick_start" / "seed_12" / "predictions" / "PDL1_quick_start_sample_1.cif"
    assert open(fa).read() == open(fb).read()
    assert not np.array_equal(coords(fa), coords(fc))
    # featurize (same seed: the same augmented reference positions) + sample = design
    bundle = tmp_path / "qs.bundle"
    rc, so, se = run("featurize", "-i", TASK, "--checkpoint", ckpt, "--out", bundle, "--seed", 11)
    assert rc == 0, se
    rc, so, se = run("sample", "--checkpoint", ckpt, "--bundle", bundle, "--out", tmp_path / "s", "--samples", 2,
                     "--steps", 3, "--seed", 11, "--device", "cpu")
    assert rc == 0, se
    # `sample` prints 3 decimals: design's float32 coordinates, printed so, give its text exactly
    _, cols, rows, _ = atom_rows(tmp_path / "s" / "sample_0001.cif")
    ix = [cols.index("_atom_site.Cartn_" + c) for c in "xyz"]
    assert [[r[k] for k in ix] for r in rows] == [["%.3f" % float(v) for v in xyz] for xyz in coords(fa)]


def test_featurize_bundle_contents(ckpt, tmp_path):
    import pxdiff.bundle
    out = tmp_path / "f.bundle"
    rc, so, se = run("featurize", "-i", TASK, "--checkpoint", ckpt, "--out", out, "--no-augment", "--dtype", "fp32")
    assert rc == 0, se
    b = pxdiff.bundle.read(str(out))
    feats = b["input_feature_dict"]
    # the featurizer's own fixture from upstream (tests/data/featurize/qs.safetensors) holds the
    # same task's features: the bundle must carry them unchanged
    from safetensors.torch import load_file as load_t
    ref = load_t(os.path.join(ROOT, "tests", "data", "featurize", "qs.safetensors"))
    for k in ("asym_id", "residue_index", "entity_id", "token_index", "sym_id", "ref_space_uid", "atom_to_token_idx"):
        assert torch.equal(torch.as_tensor(feats[k]).long().reshape(-1), ref[k].long().reshape(-1)), k
    torch.testing.assert_close(torch.as_tensor(feats["ref_pos"]).float(), ref["ref_pos"].float(), rtol=0, atol=1e-5)


@pytest.mark.skipif(SANITIZED, reason="signal timing under the sanitizer build")
def test_design_interrupt_then_resume_is_identical(ckpt, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = ("--N_sample", 3, "--N_step", 25, "--seeds", 5, "--chunk", 1)
    rc, so, se = design(ckpt, full, *args)
    assert rc == 0, se
    p = subprocess.Popen([_cli(), "design", "-i", TASK, "-o", str(cut), "--checkpoint", str(ckpt), "--device", "cpu",
                          *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pred = cut / "PDL1_quick_start" / "seed_5" / "predictions"
    t0 = time.time()
    while time.time() - t0 < 120 and not (pred.exists() and any(f.endswith(".cif") for f in os.listdir(pred))):
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert p.returncode == 130, err
    seed_dir = cut / "PDL1_quick_start" / "seed_5"
    assert not (seed_dir / "SUCCESS_FILE").exists() and not (seed_dir / "summary.json").exists()
    # without --resume the unfinished run is refused and left as it is
    before = tree(cut)
    rc, so, se = design(ckpt, cut, *args)
    assert rc != 0 and "--resume" in se and tree(cut) == before
    rc, so, se = design(ckpt, cut, *args, "--resume")
    assert rc == 0, se
    for i in range(3):
        f = f"PDL1_quick_start_sample_{i}.cif"
        assert filecmp.cmp(pred / f, full / "PDL1_quick_start" / "seed_5" / "predictions" / f, shallow=False)
    assert (seed_dir / "SUCCESS_FILE").exists()


def test_design_rerun_refused_resume_skips(ckpt, tmp_path):
    out = tmp_path / "run"
    args = ("--N_sample", 2, "--N_step", 2, "--seeds", 1)
    assert design(ckpt, out, *args)[0] == 0
    snapshot = {f: open(out / f, "rb").read() for f in tree(out) if not f.endswith("/")}
    rc, so, se = design(ckpt, out, *args)
    assert rc == 1 and "--resume" in se and so == ""
    assert {f: open(out / f, "rb").read() for f in snapshot} == snapshot
    rc, so, se = design(ckpt, out, *args, "--resume")
    assert rc == 0 and "already written" in se
    # other settings with --resume: refused, nothing changed
    rc, so, se = design(ckpt, out, "--N_sample", 2, "--N_step", 3, "--seeds", 1, "--resume")
    assert rc == 1
    assert {f: open(out / f, "rb").read() for f in snapshot if "sample_" in f} == \
        {f: v for f, v in snapshot.items() if "sample_" in f}


def test_load_checkpoint_dir(ckpt, tmp_path):
    rc, so, se = run("design", "-i", TASK, "-o", tmp_path / "o", "--load_checkpoint_dir", os.path.dirname(ckpt),
                     "--N_sample", 1, "--N_step", 1, "--seeds", 2, "--device", "cpu")
    assert rc == 0, se
    rc, so, se = run("design", "-i", TASK, "-o", tmp_path / "o2", "--load_checkpoint_dir", tmp_path,
                     "--N_sample", 1, "--N_step", 1, "--device", "cpu")
    assert rc == 1 and "pxdesign_v0.1.0.pt" in se and not (tmp_path / "o2").exists()


# ----------------------------------------------------------------- bad input ----

BAD = {
    "missing structure": ("target:\n  file: nowhere.cif\n  chains:\n    A: all\nbinder_length: 10\n", "nowhere.cif"),
    "chain not in file": ("target:\n  file: tests/data/structures/5o45.cif\n  chains:\n    Q: all\nbinder_length: 10\n", "Q"),
    "binder length 0": ("target:\n  file: tests/data/structures/5o45.cif\n  chains:\n    A: all\nbinder_length: 0\n", "binder"),
    "crop outside": ("target:\n  file: tests/data/structures/5o45.cif\n  chains:\n    A:\n      crop: ['500-600']\nbinder_length: 10\n", "500"),
    "hotspot not a number": ("target:\n  file: tests/data/structures/5o45.cif\n  chains:\n    A:\n      hotspots: [x]\nbinder_length: 10\n", "hotspot"),
    "non-standard chain": ("target:\n  file: tests/data/structures/5o45.cif\n  chains:\n    B: all\nbinder_length: 10\n", "B"),
    "malformed yaml": ("target: [\n", "yaml"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_no_output(ckpt, tmp_path, case):
    text, needle = BAD[case]
    task = tmp_path / "t.yaml"
    task.write_text(text)
    out = tmp_path / "out"
    rc, so, se = design(ckpt, out, "--N_sample", 1, "--N_step", 1, task=task)
    assert rc != 0
    lines = [l for l in se.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("pxdiff: "), se
    assert needle.lower() in lines[0].lower(), lines[0]
    assert so == "" and not out.exists()


def test_bad_checkpoint_and_usage(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    rc, so, se = run("design", "-i", TASK, "-o", tmp_path / "o", "--checkpoint", bad)
    assert rc == 1 and len(se.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    rc, so, se = run("design", "-i", TASK, "-o", tmp_path / "o")
    assert rc == 2 and "--checkpoint" in se
    rc, so, se = run("design", "--bogus")
    assert rc == 2 and "pxdiff design --help" in se
    rc, so, se = run("design", "--help")
    assert rc == 0 and "--N_sample" in so and "--dump_dir" in so
    rc, so, se = run("design", "-i", TASK, "-o", tmp_path / "o", "--checkpoint", bad, "--seeds", "1,x")
    assert rc == 2 and "--seeds" in se


# ---------------------------------------------------------------------- demo ----

def test_demo_data_is_the_embedded_copy():
    # the demo's task and target built into the binary are data/demo/, byte for byte
    r = subprocess.run(["python3", os.path.join(ROOT, "scripts", "embed_demo.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_demo_runs_the_design_path(tmp_path):
    out = tmp_path / "demo"
    rc, so, se = run("demo", "-o", out, "--N_sample", 2, "--N_step", 2, "--device", "cpu")
    assert rc == 0, se
    assert "SYNTHETIC WEIGHTS" in so
    base = out / "pdl1_demo" / "seed_101"
    assert (base / "SUCCESS_FILE").exists()
    s = json.load(open(base / "summary.json"))
    assert s["command"] == "demo" and s["synthetic_weights"] is True and "SYNTHETIC" in s["note"]
    assert s["model_parameters"] > 130_000_000  # both modules, the released shapes
    assert s["n_tokens"] == s["binder_length"] + 116 and s["binder_length"] == 40
    p = base / "predictions" / "pdl1_demo_sample_1.cif"
    _, cols, rows, _ = atom_rows(p)
    chain = cols.index("_atom_site.label_asym_id")
    comp = cols.index("_atom_site.label_comp_id")
    assert {r[chain] for r in rows} == {"A0", "B0"}
    assert {r[comp] for r in rows if r[chain] == "B0"} == {"xpb"}
    assert np.isfinite(coords(p)).all()
    if SANITIZED:
        return  # (under ASan the rerun takes a minute; the unsanitized suite checks it)
    # deterministic: the same command gives the same files
    rc, so, se = run("demo", "-o", tmp_path / "again", "--N_sample", 2, "--N_step", 2, "--device", "cpu", "--quiet")
    assert rc == 0 and so == "" and se == "", se
    assert open(p).read() == open(tmp_path / "again" / "pdl1_demo" / "seed_101" / "predictions" /
                                  "pdl1_demo_sample_1.cif").read()


def test_demo_usage():
    rc, so, se = run("demo", "--help")
    assert rc == 0 and "SYNTHETIC" in so and "--N_sample" in so
    rc, so, se = run("demo")
    assert rc == 2 and "pxdiff demo --help" in se


def test_bench_task_stages(ckpt, tmp_path):
    """`pxdiff bench --task`: the first call and the median of the others, per stage, for the
    task's own size; a bad task is one line and a nonzero exit."""
    rc, so, se = run("bench", "--task", TASK, "--checkpoint", ckpt, "--device", "cpu", "--reps", "2",
                     "--dtype", "fp32")
    assert rc == 0, se
    head = so.splitlines()[0]
    assert "task PDL1_quick_start" in head and "196 tokens, 1250 atoms" in head and "dtype fp32" in head, so
    for stage in ("parse", "featurize", "embed", "design cache"):
        rows = [ln.split() for ln in so.splitlines() if ln.strip().startswith(stage)]
        assert len(rows) == 1, so
        first, med = map(float, rows[0][-2:])
        assert first > 0 and med > 0, so
    bad = tmp_path / "bad.yaml"
    bad.write_text("target:\n  file: nowhere.cif\n")
    rc, so, se = run("bench", "--task", bad, "--checkpoint", ckpt, "--device", "cpu")
    assert rc != 0 and so == "" and len(se.strip().splitlines()) == 1 and se.startswith("pxdiff: "), (so, se)
