#!/bin/sh
# Install the Debian packages pxdiff needs when they are missing.
#   build: a C compiler, make, OpenBLAS (pthread build) with cblas headers.
#   test:  Debian's python3-torch (the reference), numpy, pytest; BLIS, a second cblas that
#          tests/test_build.sh builds with (a BLIS build is also what the Makefile then
#          detects first: scripts/detect-blas.sh).
set -e
need=""
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
case "$1" in
  build) pkgs="libopenblas-pthread-dev libopenblas0-pthread pkg-config" ;;
  test)  pkgs="python3-torch python3-numpy python3-pytest python3-venv libopenblas0-pthread libblis-dev" ;;
  *) echo "usage: ensure-deps.sh build|test" >&2; exit 2 ;;
esac
if command -v dpkg-query >/dev/null 2>&1; then   # not Debian: the user provides them
  for p in $pkgs; do have_pkg "$p" || need="$need $p"; done
  if [ -n "$need" ]; then
    echo "pxdiff: installing missing Debian packages:$need" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
  fi
fi

# Independent checkers of what pxdiff writes (mmCIF/PDB parsers, the reference safetensors
# implementation) live in a venv that still sees Debian's torch. biotite pulls a numpy 2.x
# that Debian's torch 1.13 cannot use, so the venv drops it and uses Debian's numpy.
if [ "$1" = test ] && [ -n "${PXDIFF_TEST_VENV:-}" ] && [ ! -x "$PXDIFF_TEST_VENV/bin/python" ]; then
  echo "pxdiff: creating $PXDIFF_TEST_VENV (gemmi, biotite, safetensors)" >&2
  if /usr/bin/python3 -m venv --system-site-packages "$PXDIFF_TEST_VENV" &&
     "$PXDIFF_TEST_VENV/bin/pip" install -q gemmi biotite safetensors >/dev/null 2>&1; then
    "$PXDIFF_TEST_VENV/bin/pip" uninstall -q -y numpy >/dev/null 2>&1 || true
  else
    echo "pxdiff: could not set up $PXDIFF_TEST_VENV; the tests that need it will skip" >&2
    rm -rf "$PXDIFF_TEST_VENV"
  fi
fi
