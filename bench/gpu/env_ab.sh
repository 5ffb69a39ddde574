#!/bin/sh
# A/B of environment settings on one build, per call, in one device call: `pxdiff bench` at
# 150 / 330 / 620 tokens with 10 samples and at a design's chunk (100 samples at 330 tokens /
# 1786 atoms, 64 at 620 / 2946: PXDesign's PD-L1 crop plus a binder), each setting twice,
# interleaved. ENVS: space-separated settings, "-" for none (VAR=value, or VAR1=a,VAR2=b).
# SIZES: space-separated tokens:binder:atoms:samples (default the five above).
#   ENVS="PXDIFF_NO_X16_QKV=1 -" PXDIFF_CLI=build/pxdiff sh bench/gpu/env_ab.sh
set -u
CLI=${PXDIFF_CLI:-build/pxdiff}
ENVS=${ENVS:--}
REPS=${REPS:-20}
SIZES=${SIZES:-150:50:1000:10 330:80:2320:10 620:120:4480:10 330:214:1786:100 620:504:2946:64}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for pass in 1 2; do
  for sz in $SIZES; do
    IFS=: read -r tk bd at S <<E
$sz
E
    for e in $ENVS; do
      set --
      [ "$e" = "-" ] || set -- $(echo "$e" | tr ',' ' ')
      ms=$(env "$@" "$CLI" bench --device cuda --tokens "$tk" --binder "$bd" --atoms "$at" --samples "$S" \
        --reps "$REPS" | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p')
      echo "pass=$pass tokens=$tk atoms=$at samples=$S env=$e ms=$ms"
    done
  done
done
