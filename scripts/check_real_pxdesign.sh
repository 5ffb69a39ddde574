#!/bin/sh
# The drop-in against the REAL PXDesign (development time only; CI uses the stand-in tree in
# tests/python/standin). Needs upstream's code and a venv with its dependencies, fetched into
# git-ignored folders and never committed (docs/dropin.md, "Checked against the real PXDesign"):
#   FULLPORT         upstream PXDesign + Protenix sources (src/) and venv (venv/), as built by
#                    the upstream harness: default third_party/fullport
#   PXDBENCH_SRC     a PXDesignBench checkout (only for `pipeline`): default third_party/pxdesignbench
#   PROTENIX_RUNNER  a folder holding Protenix's top-level runner/ package, which PXDesignBench
#                    imports (only for `pipeline`): default third_party/protenix_runner
#   PXDIFF_LIB       the libpxdiff to test: default build/libpxdiff.so (its pxdiff CLI beside it)
#
#   sh scripts/check_real_pxdesign.sh [WORK_DIR]      (default build/check-real-pxdesign)
#
# What it does, in one run (so the timings share the machine's conditions):
#  1. a checkpoint directory in PXDesign's released layout: pxdesign_v0.1.0.pt with random
#     weights (every tensor of the released model at its shape, tests/ref/pxfixtures.py) and
#     empty placeholders for the other files PXDesign's download step looks for (three
#     Protenix checkpoints; the CCD files come from the harness, the PDB cluster file is empty);
#  2. `pxdesign infer` on the quick-start task three ways: PXDesign's own CLI, the drop-in with
#     PXDIFF_DISABLE=1, the drop-in accelerated; checks the trees and the byte equality of the
#     disabled run with plain upstream, and times the runs and their sampling phase;
#  3. `python -m pxdiff.pxdesign pipeline --preset preview` as far as it gets without the
#     evaluation tools (their packages stand in as modules that fail when called);
#  4. bench/bench_dropin.py: per-call time in one PyTorch process, upstream vs the drop-in.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
FULLPORT=${FULLPORT:-$ROOT/third_party/fullport}
PY=${PY:-$FULLPORT/venv/bin/python}
LIB=${PXDIFF_LIB:-$ROOT/build/libpxdiff.so}
EXE=${PXDIFF_EXE:-$(dirname "$LIB")/pxdiff}
PXDBENCH_SRC=${PXDBENCH_SRC:-$ROOT/third_party/pxdesignbench}
PROTENIX_RUNNER=${PROTENIX_RUNNER:-$ROOT/third_party/protenix_runner}
WORK=${1:-$ROOT/build/check-real-pxdesign}
TASK=${TASK:-tests/data/tasks/PDL1_quick_start.yaml} # its structure path is relative to the repo root
N_SAMPLE=${N_SAMPLE:-2}
N_STEP=${N_STEP:-8}
SEED=${SEED:-7}
BENCH=${BENCH:-1}
PIPELINE=${PIPELINE:-1}

fail() { echo "check_real_pxdesign: $*" >&2; exit 1; }
[ -x "$PY" ] || fail "no python at $PY (set FULLPORT or PY)"
[ -d "$FULLPORT/src/pxdesign" ] || fail "no PXDesign sources in $FULLPORT/src"
[ -f "$LIB" ] || fail "no libpxdiff at $LIB (make, or set PXDIFF_LIB)"
"$PY" -c "import click" 2>/dev/null || fail "PXDesign's CLI needs click in $PY's environment"
mkdir -p "$WORK"
LIB=$(cd "$(dirname "$LIB")" && pwd)/$(basename "$LIB")
SUMMARY=$WORK/summary.md
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
now() { date +%s.%N; }
secs() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

say "# check_real_pxdesign $(date -u +%Y-%m-%dT%H:%MZ)"
say "- machine: $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
say "- pxdiff $(git -C "$ROOT" rev-parse --short HEAD), lib $LIB"

# 1. checkpoint directory and data cache --------------------------------------------------
CKPT=$WORK/ckpt
mkdir -p "$CKPT" "$WORK/ccd"
if [ ! -s "$CKPT/pxdesign_v0.1.0.pt" ]; then
  "$PY" - "$CKPT/pxdesign_v0.1.0.pt" <<'PYEOF'
import sys
sys.path.insert(0, "tests/ref")
import torch, pxfixtures
path = sys.argv[1]
sd = pxfixtures.random_state_dict(pxfixtures.DEFAULT_DIMS, seed=0)
pxfixtures.save_released_layout(path + ".tmp", sd, seed=1)
names = {k[len("module."):]: tuple(v.shape) for k, v in torch.load(path + ".tmp")["model"].items()}
rows = pxfixtures.read_tsv()  # the released model's tensors (tests/data/reference)
bad = [n for n, s, _ in rows if names.get(n) != s]
assert not bad and len(names) == len(rows), (len(names), len(rows), bad[:5])
import os; os.replace(path + ".tmp", path)
print(f"random-weights checkpoint: {len(names)} tensors, the released layout")
PYEOF
fi
for m in protenix_base_default_v0.5.0 protenix_mini_default_v0.5.0 protenix_mini_tmpl_v0.5.0; do
  [ -e "$CKPT/$m.pt" ] || : >"$CKPT/$m.pt"
done
for f in components.cif components.cif.rdkit_mol.pkl; do
  [ -e "$FULLPORT/ccd/$f" ] || fail "no $FULLPORT/ccd/$f (the harness's CCD cache)"
  ln -sf "$FULLPORT/ccd/$f" "$WORK/ccd/$f"
done
: >"$WORK/ccd/clusters-by-entity-40.txt"
export PROTENIX_DATA_ROOT_DIR=$WORK/ccd
unset PXDIFF_DISABLE PXDIFF_NUM_THREADS OMP_NUM_THREADS 2>/dev/null || true

# 2. infer three ways ------------------------------------------------------------------------
ARGS="-i $TASK --load_checkpoint_dir $CKPT --N_sample $N_SAMPLE --N_step $N_STEP --seeds $SEED"
UPSTREAM_CLI='import sys; from pxdesign.runner.cli import cli; sys.exit(cli.main(args=sys.argv[1:], prog_name="pxdesign"))'
run_infer() { # name, then the command's words before "infer"
  name=$1; shift
  rm -rf "$WORK/$name"
  t0=$(now)
  set +e
  PXDIFF_LIB=$LIB PYTHONPATH="$ROOT/python:$FULLPORT/src" "$@" infer $ARGS -o "$WORK/$name" \
    >"$WORK/$name.log" 2>&1
  rc=$?
  set -e
  t1=$(now)
  eval "T_$name=\$(secs $t0 $t1)"
  [ $rc -eq 0 ] || { tail -20 "$WORK/$name.log"; fail "$name: exit status $rc (log: $WORK/$name.log)"; }
}
run_infer upstream "$PY" -c "$UPSTREAM_CLI"
PXDIFF_DISABLE=1 run_infer disabled "$PY" -m pxdiff.pxdesign
run_infer accel "$PY" -m pxdiff.pxdesign
grep -q "engine-backed diffusion module enabled" "$WORK/accel.log" || fail "accel: no banner"
grep -q "engine-backed" "$WORK/disabled.log" && fail "disabled: the engine ran"

"$PY" - "$WORK" "$SEED" "$N_SAMPLE" >>"$SUMMARY" <<'PYEOF'
import datetime, gzip, os, sys
work, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def tree(name):
    root = os.path.join(work, name)
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
up, dis, acc = tree("upstream"), tree("disabled"), tree("accel")
assert up == dis == acc, (up, dis, acc)
preds = [p for p in up if "/predictions/" in p]
assert len(preds) == n, preds
# outputs that do not name the run's own directory: byte-identical with PXDIFF_DISABLE=1
same = [p for p in up if not p.endswith(("config.yaml", ".json"))]
def content(name, p):
    with open(os.path.join(work, name, p), "rb") as f:
        return f.read()
def deep_eq(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(deep_eq(a[k], b[k]) for k in a)
    r = a == b
    return bool(r.all() if hasattr(r, "all") else r)
def same_file(p):
    if p.endswith(".pkl.gz"):  # the target's bioassembly dict: upstream's own pickling is not
        import pickle          # byte-stable from run to run (checked), so compare what it holds
        return deep_eq(*(pickle.loads(gzip.decompress(content(k, p))) for k in ("upstream", "disabled")))
    return content("upstream", p) == content("disabled", p)
diff = [p for p in same if not same_file(p)]
assert not diff, f"PXDIFF_DISABLE=1 differs from upstream: {diff}"
def atoms(name, p):
    with open(os.path.join(work, name, p)) as f:
        return sum(1 for line in f if line.startswith(("ATOM", "HETATM")))
for p in preds:
    assert atoms("accel", p) == atoms("upstream", p) > 0, p
def phase(name):  # the sampling phase, from PXDesign's own log timestamps
    stamp = lambda l: datetime.datetime.strptime(l[:23], "%Y-%m-%d %H:%M:%S,%f")
    t0 = t1 = None
    for line in open(os.path.join(work, name + ".log")):
        if "N_token=" in line: t0 = stamp(line)
        if "succeeded. Saved to" in line: t1 = stamp(line)
    return (t1 - t0).total_seconds()
print(f"- the same output tree three ways ({len(up)} files: {', '.join(up)})")
print(f"- PXDIFF_DISABLE=1: the same files as plain upstream's ({', '.join(same)}): byte-identical, "
      "the target's .pkl.gz by its unpickled content (upstream's own runs differ in its bytes); "
      "config.yaml and the input JSONs name the output directory")
print(f"- accelerated structures: same atoms as upstream's ({atoms('accel', preds[0])} per design)")
ph = {k: phase(k) for k in ("upstream", "disabled", "accel")}
print(f"- sampling phase (PXDesign's log, featurized task to saved designs): upstream {ph['upstream']:.1f} s, "
      f"PXDIFF_DISABLE=1 {ph['disabled']:.1f} s, accelerated {ph['accel']:.1f} s "
      f"({ph['upstream'] / ph['accel']:.2f}x)")
PYEOF
say "- whole \`pxdesign infer\` wall time: upstream ${T_upstream} s, PXDIFF_DISABLE=1 ${T_disabled} s, accelerated ${T_accel} s"
say "- banner: $(grep -m1 'engine:' "$WORK/accel.log" | sed 's/^ *//')"
say "- upstream's prints under the drop-in: $(grep -c -e '^sampling eta schedule:' -e '^diffusion_chunk_size:' "$WORK/accel.log") lines (plain upstream: $(grep -c -e '^sampling eta schedule:' -e '^diffusion_chunk_size:' "$WORK/upstream.log"))"

# 3. pipeline, as far as it runs without the evaluation tools ------------------------------
if [ "$PIPELINE" = 1 ] && [ -d "$PXDBENCH_SRC/pxdbench" ] && [ -d "$PROTENIX_RUNNER/runner" ]; then
  STUBS=$WORK/stubs
  rm -rf "$STUBS"
  # Evaluation tools' packages that PXDesignBench imports at module level; each stands in as a
  # module whose every name fails when used, so the pipeline runs up to the evaluation.
  for m in colabdesign colabdesign.mpnn transformers transformers.models transformers.models.esm \
           transformers.models.esm.openfold_utils transformers.models.esm.openfold_utils.feats \
           transformers.models.esm.openfold_utils.protein; do
    if ! PYTHONPATH="$PXDBENCH_SRC" "$PY" -c "import $m" 2>/dev/null; then
      d=$STUBS/$(echo "$m" | tr . /)
      mkdir -p "$d"
      cat >"$d/__init__.py" <<'PYEOF'
"""Stand-in for an evaluation tool's package that is not installed (check_real_pxdesign.sh)."""
class _Absent:
    def __init__(self, name): self.name = name
    def __call__(self, *a, **k): raise RuntimeError(f"{self.name}: evaluation tool not installed")
    def __getattr__(self, k): return _Absent(self.name + "." + k)
def __getattr__(name):
    if name.startswith("__"): raise AttributeError(name)
    return _Absent(__name__ + "." + name)
PYEOF
    fi
  done
  mkdir -p "$WORK/tool_weights/af2"
  : >"$WORK/tool_weights/af2/params_model_1.npz"
  : >"$WORK/tool_weights/af2/params_model_1_ptm.npz"
  rm -rf "$WORK/pipeline"
  set +e
  TOOL_WEIGHTS_ROOT=$WORK/tool_weights PXDIFF_LIB=$LIB \
    PYTHONPATH="$ROOT/python:$PXDBENCH_SRC:$PROTENIX_RUNNER:$FULLPORT/src:$STUBS" \
    "$PY" -m pxdiff.pxdesign pipeline --preset preview $ARGS -o "$WORK/pipeline" >"$WORK/pipeline.log" 2>&1
  rc=$?
  set -e
  npred=$(find "$WORK/pipeline" -path '*/predictions/*.cif' 2>/dev/null | wc -l)
  banner=$(grep -c "engine-backed diffusion module enabled" "$WORK/pipeline.log" || true)
  stop=$(grep -E "Error|error:|Traceback|not installed" "$WORK/pipeline.log" | tail -1 | cut -c1-200)
  say "- pipeline --preset preview: exit status $rc; engine banner $banner time(s); $npred designed structures written; stopped at: ${stop:-nothing}"
else
  say "- pipeline: not run (PIPELINE=0, or no PXDesignBench at $PXDBENCH_SRC / Protenix runner/ at $PROTENIX_RUNNER)"
fi

# 4. per call, in one PyTorch process -------------------------------------------------------
if [ "$BENCH" = 1 ]; then
  PXDIFF_LIB=$LIB PYTHONPATH="$ROOT/python:$FULLPORT/src" "$PY" bench/bench_dropin.py --reps 3 \
    --exe "$EXE" 2>"$WORK/bench.err" | tee -a "$SUMMARY"
fi
say "- load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "check_real_pxdesign: OK ($SUMMARY)"
