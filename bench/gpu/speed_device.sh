#!/bin/sh
# Issue 13's per-call numbers in one device call: `pxdiff bench` at 150 / 330 / 620 tokens
# (10 samples, default precision) for each build named in BUILDS (A/B in one run, each twice),
# optionally the ncu kernel breakdown (NCU=1), the drop-in's overhead over the CLI
# (DROPIN=1, bench/gpu/dropin_overhead.py), and the memory / upstream table (CHECK=1,
# tests/gpu/check_cuda.py --skip-accuracy; UPSTREAM=path to Protenix v0.5.0+pxd's source).
#   BUILDS="build-base build" NCU=1 DROPIN=1 sh bench/gpu/speed_device.sh
set -u
OUTDIR=${OUT:-/tmp}
BUILDS=${BUILDS:-build}
REPS=${REPS:-30}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
for B in $BUILDS; do
  ldd "$B/pxdiff" | grep "not found" && echo "MISSING LIBRARIES ($B)"
done
echo "== pxdiff bench, default precision, 10 samples, median of $REPS (each build twice, interleaved)"
for pass in 1 2; do
  for sz in 150:50:1000 330:80:2320 620:120:4480; do
    tk=${sz%%:*} rest=${sz#*:}
    for B in $BUILDS; do
      ms=$("$B/pxdiff" bench --device cuda --tokens "$tk" --binder "${rest%%:*}" --atoms "${rest#*:}" \
        --samples 10 --reps "$REPS" | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p')
      echo "bench pass=$pass build=$B tokens=$tk ms=$ms"
    done
  done
done
if [ -n "${LANES_AB:-}" ]; then
  B=${BUILDS##* }
  echo "== lanes: PXDIFF_LANES=1 / 2 ($B), median of $REPS"
  for sz in 150:50:1000 330:80:2320 620:120:4480; do
    tk=${sz%%:*} rest=${sz#*:}
    for l in 1 2 1 2; do
      ms=$(PXDIFF_LANES=$l "$B/pxdiff" bench --device cuda --tokens "$tk" --binder "${rest%%:*}" --atoms "${rest#*:}" \
        --samples 10 --reps "$REPS" | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p')
      echo "lanes=$l tokens=$tk ms=$ms"
    done
  done
fi
if [ -n "${TESTS:-}" ]; then
  B=${BUILDS##* }
  echo "== CUDA unit tests ($B)"
  "$B/tests/test_cuda_kernels" > "$OUTDIR/test_cuda_kernels.log" 2>&1; echo "test_cuda_kernels rc=$?"; tail -2 "$OUTDIR/test_cuda_kernels.log"
  "$B/tests/test_cuda_attention" > "$OUTDIR/test_cuda_attention.log" 2>&1; echo "test_cuda_attention rc=$?"; tail -2 "$OUTDIR/test_cuda_attention.log"
  grep -E "FAIL|BAD" "$OUTDIR"/test_cuda_*.log | head -10
fi
if [ -n "${ACC:-}" ]; then
  B=${BUILDS##* }
  echo "== whole-run accuracy ($B): ${ACC_ARGS:-}"
  PXDIFF_UPSTREAM_PROTENIX=$UPSTREAM PYTHONPATH=python:tests/ref:tests/gpu PXDIFF_LIB=$PWD/$B/libpxdiff.so \
    PYTHONUNBUFFERED=1 python3 tests/gpu/whole_run_accuracy.py ${ACC_ARGS:-} --json "$OUTDIR/whole_run.json" \
    > "$OUTDIR/whole_run.log" 2>&1
  echo "whole_run_accuracy rc=$?"
  tail -14 "$OUTDIR/whole_run.log"
fi
if [ -n "${NCU:-}" ]; then
  B=${BUILDS##* }
  echo "== ncu: per-kernel GPU time of one eager call at 330 tokens ($B)"
  PXDIFF_NO_GRAPHS=1 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum \
    --print-summary per-kernel "$B/pxdiff" bench --device cuda --tokens 330 --binder 80 --atoms 2320 \
    --samples 10 --reps 1 > "$OUTDIR/ncu_summary_$(basename "$B").txt" 2>&1
  python3 bench/gpu/ncu_breakdown.py "$OUTDIR/ncu_summary_$(basename "$B").txt"
  if [ -n "${NCU_DETAIL:-}" ]; then
    for k in $NCU_DETAIL; do
      PXDIFF_NO_GRAPHS=1 ncu --clock-control none --kernel-name "regex:$k" --launch-skip 20 --launch-count 6 \
        --section SpeedOfLight --section LaunchStats --section Occupancy "$B/pxdiff" bench --device cuda \
        --tokens 330 --binder 80 --atoms 2320 --samples 10 --reps 1 > "$OUTDIR/ncu_$k.txt" 2>&1
      echo "-- $k"
      grep -E "^  [a-zA-Z_]|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Grid Size|Block Size" \
        "$OUTDIR/ncu_$k.txt" | head -30
    done
  fi
fi
for B in ${NCU_ROWLN:-}; do
  echo "== ncu: row LayerNorm kernels of one eager call at 330 tokens ($B; two calls: warm-up + timed)"
  PXDIFF_NO_GRAPHS=1 ncu --clock-control none --cache-control none --kernel-name regex:k_row_ln \
    --metrics gpu__time_duration.sum --print-summary per-kernel "$B/pxdiff" bench --device cuda --tokens 330 \
    --binder 80 --atoms 2320 --samples 10 --reps 1 > "$OUTDIR/ncu_rowln_$(basename "$B").txt" 2>&1
  python3 bench/gpu/ncu_breakdown.py "$OUTDIR/ncu_rowln_$(basename "$B").txt" | tail -8
done
if [ -n "${DROPIN:-}" ]; then
  B=${BUILDS##* }
  echo "== drop-in overhead over the CLI ($B)"
  PYTHONPATH=python:tests/ref PXDIFF_LIB=$PWD/$B/libpxdiff.so PYTHONUNBUFFERED=1 \
    python3 bench/gpu/dropin_overhead.py --exe "$B/pxdiff" --reps "$REPS" 2>&1 | tee "$OUTDIR/dropin.log" | tail -40
fi
if [ -n "${CHECK:-}" ]; then
  B=${BUILDS##* }
  echo "== memory and upstream eager fp32 (check_cuda.py --skip-accuracy, $B)"
  [ -n "${UPSTREAM:-}" ] && export PXDIFF_UPSTREAM_PROTENIX=$UPSTREAM
  PYTHONPATH=python:tests/ref:tests/gpu PXDIFF_LIB=$PWD/$B/libpxdiff.so PYTHONUNBUFFERED=1 \
    python3 tests/gpu/check_cuda.py --skip-accuracy --sizes 100+50,250+80,500+120 --reps 10 \
    --json "$OUTDIR/check.json" > "$OUTDIR/check.log" 2>&1
  tail -8 "$OUTDIR/check.log"
  python3 - "$OUTDIR/check.json" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["timings"]:
    print(r["tokens"], {k: round(v, 3) for k, v in r.items() if k.endswith("gib") or k.endswith("_ms")})
EOF
fi
