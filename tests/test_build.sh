#!/bin/sh
# The build a packager can trust (Makefile):
#  - `make` alone runs no package manager: it builds with apt-get, apt, dpkg, dpkg-query,
#    sudo and pip replaced by stubs that record the call and fail;
#  - header dependencies are tracked: after a build `make -q` finds nothing to do, and for
#    every header, `make -n -W header` recompiles exactly the sources whose preprocessor
#    dependencies (asked of the compiler directly, `cc -MM`) include it;
#  - -march=x86-64-v3 only on x86_64 hosts, OPT overridable;
#  - BLAS flags and libraries from pkg-config, -l$(BLAS) when pkg-config does not know it;
#  - without BLAS= the machine's library is detected and `pxdiff info` names it; every other
#    library detect-blas.sh finds builds too (the same dir: the flags stamp rebuilds it);
#  - a changed configuration (OPT=, BLAS=) makes the build out of date.
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
  if pkg_libs=$(pkg-config --libs openblas 2>/dev/null) && [ -n "$pkg_libs" ]; then
    link=$($MK BLAS=openblas -n -B "$B/libpxdiff.so" 2>/dev/null | grep -- ' -shared ')
    for w in $pkg_libs; do
      printf '%s\n' "$link" | grep -q -- "$w" || fail "BLAS=openblas: link line lacks pkg-config's '$w': $link"
    done
  fi
  $MK BLAS=pxdiff_no_such_blas -n -B "$B/libpxdiff.so" 2>/dev/null | grep -q -- '-lpxdiff_no_such_blas' ||
    fail "BLAS=name unknown to pkg-config does not link -lname"
fi

# --- 5. the detected BLAS, named by `pxdiff info`; the flags stamp -------------------------
# blas_label KIND: how `pxdiff info` names a kind (cpu/blas.h PX_BLAS_BUILT).
blas_label() {
  case "$1" in
    openblas) echo OpenBLAS ;; blis) echo BLIS ;; mkl) echo MKL ;; accelerate) echo Accelerate ;; *) echo cblas ;;
  esac
}
# check_info KIND WHAT: the blas line of $B/pxdiff info names KIND's library.
check_info() {
  want=$(blas_label "$1")
  line=$("$B/pxdiff" info 2>&1 | sed -n 's/^blas: //p')
  case "$line" in
    "$want;"*) ;;
    *) fail "$2: built with $1 but pxdiff info says 'blas: $line'" ;;
  esac
}
kind=$(sed -n 's/^BLAS_KIND := //p' "$B/blas.mk" 2>/dev/null)
libs=$(sed -n 's/^BLAS_LIBS := //p' "$B/blas.mk" 2>/dev/null)
if [ -z "$kind" ]; then
  fail "the default build left no BLAS choice in $B/blas.mk"
else
  check_info "$kind" "the default build"
  link=$($MK -n -B "$B/libpxdiff.so" 2>/dev/null | grep -- ' -shared ')
  for w in $libs; do
    printf '%s\n' "$link" | grep -q -- "$w" || fail "link line lacks the detected $kind's '$w': $link"
  done
fi
# Another configuration makes the build out of date (the stamp $B/.flags), and asking does
# not change the stamp.
$MK -q OPT=-O1 all && fail "make -q OPT=-O1 after an -O0 build: up to date (flags stamp ignored)"
$MK -q all || fail "make -q after make -q OPT=-O1: no longer up to date"
# Every other library this machine has (scripts/detect-blas.sh --list): the same build dir
# rebuilt with it (the stamp rebuilds every object), named by pxdiff info; then the default
# again.
others=$(sh scripts/detect-blas.sh "$CC" --list 2>/dev/null | grep -v -x -e "$kind" -e blas)
for other in $others; do
  if $MK -j2 BLAS="$other" >"$T/build-$other.log" 2>&1; then
    check_info "$other" "BLAS=$other"
    $MK -q BLAS="$other" all || fail "BLAS=$other: a fresh build is not up to date"
  else
    fail "BLAS=$other (detect-blas.sh --list says it links) did not build"
    tail -n 20 "$T/build-$other.log" >&2
  fi
done
if [ -n "$others" ]; then
  $MK -j2 >"$T/build-again.log" 2>&1 || fail "the default build again after BLAS=..."
  check_info "$kind" "the default build after BLAS=$others"
fi
echo "test_build: BLAS $kind${others:+, also built with $(echo $others)}"

echo "test_build: $n_headers headers checked, $failures failed"
[ $failures -eq 0 ]
