"""`pxdiff sample` end to end (src/cli/cmd_sample.c, src/io/structure.c).

A small random model is saved as a checkpoint in the released layout and a design as a
feature bundle; the CLI's files are then checked against px_sample run directly through
the library: coordinates equal to the printed precision, annotations, B-factors, the
summary.json fields, resume after deleting samples (byte-identical files), Ctrl-C, the
bf16 vs fp32 schedule, flag validation and an unwritable --out.

Every mmCIF/PDB is read by a minimal tokenizer here and, when installed, by the
independent parsers gemmi and biotite (`pip install gemmi biotite`; those checks skip
with a reason otherwise)."""
import ctypes
import json
import os
import shlex
import signal
import subprocess
import time
import types

import numpy as np
import pytest
import torch

import pxdiff
import pxdiff.bundle as bundle
import pxfixtures
from conftest import ROOT, make_design, sampler_config
from pxdiff._lib import PROGRESS_FN, c_float_p, check, lib

try:
    import gemmi
except ImportError:  # pragma: no cover - depends on the environment
    gemmi = None
try:
    import biotite.structure.io.pdbx as biotite_pdbx
    import biotite.structure.io.pdb as biotite_pdb
except ImportError:  # pragma: no cover
    biotite_pdbx = biotite_pdb = None

need_gemmi = pytest.mark.skipif(gemmi is None, reason="gemmi not installed (pip install gemmi)")
need_biotite = pytest.mark.skipif(biotite_pdbx is None, reason="biotite not installed (pip install biotite)")


def _cli():
    lib_path = os.environ.get("PXDIFF_LIB")
    for cand in ([os.path.join(os.path.dirname(lib_path), "pxdiff")] if lib_path else []) + [
            os.path.join(ROOT, "build", "pxdiff")]:
        if os.path.exists(cand):
            return cand
    pytest.skip("pxdiff CLI not built")


def run(*args, timeout=300):
    r = subprocess.run([_cli(), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


# ------------------------------------------------------------------ fixture ----
N_TOKEN = 12
DESIGNED_FROM = 8  # tokens 8.. are the designed binder


@pytest.fixture(scope="module")
def problem(small, tmp_path_factory):
    d = tmp_path_factory.mktemp("sample_cli")
    ck = d / "small.pt"
    pxfixtures.save_released_layout(str(ck), small.m32.state_dict(), extra=False, training_state=False)
    inp = small.inputs(n_token=N_TOKEN, atoms_per_token=(4, 6, 5), n_chains=2, seed=21)
    a2t = inp.feats["atom_to_token_idx"].numpy()
    asym = inp.feats["asym_id"].numpy()
    N = a2t.shape[0]
    names = ["N", "CA", "C", "O5'", "CB", "CG"]  # O5' needs quoting in mmCIF
    elements = ["N", "C", "C", "O", "C", "C"]
    pos = np.zeros(N, dtype=int)
    for n in range(1, N):
        pos[n] = pos[n - 1] + 1 if a2t[n] == a2t[n - 1] else 0
    arr = types.SimpleNamespace(
        res_name=np.array(["LYS" if t % 2 else "ALA" for t in a2t]),
        chain_id=np.array(["AB"[asym[t]] for t in a2t]),
        res_id=np.array([t + 10 for t in a2t]),
        atom_name=np.array([names[k % 6] for k in pos]),
        element=np.array([elements[k % 6] for k in pos]))
    designed = torch.arange(N_TOKEN) >= DESIGNED_FROM
    bp = d / "design.bundle"
    bundle.write(bp, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk, atom_array=arr,
                 designed_mask=designed, name="cli test")
    dm = pxdiff.DiffusionModule.from_checkpoint(ck)
    h = make_design(dm, inp)
    yield types.SimpleNamespace(ck=ck, bundle=bp, inp=inp, dm=dm, design=h, arr=arr, a2t=a2t,
                                designed=designed.numpy(), N=N, dir=d)
    lib.px_design_free(h)


def px_sample(p, n, first=0, chunk=4, **cfg):
    c = sampler_config(**cfg)
    out = torch.full((n, p.N, 3), float("nan"))
    check(lib.px_sample(p.dm._m, p.design, ctypes.byref(c), first, n, chunk,
                        ctypes.cast(out.data_ptr(), c_float_p), PROGRESS_FN(0), None))
    return out.numpy()


def sample_args(p, out, *extra, samples=3, steps=5, seed=7, chunk=2):
    # --device cpu: these tests compare files with px_sample on the CPU engine bit for bit or
    # within float32 rounding, also on a GPU machine (GPU designs: tests/gpu/check_cuda.py)
    return ["sample", "--device", "cpu", "--checkpoint", p.ck, "--bundle", p.bundle, "--out", out,
            "--samples", samples, "--steps", steps, "--seed", seed, "--chunk", chunk, *extra]


# --------------------------------------------------------- minimal readers ----
def read_cif_atoms(path):
    """The _atom_site loop as a list of dicts (shlex handles the quoted values)."""
    lines = open(path).read().splitlines()
    i = lines.index("loop_", lines.index("_atom_site.group_PDB") - 1)
    cols = []
    i += 1
    while lines[i].startswith("_atom_site."):
        cols.append(lines[i][len("_atom_site."):])
        i += 1
    rows = []
    while not lines[i].startswith("#"):
        v = shlex.split(lines[i])
        assert len(v) == len(cols), lines[i]
        rows.append(dict(zip(cols, v)))
        i += 1
    return cols, rows, lines


def cif_xyz(rows):
    return np.array([[float(r["Cartn_x"]), float(r["Cartn_y"]), float(r["Cartn_z"])] for r in rows])


def check_cif_against(p, path, x):
    cols, rows, lines = read_cif_atoms(path)
    assert cols == ["group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id", "label_comp_id",
                    "label_asym_id", "label_entity_id", "label_seq_id", "pdbx_PDB_ins_code", "Cartn_x",
                    "Cartn_y", "Cartn_z", "occupancy", "B_iso_or_equiv", "auth_seq_id", "auth_comp_id",
                    "auth_asym_id", "auth_atom_id", "pdbx_PDB_model_num"]
    assert lines[0].startswith("data_") and lines[2].startswith("_entry.id ")
    assert lines[-1].startswith("# pxdiff-complete run=")
    assert len(rows) == p.N
    got = cif_xyz(rows)
    assert np.abs(got - x).max() <= 0.0005 + 1e-6 * np.abs(x).max(), np.abs(got - x).max()
    # exactly what "%.3f" gives for the float32 value
    for r, v in zip(rows[:20], x[:20]):
        assert r["Cartn_x"] == ("%.3f" % float(v[0])).replace("-0.000", "0.000")
    for n, r in enumerate(rows):
        t = p.a2t[n]
        assert r["id"] == str(n + 1)
        assert r["label_atom_id"] == r["auth_atom_id"] == p.arr.atom_name[n]
        assert r["label_comp_id"] == r["auth_comp_id"] == p.arr.res_name[n]
        assert r["label_asym_id"] == r["auth_asym_id"] == p.arr.chain_id[n]
        assert r["auth_seq_id"] == str(p.arr.res_id[n])
        assert r["type_symbol"] == p.arr.element[n]
        assert r["B_iso_or_equiv"] == ("1.00" if p.designed[t] else "0.00")
        assert r["occupancy"] == "1.00" and r["group_PDB"] == "ATOM"
    # the quoted prime survives the round trip, written as "O5'"
    assert any("\"O5'\"" in ln for ln in lines)
    return rows


# ------------------------------------------------------------------- tests ----
def test_sample_matches_px_sample(problem, tmp_path):
    p = problem
    out = tmp_path / "run"
    rc, so, se = run(*sample_args(p, out, "--pdb", steps=20))
    assert rc == 0, se
    ref = px_sample(p, 3, n_step=20, seed=7)
    files = sorted(os.listdir(out))
    assert files == ["sample_0000.cif", "sample_0000.pdb", "sample_0001.cif", "sample_0001.pdb",
                     "sample_0002.cif", "sample_0002.pdb", "summary.json"], files
    for i in range(3):
        check_cif_against(p, out / f"sample_{i:04d}.cif", ref[i])
        pdb = open(out / f"sample_{i:04d}.pdb").read().splitlines()
        atoms = [ln for ln in pdb if ln.startswith("ATOM")]
        assert len(atoms) == p.N and pdb[-1] == "END"
        assert all(len(ln) == 78 for ln in atoms)
        xyz = np.array([[float(ln[30:38]), float(ln[38:46]), float(ln[46:54])] for ln in atoms])
        assert np.abs(xyz - ref[i]).max() <= 0.0005 + 1e-6 * np.abs(ref[i]).max()
    s = json.load(open(out / "summary.json"))
    assert s["complete"] is True and s["command"] == "sample" and s["synthetic_weights"] is False
    assert s["checkpoint"] == str(p.ck) and s["bundle"] == str(p.bundle)
    st = s["settings"]
    assert (st["samples"], st["steps"], st["seed"], st["chunk"]) == (3, 20, 7, 2)
    assert (st["eta_type"], st["eta_min"], st["eta_max"]) == ("const", 2.5, 2.5)
    assert (st["gamma0"], st["gamma_min"], st["noise_scale_lambda"]) == (1.0, 0.01, 1.003)
    assert st["schedule_precision"] == "bf16" and st["pdb"] is True
    assert st["device"] == "cpu" and st["precision"] == "fp32"
    t = s["timings"]
    assert t["sampling_s"] > 0 and t["s_per_design"] == pytest.approx(t["sampling_s"] / 3, rel=1e-2, abs=1e-3)
    assert s["samples_computed"] == 3 and s["samples_resumed"] == 0
    assert [f["cif"] for f in s["files"]] == [f"sample_{i:04d}.cif" for i in range(3)]
    assert s["design"]["n_atoms"] == p.N and s["design"]["n_tokens"] == N_TOKEN
    assert len(s["run_id"]) == 16
    assert "wrote 3 samples" in so


def test_defaults_flags_and_schedule_precision(problem, tmp_path):
    p = problem
    rc, _, se = run(*sample_args(p, tmp_path / "bf", samples=1, steps=4))
    assert rc == 0, se
    rc, _, se = run(*sample_args(p, tmp_path / "fp", "--schedule-precision", "fp32", samples=1, steps=4))
    assert rc == 0, se
    a = cif_xyz(read_cif_atoms(tmp_path / "bf" / "sample_0000.cif")[1])
    b = cif_xyz(read_cif_atoms(tmp_path / "fp" / "sample_0000.cif")[1])
    assert np.abs(a - b).max() > 1e-2, "the bf16 schedule should change the result"
    ref = px_sample(p, 1, n_step=4, seed=7, schedule_bf16=0)
    assert np.abs(b - ref[0]).max() <= 0.0005 + 1e-6 * np.abs(ref).max()
    assert json.load(open(tmp_path / "fp" / "summary.json"))["settings"]["schedule_precision"] == "fp32"
    # every sampler flag reaches the sampler
    flags = ["--eta-type", "linear", "--eta-min", "1.5", "--eta-max", "2.0", "--gamma0", "0.8",
             "--gamma-min", "0.05", "--noise-scale-lambda", "1.01"]
    rc, _, se = run(*sample_args(p, tmp_path / "fl", *flags, samples=2, steps=3, seed=3, chunk=1))
    assert rc == 0, se
    ref = px_sample(p, 2, n_step=3, seed=3, eta_type=lib.px_eta_type_from_name(b"linear"), eta_min=1.5,
                    eta_max=2.0, gamma0=0.8, gamma_min=0.05, noise_scale_lambda=1.01)
    for i in range(2):
        got = cif_xyz(read_cif_atoms(tmp_path / "fl" / f"sample_{i:04d}.cif")[1])
        assert np.abs(got - ref[i]).max() <= 0.0005 + 1e-6 * np.abs(ref).max()
    st = json.load(open(tmp_path / "fl" / "summary.json"))["settings"]
    assert (st["eta_type"], st["eta_min"], st["eta_max"], st["gamma0"], st["gamma_min"],
            st["noise_scale_lambda"]) == ("linear", 1.5, 2.0, 0.8, 0.05, 1.01)


def test_default_sampler_settings_are_pxdesigns(problem, tmp_path):
    """No sampler flags: 400 steps, eta const 2.5, gamma0 1, gamma_min 0.01, lambda 1.003,
    chunk 10, bf16 schedule (one sample, checked through summary.json and px_sample)."""
    p = problem
    rc, _, se = run("sample", "--device", "cpu", "--checkpoint", p.ck, "--bundle", p.bundle, "--out",
                    tmp_path / "d", "--quiet")
    assert rc == 0, se
    s = json.load(open(tmp_path / "d" / "summary.json"))["settings"]
    # "chunk" is the batch the engine ran: min(--chunk, --samples)
    assert (s["samples"], s["steps"], s["seed"], s["chunk"], s["eta_type"], s["eta_min"], s["eta_max"],
            s["gamma0"], s["gamma_min"], s["noise_scale_lambda"], s["schedule_precision"]) == (
        1, 400, 0, 1, "const", 2.5, 2.5, 1.0, 0.01, 1.003, "bf16")
    ref = px_sample(p, 1, seed=0)
    got = cif_xyz(read_cif_atoms(tmp_path / "d" / "sample_0000.cif")[1])
    assert np.abs(got - ref[0]).max() <= 0.0005 + 1e-6 * np.abs(ref).max()
    # the default chunk is 10: 11 samples run as 10 + 1
    rc, so, se = run("sample", "--device", "cpu", "--checkpoint", p.ck, "--bundle", p.bundle, "--out",
                     tmp_path / "c", "--samples", 11, "--steps", 1)
    assert rc == 0, se
    assert json.load(open(tmp_path / "c" / "summary.json"))["settings"]["chunk"] == 10
    assert "(chunks of 10)" in so, so


def test_resume_gives_identical_files(problem, tmp_path):
    p = problem
    out = tmp_path / "r"
    args = sample_args(p, out, "--pdb", samples=5, steps=20, chunk=2)
    rc, _, se = run(*args)
    assert rc == 0, se
    before = {f: open(out / f, "rb").read() for f in os.listdir(out) if f != "summary.json"}
    os.remove(out / "sample_0001.cif")
    os.remove(out / "sample_0003.pdb")
    with open(out / "sample_0004.cif", "r+b") as f:  # a foreign, truncated file
        f.truncate(100)
    rc, _, se = run(*args, "--resume")
    assert rc == 0, se
    after = {f: open(out / f, "rb").read() for f in os.listdir(out) if f != "summary.json"}
    assert after == before
    s = json.load(open(out / "summary.json"))
    assert s["samples_resumed"] == 2 and s["samples_computed"] == 3  # 0 and 2 kept
    # chunks [0,1] [2,3] [4] each miss a file: sampled whole, as the first run batched them
    assert s["samples_sampled"] == 5
    os.remove(out / "sample_0004.cif")
    rc, _, se = run(*args, "--resume")
    assert rc == 0, se
    s = json.load(open(out / "summary.json"))
    assert (s["samples_resumed"], s["samples_computed"], s["samples_sampled"]) == (4, 1, 1)
    assert open(out / "sample_0004.cif", "rb").read() == before["sample_0004.cif"]
    # nothing to do: everything resumed
    rc, so, se = run(*args, "--resume")
    assert rc == 0 and json.load(open(out / "summary.json"))["samples_computed"] == 0, se
    # a resume with other settings refuses to mix runs
    rc, so, se = run(*sample_args(p, out, "--pdb", samples=5, steps=20, chunk=2, seed=8), "--resume", "--quiet")
    assert rc == 1 and se.count("\n") == 1 and "other settings" in se, se
    # refused before anything changed: the finished run is intact
    assert {f: open(out / f, "rb").read() for f in os.listdir(out) if f != "summary.json"} == before
    assert json.load(open(out / "summary.json"))["complete"] is True


def test_interrupt_then_resume(problem, tmp_path):
    p = problem
    out = tmp_path / "i"
    args = [_cli(), *map(str, sample_args(p, out, samples=24, steps=40, chunk=1))]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not os.path.exists(out / "sample_0001.cif") and time.time() - t0 < 120 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    so, se = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert proc.returncode == 130, se
    assert "interrupted" in se.splitlines()[-1] and "--resume" in se
    assert not os.path.exists(out / "summary.json")
    done = sorted(f for f in os.listdir(out) if f.endswith(".cif"))
    assert 2 <= len(done) < 24
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    rc, _, se = run(*sample_args(p, out, samples=24, steps=40, chunk=1), "--resume", "--quiet")
    assert rc == 0, se
    s = json.load(open(out / "summary.json"))
    assert s["samples_resumed"] == len(done)
    ref = px_sample(p, 24, n_step=40, seed=7, chunk=8)
    for i in range(24):
        got = cif_xyz(read_cif_atoms(out / f"sample_{i:04d}.cif")[1])
        assert np.abs(got - ref[i]).max() <= 0.0005 + 1e-6 * np.abs(ref[i]).max(), i


def test_pdb_refuses_coordinates_it_cannot_hold(problem, tmp_path):
    """After very few steps coordinates are still ~1000 A: the PDB writer refuses with one
    line naming the file (mmCIF has no such limit) and no summary.json appears."""
    rc, so, se = run(*sample_args(problem, tmp_path / "o", "--pdb", samples=1, steps=1, seed=1))
    if rc == 0:
        pytest.skip("this seed's coordinates fit the PDB columns")
    assert rc == 1 and "sample_0000.pdb" in se.splitlines()[-1] and "mmCIF" in se, se
    assert not os.path.exists(tmp_path / "o" / "summary.json")


def test_unwritable_out(problem, tmp_path):
    p = problem
    f = tmp_path / "a_file"
    f.write_text("x")
    rc, so, se = run(*sample_args(p, f / "sub"))
    assert rc == 1 and so == "" and se.count("\n") == 1, se
    assert se.startswith(f"pxdiff: cannot create output directory {f / 'sub'}: Not a directory")
    rc, so, se = run("demo", "--out", f)
    assert rc == 1 and se.count("\n") == 1 and "Not a directory" in se, se
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        rc, so, se = run(*sample_args(p, ro))
        assert rc == 1 and se.count("\n") == 1 and "cannot write to output directory" in se, se


@pytest.mark.parametrize("bad", [
    ["--samples", "0"], ["--samples", "x"], ["--steps", "-3"], ["--steps", "2.5"], ["--seed", "-1"],
    ["--seed", "1e3"], ["--chunk", "0"], ["--eta-type", "sine"], ["--eta-min", "nan"],
    ["--eta-max", "abc"], ["--gamma0", "-1"], ["--gamma-min", "inf"], ["--noise-scale-lambda", ""],
    ["--schedule-precision", "fp16"], ["--device", "tpu"], ["--precision", "fp8"], ["--threads", "-2"],
    ["--bogus"], ["--pdb=yes"], ["--steps"]])
def test_bad_flags(problem, tmp_path, bad):
    p = problem
    out = tmp_path / "never"
    rc, so, se = run("sample", "--checkpoint", p.ck, "--bundle", p.bundle, "--out", out, *bad)
    assert rc == 2 and so == "" and se.count("\n") == 1 and se.startswith("pxdiff: "), (bad, se)
    assert not os.path.exists(out)


def test_missing_required(problem, tmp_path):
    for args in (["sample", "--bundle", problem.bundle, "--out", tmp_path],
                 ["sample", "--checkpoint", problem.ck, "--out", tmp_path],
                 ["sample", "--checkpoint", problem.ck, "--bundle", problem.bundle], ["demo"]):
        rc, so, se = run(*args)
        assert rc == 2 and se.count("\n") == 1, (args, se)


def test_bad_inputs_fail_with_one_line(problem, tmp_path):
    rc, so, se = run(*sample_args(problem, tmp_path / "o", samples=1, steps=1), "--bundle", problem.ck)
    assert rc == 1 and se.count("\n") == 1 and not os.path.exists(tmp_path / "o" / "summary.json"), se


# ------------------------------------------------------- independent parsers ----
@need_gemmi
def test_gemmi_reads_cif_and_pdb(problem, tmp_path):
    p = problem
    out = tmp_path / "g"
    rc, _, se = run(*sample_args(p, out, "--pdb", samples=2, steps=20))
    assert rc == 0, se
    ref = px_sample(p, 2, n_step=20, seed=7)
    for i in range(2):
        for ext in ("cif", "pdb"):
            st = gemmi.read_structure(str(out / f"sample_{i:04d}.{ext}"))
            assert len(st) == 1
            atoms = [(ch.name, res, a) for ch in st[0] for res in ch for a in res]
            assert len(atoms) == p.N
            xyz = np.array([[a.pos.x, a.pos.y, a.pos.z] for _, _, a in atoms])
            assert np.abs(xyz - ref[i]).max() <= 0.0005 + 1e-6 * np.abs(ref[i]).max()
            for n, (ch, res, a) in enumerate(atoms):
                assert ch == p.arr.chain_id[n] and res.name == p.arr.res_name[n]
                assert res.seqid.num == p.arr.res_id[n] and a.name == p.arr.atom_name[n]
                assert a.element.name.upper() == p.arr.element[n]
                assert a.b_iso == (1.0 if p.designed[p.a2t[n]] else 0.0)
        doc = gemmi.cif.read(str(out / f"sample_{i:04d}.cif"))
        block = doc.sole_block()
        assert block.find_value("_entry.id") == block.name
        seq = list(block.find_values("_atom_site.label_seq_id"))
        assert seq[0] == "1"


@need_biotite
def test_biotite_reads_cif_and_pdb(problem, tmp_path):
    p = problem
    out = tmp_path / "b"
    rc, _, se = run(*sample_args(p, out, "--pdb", samples=1, steps=20))
    assert rc == 0, se
    ref = px_sample(p, 1, n_step=20, seed=7)[0]
    cif = biotite_pdbx.CIFFile.read(str(out / "sample_0000.cif"))
    arr = biotite_pdbx.get_structure(cif, model=1, extra_fields=["b_factor"])
    assert len(arr) == p.N
    assert np.abs(arr.coord - ref).max() <= 0.0005 + 1e-6 * np.abs(ref).max()
    assert list(arr.atom_name) == list(p.arr.atom_name)
    assert list(arr.chain_id) == list(p.arr.chain_id) and list(arr.res_id) == list(p.arr.res_id)
    assert list(arr.b_factor) == [1.0 if p.designed[t] else 0.0 for t in p.a2t]
    pdb = biotite_pdb.PDBFile.read(str(out / "sample_0000.pdb")).get_structure(model=1)
    assert np.abs(pdb.coord - ref).max() <= 0.0005 + 1e-6 * np.abs(ref).max()
    assert list(pdb.atom_name) == list(p.arr.atom_name)


def test_bench_reports_call_and_sampler_step():
    """`pxdiff bench` on synthetic weights (CPU here): one call's median and, with
    --sampler-steps, the whole sampler's time per step; bad values fail with one line."""
    rc, so, se = run("bench", "--device", "cpu", "--tokens", "10", "--binder", "3", "--atoms", "40",
                     "--samples", "2", "--reps", "2", "--sampler-steps", "2")
    assert rc == 0, se
    lines = so.splitlines()
    assert any(l.strip().startswith("denoise call: median") for l in lines), so
    step = [l for l in lines if l.strip().startswith("sampler: 2 steps")]
    assert len(step) == 1 and "ms per step" in step[0] and "s per design at 400 steps" in step[0], so
    for bad in (["--sampler-steps", "-1"], ["--precision", "fp8"], ["--device", "cpu", "--precision", "fp16"]):
        rc, so, se = run("bench", "--tokens", "10", "--binder", "3", "--atoms", "40", *bad)
        assert rc != 0 and se.count("\n") == 1 and se.startswith("pxdiff: "), (bad, se)
