"""The engine's thread count inside a PyTorch process (docs/dropin.md, "Threads").

Importing Debian's torch leaves OpenMP at 1 thread on a small machine, and libpxdiff shares
torch's libgomp; the engine must still run on every usable core, without changing torch's
setting (its OpenMP count, its BLAS count) and with PXDIFF_NUM_THREADS / set_num_threads /
the CPU affinity mask taken into account. Each case runs in a fresh interpreter so the
process-wide settings are exactly those of the case. The probe of how many threads the
engine really ran on reads the CPU time of every OS thread of the process (/proc/self/task)
around engine calls: a thread that computed for the engine accumulates CPU time."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

LINUX = sys.platform.startswith("linux")
AFFINITY = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

# A subprocess: imports torch first and sets ITS threads to 1 (what `import torch` leaves
# on a 2-core machine, forced here so the case is the same on any machine), then builds a
# small accelerated model and runs engine calls for ~0.6 s, printing one JSON line.
PROBE = textwrap.dedent(r"""
    import ctypes, json, os, sys, time
    pre = json.loads(sys.argv[1])
    if pre.get("affinity") is not None:
        os.sched_setaffinity(0, set(pre["affinity"]))
    import torch
    torch.set_num_threads(1)
    gomp = ctypes.CDLL("libgomp.so.1") if sys.platform.startswith("linux") else None
    def blas_threads():
        for name in ("libopenblas.so.0",):
            try:
                return ctypes.CDLL(name).openblas_get_num_threads()
            except OSError:
                return None
    import pxdiff, pxfixtures
    if pre.get("set") is not None:
        pxdiff.set_num_threads(pre["set"])
    torch_before = (torch.get_num_threads(), gomp.omp_get_max_threads() if gomp else None,
                    blas_threads())

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.diffusion_module = pxfixtures.random_model(pxfixtures.SMALL_DIMS, seed=0)
    model = Model().eval()
    acc = pxdiff.enable_acceleration(model, verbose=True)
    assert acc is not None
    inp = pxfixtures.random_features_for(pxfixtures.SMALL_DIMS, n_token=48, seed=3)
    N = inp.feats["atom_to_token_idx"].shape[0]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, N, 3, generator=g) * 10
    t = torch.full((4,), 5.0)

    def call():
        with torch.no_grad():
            return acc(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)

    def cpu_ticks():
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[tid] = int(fields[11]) + int(fields[12])  # utime + stime
            except OSError:
                pass
        return out

    y = call()  # builds the design cache
    before = cpu_ticks()
    t0 = time.monotonic()
    calls = 0
    while time.monotonic() - t0 < 0.6 or calls < 3:
        y = call(); calls += 1
    after = cpu_ticks()
    busy = sorted((after[k] - before.get(k, 0) for k in after), reverse=True)
    print(json.dumps(dict(
        engine=pxdiff.num_threads(), source=acc.pxdiff_info.get("threads_source"),
        info_threads=acc.pxdiff_info.get("threads_engine"),
        torch_before=torch_before,
        torch_after=(torch.get_num_threads(), gomp.omp_get_max_threads() if gomp else None,
                     blas_threads()),
        busy=busy, affinity=len(os.sched_getaffinity(0)), out=y.double().sum().item())))
""")


def run_probe(env_threads=None, set_threads=None, affinity=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "python"), os.path.join(ROOT, "tests", "ref")])
    env.pop("PXDIFF_NUM_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("PXDIFF_DISABLE", None)
    if env_threads is not None:
        env["PXDIFF_NUM_THREADS"] = str(env_threads)
    pre = dict(set=set_threads, affinity=affinity)
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(pre)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["stderr"] = p.stderr
    return r


def busy_threads(r):
    """OS threads that computed during the engine calls: the main thread's share sets the
    scale (10% of it counts as busy; an idle thread accumulates nothing)."""
    top = r["busy"][0]
    return sum(1 for b in r["busy"] if top > 0 and b >= 0.1 * top)


def cgroup_limited():
    """A cgroup CPU quota below the affinity mask (then the default is the quota, which the
    C test checks; here only the affinity part is checked)."""
    for path in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                 "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"):
        try:
            with open(path) as f:
                v = f.read().split()[0]
            if v not in ("max", "-1"):
                return True
        except OSError:
            pass
    return False


def test_default_is_all_usable_cores_whatever_torch_set():
    r = run_probe()
    assert r["torch_before"][0] == 1  # torch (and its OpenMP) at 1 thread, as PXDesign has it
    if not cgroup_limited():
        assert r["engine"] == AFFINITY, r
    assert r["info_threads"] == r["engine"] and r["source"] == "all usable cores"
    assert f"engine: {r['engine']} CPU threads" in r["stderr"]  # the drop-in's banner says so
    # torch's settings are untouched by the engine: its thread count, OpenMP's, OpenBLAS's
    assert r["torch_after"] == r["torch_before"], r
    if LINUX and r["engine"] > 1:
        # the engine really ran on them (up to 4: at this size a region may not have work
        # for more)
        assert busy_threads(r) >= min(r["engine"], AFFINITY, 4), r


def test_env_and_set_num_threads_override():
    r1 = run_probe(env_threads=1)
    assert r1["engine"] == 1 and r1["source"] == "PXDIFF_NUM_THREADS"
    assert r1["torch_after"] == r1["torch_before"]
    if LINUX:
        assert busy_threads(r1) == 1, r1
    r3 = run_probe(env_threads=3)
    assert r3["engine"] == 3
    rs = run_probe(env_threads=3, set_threads=2)  # the API wins over the variable
    assert rs["engine"] == 2 and rs["source"] == "pxdiff.set_num_threads"
    r0 = run_probe(env_threads="zero")  # not a count: ignored
    assert r0["engine"] == run_probe()["engine"]
    # results do not depend on the thread count
    assert r1["out"] == r3["out"] == rs["out"]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or AFFINITY < 2,
                    reason="needs CPU affinity control and at least 2 usable CPUs")
def test_affinity_lowers_the_default():
    one = sorted(os.sched_getaffinity(0))[0]
    r = run_probe(affinity=[one])
    assert r["affinity"] == 1 and r["engine"] == 1, r
    assert busy_threads(r) == 1, r


def test_set_num_threads_in_process():
    import pxdiff
    import torch
    before = torch.get_num_threads()
    default = pxdiff.num_threads()
    try:
        pxdiff.set_num_threads(5)
        assert pxdiff.num_threads() == 5
        pxdiff.set_num_threads(None)
        assert pxdiff.num_threads() == default
    finally:
        pxdiff.set_num_threads(0)
    assert torch.get_num_threads() == before
