#!/bin/sh
# Where one denoise call's GPU time goes (used for docs/benchmarks.md's breakdown):
#   [PREC=fp16] sh bench/gpu/profile.sh [tokens binder atoms]   (default 330 80 2320, 10 samples)
# Needs build/ (made with nvcc) and ncu on PATH. Writes per-kernel summaries to $OUT (or /tmp).
set -u
T=${1:-330} B=${2:-80} A=${3:-2320}
OUTDIR=${OUT:-/tmp}
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
BENCH="./build/pxdiff bench --device cuda --precision ${PREC:-fp16} --tokens $T --binder $B --atoms $A --samples 10"
if [ -z "${SKIP_SUMMARY:-}" ]; then
echo "== per-kernel GPU time, one eager call (PXDIFF_NO_GRAPHS=1; L2 left warm between kernels, as in a run)"
PXDIFF_NO_GRAPHS=1 $NCU --clock-control none --cache-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
  $BENCH --reps 1 > "$OUTDIR/ncu_summary.txt" 2>&1
grep -cE "gpu__time_duration" "$OUTDIR/ncu_summary.txt"
fi
[ -n "${SKIP_DETAIL:-}" ] && exit 0
echo "== attention kernels in detail (first launch of each)"
for k in k_attention_tc_local k_attention_tc; do
  echo "-- $k"
  PXDIFF_NO_GRAPHS=1 $NCU --clock-control none --kernel-name "$k" --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section SchedulerStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
    --section InstructionStats --section SourceCounters $BENCH --reps 1 > "$OUTDIR/ncu_$k.txt" 2>&1
  grep -E "Duration|Achieved Occupancy|Theoretical Occupancy|Registers Per|Eligible Warps|Warp Cycles Per Issued|L2 Hit|Executed Ipc A|Executed Instructions  " "$OUTDIR/ncu_$k.txt"
done
