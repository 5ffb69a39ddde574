#!/bin/sh
# A/B of environment settings on the fp16-input full attention, in one device call: the
# attention tests (correctness against the CPU, bit-for-bit comparisons), the kernel alone
# at 10 and 100 samples of 150 / 330 / 620 tokens for each setting, and with NCU=1 ncu's
# source-level summary of the 100-sample / 330-token launch with the fp16 bias for each
# (bench/gpu/ncu_source.py; SKIP=424 for the fp32 bias's).
# ENVS as bench/gpu/env_ab.sh's ("-" for none); BUILD: a CUDA build (carried).
#   ENVS="- PXDIFF_NO_X16_QKV=1" NCU=1 BUILD=build-cuda sh bench/gpu/attention_ab.sh
set -u
B=${BUILD:-build}
ENVS=${ENVS:--}
OUTDIR=${OUT:-/tmp}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
"$B/tests/test_cuda_attention" > "$OUTDIR/test_cuda_attention.log" 2>&1
echo "test_cuda_attention rc=$? $(tail -1 "$OUTDIR/test_cuda_attention.log")"
grep -E "FAIL|differs" "$OUTDIR/test_cuda_attention.log" | head -8
for pass in 1 2; do
  for e in $ENVS; do
    set --
    [ "$e" = "-" ] || set -- $(echo "$e" | tr ',' ' ')
    env "$@" PXDIFF_ATT_BENCH=only "$B/tests/test_cuda_attention" 2>&1 | grep "fp16 .*inputs" | grep full |
      sed "s/^ */pass=$pass env=$e /"
  done
done
[ "${NCU:-0}" = 1 ] || exit 0
n=0
for e in $ENVS; do
  n=$((n + 1))
  set --
  [ "$e" = "-" ] || set -- $(echo "$e" | tr ',' ' ')
  # the fp16-input launches before 100 samples of 330 tokens with the fp16 bias (the model's), in
  # the bench's order: 4 shapes x (53 with the fp32 bias + 53 with the fp16 one), then 53 more
  # (SKIP=424: the fp32 bias's launch of that shape)
  env "$@" PXDIFF_ATT_BENCH=only ncu --clock-control none --section SourceCounters --section WarpStateStats \
    -k regex:k_attention_h16in --launch-skip "${SKIP:-477}" --launch-count 1 -o "/tmp/att_ab_$n" -f \
    "$B/tests/test_cuda_attention" > /dev/null 2>&1
  ncu -i "/tmp/att_ab_$n.ncu-rep" --page source --csv --print-source sass > "/tmp/att_ab_$n.csv" 2>&1
  echo "== ncu, env=$e"
  python3 bench/gpu/ncu_source.py "/tmp/att_ab_$n.csv" 12
done
