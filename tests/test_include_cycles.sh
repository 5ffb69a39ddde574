#!/bin/sh
# No circle in src/'s dependency graph (scripts/include_cycles.py: includes of interface
# headers and calls between .c files; units and folders), and the checker itself finds the
# circles it should: a planted call circle inside a folder, and an arrow pointing up between
# folders, each fail it.
#   sh tests/test_include_cycles.sh [BUILD]   (from the repository root; BUILD unused)
[ -f scripts/include_cycles.py ] || { echo "test_include_cycles: run from the repository root" >&2; exit 1; }
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || { echo "SKIP: no $PY"; exit 77; }
failures=0
fail() { failures=$((failures + 1)); echo "test_include_cycles: FAILED: $*" >&2; }

"$PY" scripts/include_cycles.py src || fail "src/ has circles (above)"

T=$(mktemp -d "${TMPDIR:-/tmp}/pxdiff-cycles.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/a/io" "$T/a/model" "$T/a/sample"
# io/x.c and io/y.c call each other through one shared header (the old cif/pdb shape).
printf '#include "io/xy.h"\nint x_parse(int v) { return v ? y_parse(v - 1) : 0; }\n' >"$T/a/io/x.c"
printf '#include "io/xy.h"\nint y_parse(int v) { return x_parse(v); }\n' >"$T/a/io/y.c"
printf 'int x_parse(int v);\nint y_parse(int v);\n' >"$T/a/io/xy.h"
out=$("$PY" scripts/include_cycles.py "$T/a") && fail "a call circle io/x <-> io/y not found"
echo "$out" | grep -q "circle between files: io/x, io/y" || fail "call circle not named: $out"

# model/m.c uses sample/r.h's generator while sample/s.c includes model/model.h (an arrow up).
mkdir -p "$T/b/model" "$T/b/sample"
printf 'typedef int px_model;\n' >"$T/b/model/model.h"
printf '#include "sample/r.h"\nint m_init(void) { return r_draw(); }\n' >"$T/b/model/m.c"
printf 'int r_draw(void);\n' >"$T/b/sample/r.h"
printf '#include "sample/r.h"\nint r_draw(void) { return 4; }\n' >"$T/b/sample/r.c"
printf '#include "model/model.h"\nint s_run(px_model m) { return m; }\n' >"$T/b/sample/s.c"
out=$("$PY" scripts/include_cycles.py "$T/b") && fail "the folder circle model <-> sample not found"
echo "$out" | grep -q "circle between folders: model, sample" || fail "folder circle not named: $out"

# Comments and strings do not count: the same tree without the arrow up passes.
printf '/* r_draw() */\nint m_init(void) { const char *s = "r_draw()"; return s[0]; }\n' >"$T/b/model/m.c"
"$PY" scripts/include_cycles.py "$T/b" >/dev/null || fail "a name in a comment or string counted as a call"

[ $failures -eq 0 ] || exit 1
echo "test_include_cycles: ok"
