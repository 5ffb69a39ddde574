#!/usr/bin/env python3
"""Device check: several backend contexts in one `pxdiff design` (issue 15 item 3) and the
automatic chunk (issue 13 item 2, issue 15 item 6), on one GPU (the `run` tool):

    PYTHONPATH=tests/ref python3 tests/gpu/check_contexts.py --pxdiff build-cuda/pxdiff --work /tmp/ctx

Weights: random, of the released shapes (tests/ref/pxfixtures.py, pxembed_ref.py), so that the
default precision (fp16 token blocks) runs as it does with the real checkpoint.
1. `--device cuda:0,0` (two contexts on one GPU) writes the files of `--device cuda:0`, byte for
   byte: 2 small tasks x 2 seeds x 6 samples, chunks of 3 (the tasks of tests/data/campaign);
2. a context that fails after one unit (PXDIFF_TEST_FAIL_WORKER=1:1): the same files; status.json
   and the summaries name the failure;
3. four 330-token tasks of 5 samples each, 400 steps: the automatic chunk (5, and contexts added
   because 5 samples underfill the card) writes the files of `--device cuda:0 --chunk 5`; times;
4. compute-sanitizer memcheck of a short two-context run (where the machine supports it);
5. designs per hour at 330 tokens, 400 steps, 100 designs: the automatic chunk vs --chunk 10.
Exits nonzero when a check fails; prints a table last."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

FAIL = []
ROWS = []


def note(name, ok, detail=""):
    print(f"  {'ok ' if ok else 'BAD'} {name} {detail}", flush=True)
    ROWS.append((name, "ok" if ok else "BAD", detail))
    if not ok:
        FAIL.append(name)


def checkpoint(path):
    import torch
    import pxembed_ref
    import pxfixtures
    t0 = time.time()
    model = {"module.diffusion_module." + k: v
             for k, v in pxfixtures.random_state_dict(pxfixtures.DEFAULT_DIMS, seed=5).items()}
    model.update({"module." + k: v for k, v in pxembed_ref.random_state_dict(pxembed_ref.RELEASED, seed=6).items()})
    torch.save({"model": model}, path)
    print(f"checkpoint: {path} ({os.path.getsize(path) / 2**20:.0f} MiB, {time.time() - t0:.1f} s)", flush=True)


def design(px, ckpt, tasks, out, *args, env=None, prefix=(), timeout=None):
    cmd = [*prefix, px, "design", "-i", *tasks, "-o", out, "--checkpoint", ckpt, *map(str, args)]
    t0 = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        r = subprocess.CompletedProcess(cmd, 124, (e.stdout or b"").decode(errors="replace") if isinstance(
            e.stdout, bytes) else (e.stdout or ""), "timed out")
    dt = time.time() - t0
    print("$", " ".join(cmd), f"-> {r.returncode} in {dt:.1f} s", flush=True)
    print(r.stdout.strip())
    tail = r.stderr.strip().splitlines()[-6:]
    if tail:
        print("  stderr: " + "\n  stderr: ".join(tail))
    return r, dt


def tree(d):
    out = {}
    for root, _, names in os.walk(d):
        for x in names:
            p = os.path.join(root, x)
            out[os.path.relpath(p, d)] = p
    return out


def same_designs(a, b):
    """The CIF and SUCCESS_FILE files of a and b, byte for byte: (equal, count, first difference)."""
    fa, fb = tree(a), tree(b)
    keys = sorted(r for r in fa if r.endswith(".cif") or r.endswith("SUCCESS_FILE"))
    keys_b = sorted(r for r in fb if r.endswith(".cif") or r.endswith("SUCCESS_FILE"))
    if keys != keys_b:
        return False, len(keys), f"file lists differ: {sorted(set(keys) ^ set(keys_b))[:4]}"
    for r in keys:
        if open(fa[r], "rb").read() != open(fb[r], "rb").read():
            return False, len(keys), f"{r} differs"
    return True, sum(r.endswith(".cif") for r in keys), ""


def summaries(d):
    return [json.load(open(p)) for r, p in tree(d).items() if r.endswith("summary.json")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pxdiff", default="build-cuda/pxdiff")
    ap.add_argument("--work", default="/tmp/pxdiff-contexts")
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-memcheck", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true", help="no step 5 (designs per hour)")
    ap.add_argument("--memcheck-timeout", type=float, default=90)
    a = ap.parse_args()
    px = os.path.abspath(a.pxdiff)
    w = a.work
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)
    ckpt = os.path.join(w, "released_random.pt")
    checkpoint(ckpt)
    small = ["tests/data/campaign/tasks"]
    base = ("--N_sample", 6, "--N_step", 20, "--seeds", "7,8", "--chunk", 3, "-q")
    res = {}

    print("1. cuda:0,0 against cuda:0", flush=True)
    r1, t1 = design(px, ckpt, small, f"{w}/one", *base, "--device", "cuda:0")
    r2, t2 = design(px, ckpt, small, f"{w}/two", *base, "--device", "cuda:0,0")
    ok, n, why = same_designs(f"{w}/one", f"{w}/two")
    st = json.load(open(f"{w}/two/status.json")) if os.path.exists(f"{w}/two/status.json") else {}
    per = [d.get("designs", 0) for d in st.get("devices", [])]
    note("cuda:0,0 == cuda:0 (24 designs)", r1.returncode == 0 and r2.returncode == 0 and ok and n == 24,
         f"{n} CIFs {why}; designs per context {per}")

    print("2. a context fails after one unit", flush=True)
    r3, _ = design(px, ckpt, small, f"{w}/fail", *base, "--device", "cuda:0,0", env={"PXDIFF_TEST_FAIL_WORKER": "1:1"})
    ok, n, why = same_designs(f"{w}/one", f"{w}/fail")
    st = json.load(open(f"{w}/fail/status.json")) if os.path.exists(f"{w}/fail/status.json") else {}
    devs = st.get("devices", [{}, {}])
    failed_ok = len(devs) == 2 and devs[1].get("state") == "failed" and "injected" in (devs[1].get("error") or "")
    noted = sum(1 for s in summaries(f"{w}/fail") if s.get("context_failures"))
    note("failed context: files identical, status and summary name it",
         r3.returncode == 0 and ok and n == 24 and failed_ok and noted == 1,
         f"{n} CIFs {why}; devices {[(d.get('device'), d.get('state'), d.get('units')) for d in devs]}; "
         f"summaries naming it {noted}")

    print("3. 330-token tasks, 5 samples each: the automatic chunk and contexts", flush=True)
    big = os.path.join(w, "big")
    os.makedirs(big)
    for c in "abcd":
        with open(os.path.join(big, f"big_{c}.yaml"), "w") as f:
            f.write(f'task_name: big_{c}\ntarget:\n  file: "tests/data/structures/5o45.cif"\n  chains:\n    A:\n'
                    f'      crop: ["1-116"]\n      hotspots: [40, 99, 107]\nbinder_length: 214\n')
    bb = ("--N_sample", 5, "--N_step", 400, "--seeds", 3)
    r4, t4 = design(px, ckpt, [big], f"{w}/big1", *bb, "--device", "cuda:0", "--chunk", 5)
    r5, t5 = design(px, ckpt, [big], f"{w}/bigauto", *bb)
    ok, n, why = same_designs(f"{w}/big1", f"{w}/bigauto")
    ctx = [len(s.get("contexts", [])) for s in summaries(f"{w}/bigauto")]
    note("330 tokens x 4 tasks: automatic (chunk 5 + contexts) == cuda:0 --chunk 5",
         r4.returncode == 0 and r5.returncode == 0 and ok and n == 20,
         f"{n} CIFs {why}; wall {t4:.1f} s vs {t5:.1f} s; contexts {ctx[:1]}; header: "
         + " ".join(l for l in r5.stdout.splitlines() if "chunks of" in l)[:300])
    res["underfill"] = dict(one_context_chunk5_wall_s=t4, automatic_wall_s=t5, contexts=ctx[:1])

    print("5. designs per hour at 330 tokens, 400 steps", flush=True)
    tp = ("--N_sample", 100, "--N_step", 400, "--seeds", 4)
    for label, extra in () if a.skip_throughput else (("chunk 10", ("--chunk", 10)), ("automatic", ())):
        r, dt = design(px, ckpt, [os.path.join(big, "big_a.yaml")], f"{w}/tp_{label[:4]}", *tp, *extra)
        s = summaries(f"{w}/tp_{label[:4]}")
        spd = s[0]["timings"]["s_per_design"] if s else float("nan")
        chunk = s[0]["settings"]["chunk"] if s else None
        res[label] = dict(s_per_design=spd, designs_per_hour=3600 / spd if spd == spd and spd else None, chunk=chunk,
                          wall_s=dt)
        note(f"throughput {label}", r.returncode == 0,
             f"chunk {chunk}: {spd:.4f} s/design, {3600 / spd:.0f} designs/hour (wall {dt:.1f} s incl. load)")

    if not a.skip_memcheck and shutil.which("compute-sanitizer"):
        print("4. compute-sanitizer memcheck, two contexts", flush=True)
        r6, t6 = design(px, ckpt, small, f"{w}/memcheck", "--N_sample", 2, "--N_step", 2, "--seeds", 7, "-q",
                        "--device", "cuda:0,0",
                        prefix=("compute-sanitizer", "--tool", "memcheck", "--error-exitcode", "9",
                                "--print-limit", "20"), timeout=a.memcheck_timeout)
        out = r6.stdout + r6.stderr
        summary = [l for l in out.splitlines() if "ERROR SUMMARY" in l]
        unsupported = "not supported" in out.lower()
        note("memcheck two contexts", r6.returncode == 0 or unsupported,
             (summary[-1] if summary else "") + (" (device not supported by compute-sanitizer here)"
                                                 if unsupported else "") + f" in {t6:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(rows=ROWS, results=res), f, indent=1)
    print("\n| check | result | detail |\n|---|---|---|")
    for name, okk, d in ROWS:
        print(f"| {name} | {okk} | {d} |")
    sys.exit(1 if FAIL else 0)


if __name__ == "__main__":
    main()
