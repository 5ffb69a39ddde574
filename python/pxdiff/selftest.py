"""pxdiff's integration check, step by step; exit status 0 only when every step passes.

    python -m pxdiff.selftest [--backend auto|cpu|cuda] [--precision fp32|tf32|bf16|fp16]
                              [--checkpoint pxdesign_v0.1.0.pt] [--tokens 16]

Steps: imports; backend availability and device; threads (the engine's count against the
CPUs this process may use, with torch's own settings as a real PXDesign process has them:
the self-test never sets torch's threads); weights loaded (random small weights, or a
checkpoint's diffusion_module.* at the released dims); engine active in place of a model's
diffusion_module; one call compared with PyTorch (relative error <= 1e-4 at fp32), and on the
CPU how many OS threads really computed during engine calls.

The PyTorch side is a DiffusionModule with upstream's parameter names: the repository's
reference (tests/ref/pxref.py), found next to this package or through $PXDIFF_REF.
"""
import argparse
import os
import sys
import time
import traceback

TOL = {"fp32": 1e-4, "tf32": 5e-3, "bf16": 3e-2, "fp16": 5e-3}


class Check:
    def __init__(self, n):
        self.n, self.i, self.failed = n, 0, []

    def step(self, title):
        self.i += 1
        print(f"[{self.i}/{self.n}] {title}...", flush=True)

    def ok(self, msg, *details):
        print(f"  OK   {msg}")
        for d in details:
            print(f"       {d}")
        sys.stdout.flush()

    def fail(self, msg, exc=None):
        print(f"  FAIL {msg}")
        if exc is not None and os.environ.get("PXDIFF_SELFTEST_TRACE"):
            traceback.print_exc()
        self.failed.append(f"step {self.i}: {msg}")
        sys.stdout.flush()


def _cgroup_cpus():
    """The cgroup CPU quota in CPUs (rounded up), or None: v2 cpu.max or v1
    cpu.cfs_quota_us/cpu.cfs_period_us along this process's cgroup and its parents (read
    here independently of the engine's own reader)."""
    best = None
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, ctrls, rel = parts
        if hid == "0" and not ctrls:
            mounts, v2 = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"], True
        elif "cpu" in ctrls.split(","):
            mounts, v2 = [f"/sys/fs/cgroup/{ctrls}", "/sys/fs/cgroup/cpu"], False
        else:
            continue
        for m in mounts:
            d = m + rel.rstrip("/")
            while True:
                try:
                    if v2:
                        with open(d + "/cpu.max") as f:
                            q, per = f.read().split()[:2]
                    else:
                        with open(d + "/cpu.cfs_quota_us") as f:
                            q = f.read().strip()
                        with open(d + "/cpu.cfs_period_us") as f:
                            per = f.read().strip()
                    if q not in ("max", "-1") and int(q) > 0 and int(per) > 0:
                        c = -(-int(q) // int(per))
                        best = c if best is None else min(best, c)
                except (OSError, ValueError, IndexError):
                    pass
                if len(d) <= len(m):
                    break
                d = d[:d.rfind("/")] if d.rfind("/") >= len(m) else m
    return best


def expected_threads():
    """(count, why) the engine should run on: PXDIFF_NUM_THREADS when set, else the CPUs
    this process may use."""
    env = os.environ.get("PXDIFF_NUM_THREADS", "").strip()
    if env.isdigit() and 1 <= int(env) <= 4096:
        return int(env), "PXDIFF_NUM_THREADS"
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    why = f"{n} CPUs in this process's affinity mask"
    q = _cgroup_cpus()
    if q is not None and q < n:
        n, why = q, f"cgroup CPU quota of {q}"
    return n, why


def _thread_ticks():
    """CPU time (clock ticks) of each OS thread of this process, {} where /proc is absent."""
    out = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[tid] = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return out


def busy_threads(fn, seconds=0.5):
    """OS threads that computed while fn() ran repeatedly for `seconds` (a thread counts when
    it used at least a tenth of the busiest one's CPU time); None without /proc."""
    before = _thread_ticks()
    if not before:
        return None
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        fn()
    after = _thread_ticks()
    d = sorted((after[k] - before.get(k, 0) for k in after), reverse=True)
    if not d or d[0] <= 0:
        return None
    return sum(1 for x in d if x >= 0.1 * d[0])


def _omp_and_blas_threads():
    """(OpenMP's omp_get_max_threads, OpenBLAS's count) of this process, None where unknown."""
    import ctypes
    out = []
    for lib, fn in (("libgomp.so.1", "omp_get_max_threads"),
                    ("libopenblas.so.0", "openblas_get_num_threads")):
        try:
            out.append(int(getattr(ctypes.CDLL(lib), fn)()))
        except (OSError, AttributeError):
            out.append(None)
    return out


def _find_ref():
    here = os.path.dirname(os.path.abspath(__file__))
    cands = [os.environ.get("PXDIFF_REF"), os.path.join(here, "..", "..", "tests", "ref")]
    for c in cands:
        if c and os.path.exists(os.path.join(c, "pxref.py")):
            c = os.path.abspath(c)
            if c not in sys.path:
                sys.path.insert(0, c)
            return c
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pxdiff.selftest", description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default=None, help="auto (default: follows the device), cpu, cuda")
    ap.add_argument("--precision", default=None, help="fp32, tf32, bf16, fp16 (default: the backend's)")
    ap.add_argument("--checkpoint", default=None, help="a PXDesign checkpoint (released dims)")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--device", default=None, help="torch device of the PyTorch module "
                    "(default: cuda when the backend is cuda, else cpu)")
    a = ap.parse_args(argv)
    chk = Check(7)
    print("=" * 64)
    print("pxdiff self-test")
    print("=" * 64)

    # 1 ---------------------------------------------------------------------
    chk.step("Imports")
    try:
        import torch
        import pxdiff
        from pxdiff import accel
        from pxdiff._lib import lib
        chk.ok(f"pxdiff {pxdiff.__version__} from {os.path.dirname(pxdiff.__file__)}",
               f"libpxdiff: {lib._name}", f"BLAS: {pxdiff.blas_name()}",
               f"CPU bf16: {pxdiff.cpu_bf16_name()}",
               f"torch {torch.__version__}")
    except Exception as e:  # noqa: BLE001
        chk.fail(f"import failed: {type(e).__name__}: {e}", e)
        return _summary(chk)
    if accel.acceleration_disabled():
        print(f"  note: {accel.DISABLE_ENV} is set; it is ignored by the self-test")
        os.environ.pop(accel.DISABLE_ENV, None)

    # 2 ---------------------------------------------------------------------
    chk.step("Backend availability and device")
    n_cuda = accel.cuda_device_count()
    t_cuda = torch.cuda.is_available()
    backend = (a.backend or os.environ.get("PXDIFF_BACKEND") or "auto").lower()
    if a.device:
        tdev = torch.device(a.device)
    elif backend == "cuda" or (backend == "auto" and n_cuda > 0 and t_cuda):
        tdev = torch.device("cuda")
    else:
        tdev = torch.device("cpu")
    info = [f"engine CUDA devices: {n_cuda}", f"torch.cuda.is_available(): {t_cuda}",
            f"PyTorch module on: {tdev}"]
    if tdev.type == "cuda" and not t_cuda:
        chk.fail("a CUDA device was asked for but torch sees none")
    elif backend == "cuda" and n_cuda == 0:
        chk.fail("backend cuda asked for, but this libpxdiff has no usable CUDA device "
                 "(built without CUDA, or no GPU)")
    else:
        chk.ok(f"backend request '{backend}'", *info)

    # 3 ---------------------------------------------------------------------
    # As PXDesign runs: torch imported, its threads never set (after `import torch` its OpenMP
    # count may be 1 on a small machine); the engine must use its own count regardless.
    chk.step("Threads")
    want, why = expected_threads()
    omp, blas = _omp_and_blas_threads()
    host = (f"torch.get_num_threads() {torch.get_num_threads()}, OpenMP max threads "
            f"{omp if omp is not None else '?'}, OpenBLAS threads {blas if blas is not None else '?'}"
            " (the host's; the engine leaves them as they are)")
    have = pxdiff.num_threads()
    if have is None:
        chk.fail("this libpxdiff has no px_num_threads: it runs on the process's OpenMP setting "
                 f"({omp}), not on its own count; rebuild it", host)
    elif tdev.type == "cpu" and have < want:
        chk.fail(f"the engine would run on {have} threads, fewer than it should ({want}: {why})")
        print(f"       {host}")
    else:
        wp = os.environ.get("OMP_WAIT_POLICY")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        note = (f"OMP_WAIT_POLICY {wp or 'unset (busy wait)'}"
                + (f"; load average {load:.1f} on {want} usable CPUs" if load is not None else ""))
        if not wp and load is not None and load > want + 0.5:
            note += (": on a machine shared with other work, OMP_WAIT_POLICY=passive in the "
                     "environment is faster (docs/dropin.md, Threads)")
        chk.ok(f"engine threads: {have} (expected {want}: {why})", host, note)

    # 4 ---------------------------------------------------------------------
    chk.step("Weights loaded")
    ref_dir = _find_ref()
    holder = None
    try:
        if ref_dir is None:
            raise RuntimeError("no PyTorch reference module (tests/ref/pxref.py; set PXDIFF_REF)")
        import pxfixtures
        if a.checkpoint:
            dims = dict(pxfixtures.DEFAULT_DIMS)
            module = pxfixtures.build_model(dims)
            ck = torch.load(a.checkpoint, map_location="cpu")
            sd = ck.get("model", ck) if isinstance(ck, dict) else ck
            sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
            pre = "diffusion_module."
            sd = {k[len(pre):]: v.float() for k, v in sd.items() if k.startswith(pre)}
            module.load_state_dict(sd, strict=True)
            src = a.checkpoint
        else:
            dims = dict(pxfixtures.SMALL_DIMS)
            module = pxfixtures.random_model(dims, seed=0)
            src = "random weights, small dims"
        module = module.to(tdev).eval()
        holder = torch.nn.Module()
        holder.diffusion_module = module
        n = sum(p.numel() for p in module.parameters())
        chk.ok(f"PyTorch DiffusionModule: {n / 1e6:.2f} M parameters ({src})")
    except Exception as e:  # noqa: BLE001
        chk.fail(f"{type(e).__name__}: {e}", e)
        return _summary(chk)

    # 5 ---------------------------------------------------------------------
    chk.step("Engine set-up (enable_acceleration)")
    acc = pxdiff.enable_acceleration(holder, backend=a.backend, precision=a.precision,
                                     verbose=False)
    if acc is None:
        chk.fail("enable_acceleration returned None (see the warning above)")
        return _summary(chk)
    i = acc.pxdiff_info
    chk.ok(f"weights copied: {i['n_params'] / 1e6:.2f} M values in {i['setup_s']:.2f} s",
           f"backend {i['backend']}, precision {i['precision']} ({i['reason']})",
           f"device pointers (px_denoise_device): {'yes' if i['device_pointers'] else 'no'}")

    # 6 ---------------------------------------------------------------------
    chk.step("Engine active")
    if accel.engine_of(holder) is acc and acc.active:
        chk.ok("model.diffusion_module is the engine-backed module")
    else:
        chk.fail(f"engine not active ({acc.pxdiff_failed})")

    # 7 ---------------------------------------------------------------------
    chk.step("One call compared with PyTorch")
    try:
        inp = pxfixtures.random_features_for(dims, n_token=a.tokens, seed=3)
        feats = {k: v.to(tdev) for k, v in inp.feats.items()}
        args = (feats, inp.s_inputs.to(tdev), inp.s_trunk.to(tdev), inp.z_trunk.to(tdev))
        N = feats["atom_to_token_idx"].shape[0]
        x = pxfixtures.random_coords(2, N, seed=1).to(tdev)
        t = torch.tensor([16.0, 160.0], device=tdev)
        with torch.no_grad():
            t0 = time.monotonic()
            ref = acc.original(x, t, *args)
            t_ref = time.monotonic() - t0
            acc(x, t, *args)  # builds the design cache
            t0 = time.monotonic()
            out = acc(x, t, *args)
            t_eng = time.monotonic() - t0
        if not acc.active:
            raise RuntimeError(f"the engine call failed: {acc.pxdiff_failed}")
        err = ((out.double() - ref.double()).norm() / ref.double().norm()).item()
        tol = TOL.get(i["precision"], 1e-4)
        line = (f"relative error {err:.2e} (bound {tol:g}); PyTorch {t_ref * 1e3:.1f} ms, "
                f"engine {t_eng * 1e3:.1f} ms (2 samples, {N} atoms)")
        extra, short = [], None
        if i.get("engine_device") == "cpu" and have:
            def again():
                with torch.no_grad():
                    acc(x, t, *args)
            busy = busy_threads(again)
            if busy is not None:
                extra.append(f"OS threads computing during engine calls: {busy} "
                             f"(engine threads {have})")
                # at the self-test's small size not every region has work for many
                # threads, so only a run on fewer than 2 (of 2 or more) fails here
                floor = min(have, want, 2)
                if busy < floor:
                    short = (f"the engine computed on {busy} OS thread(s) during its calls, "
                             f"fewer than {floor}")
        if err <= tol and torch.isfinite(out).all():
            chk.ok(line, *extra)
        else:
            chk.fail(line)
        if short:
            chk.fail(short)
    except Exception as e:  # noqa: BLE001
        chk.fail(f"{type(e).__name__}: {e}", e)
    return _summary(chk)


def _summary(chk):
    print("=" * 64)
    if chk.failed:
        print(f"pxdiff self-test FAILED ({len(chk.failed)} of {chk.i} steps run):")
        for f in chk.failed:
            print(f"  - {f}")
        print("=" * 64)
        return 1
    print(f"pxdiff self-test passed ({chk.i}/{chk.n} steps)")
    print("=" * 64)
    return 0


if __name__ == "__main__":
    sys.exit(main())
