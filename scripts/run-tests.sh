#!/bin/sh
# Run every C test binary, then the Python tests (reference comparisons) with Debian's torch.
# Prints a closing "N passed, N failed" line over all suites.
BUILD=${1:-build}
WHAT=${2:-all}
# The Python tests run on Debian's torch; a venv made by ensure-deps.sh (which sees it)
# adds the independent checkers (gemmi, biotite, safetensors) when present.
PY=/usr/bin/python3
for v in "$BUILD/venv-test" build/venv-test; do
  if [ -x "$v/bin/python" ]; then
    PY="$v/bin/python"
    export PXDIFF_SAFETENSORS_PYTHON="$PY"
    break
  fi
done
pass=0; fail=0
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  echo "== $t"
  if "$t"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAILED: $t"; fi
done
if [ "$WHAT" = all ]; then
  # The PyTorch reference's own checks (layout vs the released tensor list, schedules vs
  # upstream's CUDA values, attention/trunk layout against independent formulations).
  echo "== tests/ref/check_pxref.py"
  if PYTHONPATH=tests/ref "$PY" tests/ref/check_pxref.py; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAILED: check_pxref"; fi
fi
if [ "$WHAT" = all ] || [ "$WHAT" = sanitize ]; then
  echo "== pytest tests/python"
  if [ "$WHAT" = sanitize ]; then
    # The Python suite on the sanitizer build: the runtimes must be loaded first.
    PRE="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
    LD_PRELOAD="$PRE" ASAN_OPTIONS=detect_leaks=0:protect_shadow_gap=0 PXDIFF_SANITIZED=1 \
      PYTHONPATH=python:tests/ref PXDIFF_LIB="$BUILD/libpxdiff.so" "$PY" -m pytest -q -rs tests/python -p no:cacheprovider
  else
    PYTHONPATH=python:tests/ref PXDIFF_LIB="$BUILD/libpxdiff.so" "$PY" -m pytest -q -rs tests/python -p no:cacheprovider
  fi
  rc=$?
  if [ $rc -eq 0 ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAILED: pytest (rc=$rc)"; fi
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
