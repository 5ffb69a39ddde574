#!/usr/bin/env python3
"""Circles in src/'s dependency graph (docs/architecture.md, "The layers").

A unit is a source file's path under src/ without its extension: foo.c and foo.h are one
unit ("io/zip"). Unit A depends on unit B when
  - a .c file of A names a function or variable that the .c file of B defines with external
    linkage (calls: how a header like model/model.h, declaring what several .c files define,
    is seen through to the file that defines it), or
  - a file of A has `#include "B.h"` (named from src/, as the build's -Isrc) and B is a
    header with no .c or .cu of its own (an interface: backend.h, model/model.h,
    sample/rng_core.h, ...). Including foo.h of a foo.c counts through the names A uses.
.cu/.cuh files give include edges only (their definitions are not parsed). Folders are compared too: every folder under src/
is one node (src/'s own files are nodes of their own: they are the seam and the bottom
layer), and an edge between two folders is any unit edge between them.

Prints the edges (--edges) and every circle, one strongly connected component a line, with
one edge path through it; exits 1 when there is a circle between units or between folders,
0 otherwise.
  python3 scripts/include_cycles.py [--edges] [SRC_DIR]
"""
import os
import re
import sys

ALL_EXT = (".c", ".h", ".cu", ".cuh", ".inc")


def strip_code(text):
    """Comments, string and character literals removed (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
IDENT = re.compile(r"[A-Za-z_]\w*")
FUNC_HEAD = re.compile(r"([A-Za-z_]\w*)\s*\([^;{}]*\)\s*$", re.S)
DATA_NAME = re.compile(r"([A-Za-z_]\w*)\s*(\[[^=]*\])*\s*$", re.S)
NOT_DEFS = ("static", "typedef", "extern", "struct", "union", "enum")
PREPRO = re.compile(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", re.M)  # directives, continued lines too
KEYWORDS = {"if", "while", "for", "switch", "return", "sizeof", "do", "else", "__attribute__", "_Alignas"}


def definitions(code):
    """Names a C file defines with external linkage: functions and file-scope variables."""
    code = PREPRO.sub(lambda m: "\n" * m.group(0).count("\n"), code)
    names = set()
    depth, start = 0, 0
    for i, c in enumerate(code):
        if c == "{":
            if depth == 0:
                head = code[start:i].strip()
                words = head.split()
                if words and words[0] not in NOT_DEFS and "=" not in head:
                    m = FUNC_HEAD.search(head)
                    if m and m.group(1) not in KEYWORDS:
                        names.add(m.group(1))
                elif words and words[0] not in NOT_DEFS and head.endswith("="):
                    m = DATA_NAME.search(head[:-1])
                    if m:
                        names.add(m.group(1))
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                start = i + 1
        elif c == ";" and depth == 0:
            stmt = code[start:i].strip()
            words = stmt.split()
            if words and words[0] not in NOT_DEFS and "(" not in stmt.split("=")[0]:
                m = DATA_NAME.search(stmt.split("=")[0])
                if m and len(words) > 1:
                    names.add(m.group(1))
            start = i + 1
    return names


def unit_of(rel):
    return os.path.splitext(rel)[0]


def folder_of(u):
    return u.split("/")[0] if "/" in u else u  # src/'s own files: nodes of their own


def sccs(nodes, edges):
    """Tarjan's strongly connected components with more than one node."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        work = [(v, iter(sorted(edges.get(v, ()))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            u, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    advanced = True
                    break
                if w in on:
                    low[u] = min(low[u], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[u])
            if low[u] == index[u]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == u:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def cycle_path(comp, edges):
    """One circle inside a component, as a -> b -> ... -> a."""
    members = set(comp)
    start = comp[0]
    prev, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for u in frontier:
            for w in sorted(edges.get(u, ())):
                if w == start:
                    path = [u]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return " -> ".join(list(reversed(path)) + [start])
                if w in members and w not in prev:
                    prev[w] = u
                    nxt.append(w)
        frontier = nxt
    return ""


def main(argv):
    show_edges = "--edges" in argv
    args = [a for a in argv if a != "--edges"]
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            if name.endswith(ALL_EXT):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, src).replace(os.sep, "/")
                with open(path, encoding="utf-8", errors="replace") as f:
                    files[rel] = f.read()
    units = {unit_of(r) for r in files}
    edges = {}  # unit -> {unit: reason}

    def add(a, b, why):
        if a != b:
            edges.setdefault(a, {}).setdefault(b, why)

    code = {r: strip_code(t) for r, t in files.items()}
    defined = {}  # name -> unit
    for r, t in code.items():
        if r.endswith(".c"):
            for name in definitions(t):
                defined.setdefault(name, unit_of(r))
    with_c = {unit_of(r) for r in files if r.endswith((".c", ".cu"))}
    for r, t in files.items():
        for inc in INCLUDE.findall(t):
            if inc in files and unit_of(inc) not in with_c:
                add(unit_of(r), unit_of(inc), "#include \"%s\" in %s" % (inc, r))
    for r, t in code.items():
        if not r.endswith(".c"):
            continue
        for name in set(IDENT.findall(t)):
            u = defined.get(name)
            if u:
                add(unit_of(r), u, "%s names %s" % (r, name))
    if show_edges:
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print("%s -> %s  (%s)" % (a, b, edges[a][b]))
    bad = 0
    for comp in sccs(units, edges):
        bad += 1
        print("circle between files: %s: %s" % (", ".join(comp), cycle_path(comp, edges)))
        for a in comp:
            for b in sorted(edges.get(a, ())):
                if b in comp:
                    print("    %s -> %s  (%s)" % (a, b, edges[a][b]))
    fedges = {}
    for a in edges:
        for b in edges[a]:
            fa, fb = folder_of(a), folder_of(b)
            if fa != fb:
                fedges.setdefault(fa, {}).setdefault(fb, "%s -> %s: %s" % (a, b, edges[a][b]))
    for comp in sccs({folder_of(u) for u in units}, fedges):
        bad += 1
        print("circle between folders: %s: %s" % (", ".join(comp), cycle_path(comp, fedges)))
        for a in comp:
            for b in sorted(fedges.get(a, ())):
                if b in comp:
                    print("    %s -> %s  (%s)" % (a, b, fedges[a][b]))
    if not bad:
        print("no circles: %d units, %d edges" % (len(units), sum(len(v) for v in edges.values())))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
