#!/bin/sh
# Every kernel of the CUDA backend is launched by px_launch and opens with px_pdl_enter()
# (src/cuda/launch.cuh: programmatic dependent launch is safe only so), checked by
# scripts/launch_lint.py over src/cuda; and the checker finds what it should: a kernel whose
# body does something before the wait, a `<<<...>>>` launch, and a tree with no kernel at all.
#   sh tests/test_launch_lint.sh [BUILD]   (from the repository root; BUILD unused)
[ -f scripts/launch_lint.py ] || { echo "test_launch_lint: run from the repository root" >&2; exit 1; }
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || { echo "SKIP: no $PY"; exit 77; }
failures=0
fail() { failures=$((failures + 1)); echo "test_launch_lint: FAILED: $*" >&2; }

out=$("$PY" scripts/launch_lint.py src/cuda) || fail "src/cuda breaks the launch rule: $out"

T=$(mktemp -d "${TMPDIR:-/tmp}/pxdiff-launch.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
cat >"$T/good.cu" <<'C'
template <int N>
__global__ void __launch_bounds__(256, 2)
k_good(int n, float *x) {
  px_pdl_enter();
  x[n] = N;
}
__global__ void k_decl(int n);
void run(float *x) { px_launch((k_good<2>), 1, 32, 0, nullptr, true, 0, x); }  // not k<<<1, 32>>>(x)
C
"$PY" scripts/launch_lint.py "$T/good.cu" >/dev/null || fail "a conforming file rejected"
cat >"$T/late.cu" <<'C'
__global__ void k_late(int n, float *x) {
  x[n] = 1.0f;
  px_pdl_enter();
}
C
out=$("$PY" scripts/launch_lint.py "$T/late.cu") && fail "a write before the wait not found"
echo "$out" | grep -q "late.cu:1: kernel k_late does not open with px_pdl_enter" || fail "late wait not named: $out"
cat >"$T/chevron.cu" <<'C'
__global__ void k_ok(float *x) { px_pdl_enter(); x[0] = 0; }
void run(float *x) { k_ok<<<1, 1>>>(x); }
C
out=$("$PY" scripts/launch_lint.py "$T/chevron.cu") && fail "a <<< launch not found"
echo "$out" | grep -q "chevron.cu:2: a <<<" || fail "<<< launch not named: $out"
printf 'int f(void) { return 0; }\n' >"$T/none.cu"
"$PY" scripts/launch_lint.py "$T/none.cu" >/dev/null && fail "a tree without kernels passed"

[ "$failures" -eq 0 ] && echo "test_launch_lint: all checks passed" || exit 1
