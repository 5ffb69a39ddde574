"""Peak memory while loading a checkpoint: at most 1.3x the weights the engine keeps.

The released layout at the released dimensions (~556 MB, written once per session with
torch.save) is loaded by `pxdiff info --checkpoint` in a child process; the child's peak
RSS minus the RSS of the same command without a checkpoint (binary, BLAS, libc) must stay
under 1.3 x the float32 bytes of the parameters it reports keeping."""
import os
import re
import resource
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The CLI next to the library under test (PXDIFF_LIB), else build/.
_LIB = os.environ.get("PXDIFF_LIB")
EXE = os.path.join(os.path.dirname(_LIB), "pxdiff") if _LIB else os.path.join(ROOT, "build", "pxdiff")


def child_peak_rss_kib(args):
    """Run `pxdiff args` in a fresh child (through a tiny Python wrapper so that
    RUSAGE_CHILDREN counts only it) and return (stdout, peak RSS in KiB)."""
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "sys.stdout.write(p.stdout)\n"
            "sys.stderr.write(p.stderr)\n"
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "sys.exit(p.returncode)\n")
    p = subprocess.run([sys.executable, "-c", code, EXE] + args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rss = int(re.search(r"MAXRSS (\d+)", p.stdout).group(1))
    return p.stdout, rss


@pytest.fixture(scope="module")
def released_layout_checkpoint(tmp_path_factory):
    import pxfixtures as fx
    path = tmp_path_factory.mktemp("ckpt") / "released_layout.pt"
    model = fx.random_model(None, seed=11)
    fx.save_released_layout(str(path), model.state_dict())
    del model
    return str(path)


@pytest.mark.skipif(not os.path.exists(EXE), reason="the pxdiff CLI is not built")
@pytest.mark.skipif(bool(os.environ.get("PXDIFF_SANITIZED")),
                    reason="memory is not measurable under AddressSanitizer (shadow memory)")
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_peak_memory_while_loading(released_layout_checkpoint, tmp_path, fmt):
    path = released_layout_checkpoint
    if fmt == "safetensors":
        path = str(tmp_path / "converted.safetensors")
        subprocess.run([EXE, "convert", released_layout_checkpoint, path], check=True,
                       capture_output=True)
    _, base = child_peak_rss_kib(["info"])
    out, peak = child_peak_rss_kib(["info", "--checkpoint", path])
    n_params = int(re.search(r"parameters kept: (\d+)", out).group(1))
    assert n_params == 137768081  # every diffusion_module.* value of the released model
    kept_kib = n_params * 4 / 1024
    ratio = (peak - base) / kept_kib
    print(f"{fmt}: peak {peak} KiB, base {base} KiB, weights {kept_kib:.0f} KiB, ratio {ratio:.3f}")
    assert ratio <= 1.3, f"loading peaked at {ratio:.2f}x the weights kept"
