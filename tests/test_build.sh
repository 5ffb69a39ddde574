#!/bin/sh
# The build a packager can trust (Makefile):
#  - `make` alone runs no package manager: it builds with apt-get, apt, dpkg, dpkg-query,
#    sudo and pip replaced by stubs that record the call and fail;
#  - header dependencies are tracked: after a build `make -q` finds nothing to do, and for
#    every header, `make -n -W header` recompiles exactly the sources whose preprocessor
#    dependencies (asked of the compiler directly, `cc -MM`) include it;
#  - -march=x86-64-v3 only on x86_64 hosts, OPT overridable;
#  - BLAS flags and libraries from pkg-config, -l$(BLAS) when pkg-config does not know it.
# Builds the library without CUDA at -O0 in a scratch dir (~20 s on 2 cores).
#   sh tests/test_build.sh   (from the repository root)
[ -f Makefile ] && [ -d src ] || { echo "test_build: run from the repository root" >&2; exit 1; }
CC=${CC:-cc}
T=$(mktemp -d "${TMPDIR:-/tmp}/pxdiff-build.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
B="$T/b"
failures=0
fail() { failures=$((failures + 1)); echo "test_build: FAILED: $*" >&2; }
MK="make --no-print-directory BUILD=$B PXDIFF_NO_CUDA=1 OPT=-O0"

# --- 1. `make` with package managers stubbed out ---------------------------------------
mkdir -p "$T/stubs"
for tool in apt-get apt apt-cache dpkg dpkg-query sudo pip pip3 aptitude; do
  printf '#!/bin/sh\necho "%s $*" >>"%s/pm-calls"\nexit 1\n' "$tool" "$T" >"$T/stubs/$tool"
  chmod +x "$T/stubs/$tool"
done
if ! PATH="$T/stubs:$PATH" $MK -j2 >"$T/build.log" 2>&1; then
  fail "make (default goal) did not build with package managers stubbed out"
  tail -n 20 "$T/build.log" >&2
fi
if [ -s "$T/pm-calls" ]; then
  fail "make ran a package manager: $(tr '\n' ';' <"$T/pm-calls")"
fi
for f in libpxdiff.so libpxdiff.a pxdiff; do
  [ -f "$B/$f" ] || fail "make did not build $f"
done
if [ $failures -ne 0 ]; then
  echo "test_build: the build failed; the other checks need it" >&2
  exit 1
fi

# --- 2. dependency tracking ------------------------------------------------------------
$MK -q all || fail "make -q: a fresh build is not up to date"
# Every compiled source and the headers the compiler says it includes (repository headers).
find "$B/obj" -name '*.o' | sed -e "s|^$B/obj/||" -e 's|\.o$|.c|' | sort >"$T/sources"
[ -s "$T/sources" ] || fail "no objects in $B/obj"
# The preprocessor flags make uses for a library object and for a CLI object (defines decide
# which headers are included), from the compile lines themselves.
cpp_flags() {
  $MK -n -B "$1" 2>/dev/null | grep ' -c ' | tr ' ' '\n' | grep -E '^-(I|D|std)' | tr '\n' ' '
}
LIBF=$(cpp_flags "$B/obj/src/error.o")
CLIF=$(cpp_flags "$B/obj/src/cli/main.o")
case "$LIBF" in *-Iinclude*) ;; *) fail "cannot read the compile flags from make -n: '$LIBF'" ;; esac
while read -r src; do
  [ -f "$src" ] || continue
  case "$src" in src/cli/*) flags=$CLIF ;; *) flags=$LIBF ;; esac
  # shellcheck disable=SC2086
  $CC -MM $flags "$src" 2>/dev/null | tr ' \\' '\n\n' | grep '\.h$' |
    sed "s|^|$src |" >>"$T/deps"
done <"$T/sources"
n_headers=0
for h in include/*.h src/*.h src/*/*.h; do
  [ -f "$h" ] || continue
  n_headers=$((n_headers + 1))
  awk -v h="$h" '$2 == h { print $1 }' "$T/deps" | sort -u >"$T/want"
  $MK -n -W "$h" all 2>/dev/null | grep -o ' -c [^ ]*' | sed 's/^ -c //' | sort -u >"$T/got"
  if ! cmp -s "$T/want" "$T/got"; then
    fail "a change to $h recompiles [$(tr '\n' ' ' <"$T/got")] instead of its users [$(tr '\n' ' ' <"$T/want")]"
  fi
done
[ $n_headers -gt 5 ] || fail "only $n_headers headers found"

# --- 3. architecture flags ---------------------------------------------------------------
cc_lines() { $MK "$@" -n -B "$B/obj/src/error.o" 2>/dev/null | grep ' -c '; }
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64)
    make --no-print-directory BUILD="$B" PXDIFF_NO_CUDA=1 -n -B "$B/obj/src/error.o" | grep -q -- '-march=x86-64-v3' ||
      fail "x86_64: default flags lack -march=x86-64-v3" ;;
esac
make --no-print-directory BUILD="$B" PXDIFF_NO_CUDA=1 UNAME_M=aarch64 -n -B "$B/obj/src/error.o" |
  grep -q -- '-march=x86' && fail "aarch64 host: x86 flags in the compile line"
cc_lines OPT=-O1 | grep -q -- ' -O1 ' || fail "OPT=-O1 does not reach the compile line"
cc_lines OPT=-O1 | grep -q -- '-march' && fail "OPT=-O1 still adds -march"

# --- 4. BLAS through pkg-config ----------------------------------------------------------
if [ "$(uname -s)" = Linux ]; then
  link=$($MK -n -B "$B/libpxdiff.so" 2>/dev/null | grep -- ' -shared ')
  if pkg_libs=$(pkg-config --libs openblas 2>/dev/null) && [ -n "$pkg_libs" ]; then
    for w in $pkg_libs; do
      printf '%s\n' "$link" | grep -q -- "$w" || fail "link line lacks pkg-config's '$w': $link"
    done
  fi
  $MK BLAS=pxdiff_no_such_blas -n -B "$B/libpxdiff.so" 2>/dev/null | grep -q -- '-lpxdiff_no_such_blas' ||
    fail "BLAS=name unknown to pkg-config does not link -lname"
fi

echo "test_build: $n_headers headers checked, $failures failed"
[ $failures -eq 0 ]
