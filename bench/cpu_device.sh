#!/bin/sh
# The CPU table of issue 17 on a many-core machine: one denoise call, pxdiff's CPU backend
# against upstream's computation, at 1, 4 and 16 threads (or those given), three sizes.
#
#   make PXDIFF_NO_CUDA=1            # once, on that machine (OpenBLAS from pkg-config)
#   sh bench/cpu_device.sh [THREADS...]        # default: 16 4 1
#
# Each thread count is one run of bench/bench_cpu.py: upstream Protenix's DiffusionModule
# (when $PXDIFF_UPSTREAM_PROTENIX or third_party/protenix holds v0.5.0+pxd; else the
# project's PyTorch reference, tests/ref/pxref.py, the same computation) and `build/pxdiff
# bench` on the same random weights, median of $REPS calls after a warm-up, one after the
# other in the same run. The GPU is hidden (CUDA_VISIBLE_DEVICES=). Environment:
#   PYTHON   a python with PyTorch 2.x (default python3)
#   REPS     timed calls per side (default 3); PX_REPS: pxdiff's (default REPS)
#   SIZES    TARGET+BINDER:ATOMS:SAMPLES list (default 60+20:560:2,116+80:1250:10,250+80:2320:10:
#            80 tokens, PXDesign's quick-start size, 330 tokens)
#   SIZES_1  sizes at 1 thread (default: the first two; upstream takes ~1 min a call at 330)
#   PRECISIONS  pxdiff's CPU precisions, one column each (default fp32; fp32,bf16 where the CPU
#            has AVX512_BF16; bf16/avx512: bf16 on the vdpbf16ps kernel where AMX is the default)
# Prints one markdown table (machine, libraries and commands above it).
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
REPS=${REPS:-3}
SIZES=${SIZES:-60+20:560:2,116+80:1250:10,250+80:2320:10}
SIZES_1=${SIZES_1:-60+20:560:2,116+80:1250:10}
THREADS=${*:-16 4 1}
export CUDA_VISIBLE_DEVICES=
if [ -z "${PXDIFF_UPSTREAM_PROTENIX:-}" ] && [ -d third_party/protenix/protenix ]; then
  export PXDIFF_UPSTREAM_PROTENIX=third_party/protenix
fi
EXE=${PXDIFF_CLI:-build/pxdiff}
if [ ! -x "$EXE" ]; then
  echo "cpu_device.sh: $EXE not found; build first: make PXDIFF_NO_CUDA=1" >&2
  exit 1
fi
"$PY" -c 'import torch' 2>/dev/null || { echo "cpu_device.sh: $PY has no torch (set PYTHON)" >&2; exit 1; }

echo "## $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n)"
echo
echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//'), $(nproc) logical cores" \
     "($(lscpu 2>/dev/null | awk -F: '/^Core\(s\) per socket|^Socket\(s\)|^Thread\(s\) per core/ {gsub(/ /,"",$2); printf "%s%s ", $1, ":" $2}'))"
echo "- AVX-512 / BF16 / AMX flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx512f|avx512_bf16|amx_bf16|amx_tile)$' | tr '\n' ' ')"
echo "- pxdiff: $("$EXE" info | sed -n 's/^blas: /BLAS /p'); $("$EXE" info | sed -n 's/^cpu precisions: /CPU precisions /p'); $(git log -1 --format='commit %h' 2>/dev/null || echo 'no git')"
echo "- torch: $("$PY" -c 'import torch; print(torch.__version__, "/", torch.__config__.parallel_info().splitlines()[0])' 2>/dev/null)"
# The kernels torch's OpenBLAS chose (Debian's torch): OpenBLAS 0.3.21 does not know every CPU
# (an Emerald Rapids VM got its generic "Prescott" kernels, ~3x slower), and an upstream on
# slow kernels flatters pxdiff: set OPENBLAS_CORETYPE (e.g. Cooperlake, SkylakeX) then.
blas_core=$("$PY" - <<'PYEOF' 2>/dev/null
import ctypes, os, torch
try:  # Debian's libopenblas; other builds (numpy's scipy-openblas, MKL) name nothing here
    path = next((l.split()[-1] for l in open("/proc/self/maps") if "libopenblas" in l), None)
    if path:
        lib = ctypes.CDLL(path)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        env = os.environ.get("OPENBLAS_CORETYPE")
        print("OpenBLAS kernels for %s%s" % (lib.openblas_get_corename().decode(),
                                            " (OPENBLAS_CORETYPE=%s)" % env if env else ""))
except Exception:
    pass
PYEOF
) || blas_core=""
[ -n "$blas_core" ] && echo "- torch's BLAS: $blas_core"
echo "- upstream: ${PXDIFF_UPSTREAM_PROTENIX:+Protenix from $PXDIFF_UPSTREAM_PROTENIX (the project's reference not timed)}${PXDIFF_UPSTREAM_PROTENIX:-not found: the project's PyTorch reference stands for it}"
echo "- load before: $(uptime | sed 's/.*load average/load average/')"
echo "- command: REPS=$REPS PX_REPS=${PX_REPS:-$REPS} PRECISIONS=${PRECISIONS:-fp32} SIZES=$SIZES sh bench/cpu_device.sh $THREADS"
echo
first=1
for th in $THREADS; do
  sizes=$SIZES
  [ "$th" = 1 ] && sizes=$SIZES_1
  hdr=--no-header
  [ $first = 1 ] && hdr=
  skip=
  [ -n "${PXDIFF_UPSTREAM_PROTENIX:-}" ] && skip=--skip-reference
  OMP_NUM_THREADS=$th "$PY" bench/bench_cpu.py --threads "$th" --reps "$REPS" --px-reps "${PX_REPS:-$REPS}" --sizes "$sizes" \
    --precisions "${PRECISIONS:-fp32}" $skip $hdr
  first=0
done
