#!/bin/sh
# The repository stands alone: no file in it (code, tests, scripts, docs, data) names a path
# outside it or cites a document it does not carry. Forbidden: absolute paths into the
# workplace that made it, the sibling folder of shared material, the environment variable that once
# pointed tests elsewhere, and the specification files that lived outside (the project's own
# pages are docs/spec.md, docs/design-spec.md and docs/benchmarks.md). Every docs/*.md link
# to a repository file must resolve. The test data the suite reads must be present.
#   sh tests/test_standalone.sh   (from the repository root; works without .git too)
[ -f Makefile ] && [ -d src ] || { echo "test_standalone: run from the repository root" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/pxdiff-standalone.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
failures=0

# Files of the repository: tracked and untracked-but-not-ignored, or (no git, e.g. an
# exported copy) everything but build outputs and the git-ignored upstream sources.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -co --exclude-standard >"$T/files"
else
  find . -type f ! -path './build*' ! -path './third_party/*' ! -path './.git/*' \
    ! -path './fuzz/out/*' | sed 's|^\./||' >"$T/files"
fi
# This file spells the patterns (assembled below so that they do not match it).
grep -v -x -e 'tests/test_standalone.sh' "$T/files" >"$T/scan"

# The patterns, assembled so that this file does not match them itself.
W="/wo""rk/"
P1="\.\./sha""red"
P2="(SPEC|SPEC_DESIGN|BASELINES|ARCHITECTURE|STYLE)\.m""d"
P3="PXDIFF_REFERENCE""_DIR"
while IFS= read -r f; do
  [ -f "$f" ] || continue
  grep -I -n -E -e "$W" -e "$P1" -e "$P2" -e "$P3" "$f" 2>/dev/null | sed "s|^|$f:|"
done <"$T/scan" >"$T/hits"
if [ -s "$T/hits" ]; then
  failures=$((failures + 1))
  echo "test_standalone: references to files outside the repository:" >&2
  cut -c1-200 "$T/hits" >&2
fi

# Relative links in docs/ and README resolve inside the repository.
for md in README.md docs/*.md tests/data/*/README.md; do
  [ -f "$md" ] || continue
  dir=$(dirname "$md")
  grep -o -E '\]\([^)#:]+(#[^)]*)?\)' "$md" | sed -e 's/^](//' -e 's/)$//' -e 's/#.*//' | sort -u |
    while IFS= read -r link; do
      [ -n "$link" ] || continue
      [ -e "$dir/$link" ] || echo "$md: link to $link does not resolve"
    done
done >"$T/links"
if [ -s "$T/links" ]; then
  failures=$((failures + 1))
  cat "$T/links" >&2
fi

# The data the suite reads (tests/data/reference/README.md says where it came from).
for f in tests/data/reference/pxdesign_v0.1.0_params.tsv tests/data/reference/noise_schedules_cuda.txt \
  tests/data/reference/README.md docs/spec.md docs/design-spec.md docs/benchmarks.md; do
  if [ ! -s "$f" ]; then
    failures=$((failures + 1))
    echo "test_standalone: $f is missing" >&2
  fi
done

echo "test_standalone: $(wc -l <"$T/scan") files scanned, $failures failed"
[ $failures -eq 0 ]
