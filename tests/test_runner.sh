#!/bin/sh
# scripts/run-tests.sh tells the truth: in a scratch tree with stand-in tests that pass,
# fail, skip for a missing GPU and skip for missing data (C binaries exiting 77, pytest
# skips), the closing line counts each outcome separately, lists every skip with its
# reason, and under CI=true a skip for missing data is a failure.
#   sh tests/test_runner.sh   (from the repository root)
ROOT=$(pwd)
RUNNER="$ROOT/scripts/run-tests.sh"
[ -f "$RUNNER" ] || { echo "test_runner: run from the repository root" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/pxdiff-runner.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
failures=0
check() { # check DESCRIPTION COMMAND...
  if "$@"; then :; else failures=$((failures + 1)); echo "test_runner: FAILED: $DESC" >&2; fi
}

mkdir -p "$T/b/tests" "$T/tests/python" "$T/tests/ref"
cd "$T" || exit 1
printf '#!/bin/sh\necho ok\n' >b/tests/test_pass
printf '#!/bin/sh\necho "SKIP: test_gpu: no CUDA device"; exit 77\n' >b/tests/test_gpu
printf '#!/bin/sh\necho "SKIP: test_data: tests/data/x.txt not found"; exit 77\n' >b/tests/test_data
chmod +x b/tests/test_*
printf 'print("reference checks ok")\n' >tests/ref/check_pxref.py
cat >tests/python/test_stand_in.py <<'EOF'
import pytest

def test_ok():
    pass

def test_ok2():
    pass

def test_no_gpu():
    pytest.skip("CUDA path: no CUDA device")

def test_no_data():
    pytest.skip("missing data: tests/data/y.bin")
EOF

# 1. All pass or skip: exit 0; 4 passed (C pass, check_pxref, two pytest), 4 skipped.
CI=false sh "$RUNNER" b all >out.txt 2>&1
rc=$?
DESC="exit status 0 with skips only (got $rc)"; check test $rc -eq 0
DESC="closing line '4 passed, 0 failed, 4 skipped'"
check test "$(tail -n 1 out.txt)" = "4 passed, 0 failed, 4 skipped"
DESC="each skip listed with its reason"
check grep -q "test_gpu: no CUDA device" out.txt
check grep -q "test_data: tests/data/x.txt not found" out.txt
check grep -q "test_no_gpu: CUDA path: no CUDA device" out.txt
check grep -q "test_no_data: missing data: tests/data/y.bin" out.txt

# 2. Under CI the two missing-data skips are failures; the no-GPU ones stay skips.
CI=true sh "$RUNNER" b all >out.txt 2>&1
rc=$?
DESC="CI: nonzero exit for a missing-data skip"; check test $rc -ne 0
DESC="CI: closing line '4 passed, 2 failed, 2 skipped'"
check test "$(tail -n 1 out.txt)" = "4 passed, 2 failed, 2 skipped"

# 3. A failing C test and a failing pytest test are counted one by one.
printf '#!/bin/sh\nexit 1\n' >b/tests/test_fail
chmod +x b/tests/test_fail
printf '\ndef test_bad():\n    assert False\n' >>tests/python/test_stand_in.py
CI=false sh "$RUNNER" b all >out.txt 2>&1
rc=$?
DESC="nonzero exit with failures"; check test $rc -ne 0
DESC="closing line '4 passed, 2 failed, 4 skipped'"
check test "$(tail -n 1 out.txt)" = "4 passed, 2 failed, 4 skipped"

# 4. pytest that cannot even collect is a failure, not a silent pass.
rm b/tests/test_fail
printf 'import no_such_module_pxdiff\n' >tests/python/test_stand_in.py
CI=false sh "$RUNNER" b all >out.txt 2>&1
rc=$?
DESC="collection error fails the run"; check test $rc -ne 0

if [ $failures -ne 0 ]; then
  echo "--- last runner output:" >&2
  cat out.txt >&2
fi
echo "test_runner: $failures failed"
[ $failures -eq 0 ]
