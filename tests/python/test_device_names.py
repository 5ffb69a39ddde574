"""One device named cuda:N (issue 12 item 2): px_device_from_name and every one-device
`--device` (sample, bench, demo, featurize; cli/options.c's CLI_DEVICE) take cuda:N for a
device N this machine has, and refuse any other index with one line saying which devices there
are (or that there is none: no GPU visible, or a build without CUDA), before anything runs.

Without a GPU only the refusals can be checked here; tests/gpu/ runs cuda:N on the device
machine.
"""
import pytest

from pxdiff._lib import lib
from test_campaign import run

CUDA, INVALID = 2, -1


def n_gpu():
    return lib.px_cuda_device_count()


def last_error():
    return lib.px_last_error().decode()


def test_device_from_name_takes_cuda_n():
    assert lib.px_device_from_name(b"cuda") == CUDA
    n = n_gpu()
    for i in range(n):
        assert lib.px_device_from_name(b"cuda:%d" % i) == CUDA, last_error()
    for bad in (b"cuda:%d" % n, b"cuda:%d" % (n + 7), b"cuda:100000"):
        assert lib.px_device_from_name(bad) == INVALID, bad
        msg = last_error()
        assert msg and "\n" not in msg, msg
        if n:
            assert "no CUDA device %s" % bad.decode() in msg and "%d visible" % n in msg, msg
        else:
            assert "built without CUDA" in msg or "no CUDA device is visible" in msg, msg
    for bad in (b"cuda:", b"cuda:x", b"cuda:-1", b"cuda:0,1", b"cuda:all", b"cuda0", b"CUDA:0"):
        assert lib.px_device_from_name(bad) == INVALID, bad
        msg = last_error()
        assert msg and "\n" not in msg, (bad, msg)


@pytest.mark.parametrize("cmd", ["sample", "bench", "demo", "featurize"])
def test_cli_device_cuda_n(cmd, tmp_path):
    rc, so, _ = run(cmd, "--help")
    assert rc == 0 and "--device auto|cpu|cuda" in so and "cuda:N" in so, so
    n = n_gpu()
    rc, so, se = run(cmd, "--device", "cuda:%d" % (n + 3))
    assert rc == 2 and so == "" and se.count("\n") == 1, se
    assert se.startswith("pxdiff: %s: --device: " % cmd) and f"`pxdiff {cmd} --help`" in se, se
    if n:
        assert "no CUDA device cuda:%d (%d visible" % (n + 3, n) in se, se
    else:
        assert "built without CUDA" in se or "no CUDA device is visible" in se, se
    for bad in ("cuda:x", "cuda:", "cuda:0,1"):
        rc, so, se = run(cmd, "--device", bad)
        assert rc == 2 and so == "" and se.count("\n") == 1, (bad, se)
        assert "'%s' is not one of auto, cpu or cuda (or cuda:N)" % bad in se, se
    assert not any(tmp_path.iterdir())
