#!/usr/bin/env python3
"""Every CUDA kernel of the backend follows src/cuda/launch.cuh's rule for programmatic
dependent launch: it is launched by px_launch (no `<<<...>>>` launch), and its body opens
with px_pdl_enter() -- a kernel launched with PDL that touched memory before that wait
could read what the kernel before it has not yet written.

  python3 scripts/launch_lint.py src/cuda     (exit 1 and one line per breach)
"""
import os
import re
import sys


def strip_comments(s):
    s = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), s, flags=re.S)
    return re.sub(r"//[^\n]*", "", s)


def close_paren(s, a):
    depth = 0
    for k in range(a, len(s)):
        if s[k] == "(":
            depth += 1
        elif s[k] == ")":
            depth -= 1
            if depth == 0:
                return k + 1
    return -1


def check(path):
    s = strip_comments(open(path, encoding="utf-8").read())
    bad = []
    line = lambda i: s.count("\n", 0, i) + 1
    for m in re.finditer(r"<<<", s):
        bad.append("%s:%d: a <<<...>>> launch (use px_launch)" % (path, line(m.start())))
    for m in re.finditer(r"__global__", s):
        a = s.find("(", m.end())
        if "__launch_bounds__" in s[m.end():a]:
            a = s.find("(", close_paren(s, a))
        name = re.findall(r"([A-Za-z_][A-Za-z_0-9]*)\s*$", s[m.end():a])
        k = close_paren(s, a)
        if a < 0 or k < 0:
            bad.append("%s:%d: cannot read this kernel's parameters" % (path, line(m.start())))
            continue
        rest = s[k:]
        if rest.lstrip().startswith(";"):
            continue  # a declaration; the definition is checked where it is
        if not re.match(r"\s*\{\s*px_pdl_enter\(\);", rest):
            bad.append("%s:%d: kernel %s does not open with px_pdl_enter();"
                       % (path, line(m.start()), name[0] if name else "?"))
    return bad


def main():
    roots = sys.argv[1:] or ["src/cuda"]
    files = []
    for r in roots:
        if os.path.isfile(r):
            files.append(r)
        for d, _, fs in os.walk(r):
            files += [os.path.join(d, f) for f in sorted(fs) if f.endswith((".cu", ".cuh"))]
    bad = []
    kernels = 0
    for f in files:
        bad += check(f)
        kernels += len(re.findall(r"__global__", strip_comments(open(f, encoding="utf-8").read())))
    for b in bad:
        print(b)
    if not kernels:
        print("launch_lint: no kernel found under %s" % " ".join(roots))
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
