#!/bin/sh
# Run the test suite: every C test binary and shell test, the PyTorch reference's own checks,
# then the Python tests with Debian's torch.
#   sh scripts/run-tests.sh BUILD [all|c|sanitize]
# Closing line: "N passed, N failed, N skipped", counting each C test binary, each shell test,
# the reference checks and each pytest test once; every skip is listed with its reason first.
# A C or shell test skips by exiting 77 (automake's convention) after printing "SKIP: reason".
# Skips are for what the machine lacks (a GPU, an optional checker package). Under CI
# (CI=true) a skip whose reason says data or a built file is missing counts as a failure:
# the suite needs nothing outside the repository.
BUILD=${1:-build}
WHAT=${2:-all}
case "$WHAT" in all | c | sanitize) ;; *) echo "usage: run-tests.sh BUILD [all|c|sanitize]" >&2; exit 2 ;; esac

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

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pxdiff-tests.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
: >"$TMP/skips"
: >"$TMP/failed"
pass=0; fail=0; skip=0

# Reasons that mean the checkout or the build is incomplete, not that the machine lacks
# something: failures under CI.
is_missing_data() {
  printf '%s\n' "$1" | grep -qiE 'missing data|not found|no such file|not built|cannot find'
}

# note_skip NAME REASON: a skip, or under CI a failure when the reason is missing data.
note_skip() {
  if [ "${CI:-}" = true ] && is_missing_data "$2"; then
    fail=$((fail + 1))
    echo "$1: skipped for missing data under CI: $2" >>"$TMP/failed"
    echo "FAILED (CI: a skip for missing data): $1: $2"
  else
    skip=$((skip + 1))
    echo "$1: $2" >>"$TMP/skips"
  fi
}

# run_one NAME CMD...: 0 passed, 77 skipped (reason: its last "SKIP:" line), else failed.
run_one() {
  name=$1; shift
  echo "== $name"
  t0=$(date +%s)
  "$@" >"$TMP/out" 2>&1
  rc=$?
  cat "$TMP/out"
  # Whole seconds (portable date): enough to see which tests the CI's time goes to.
  echo "-- $name: $(($(date +%s) - t0)) s"
  if [ $rc -eq 0 ]; then
    pass=$((pass + 1))
  elif [ $rc -eq 77 ]; then
    base=$(basename "$name")
    reason=$(grep '^SKIP:' "$TMP/out" | tail -n 1 | sed -e 's/^SKIP: *//' -e "s|^$base: *||")
    note_skip "$name" "${reason:-no reason given}"
  else
    fail=$((fail + 1))
    echo "$name (exit $rc)" >>"$TMP/failed"
    echo "FAILED: $name (exit $rc)"
  fi
}

ran_c=0
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] && [ -f "$t" ] || continue
  ran_c=$((ran_c + 1))
  run_one "$t" "$t"
done
if [ $ran_c -eq 0 ]; then
  fail=$((fail + 1))
  echo "no C test binaries in $BUILD/tests (not built)" >>"$TMP/failed"
  echo "FAILED: no C test binaries in $BUILD/tests"
fi

if [ "$WHAT" != sanitize ]; then
  # Shell tests of the build and of this runner (they get the build dir).
  for t in tests/test_*.sh; do
    [ -f "$t" ] || continue
    run_one "$t" sh "$t" "$BUILD"
  done
fi

if [ "$WHAT" = all ]; then
  # The PyTorch reference's own checks (layout vs the released tensor list, schedules vs
  # upstream's CUDA values, attention/trunk layout against independent formulations).
  run_one tests/ref/check_pxref.py env PYTHONPATH=tests/ref "$PY" tests/ref/check_pxref.py
fi

if [ "$WHAT" = all ] || [ "$WHAT" = sanitize ]; then
  echo "== pytest tests/python"
  XML="$TMP/pytest.xml"
  if [ "$WHAT" = sanitize ]; then
    # The Python suite on the sanitizer build: the runtimes must be loaded first.
    PRE="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
    LD_PRELOAD="$PRE" ASAN_OPTIONS=detect_leaks=0:protect_shadow_gap=0 PXDIFF_SANITIZED=1 \
      PYTHONPATH=python:tests/ref PXDIFF_LIB="$BUILD/libpxdiff.so" "$PY" -m pytest -q -rs tests/python \
      -p no:cacheprovider --durations=12 --junitxml="$XML"
  else
    PYTHONPATH=python:tests/ref PXDIFF_LIB="$BUILD/libpxdiff.so" "$PY" -m pytest -q -rs tests/python \
      -p no:cacheprovider --durations=12 --junitxml="$XML"
  fi
  rc=$?
  # Per-test outcome from the junit report: "pass", "fail NAME", "skip NAME<TAB>REASON".
  if [ -s "$XML" ] && "$PY" - "$XML" >"$TMP/py" <<'EOF'
import sys
import xml.etree.ElementTree as ET
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    name = "%s::%s" % (case.get("classname", ""), case.get("name", ""))
    if case.find("failure") is not None or case.find("error") is not None:
        print("fail " + name)
    elif case.find("skipped") is not None:
        msg = case.find("skipped").get("message", "") or "no reason given"
        print("skip %s\t%s" % (name, " ".join(msg.split())))
    else:
        print("pass")
EOF
  then
    npy=$(wc -l <"$TMP/py")
    pass=$((pass + $(grep -c '^pass' "$TMP/py")))
    nf=$(grep -c '^fail ' "$TMP/py")
    fail=$((fail + nf))
    grep '^fail ' "$TMP/py" | sed 's/^fail //' >>"$TMP/failed"
    while IFS="	" read -r name reason; do
      [ -n "$name" ] || continue
      note_skip "$name" "$reason"
    done <<EOF
$(grep '^skip ' "$TMP/py" | sed 's/^skip //')
EOF
    # pytest failing with no failed test in its report (collection error, crash at exit,
    # no tests collected) still fails the run.
    if [ $rc -ne 0 ] && [ "$nf" -eq 0 ]; then
      fail=$((fail + 1))
      echo "pytest (exit $rc, $npy tests reported)" >>"$TMP/failed"
    fi
  else
    fail=$((fail + 1))
    echo "pytest (exit $rc, no report: crashed or could not start)" >>"$TMP/failed"
  fi
fi

echo
if [ -s "$TMP/skips" ]; then
  echo "skipped:"
  sed 's/^/  /' "$TMP/skips"
fi
if [ -s "$TMP/failed" ]; then
  echo "failed:"
  sed 's/^/  /' "$TMP/failed"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
