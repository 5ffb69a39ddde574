#!/bin/sh
# Choose the cblas this machine has, for the Makefile (which caches the answer in
# $(BUILD)/blas.mk; an explicit `make BLAS=name` skips this script).
#   sh scripts/detect-blas.sh CC [auto|mkl|blis|openblas|blas|--list]
# Prints make assignments (BLAS_FOR, BLAS_KIND, BLAS_CFLAGS, BLAS_LIBS) for the first of, in order:
#   Accelerate (macOS), MKL's cblas (pkg-config mkl-dynamic-lp64-seq), BLIS (pkg-config blis,
#   or libblis with its cblas.h), OpenBLAS (pkg-config openblas, or -lopenblas), -lblas.
# Each candidate other than Accelerate must compile and link a cblas_sgemm call with the given
# compiler: a pkg-config file whose library is missing, or a BLIS built without its cblas
# layer, is passed over. A kind (make BLAS=blis where pkg-config does not know blis) tries
# that kind's candidates only. --list prints every kind that links, one a line (the build
# test builds with each). The choice goes to stderr as one line.
CC=${1:-cc}
WANT=${2:-auto}
LIST=
[ "$WANT" = --list ] && LIST=--list && WANT=auto
case "$WANT" in auto | mkl | blis | openblas | blas) ;; *) echo "detect-blas.sh: unknown kind $WANT" >&2; exit 2 ;; esac
# try KIND: whether to try that kind's candidates.
try() { [ "$WANT" = auto ] || [ "$WANT" = "$1" ]; }
T=$(mktemp -d "${TMPDIR:-/tmp}/pxdiff-blas.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

# links KIND HEADER CFLAGS LIBS: 0 when a cblas_sgemm call builds with these flags.
links() {
  printf '#include <%s>\nint main(void) {\n  float a = 1, b = 1, c = 0;\n  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);\n  return c != 1.0f;\n}\n' \
    "$2" >"$T/t.c"
  # shellcheck disable=SC2086
  $CC $3 "$T/t.c" -o "$T/t" $4 >/dev/null 2>&1
}

found=0
# emit KIND CFLAGS LIBS: the choice (or, with --list, one more candidate).
emit() {
  found=1
  if [ "$LIST" = --list ]; then
    echo "$1"
    return
  fi
  echo "# written by scripts/detect-blas.sh; delete this file (or make clean) to choose again"
  echo "BLAS_FOR := $WANT"
  echo "BLAS_KIND := $1"
  echo "BLAS_CFLAGS := $2"
  echo "BLAS_LIBS := $3"
  echo "pxdiff: BLAS detected: $1 ($3)" >&2
  exit 0
}

pc() { pkg-config "$@" 2>/dev/null; }

if [ "$WANT" = auto ] && [ "$(uname -s)" = Darwin ]; then
  emit accelerate "-DPX_BLAS_ACCELERATE -DACCELERATE_NEW_LAPACK" "-framework Accelerate"
fi

# MKL, sequential (the backend threads with OpenMP around single-threaded calls).
if try mkl && pc --exists mkl-dynamic-lp64-seq; then
  cf=$(pc --cflags mkl-dynamic-lp64-seq) lf=$(pc --libs mkl-dynamic-lp64-seq)
  links mkl mkl_cblas.h "$cf" "$lf" && emit mkl "-DPX_BLAS_MKL $cf" "$lf"
fi

# BLIS: its pkg-config file where installed; else libblis, with the cblas.h BLIS ships
# (Debian puts it in a per-threading folder, e.g. /usr/include/x86_64-linux-gnu/blis-openmp).
blis_ok=0
try blis || blis_ok=1
if [ $blis_ok = 0 ] && pc --exists blis; then
  cf=$(pc --cflags blis) lf=$(pc --libs blis)
  if links blis cblas.h "$cf" "$lf"; then blis_ok=1; emit blis "-DPX_BLAS_BLIS $cf" "$lf"; fi
fi
if [ $blis_ok = 0 ]; then
  ma=$($CC -print-multiarch 2>/dev/null)
  for d in /usr/local/include/blis /usr/include/blis ${ma:+/usr/include/$ma/blis*} /opt/homebrew/include/blis; do
    [ -f "$d/cblas.h" ] || continue
    if links blis cblas.h "-I$d" "-lblis"; then emit blis "-DPX_BLAS_BLIS -I$d" "-lblis"; break; fi
  done
fi

# OpenBLAS.
ob_ok=0
try openblas || ob_ok=1
if [ $ob_ok = 0 ] && pc --exists openblas; then
  cf=$(pc --cflags openblas) lf=$(pc --libs openblas)
  if links openblas cblas.h "$cf" "$lf"; then ob_ok=1; emit openblas "-DPX_BLAS_OPENBLAS $cf" "$lf"; fi
fi
if [ $ob_ok = 0 ] && links openblas cblas.h "" "-lopenblas"; then emit openblas "-DPX_BLAS_OPENBLAS" "-lopenblas"; fi

# Whatever libblas is (reference BLAS with cblas, or an alternative behind it).
try blas && links blas cblas.h "" "-lblas" && emit blas "-DPX_BLAS_GENERIC" "-lblas"

if [ $found = 0 ]; then
  if [ "$WANT" = auto ]; then
    echo "pxdiff: no cblas found (tried MKL, BLIS, OpenBLAS, -lblas with $CC); install one" \
         "(Debian: make deps, or apt-get install libopenblas-dev) or name it: make BLAS=<pkg-config name>" >&2
  else
    echo "pxdiff: BLAS=$WANT: no $WANT with a cblas interface links with $CC" >&2
  fi
  exit 1
fi
exit 0
