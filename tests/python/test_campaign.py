"""Campaign scale for `pxdiff design` (src/cli/campaign.c, design_workers.c; docs/campaign.md).

A small random model (the fixture of test_design_cli.py) designs binders for two small
PD-L1 tasks (tests/data/campaign/tasks) on the CPU. The reference for every sharded or
multi-task run is the plain `pxdiff design` run of one task file (itself checked against
upstream's writer in test_design_cli.py): a design depends only on the task, the seed, the
sample index and the settings, so

  - several task files in one process give each task's files byte for byte as its own run;
  - N shards (N = 1, 2, 3, 7) run as concurrent processes into one tree give the unsharded
    run's files byte for byte (summaries equal but for timings and counts), with no two
    shards writing one file and no temporary file left;
  - a shard killed with SIGKILL at a random moment and rerun with --resume gives the same;
  - a second process given a running shard's K/N is refused and changes nothing;
  - status.json and designs.csv agree with the files on disk at every moment of a run;
  - --pdb files load in gemmi and biotite with the chain ids summary.json records and the
    CIF's coordinates.
"""
import csv
import io
import json
import os
import random
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
    import biotite.structure.io.pdb as biotite_pdb
except ImportError:  # pragma: no cover
    biotite_pdb = None

TASKS = os.path.join(ROOT, "tests", "data", "campaign", "tasks")
TASK_A = os.path.join(TASKS, "pdl1_small_a.yaml")
TASK_B = os.path.join(TASKS, "pdl1_small_b.yaml")
NAMES = ("pdl1_small_a", "pdl1_small_b")
SMALL_EMBED = dict(c_atom=32, c_atompair=8, c_token=32, c_s_inputs=pxfixtures.SMALL_DIMS["c_s_inputs"],
                   c_z=pxfixtures.SMALL_DIMS["c_z"], n_blocks=2, n_heads=4)
# few steps, chunks of 2: 2 tasks x 2 seeds x 3 chunks = 12 units
BASE = ("--N_sample", "5", "--N_step", "3", "--seeds", "7,8", "--chunk", "2", "--threads", "1")


def _cli():
    lib_path = os.environ.get("PXDIFF_LIB")
    for cand in ([os.path.join(os.path.dirname(lib_path), "pxdiff")] if lib_path else []) + [
            os.path.join(ROOT, "build", "pxdiff")]:
        if os.path.exists(cand):
            return cand
    raise FileNotFoundError("pxdiff CLI not built (make)")


def run(*args, timeout=600):
    r = subprocess.run([_cli(), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return r.returncode, r.stdout, r.stderr


def start(*args):
    return subprocess.Popen([_cli(), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Diffusion module (SMALL dims) + condition embedder (small) in the released layout."""
    d = tmp_path_factory.mktemp("ckpt")
    model = {"module.diffusion_module." + k: v
             for k, v in pxfixtures.random_state_dict(pxfixtures.SMALL_DIMS, seed=5).items()}
    model.update({"module." + k: v for k, v in pxembed_ref.random_state_dict(SMALL_EMBED, seed=6).items()})
    path = d / "pxdesign_v0.1.0.pt"
    torch.save({"model": model}, str(path))
    return path


def design_args(ckpt, out, inputs, *extra):
    return ["design", "-i", *inputs, "-o", out, "--checkpoint", ckpt, "--device", "cpu", *extra]


def files(d):
    out = {}
    for root, _, names in os.walk(d):
        for x in names:
            p = os.path.join(root, x)
            out[os.path.relpath(p, d)] = p
    return out


CAMPAIGN_FILES = ("status.json", "designs.csv", "run.lock")


def is_campaign_file(rel):
    return rel in CAMPAIGN_FILES or rel.startswith("status_shard_") or rel.endswith(".lock")


def summary_norm(path):
    """summary.json without what depends on the process that wrote it."""
    s = json.load(open(path))
    for k in ("timings", "samples_computed", "samples_resumed", "run_id"):
        s.pop(k, None)
    s["settings"].pop("threads", None)
    return s


def config_norm(path):
    return [l for l in open(path).read().splitlines() if not l.startswith("dump_dir:")]


def csv_rows(path):
    text = open(path).read()
    assert text.endswith("\n")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["task", "seed", "sample", "file", "binder_length", "seconds"]
    return rows[1:]


def assert_same_run(ref, got, with_csv=True):
    """got holds exactly ref's files: sample files, markers and top-level files byte for
    byte, summaries equal but for timings; no temporary file; designs.csv the same rows."""
    fr, fg = files(ref), files(got)
    assert not [r for r in fg if r.endswith(".tmp")], sorted(fg)
    assert not [r for r in fg if r.endswith(".lock")], sorted(fg)
    keys_r = {r for r in fr if not is_campaign_file(r)}
    keys_g = {r for r in fg if not is_campaign_file(r)}
    assert keys_r == keys_g
    n_cif = 0
    for rel in sorted(keys_r):
        if rel.endswith("summary.json"):
            assert summary_norm(fr[rel]) == summary_norm(fg[rel]), rel
        elif rel == "config.yaml":
            assert config_norm(fr[rel]) == config_norm(fg[rel])
        else:
            assert open(fr[rel], "rb").read() == open(fg[rel], "rb").read(), rel
            n_cif += rel.endswith(".cif")
    assert n_cif > 0
    if with_csv:
        key = lambda r: r[:5]  # noqa: E731  (seconds differ)
        rows = csv_rows(os.path.join(got, "designs.csv"))
        assert len(rows) == len({tuple(key(r)) for r in rows}), "a design listed twice"
        assert sorted(map(key, rows)) == sorted(map(key, csv_rows(os.path.join(ref, "designs.csv"))))


@pytest.fixture(scope="module")
def reference(ckpt, tmp_path_factory):
    """Each task designed alone (plain `pxdiff design`), and both in one unsharded run."""
    d = tmp_path_factory.mktemp("ref")
    alone = {}
    for name, task in zip(NAMES, (TASK_A, TASK_B)):
        rc, so, se = run(*design_args(ckpt, d / name, [task], *BASE))
        assert rc == 0, se
        alone[name] = d / name
    both = d / "both"
    rc, so, se = run(*design_args(ckpt, both, [TASK_A, TASK_B], *BASE))
    assert rc == 0, se
    assert "2 tasks" in so and so.count("parameters") == 1, so  # one model load for both tasks
    return alone, both


# ------------------------------------------------------------ many tasks -------

def test_many_tasks_equal_each_task_alone(reference):
    alone, both = reference
    fb = files(both)
    for name, d in alone.items():
        fa = files(d)
        cifs = [r for r in fa if r.endswith(".cif")]
        assert len(cifs) == 10
        for rel in cifs + [r for r in fa if r.endswith("SUCCESS_FILE")] + [name + ".json"]:
            assert open(fa[rel], "rb").read() == open(fb[rel], "rb").read(), rel
        for rel in (r for r in fa if r.endswith("summary.json")):
            assert summary_norm(fa[rel]) == summary_norm(fb[rel])
    tasks = json.load(open(both / "input_tasks.json"))
    assert [t["name"] for t in tasks] == list(NAMES)


@pytest.mark.parametrize("form", ["repeated", "directory", "json_list"])
def test_input_forms(ckpt, reference, tmp_path, form):
    """-i repeated, a directory of task files and a JSON task list name the same work."""
    _, both = reference
    if form == "repeated":
        inputs = [TASK_A, "-i", TASK_B]
    elif form == "directory":
        inputs = [TASKS]
    else:
        lst = tmp_path / "tasks.json"
        shutil.copy(both / "input_tasks.json", lst)
        inputs = [lst]
    out = tmp_path / "run"
    rc, so, se = run(*design_args(ckpt, out, inputs, *BASE, "--status"))
    assert rc == 0, se
    for rel, p in files(both).items():
        if rel.endswith(".cif") or rel.endswith("SUCCESS_FILE") or rel == "input_tasks.json":
            assert open(p, "rb").read() == open(out / rel, "rb").read(), rel


def test_bad_inputs_one_line(ckpt, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    renamed = tmp_path / "renamed.yaml"  # another file, the same task name
    renamed.write_text("task_name: pdl1_small_a\n" + open(TASK_A).read())
    for inputs, want in (([str(empty)], "holds no task file"), ([TASK_A, TASK_A], "both become pdl1_small_a.json"),
                         ([TASK_A, str(renamed)], "two tasks are named 'pdl1_small_a'"),
                         ([TASK_A, str(tmp_path / "missing.yaml")], "missing.yaml")):
        out = tmp_path / "o"
        rc, so, se = run(*design_args(ckpt, out, inputs, *BASE))
        assert rc != 0 and se.count("\n") == 1 and want in se, se
        assert not out.exists()


# ---------------------------------------------------------------- shards -------

@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_concurrent_shards_equal_unsharded(ckpt, reference, tmp_path, n):
    _, both = reference
    out = tmp_path / "run"
    procs = [start(*design_args(ckpt, out, [TASKS], *BASE, "--shard", f"{k}/{n}", "-q")) for k in range(1, n + 1)]
    for p in procs:
        so, se = p.communicate(timeout=600)
        assert p.returncode == 0, se
    assert_same_run(both, out)
    # each shard computed exactly its units: 12 units dealt round-robin
    per = [json.load(open(out / ("status.json" if n == 1 else f"status_shard_{k}_of_{n}.json")))
           for k in range(1, n + 1)]
    assert [s["units"]["total"] for s in per] == [len(range(k, 12, n)) for k in range(n)]
    assert sum(s["designs"]["computed"] for s in per) == 20
    assert all(s["state"] == "done" for s in per)
    rc, so, se = run("status", out)
    assert rc == 0 and "designs: 20 of 20 done, 0 missing; cases: 4 of 4 done" in so, so


def test_killed_shard_resumes_identical(ckpt, tmp_path):
    """SIGKILL a shard at a random moment; --resume gives the unkilled run's files."""
    slow = ("--N_sample", "6", "--N_step", "12", "--seeds", "7,8", "--chunk", "1", "--threads", "1")
    ref = tmp_path / "ref"
    rc, so, se = run(*design_args(ckpt, ref, [TASKS], *slow, "--status"))
    assert rc == 0, se
    rng = random.Random(int(os.environ.get("PXDIFF_TEST_SEED", "0")) or None)
    # three kills at random moments; one under the sanitizer build (each trial takes ~35 s there)
    for trial in range(1 if SANITIZED else 3):
        out = tmp_path / f"run{trial}"
        procs = [start(*design_args(ckpt, out, [TASKS], *slow, "--shard", f"{k}/2", "-q")) for k in (1, 2)]
        victim = rng.randrange(2)
        time.sleep(rng.uniform(0.05, 1.5))
        procs[victim].send_signal(signal.SIGKILL)
        for p in procs:
            p.communicate(timeout=600)
        if procs[victim].returncode == 0:  # finished before the kill: still must be right
            assert_same_run(ref, out)
            continue
        rc, so, se = run("status", out)
        assert rc == 0, se
        # killed before it started, while working, or after its last unit was recorded (then
        # its status already says done, and the kill only cut the exit short)
        assert f"shard {victim + 1}/2: stopped without finishing" in so or "not started" in so or \
            f"shard {victim + 1}/2: done" in so or f"shard {victim + 1}/2" not in so, so
        rc, so, se = run(*design_args(ckpt, out, [TASKS], *slow, "--shard", f"{victim + 1}/2", "--resume", "-q"))
        assert rc == 0, se
        assert_same_run(ref, out)


def test_same_shard_twice_refused(ckpt, tmp_path):
    slow = ("--N_sample", "4", "--N_step", "20", "--seeds", "7", "--chunk", "1", "--threads", "1")
    out = tmp_path / "run"
    first = start(*design_args(ckpt, out, [TASKS], *slow, "--shard", "1/2", "-q"))
    lock = out / "shard_1_of_2.lock"
    t0 = time.time()
    while not lock.exists() and time.time() - t0 < 120 and first.poll() is None:
        time.sleep(0.02)
    assert lock.exists(), "the shard never took its lock"
    rc, so, se = run(*design_args(ckpt, out, [TASKS], *slow, "--shard", "1/2", "--resume", "-q"))
    assert rc != 0 and se.count("\n") == 1 and "already running" in se and str(first.pid) in se, se
    st = out / "status_shard_1_of_2.json"
    while not st.exists() and first.poll() is None:
        time.sleep(0.02)
    rc, so, se = run("status", out)
    assert rc == 0 and (f"shard 1/2: running (pid {first.pid})" in so or first.poll() is not None), so
    so, se = first.communicate(timeout=600)
    assert first.returncode == 0, se
    rc, so, se = run(*design_args(ckpt, out, [TASKS], *slow, "--shard", "2/2", "-q"))
    assert rc == 0, se
    ref = tmp_path / "ref"
    rc, so, se = run(*design_args(ckpt, ref, [TASKS], *slow, "--status"))
    assert rc == 0, se
    assert_same_run(ref, out)


def test_stale_lock_taken_over(ckpt, reference, tmp_path):
    """A lock whose process is gone (here: a pid that cannot exist) does not block a rerun; a
    lock of another host blocks while its heartbeat is recent, not after 15 minutes."""
    _, both = reference
    out = tmp_path / "run"
    out.mkdir()
    (out / "shard_2_of_2.lock").write_text(f"pid 999999999 host {os.uname().nodename}\n")
    other = out / "shard_1_of_2.lock"
    other.write_text("pid 4242 host some-other-node\n")
    rc, so, se = run(*design_args(ckpt, out, [TASKS], *BASE, "--shard", "1/2", "-q"))
    assert rc != 0 and se.count("\n") == 1 and "pid 4242 on host some-other-node" in se, se
    assert sorted(os.listdir(out)) == ["shard_1_of_2.lock", "shard_2_of_2.lock"]  # nothing written
    old = time.time() - 16 * 60
    os.utime(other, (old, old))
    for k in (1, 2):
        rc, so, se = run(*design_args(ckpt, out, [TASKS], *BASE, "--shard", f"{k}/2", "-q"))
        assert rc == 0, se
    assert_same_run(both, out)


@pytest.mark.parametrize("args,want", [
    (("--shard", "0/2"), "--shard: '0/2'"), (("--shard", "3/2"), "--shard: '3/2'"),
    (("--shard", "a/b"), "--shard: 'a/b'"), (("--shard", "1/0"), "--shard: '1/0'"),
    (("--shard", "1/2", "--overwrite"), "--overwrite with --shard"),
    (("--binder-first",), "--binder-first"),
    (("--shard", "1/2", "--seeds", ""), "--shard needs --seeds"),
])
def test_refusals(ckpt, tmp_path, args, want):
    out = tmp_path / "o"
    cmd = design_args(ckpt, out, [TASKS], "--N_sample", "2", "--N_step", "2", "--seeds", "7")
    cmd = [a for a in cmd if a not in ("--device", "cpu")] if any("--device" in a for a in args) else cmd
    rc, so, se = run(*cmd, *args)
    assert rc == 2 and so == "" and se.count("\n") == 1 and want in se, se
    assert not out.exists()


# ------------------------------------------------------- a run that talks -------

def complete(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    return data.endswith(b"\n") and data.rstrip(b"\n").split(b"\n")[-1].startswith(b"# pxdiff-complete run=")


def test_status_and_csv_consistent_while_running(ckpt, tmp_path):
    out = tmp_path / "run"
    args = ("--N_sample", "6", "--N_step", "10", "--seeds", "7,8", "--chunk", "1", "--threads", "1",
            "--status-interval", "0.05", "-q")
    p = start(*design_args(ckpt, out, [TASKS], *args))
    checks = 0
    seen_running = False
    while True:
        done = p.poll() is not None
        st_path, csv_path = out / "status.json", out / "designs.csv"
        if st_path.exists() and csv_path.exists():
            # read the status first: files only grow, so what it counts must be on disk after
            st = json.load(open(st_path))
            rows = csv_rows(csv_path)
            on_disk = {rel for rel in files(out) if rel.endswith(".cif") and complete(out / rel)}
            listed = {r[3] for r in rows}
            assert listed <= on_disk, listed - on_disk  # every row's file is complete
            assert st["designs"]["done"] <= len(on_disk)
            assert sum(t["designs_done"] for t in st["tasks"]) == st["designs"]["done"]
            assert st["designs"]["total"] == 24 and st["units"]["total"] == 24
            seen_running |= st["state"] == "running" and 0 < st["designs"]["done"] < 24
            checks += 1
        if done:
            break
        time.sleep(0.03)
    so, se = p.communicate()
    assert p.returncode == 0, se
    assert checks >= 5 and seen_running, (checks, seen_running)
    st = json.load(open(out / "status.json"))
    assert st["state"] == "done" and st["designs"]["done"] == 24 and st["eta_s"] == 0
    assert st["designs_per_hour"] > 0 and 0 < st["devices"][0]["load"] <= 1.0
    rows = csv_rows(out / "designs.csv")
    assert sorted(r[3] for r in rows) == sorted(r for r in files(out) if r.endswith(".cif"))
    for r in rows:
        assert int(r[4]) == (12 if r[0] == "pdl1_small_a" else 9) and float(r[5]) > 0
        assert r[3] == f"{r[0]}/seed_{r[1]}/predictions/{r[0]}_sample_{r[2]}.cif"
    assert not (out / "run.lock").exists()


def test_overwrite_replaces_the_csv(ckpt, reference, tmp_path):
    _, both = reference
    out = tmp_path / "run"
    for extra in ((), ("--overwrite",)):
        rc, so, se = run(*design_args(ckpt, out, [TASKS], *BASE, "-q", *extra))
        assert rc == 0, se
    assert_same_run(both, out)  # 20 rows, none twice


def test_status_command(ckpt, tmp_path):
    rc, so, se = run("status", tmp_path)
    assert rc == 1 and se.count("\n") == 1 and "no pxdiff design run" in se, se
    out = tmp_path / "run"
    rc, so, se = run(*design_args(ckpt, out, [TASKS], *BASE, "--shard", "2/3", "-q"))
    assert rc == 0, se
    rc, so, se = run("status", out)
    # shard 2/3 owns units 1, 4, 7, 10: samples 2-3 of each case
    assert rc == 0 and "designs: 8 of 20 done, 12 missing; cases: 0 of 4 done" in so, so
    assert "shard 2/3: done, 4/4 units" in so, so


# ------------------------------------------------------------------- PDB -------

def cif_atoms(path):
    doc = gemmi.cif.read(str(path))
    b = doc.sole_block()
    t = b.find("_atom_site.", ["label_asym_id", "label_comp_id", "label_atom_id", "Cartn_x", "Cartn_y", "Cartn_z"])
    return [(r[0], r[1], r[2], float(r[3]), float(r[4]), float(r[5])) for r in t]


@pytest.mark.skipif(gemmi is None or biotite_pdb is None, reason="needs gemmi and biotite")
@pytest.mark.parametrize("binder_first", [False, True])
def test_pdb_outputs(ckpt, tmp_path, binder_first):
    out = tmp_path / "run"
    extra = ["--pdb"] + (["--binder-first"] if binder_first else [])
    # 20 steps: the random model's coordinates fit PDB's columns (after 3 they do not)
    rc, so, se = run(*design_args(ckpt, out, [TASK_A], "--N_sample", "2", "--N_step", "20", "--seeds", "7", *extra))
    assert rc == 0, se
    base = out / "pdl1_small_a" / "seed_7"
    summ = json.load(open(base / "summary.json"))
    chains = summ["pdb"]["chain_ids"]
    assert summ["pdb"]["binder_first"] == binder_first
    assert all(len(v) == 1 for v in chains.values()) and len(set(chains.values())) == len(chains)
    for i in range(2):
        cif = base / "predictions" / f"pdl1_small_a_sample_{i}.cif"
        pdb = base / "predictions" / f"pdl1_small_a_sample_{i}.pdb"
        ca = cif_atoms(cif)
        binder_label = ca[-1][0]  # the binder is the last chain of PXDesign's CIF
        if binder_first:
            assert chains[binder_label] == "A"
        want = {}
        for lab, comp, atom, x, y, z in ca:
            want.setdefault(chains[lab], []).append((atom, x, y, z, comp))
        st = gemmi.read_structure(str(pdb))
        got_order = [ch.name for ch in st[0]]
        assert got_order[0] == ("A" if binder_first else chains[ca[0][0]])
        for ch in st[0]:
            atoms = [(a.name, a.pos.x, a.pos.y, a.pos.z, r.name) for r in ch for a in r]
            w = want[ch.name]
            assert [a[0] for a in atoms] == [a[0] for a in w]
            np.testing.assert_allclose(np.array([a[1:4] for a in atoms]), np.array([a[1:4] for a in w]), atol=6e-4)
            is_binder = ch.name == chains[binder_label]
            assert all(a[4] == ("GLY" if is_binder else b[4]) for a, b in zip(atoms, w))
        arr = biotite_pdb.PDBFile.read(str(pdb)).get_structure(model=1)
        assert len(arr) == len(ca)
        assert set(arr.chain_id) == set(chains.values())
        remarks = [l for l in open(pdb) if l.startswith("REMARK")]
        assert any("chain ids (mmCIF -> PDB)" in l for l in remarks), remarks


def test_pdb_refused_when_coordinates_do_not_fit(ckpt, tmp_path):
    """After 3 steps the random model's coordinates exceed PDB's columns: one line naming the
    design, no PDB or CIF of it, no SUCCESS_FILE."""
    out = tmp_path / "run"
    rc, so, se = run(*design_args(ckpt, out, [TASK_A], "--N_sample", "2", "--N_step", "3", "--seeds", "7", "--pdb",
                                  "-q"))
    assert rc == 1 and se.count("\n") == 1, se
    assert "design pdl1_small_a sample 0" in se and "pdl1_small_a_sample_0.pdb" in se and "-999.999" in se, se
    got = sorted(r for r in files(out) if r.startswith("pdl1_small_a/"))
    assert got == [], got


def test_pdb_resume_with_other_order_refused(ckpt, tmp_path):
    out = tmp_path / "run"
    args = design_args(ckpt, out, [TASK_A], "--N_sample", "2", "--N_step", "20", "--seeds", "7", "--pdb")
    rc, so, se = run(*args)
    assert rc == 0, se
    before = {r: open(p, "rb").read() for r, p in files(out).items()}
    rc, so, se = run(*args, "--binder-first", "--resume")
    assert rc != 0 and se.count("\n") == 1 and "other settings" in se, se
    assert {r: open(p, "rb").read() for r, p in files(out).items()} == before


# ------------------------------------------------------------ docs/campaign.md -------

def doc_block(start):
    """The fenced bash block of docs/campaign.md whose first line starts with `start`."""
    text = open(os.path.join(ROOT, "docs", "campaign.md")).read()
    for block in text.split("```bash\n")[1:]:
        body = block.split("```")[0]
        if body.startswith(start):
            return body
    raise AssertionError(f"docs/campaign.md has no bash block starting {start!r}")


def test_doc_slurm_script(ckpt, reference, tmp_path):
    """The job-array script as the page prints it, its array tasks run as concurrent processes."""
    _, both = reference
    script = tmp_path / "pxdiff-campaign.sbatch"
    script.write_text(doc_block("#!/bin/bash\n# pxdiff-campaign.sbatch"))
    out = tmp_path / "campaign"
    n = 3
    env = dict(os.environ, TASKS=TASKS, OUT=str(out), CKPT=str(ckpt), PXDIFF=_cli(),
               SETTINGS=" ".join(BASE + ("--device", "cpu")), SLURM_ARRAY_TASK_COUNT=str(n))
    procs = [subprocess.Popen(["bash", str(script)], cwd=ROOT, env=dict(env, SLURM_ARRAY_TASK_ID=str(k)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(1, n + 1)]
    for p in procs:
        so, se = p.communicate(timeout=600)
        assert p.returncode == 0, se
    assert_same_run(both, out)
    # a requeued array task (the script always passes --resume) changes nothing
    before = {r: open(p, "rb").read() for r, p in files(out).items() if r.endswith(".cif")}
    r = subprocess.run(["bash", str(script)], cwd=ROOT, env=dict(env, SLURM_ARRAY_TASK_ID="2"), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert {r: open(p, "rb").read() for r, p in files(out).items() if r.endswith(".cif")} == before
    assert_same_run(both, out)


def test_doc_parallel_line(ckpt, reference, tmp_path):
    """The GNU parallel line, its jobs run concurrently as parallel would start them
    ({} replaced by each argument after :::)."""
    _, both = reference
    line = doc_block("parallel ").strip()
    assert line.startswith("parallel -j 4 pxdiff design ") and " ::: 1 2 3 4" in line
    cmd, args = line[len("parallel -j 4 "):].split(" ::: ")
    out = tmp_path / "campaign"
    words = cmd.split()
    assert words[:2] == ["pxdiff", "design"] and "--shard" in words and "--resume" in words
    # the same command on this machine's inputs: our tasks, tree, checkpoint and small settings
    keep = []
    skip = {"-i": 1, "-o": 1, "--checkpoint": 1, "--N_sample": 1, "--seeds": 1}
    i = 2
    while i < len(words):
        if words[i] in skip:
            i += 2
            continue
        keep.append(words[i])
        i += 1
    procs = []
    for a in args.split():
        argv = [_cli(), "design", "-i", TASKS, "-o", str(out), "--checkpoint", str(ckpt), "--device", "cpu",
                *BASE] + [w.replace("{}", a) for w in keep]
        procs.append(subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        so, se = p.communicate(timeout=600)
        assert p.returncode == 0, se
    assert_same_run(both, out)


def test_resume_lists_a_design_missing_from_the_csv(ckpt, reference, tmp_path):
    """A kill between a design's rename and its row leaves a file without a row: --resume
    appends the row (time unknown), and lists nothing twice."""
    _, both = reference
    out = tmp_path / "run"
    rc, so, se = run(*design_args(ckpt, out, [TASKS], *BASE, "--status", "-q"))
    assert rc == 0, se
    lines = open(out / "designs.csv").read().splitlines(keepends=True)
    dropped = lines.pop(7)
    open(out / "designs.csv", "w").write("".join(lines))
    rc, so, se = run(*design_args(ckpt, out, [TASKS], *BASE, "--status", "--resume", "-q"))
    assert rc == 0, se
    rows = csv_rows(out / "designs.csv")
    assert rows[-1][:5] == next(csv.reader([dropped]))[:5] and rows[-1][5] == ""
    assert_same_run(both, out)


def test_task_name_with_comma_quote_unicode(ckpt, tmp_path):
    """designs.csv quotes what needs it (Python's csv reads it back), pxdiff status finds the
    task's directory from input_tasks.json's escaped name."""
    name = 'PD-L1 \u03b1, "v2"'
    task = tmp_path / "odd.yaml"
    task.write_text('task_name: "PD-L1 \\u03b1, \\"v2\\""\nbinder_length: 7\ntarget:\n'
                    '  file: tests/data/structures/5o45.cif\n  chains:\n    A:\n      crop: ["1-30"]\n')
    out = tmp_path / "run"
    rc, so, se = run(*design_args(ckpt, out, [task], "--N_sample", "2", "--N_step", "3", "--seeds", "1", "--status",
                                  "-q"))
    assert rc == 0, se
    rows = csv_rows(out / "designs.csv")
    assert [r[:4] for r in rows] == [[name, "1", str(i), f"{name}/seed_1/predictions/{name}_sample_{i}.cif"]
                                     for i in range(2)]
    assert all(complete(out / r[3]) for r in rows)
    rc, so, se = run("status", out)
    assert rc == 0 and "designs: 2 of 2 done, 0 missing; cases: 1 of 1 done" in so and name in so, so
