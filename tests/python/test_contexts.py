"""Several backend contexts in one `pxdiff design` process (issue 15 item 3; src/cli/design_workers.c
workers, px_model_share / px_model_set_device / px_device_list_parse in src/model/runtime.c).

Here, without a GPU, the contexts are CPU workers (`--device cpu,cpu`): the same queue, threads,
case sharing and failure path as `--device cuda:0,2`, on the CPU backend. tests/gpu/
check_contexts.sh runs the CUDA side (cuda:0,0 against cuda:0) on the device machine.

- two and three contexts give the one-context run's files byte for byte (a unit's designs do
  not depend on which context computed it), each context computing part of the work;
- a context that fails after k units (PXDIFF_TEST_FAIL_WORKER, at a random k) loses nothing:
  its unit goes to the others, the files are again the one-context run's, and status.json and
  the failed unit's summary.json name the failure;
- when the only context fails, the run stops with one line and exit 1; the designs it
  finished are complete files of the run, and --resume finishes with identical files;
- device lists that are wrong get one line and exit 2, before anything is written;
- two shards (--shard K/2), each with two contexts, together write the one-context run's files;
- the C API: px_device_list_parse, px_model_share, px_sample_bytes.
"""
import ctypes
import json
import os
import random

import pytest
import torch

import pxembed_ref
import pxfixtures
from conftest import ROOT
from pxdiff._lib import Dims, lib
from test_campaign import (CAMPAIGN_FILES, SMALL_EMBED, TASKS, complete, config_norm, files, run,  # noqa: F401
                           summary_norm)

BASE = ("--N_sample", "5", "--N_step", "3", "--seeds", "7,8", "--chunk", "2", "--threads", "1")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    model = {"module.diffusion_module." + k: v
             for k, v in pxfixtures.random_state_dict(pxfixtures.SMALL_DIMS, seed=5).items()}
    model.update({"module." + k: v for k, v in pxembed_ref.random_state_dict(SMALL_EMBED, seed=6).items()})
    path = d / "pxdesign_v0.1.0.pt"
    torch.save({"model": model}, str(path))
    return path


def design(ckpt, out, device, *extra, env=None):
    args = ["design", "-i", TASKS, "-o", out, "--checkpoint", ckpt, "--device", device, *BASE, "--status", *extra]
    if env is None:
        return run(*args)
    import subprocess
    from test_campaign import _cli
    r = subprocess.run([_cli(), *map(str, args)], capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**os.environ, **env})
    return r.returncode, r.stdout, r.stderr


def summary_ctx_norm(path):
    """summary_norm without what says which contexts ran it."""
    s = summary_norm(path)
    s["settings"].pop("device", None)
    s.pop("contexts", None)
    s.pop("context_failures", None)
    return s


def assert_same_designs(ref, got):
    fr, fg = files(ref), files(got)
    keys = {r for r in fr if r not in CAMPAIGN_FILES}
    assert keys == {r for r in fg if r not in CAMPAIGN_FILES}
    n_cif = 0
    for rel in sorted(keys):
        if rel.endswith("summary.json"):
            assert summary_ctx_norm(fr[rel]) == summary_ctx_norm(fg[rel]), rel
        elif rel == "config.yaml":
            assert config_norm(fr[rel]) == config_norm(fg[rel])
        else:
            assert open(fr[rel], "rb").read() == open(fg[rel], "rb").read(), rel
            n_cif += rel.endswith(".cif")
    assert n_cif == 20


@pytest.fixture(scope="module")
def one(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    rc, so, se = design(ckpt, out, "cpu")
    assert rc == 0, se
    return out


@pytest.mark.parametrize("device", ["cpu,cpu", "cpu,cpu,cpu"])
def test_contexts_equal_one(ckpt, one, tmp_path, device):
    out = tmp_path / "run"
    rc, so, se = design(ckpt, out, device)
    assert rc == 0, se
    n = device.count(",") + 1
    assert f"on {n} contexts" in so, so
    assert_same_designs(one, out)
    st = json.load(open(out / "status.json"))
    assert st["state"] == "done" and st["designs"]["done"] == 20 and st["last_error"] is None
    assert [d["device"] for d in st["devices"]] == [f"cpu (context {i + 1})" for i in range(n)]
    assert sum(d["designs"] for d in st["devices"]) == 20 and sum(d["units"] for d in st["devices"]) == 12
    assert all(d["error"] is None for d in st["devices"])
    per_case = 0
    for rel, p in files(out).items():
        if rel.endswith("summary.json"):
            s = json.load(open(p))
            assert s["settings"]["device"] == device and s["context_failures"] is None
            assert sum(c["designs"] for c in s["contexts"]) == 5
            per_case += 1
    assert per_case == 4


def test_failed_context_loses_nothing(ckpt, one, tmp_path):
    rng = random.Random(int(os.environ.get("PXDIFF_TEST_SEED", "0")) or None)
    k = rng.randrange(0, 4)
    out = tmp_path / "run"
    rc, so, se = design(ckpt, out, "cpu,cpu", env={"PXDIFF_TEST_FAIL_WORKER": f"1:{k}"})
    assert rc == 0, se
    assert "cpu (context 2): injected failure" in se and "goes to the other 1 context" in se, se
    assert "1 of them failed" in so, so
    assert_same_designs(one, out)
    st = json.load(open(out / "status.json"))
    assert st["state"] == "done" and st["designs"]["done"] == 20
    failed = st["devices"][1]
    assert failed["state"] == "failed" and "injected failure" in failed["error"] and failed["units"] == k
    assert st["devices"][0]["error"] is None and st["devices"][0]["units"] == 12 - k
    assert "injected failure" in st["last_error"]
    rc, so, se = run("status", out)
    assert rc == 0 and "shard 1/1: done, 12/12 units" in so and "2 contexts (1 failed)" in so, so
    noted = [json.load(open(p))["context_failures"] for rel, p in files(out).items() if rel.endswith("summary.json")]
    assert sum(1 for n in noted if n) == 1 and "cpu (context 2)" in [n for n in noted if n][0]


def test_only_context_fails_then_resume(ckpt, one, tmp_path):
    out = tmp_path / "run"
    rc, so, se = design(ckpt, out, "cpu", env={"PXDIFF_TEST_FAIL_WORKER": "0:3"})
    assert rc == 1 and se.strip().splitlines()[-1] == "pxdiff: cpu: injected failure (PXDIFF_TEST_FAIL_WORKER)", se
    st = json.load(open(out / "status.json"))
    assert st["state"] == "failed" and "injected failure" in st["last_error"]
    cifs = [r for r in files(out) if r.endswith(".cif")]
    assert len(cifs) == 5  # units of 2 + 2 + 1 samples of the first case
    for rel in cifs:
        assert complete(out / rel) and open(out / rel, "rb").read() == open(one / rel, "rb").read()
    rc, so, se = design(ckpt, out, "cpu", "--resume")
    assert rc == 0, se
    assert_same_designs(one, out)


@pytest.mark.parametrize("device,want", [
    ("cuda:x", "'x' is not a CUDA device index"), ("cuda:-1", "'-1' is not a CUDA device index"),
    ("cuda:5", "cuda:5"), ("", "empty"), ("gpu0", "'gpu0' is not a device"), ("cpu,", "'' is not a device"),
    ("cpu,cuda:0", "cuda:0"), ("cuda:", "index is missing"),
])
def test_bad_device_lists(ckpt, tmp_path, device, want):
    out = tmp_path / "o"
    rc, so, se = design(ckpt, out, device)
    assert rc == 2 and so == "" and se.count("\n") == 1 and "--device" in se and want in se, se
    assert not out.exists()


# ------------------------------------------------------------------ C API ----

class DeviceRef(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("index", ctypes.c_int)]


def parse(text, cap=8):
    out = (DeviceRef * cap)()
    n = ctypes.c_int(-1)
    rc = lib.px_device_list_parse(text, out, cap, ctypes.byref(n))
    return rc, [(out[i].kind, out[i].index) for i in range(n.value if rc == 0 else 0)]


def test_device_list_parse():
    cpu, auto = 1, 0
    assert parse(b"cpu") == (0, [(cpu, 0)])
    assert parse(b"cpu,cpu,cpu") == (0, [(cpu, 0)] * 3)
    assert parse(b"auto") == (0, [(auto, 0)])
    assert parse(b"cpu,cpu", cap=1)[0] != 0 and "more than 1" in lib.px_last_error().decode()
    n_gpu = lib.px_cuda_device_count()
    if n_gpu == 0:
        for bad in (b"cuda", b"cuda:0", b"cuda:all", b"cuda:0,0"):
            msg = lib.px_last_error().decode() if parse(bad)[0] != 0 else "parsed"
            assert "no CUDA device" in msg or "built without CUDA" in msg, (bad, msg)
    else:
        assert parse(b"cuda:0,0") == (0, [(2, 0), (2, 0)])
        assert parse(b"cuda:all") == (0, [(2, i) for i in range(n_gpu)])
    for bad in (b"", b"auto,cpu", b"cuda:1x", b"cpu:0", b" cpu"):
        assert parse(bad)[0] != 0, bad
        msg = lib.px_last_error().decode()
        assert msg and "\n" not in msg


def test_model_share_and_sample_bytes(ckpt):
    m = ctypes.c_void_p()
    assert lib.px_model_load(str(ckpt).encode(), ctypes.byref(m)) == 0
    h = ctypes.c_void_p()
    assert lib.px_model_share(m, ctypes.byref(h)) == 0
    assert lib.px_model_set_device(h, 1, 0, 1, -1) == 0  # the CPU: no context of its own to make
    assert lib.px_model_set_device(h, 1, 1, 0, -1) != 0 and "index 0 only" in lib.px_last_error().decode()
    assert lib.px_model_device_index(h) == 0
    b = [lib.px_sample_bytes(h, 50, 350, s) for s in (1, 2, 10)]
    assert 0 < b[0] < b[1] < b[2]
    assert b == [lib.px_sample_bytes(m, 50, 350, s) for s in (1, 2, 10)]
    assert lib.px_sample_bytes(h, 100, 350, 2) > b[1]  # the pair bias grows with T^2
    assert lib.px_sample_bytes(h, 0, 350, 2) == -1
    free, total = ctypes.c_int64(-1), ctypes.c_int64(-1)
    assert lib.px_device_memory(1, 0, ctypes.byref(free), ctypes.byref(total)) == 0 and free.value == 0
    lib.px_model_free(h)  # the handle only: the model's weights stay
    dims = Dims()
    assert lib.px_model_get_dims(m, ctypes.byref(dims)) == 0 and dims.c_atom > 0
    lib.px_model_free(m)


def test_resume_reuses_the_recorded_chunk(ckpt, one, tmp_path):
    """--resume without --chunk takes the chunk config.yaml recorded (on a GPU the chunk
    changes the designs, and the automatic choice may differ from one start to the next)."""
    out = tmp_path / "run"
    rc, so, se = design(ckpt, out, "cpu", env={"PXDIFF_TEST_FAIL_WORKER": "0:1"})
    assert rc == 1, se
    args = [a for a in ("design", "-i", TASKS, "-o", out, "--checkpoint", ckpt, "--device", "cpu", *BASE, "--status",
                        "--resume") if a not in ("--chunk", "2")]
    rc, so, se = run(*args)
    assert rc == 0 and "chunks of 2 (as the run recorded it in config.yaml)" in so, so
    assert json.load(open(out / "status.json"))["units"]["total"] == 12  # 3 chunks per case, not 1
    assert_same_designs(one, out)


def test_failed_write_keeps_the_units_other_files(ckpt, one, tmp_path):
    """A unit's files are written in parallel (src/cli/design_workers.c): when one fails
    (PXDIFF_TEST_FAIL_WRITE=3: sample 3 of every case, in the unit of samples 2 and 3) the run
    ends with that one line and exit 1, the unit's other file is complete with its CSV row,
    no summary.json claims the case, and --resume turns the directory into the uninterrupted
    run's files."""
    out = tmp_path / "run"
    rc, so, se = design(ckpt, out, "cpu", env={"PXDIFF_TEST_FAIL_WRITE": "3"})
    assert rc == 1 and se.strip().splitlines()[-1] == "pxdiff: injected write failure (PXDIFF_TEST_FAIL_WRITE)", se
    fr = files(out)
    cif2 = [r for r in fr if r.endswith("_sample_2.cif")]
    assert cif2 and not [r for r in fr if r.endswith("_sample_3.cif")], sorted(fr)
    fo = files(one)
    for rel in cif2:
        assert open(fr[rel], "rb").read() == open(fo[rel], "rb").read(), rel
    rows = open(out / "designs.csv").read()
    assert [line for line in rows.splitlines() if "_sample_2.cif" in line], rows
    assert not [line for line in rows.splitlines() if "_sample_3.cif" in line], rows
    assert not [r for r in fr if r.endswith("summary.json")], sorted(fr)
    rc, so, se = design(ckpt, out, "cpu", "--resume")
    assert rc == 0, se
    assert_same_designs(one, out)


def test_shards_of_contexts(ckpt, one, tmp_path):
    """--shard K/N with several contexts per shard: the union is again the one-context run."""
    from test_campaign import start
    out = tmp_path / "run"
    procs = [start("design", "-i", TASKS, "-o", out, "--checkpoint", ckpt, "--device", "cpu,cpu", *BASE,
                   "--shard", f"{k}/2", "-q") for k in (1, 2)]
    for p in procs:
        so, se = p.communicate(timeout=600)
        assert p.returncode == 0, se
    fo, fr = files(one), files(out)
    cifs = sorted(r for r in fo if r.endswith(".cif") or r.endswith("SUCCESS_FILE"))
    assert len(cifs) == 24 and cifs == sorted(r for r in fr if r.endswith(".cif") or r.endswith("SUCCESS_FILE"))
    for rel in cifs:
        assert open(fo[rel], "rb").read() == open(fr[rel], "rb").read(), rel
