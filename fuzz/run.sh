#!/bin/sh
# Build the fuzzers of every reader (checkpoints, bundles, task files, mmCIF/PDB targets,
# conformer tables, the featurizer on parsed targets, the campaign formats) with clang (libFuzzer + ASan + UBSan) and run each for
# $1 seconds (default 20). Seeds come from fuzz/corpus/<kind>/; new inputs go to
# build-fuzz/corpus-<kind>/ and crashes to build-fuzz/. Needs clang and libclang-rt-dev
# (Debian: apt-get install -y clang libclang-rt-14-dev).
set -e
cd "$(dirname "$0")/.."
SECS=${1:-20}
CC=${FUZZ_CC:-clang}
OUT=build-fuzz
mkdir -p "$OUT"
FLAGS="-std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc"
SRC="src/platform.c src/io/zip.c src/io/pickle.c src/io/safetensors.c src/io/tensorfile.c src/io/tensor_types.c src/io/strbuf.c"
for k in pt safetensors bundle task_yaml task_json cif pdb conformers featurize campaign; do
  echo "== building fuzz_$k"
  $CC $FLAGS -o "$OUT/fuzz_$k" "fuzz/fuzz_$k.c" $SRC
done
status=0
for k in pt safetensors bundle task_yaml task_json cif pdb conformers featurize campaign; do
  mkdir -p "$OUT/corpus-$k"
  echo "== fuzz_$k for ${SECS}s"
  if ! "$OUT/fuzz_$k" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
      -dict="fuzz/$k.dict" -artifact_prefix="$OUT/crash-$k-" -print_final_stats=1 \
      "$OUT/corpus-$k" "fuzz/corpus/$k" 2>"$OUT/fuzz_$k.log"; then
    status=1
    echo "fuzz_$k FAILED; see $OUT/fuzz_$k.log and $OUT/crash-$k-*"
    tail -40 "$OUT/fuzz_$k.log"
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$OUT/fuzz_$k.log" || true
  fi
done
exit $status
