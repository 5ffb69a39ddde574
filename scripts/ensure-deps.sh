#!/bin/sh
# Install the Debian packages pxdiff needs when they are missing.
#   build: a C compiler, make, OpenBLAS (pthread build) with cblas headers.
#   test:  Debian's python3-torch (the reference), numpy, pytest.
set -e
need=""
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
case "$1" in
  build) pkgs="libopenblas-pthread-dev libopenblas0-pthread pkg-config" ;;
  test)  pkgs="python3-torch python3-numpy python3-pytest libopenblas0-pthread" ;;
  *) echo "usage: ensure-deps.sh build|test" >&2; exit 2 ;;
esac
command -v dpkg-query >/dev/null 2>&1 || exit 0   # not Debian: the user provides them
for p in $pkgs; do have_pkg "$p" || need="$need $p"; done
[ -z "$need" ] && exit 0
echo "pxdiff: installing missing Debian packages:$need" >&2
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
