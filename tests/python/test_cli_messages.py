"""What the CLI says (src/cli/options.c, main.c, cmd_*.c): every command answers --help,
help and parsing agree (every option the help lists parses with the value the help names),
unknown options point to the command's help, `--device` takes only the names it documents,
a failing command prints nothing on stdout, printed settings are the ones used, and a
missing CUDA driver is named as such."""
import ctypes
import os
import re

import pytest

from test_sample_cli import _cli, problem, run, sample_args  # noqa: F401  (problem: fixture)


def commands():
    rc, so, se = run("help")
    assert rc == 0, se
    names = [m.group(1) for m in re.finditer(r"^  ([a-z][a-z-]*)\s", so, re.M)]
    return [n for n in names if n not in ("help", "version")]


def test_help_lists_the_commands():
    cmds = commands()
    assert {"info", "sample", "demo", "bench", "convert", "bundle-info"} <= set(cmds), cmds
    rc, so, se = run()
    assert rc == 2 and so == "" and "usage: pxdiff" in se
    rc, so, se = run("frobnicate")
    assert rc == 2 and so == "" and se.count("\n") == 1 and "`pxdiff help`" in se, se


def parse_help(text):
    """[(name, meta, default or None, flag?)] from a --help text."""
    opts, cur = [], None
    for line in text.splitlines():
        m = re.match(r"^  (?:-\w, )?(--[A-Za-z0-9_-]+)(?: (\S+))?(.*)$", line)
        if m:
            cur = [m.group(1), m.group(2), m.group(3)]
            opts.append(cur)
        elif cur is not None and line.startswith(" " * 30):
            cur[2] += " " + line.strip()
        else:
            cur = None
    out = []
    for name, meta, text in opts:
        d = re.search(r"\(default ([^)\s]+)\)", text)
        out.append((name, meta, d.group(1) if d else None))
    return out


@pytest.mark.parametrize("cmd", commands())
def test_every_command_answers_help(cmd):
    for flag in ("--help", "-h"):
        rc, so, se = run(cmd, flag)
        assert rc == 0 and se == "", (cmd, se)
        assert so.startswith(f"usage: pxdiff {cmd}"), so
        assert "-h, --help" in so
    rc, so2, _ = run("help", cmd)
    assert rc == 0 and so2 == so
    # after valid options too
    rc, so3, _ = run(cmd, "--help", "--not-an-option")
    assert rc == 0 and so3 == so


@pytest.mark.parametrize("cmd", commands())
def test_help_and_parser_agree(cmd):
    """Each option the help lists parses with the value the help gives (its default, or
    the first listed choice), and nothing else is accepted."""
    rc, so, _ = run(cmd, "--help")
    listed = parse_help(so)
    assert listed, so
    for name, meta, default in listed:
        if name == "--help":
            continue
        if meta is None:
            args = [name]
        else:
            value = default if default is not None else meta.split("|")[0] if "|" in meta else "1"
            args = [name, value]
        rc, so2, se = run(cmd, *args, "--help")
        assert rc == 0 and so2 == so, (cmd, args, se)
        if meta is not None and "|" in meta:  # every documented choice parses
            for v in meta.split("|"):
                rc, _, se = run(cmd, name, v, "--help")
                assert rc == 0, (cmd, name, v, se)
            rc, so3, se = run(cmd, name, "no-such-choice")
            assert rc == 2 and so3 == "" and se.count("\n") == 1 and meta.replace("|", ", ").split(", ")[0] in se


@pytest.mark.parametrize("cmd", commands())
def test_unknown_option_points_to_help(cmd):
    rc, so, se = run(cmd, "--frobnicate")
    assert rc == 2 and so == "", se
    assert se == f"pxdiff: unknown option --frobnicate for `pxdiff {cmd}`; see `pxdiff {cmd} --help`\n"


def test_device_names(problem, tmp_path):
    """--device takes auto, cpu and cuda (documented in each help); "gpu" is refused."""
    for cmd in ("sample", "demo", "bench"):
        rc, so, _ = run(cmd, "--help")
        assert "--device auto|cpu|cuda" in so, so
        rc, so, se = run(cmd, "--device", "gpu")
        assert rc == 2 and so == "" and se.count("\n") == 1, se
        assert "'gpu' is not one of auto, cpu or cuda" in se and f"`pxdiff {cmd} --help`" in se, se
    rc, so, _ = run("sample", "--help")
    assert "auto = cuda when a CUDA device is usable, else cpu" in so


def cli_has_cuda():
    rc, so, _ = run("info")
    assert rc == 0
    return "backends: cpu, cuda" in so, "cuda:0" in so


def libcuda_loads():
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def test_device_cuda_names_the_real_cause(tmp_path):
    """Without a usable GPU, --device cuda fails with one line saying why, before printing
    anything on stdout or creating --out: a CPU-only build says so; a CUDA build on a
    machine without libcuda.so.1 says that no driver is found (not that the driver is too old)."""
    compiled, device = cli_has_cuda()
    if device:
        pytest.skip("a CUDA device is usable here (the GPU path: tests/gpu/)")
    for args in (["demo", "--out", tmp_path / "d", "--device", "cuda", "--steps", "1"],
                 ["bench", "--device", "cuda", "--tokens", "10", "--atoms", "40", "--reps", "1"]):
        rc, so, se = run(*args)
        assert rc == 1 and so == "" and se.count("\n") == 1, (args, so, se)
        if not compiled:
            assert "built without CUDA" in se, se
        elif not libcuda_loads():
            assert "no CUDA driver found (libcuda.so.1 could not be loaded)" in se, se
            assert "insufficient" not in se, se
        else:
            assert "CUDA" in se
    assert not os.path.exists(tmp_path / "d")


def test_failing_demo_prints_no_header(tmp_path):
    out = tmp_path / "d"
    (out / "pdl1_demo" / "seed_101").mkdir(parents=True)
    (out / "pdl1_demo" / "seed_101" / "summary.json").write_text("{}")  # another run's file
    rc, so, se = run("demo", "--out", out, "--steps", "1", "--samples", "1")
    assert rc == 1 and so == "" and se.count("\n") == 1, (so, se)
    rc, so, se = run("demo", "--out", tmp_path / "e", "--device", "cpu", "--precision", "fp16")
    assert rc == 1 and so == "" and se.count("\n") == 1 and "fp32 or bf16" in se, (so, se)


def test_printed_chunk_is_the_one_used(problem, tmp_path):
    """4 samples with the default --chunk 10 run as one chunk of 4: the report says so."""
    rc, so, se = run("sample", "--device", "cpu", "--checkpoint", problem.ck, "--bundle", problem.bundle,
                     "--out", tmp_path / "c", "--samples", 4, "--steps", 2)
    assert rc == 0, se
    assert "(chunks of 4)" in so and "chunks of 10" not in so, so
    rc, so, se = run(*sample_args(problem, tmp_path / "c3", samples=5, steps=2, chunk=3))
    assert rc == 0, se
    assert "(chunks of 3)" in so, so
