"""The CLI's output protocol (src/cli/run_output.c) as a user meets it: no run loses or
misrepresents a finished file.

Rules checked here, each on the CPU engine with the small synthetic checkpoint of
test_sample_cli.py:
  - a failed start (bad checkpoint, bad bundle, unusable device, unwritable place) creates
    nothing and prints nothing on stdout;
  - a run without --resume / --overwrite into a directory holding another run's files
    refuses with one line naming the conflict and the ways out, changing nothing;
  - a refused --resume (other settings, or files it would not write) changes nothing;
  - --overwrite removes exactly the files it recognises by name, nothing else;
  - files that are not the run's never stop it and are never touched;
  - after an interruption at any phase (SIGINT, SIGTERM, SIGKILL; before the first file,
    mid-chunk, between the last sample and summary.json) the directory is either a
    complete run whose summary.json lists exactly its files, or has no summary.json and
    --resume turns it into files byte-identical to an uninterrupted run."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from test_sample_cli import _cli, problem, run, sample_args  # noqa: F401  (problem: fixture)

RECOGNISED = re.compile(r"^(sample_\d+\.(cif|pdb)|summary\.json)(\.tmp)?$")


def snapshot(d):
    """Every file under d (relative path -> bytes); None when d does not exist."""
    if not os.path.exists(d):
        return None
    out = {}
    for root, dirs, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, d)] = open(p, "rb").read()
        for x in dirs:
            out[os.path.relpath(os.path.join(root, x), d) + "/"] = b""
    return out


def run_files(d):
    return sorted(f for f in os.listdir(d) if RECOGNISED.match(f))


def assert_consistent(d):
    """Either a complete run (summary.json lists exactly the run files present, each
    sample's .cif ends with the run's trailer) or an unfinished one (no summary.json).
    Returns True when complete."""
    if not os.path.exists(d) or not os.path.exists(os.path.join(d, "summary.json")):
        return False
    s = json.load(open(os.path.join(d, "summary.json")))
    assert s["complete"] is True
    listed = sorted(v for f in s["files"] for k, v in f.items() if k != "index")
    assert run_files(d) == sorted(listed + ["summary.json"]), (run_files(d), listed)
    for f in s["files"]:
        last = open(os.path.join(d, f["cif"])).read().splitlines()[-1]
        assert last == f"# pxdiff-complete run={s['run_id']}", (f, last)
    return True


def one_line_error(rc, so, se, code=1):
    assert rc == code and so == "" and se.count("\n") == 1 and se.startswith("pxdiff: "), (rc, so, se)


# ------------------------------------------------------------- failed start ----
def test_failed_start_creates_nothing(problem, tmp_path):
    p = problem
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    cases = {
        "missing checkpoint": ["--checkpoint", tmp_path / "nope.pt"],
        "unreadable checkpoint": ["--checkpoint", junk],
        "bad bundle": ["--bundle", p.ck],
        "missing bundle": ["--bundle", tmp_path / "nope.bundle"],
        "device": ["--device", "cuda"],  # CPU-only build or no GPU here; skipped below otherwise
        "precision": ["--precision", "fp16", "--device", "cpu"],
    }
    for name, extra in cases.items():
        out = tmp_path / name.replace(" ", "_") / "nested" / "out"
        rc, so, se = run(*sample_args(p, out, samples=2, steps=2), *extra)
        if name == "device" and rc == 0:
            continue  # a machine with a usable GPU
        one_line_error(rc, so, se)
        assert not os.path.exists(out.parent.parent), (name, se)
    # demo: the header is printed only once the run is sure to start
    rc, so, se = run("demo", "--out", tmp_path / "demo_cpu_fp16", "--device", "cpu", "--precision", "fp16")
    one_line_error(rc, so, se)
    assert not os.path.exists(tmp_path / "demo_cpu_fp16")


def test_unwritable_place_is_found_before_loading(problem, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    t0 = time.time()
    rc, so, se = run(*sample_args(problem, f / "a" / "b"), "--checkpoint", tmp_path / "nope.pt")
    one_line_error(rc, so, se)
    # the output problem is reported (not the missing checkpoint): checked first, read-only
    assert "cannot create output directory" in se and "Not a directory" in se, se
    assert f.read_text() == "x"


# ------------------------------------------------------------ mixing runs ------
def test_fresh_run_refuses_a_directory_with_another_run(problem, tmp_path):
    p = problem
    out = tmp_path / "r"
    rc, _, se = run(*sample_args(p, out, samples=5, steps=3))
    assert rc == 0, se
    before = snapshot(out)
    # a smaller rerun would have left sample_0003/0004 beside a summary that omits them
    for args in (sample_args(p, out, samples=3, steps=3), sample_args(p, out, samples=5, steps=3),
                 sample_args(p, out, samples=5, steps=3, seed=99)):
        rc, so, se = run(*args)
        one_line_error(rc, so, se)
        assert str(out) in se and "--resume" in se and "--overwrite" in se and "another --out" in se, se
        assert "finished" in se and "sample_" in se, se
        assert snapshot(out) == before
    # an unfinished run is named as such
    os.remove(out / "summary.json")
    before = snapshot(out)
    rc, so, se = run(*sample_args(p, out, samples=5, steps=3))
    one_line_error(rc, so, se)
    assert "unfinished" in se, se
    assert snapshot(out) == before


def test_refused_resume_changes_nothing(problem, tmp_path):
    p = problem
    out = tmp_path / "r"
    rc, _, se = run(*sample_args(p, out, "--pdb", samples=4, steps=20, chunk=2))
    assert rc == 0, se
    before = snapshot(out)
    refusals = {
        "other settings": sample_args(p, out, "--pdb", "--resume", samples=4, steps=20, seed=8),
        "other steps": sample_args(p, out, "--pdb", "--resume", samples=4, steps=21),
        # files this run would neither write nor list
        "fewer samples": sample_args(p, out, "--pdb", "--resume", samples=2, steps=20),
        "no --pdb": sample_args(p, out, "--resume", samples=4, steps=20),
        "wider index": sample_args(p, out, "--pdb", "--resume", samples=10001, steps=20),
    }
    for name, args in refusals.items():
        rc, so, se = run(*args)
        one_line_error(rc, so, se)
        assert "nothing was changed" in se, (name, se)
        assert snapshot(out) == before, name
    assert assert_consistent(out)


def test_resume_extends_a_run_to_the_same_files(problem, tmp_path):
    p = problem
    rc, _, se = run(*sample_args(p, tmp_path / "ref", samples=5, steps=3, chunk=2))
    assert rc == 0, se
    out = tmp_path / "r"
    rc, _, se = run(*sample_args(p, out, samples=3, steps=3, chunk=2))
    assert rc == 0, se
    rc, so, se = run(*sample_args(p, out, samples=5, steps=3, chunk=2), "--resume")
    assert rc == 0, se
    s = json.load(open(out / "summary.json"))
    # 0..2 kept, 3 and 4 written; chunk [2, 3] is sampled whole as a 5-sample run batches it
    assert (s["samples_resumed"], s["samples_computed"], s["samples_sampled"]) == (3, 2, 3)
    a, b = snapshot(out), snapshot(tmp_path / "ref")
    assert {k: v for k, v in a.items() if k != "summary.json"} == {
        k: v for k, v in b.items() if k != "summary.json"}
    assert assert_consistent(out)


def test_overwrite_removes_exactly_the_recognised_files(problem, tmp_path):
    p = problem
    out = tmp_path / "o"
    rc, _, se = run(*sample_args(p, out, "--pdb", samples=5, steps=20))
    assert rc == 0, se
    (out / "sample_0002.cif.tmp").write_text("left by a kill")
    user = {"notes.txt": b"mine", "sample_0001.cif.bak": b"backup", "sample_x.cif": b"x",
            "my_sample_0001.cif": b"y", "Sample_0001.cif": b"z", "summary.json.old": b"old"}
    for k, v in user.items():
        (out / k).write_bytes(v)
    (out / "sub").mkdir()
    (out / "sub" / "sample_0000.cif").write_text("in a subdirectory: not the run's")
    rc, so, se = run(*sample_args(p, out, samples=2, steps=3), "--overwrite")
    assert rc == 0, se
    files = sorted(os.listdir(out))
    assert files == sorted(list(user) + ["sub", "sample_0000.cif", "sample_0001.cif", "summary.json"]), files
    for k, v in user.items():
        assert (out / k).read_bytes() == v
    assert (out / "sub" / "sample_0000.cif").read_text().startswith("in a subdirectory")
    assert assert_consistent(out)
    # other files never stop a fresh run either
    d2 = tmp_path / "with_notes"
    d2.mkdir()
    (d2 / "README").write_text("keep")
    rc, _, se = run(*sample_args(p, d2, samples=1, steps=2))
    assert rc == 0, se
    assert (d2 / "README").read_text() == "keep" and assert_consistent(d2)


def test_resume_and_overwrite_exclude_each_other(problem, tmp_path):
    rc, so, se = run(*sample_args(problem, tmp_path / "x"), "--resume", "--overwrite")
    one_line_error(rc, so, se, code=2)
    assert not os.path.exists(tmp_path / "x")


# ------------------------------------------------------------- interruption ----
N_INT, STEPS_INT, CHUNK_INT = 8, 40, 2


def int_args(p, out):
    return sample_args(p, out, "--pdb", samples=N_INT, steps=STEPS_INT, chunk=CHUNK_INT, seed=5)


@pytest.fixture(scope="module")
def reference(problem, tmp_path_factory):
    d = tmp_path_factory.mktemp("int_ref") / "ref"
    rc, _, se = run(*int_args(problem, d))
    assert rc == 0, se
    return {k: v for k, v in snapshot(d).items() if k != "summary.json"}


def wait_for(cond, proc, timeout=120):
    t0 = time.time()
    while not cond():
        if proc.poll() is not None or time.time() - t0 > timeout:
            return False
        time.sleep(0.002)
    return True


PHASES = {
    # the directory exists (the run passed its checks) but holds no sample yet
    "before_first_file": lambda out: os.path.isdir(out),
    # the second chunk has started: samples 0 and 1 are written
    "mid_chunk": lambda out: os.path.exists(out / "sample_0001.cif"),
    # every sample written; summary.json is next (a race: the kill may land just after it)
    "before_summary": lambda out: os.path.exists(out / f"sample_{N_INT - 1:04d}.cif"),
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
@pytest.mark.parametrize("phase", list(PHASES))
def test_interruption_leaves_a_resumable_or_complete_run(problem, reference, tmp_path, phase, sig):
    p = problem
    out = tmp_path / "i"
    proc = subprocess.Popen([_cli(), *map(str, int_args(p, out))], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    reached = wait_for(lambda: PHASES[phase](out), proc)
    proc.send_signal(sig)
    so, se = proc.communicate(timeout=120)
    if not reached and proc.returncode == 0:
        pytest.skip("the run finished before the phase was observed")
    complete = assert_consistent(out)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL or (complete and proc.returncode == 0)
    elif not complete:
        assert proc.returncode == 130, se
        assert "interrupted" in se.splitlines()[-1] and "--resume" in se, se
        assert so == "" or "wrote" not in so
    if phase != "before_summary":
        assert reached and not complete, (phase, proc.returncode, se)  # the phase was really hit
    if not complete and sig != signal.SIGKILL:
        # a handled signal leaves no half-written file, and no directory it created and left empty
        assert not [f for f in os.listdir(out) if f.endswith(".tmp")] if os.path.exists(out) else True
        if phase == "before_first_file":
            assert not os.path.exists(out), os.listdir(out)
    if os.path.exists(out) and run_files(out):
        # a rerun without --resume refuses; --resume finishes to the uninterrupted files
        if not complete:
            rc, so2, se2 = run(*int_args(p, out))
            one_line_error(rc, so2, se2)
            assert "unfinished" in se2, se2
        rc, _, se2 = run(*int_args(p, out), "--resume", "--quiet")
        assert rc == 0, se2
    else:
        rc, _, se2 = run(*int_args(p, out), "--quiet")
        assert rc == 0, se2
    assert assert_consistent(out)
    got = {k: v for k, v in snapshot(out).items() if k != "summary.json"}
    assert got == reference


def test_kill_between_last_sample_and_summary_is_resumable(problem, reference, tmp_path):
    """The state a kill between the last sample and summary.json leaves, made exactly (every
    write is an atomic rename, so it is a complete run minus summary.json, possibly with
    summary.json.tmp): it reads as unfinished, a plain rerun refuses, --resume computes
    nothing and writes summary.json."""
    p = problem
    out = tmp_path / "k"
    rc, _, se = run(*int_args(p, out))
    assert rc == 0, se
    os.remove(out / "summary.json")
    (out / "summary.json.tmp").write_text('{"complete": tr')
    assert not assert_consistent(out)
    rc, so, se = run(*int_args(p, out))
    one_line_error(rc, so, se)
    assert "unfinished" in se
    rc, _, se = run(*int_args(p, out), "--resume")
    assert rc == 0, se
    s = json.load(open(out / "summary.json"))
    assert s["samples_computed"] == 0 and s["samples_resumed"] == N_INT
    assert assert_consistent(out) and not os.path.exists(out / "summary.json.tmp")
    assert {k: v for k, v in snapshot(out).items() if k != "summary.json"} == reference


def test_failed_write_mid_run_is_resumable(problem, reference, tmp_path):
    """A chunk's files are written in parallel (src/cli/cmd_sample.c): when one sample's fail
    (PXDIFF_TEST_FAIL_WRITE=3, in the chunk of samples 2 and 3) the run ends with that one
    line and exit 1, sample 2's files are complete, sample 3 has none, no summary.json, and
    --resume finishes to the uninterrupted files."""
    p = problem
    out = tmp_path / "w"
    r = subprocess.run([_cli(), *map(str, int_args(p, out))], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PXDIFF_TEST_FAIL_WRITE": "3"})
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == \
        "pxdiff: injected write failure (PXDIFF_TEST_FAIL_WRITE)", r.stderr
    got = snapshot(out)
    assert "summary.json" not in got and not assert_consistent(out)
    for f in ("sample_0002.cif", "sample_0002.pdb"):
        assert got[f] == reference[f], f
    assert not [f for f in got if f.startswith("sample_0003") or f.endswith(".tmp")], sorted(got)
    rc, _, se = run(*int_args(p, out), "--resume", "--quiet")
    assert rc == 0, se
    assert assert_consistent(out)
    assert {k: v for k, v in snapshot(out).items() if k != "summary.json"} == reference


# ------------------------------------------------------------------ convert ----
def test_convert_never_replaces_a_file_unasked(problem, tmp_path):
    """`pxdiff convert` writes OUT atomically and refuses an existing OUT without
    --overwrite, so swapped arguments cannot destroy the checkpoint."""
    ck = tmp_path / "model.pt"
    ck.write_bytes(open(problem.ck, "rb").read())
    before = ck.read_bytes()
    st = tmp_path / "model.safetensors"
    rc, so, se = run("convert", ck, st)
    assert rc == 0, se
    converted = st.read_bytes()
    rc, so, se = run("convert", st, ck)  # swapped
    one_line_error(rc, so, se)
    assert "--overwrite" in se and str(ck) in se, se
    assert ck.read_bytes() == before
    rc, so, se = run("convert", ck, st)
    one_line_error(rc, so, se)
    rc, so, se = run("convert", ck, st, "--overwrite")
    assert rc == 0, se
    assert st.read_bytes() == converted
    assert sorted(os.listdir(tmp_path)) == ["model.pt", "model.safetensors"]  # no .tmp left
