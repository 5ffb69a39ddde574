"""The C library others can link, and the Python errors that wrap it.

- libpxdiff.so exports exactly the functions its public headers (include/*.h) declare with
  PXDIFF_API, and every such declaration is exported (nm -D against the headers' text);
- px_version / px_version_number agree with the header's macros;
- the name parsers return the headers' INVALID enumerators;
- the engine's error codes raise the matching Python classes (shape error -> ValueError,
  missing file -> FileNotFoundError, allocation -> MemoryError, backend -> its own class);
- pip can build the package from python/ (pyproject.toml), without network or install.
"""
import ctypes
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest
import torch

import pxdiff
from conftest import ROOT, SMALL, get_pair, sampler_config
from pxdiff import errors
from pxdiff._lib import lib

INCLUDE = os.path.join(ROOT, "include")
HEADERS = sorted(os.path.join(INCLUDE, f) for f in os.listdir(INCLUDE) if f.endswith(".h"))
# Defined only by the CUDA backend (a library built without nvcc lacks them).
CUDA_ONLY = {"px_cuda_memory_in_use", "px_cuda_memory_peak", "px_cuda_memory_reset_peak"}


def lib_path():
    return os.path.abspath(lib._name)


API_DECL = re.compile(r"^\s*PXDIFF_API\b[^;(]*?\b([A-Za-z_]\w*)\s*\(", flags=re.M)


def declared_api():
    """{name: header} of every function declared with PXDIFF_API in include/*.h, plus the
    internal functions pxdiff_testing.h lists as exported ("internal: name (src/header.h)"):
    their types live in internal headers, which declare them with PXDIFF_API (checked)."""
    out = {}
    for h in HEADERS:
        raw = open(h).read()
        text = re.sub(r"/\*.*?\*/", " ", raw, flags=re.S)  # comments out
        for m in API_DECL.finditer(text):
            out[m.group(1)] = os.path.basename(h)
        for m in re.finditer(r"internal: (px_\w+) \((src/[\w/]+\.h)\)", raw):
            name, where = m.groups()
            src = re.sub(r"/\*.*?\*/", " ", open(os.path.join(ROOT, where)).read(), flags=re.S)
            assert name in {d.group(1) for d in API_DECL.finditer(src)}, \
                f"{os.path.basename(h)} lists {name} as exported by {where}, which does not declare it with PXDIFF_API"
            out[name] = where
    return out


def exported_symbols(path):
    """Defined dynamic symbols of the library (functions and data)."""
    r = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    syms = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] not in ("A",):  # absolute linker symbols (_edata, ...)
            syms.add(parts[2].split("@")[0])
    return syms - {"_init", "_fini", "__bss_start", "_edata", "_end"}


def has_cuda(path):
    r = subprocess.run(["nm", "-D", "--undefined-only", path], capture_output=True, text=True)
    return "cudaMalloc" in r.stdout or "cudaStreamCreate" in r.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("nm") is None,
                    reason="nm -D on an ELF library (Linux only)")
def test_exports_equal_public_headers():
    path = lib_path()
    declared = declared_api()
    exported = exported_symbols(path)
    assert len(declared) >= 40, f"only {len(declared)} PXDIFF_API declarations found in {HEADERS}"
    internal = sorted(exported - set(declared))
    missing = sorted(set(declared) - exported - (set() if has_cuda(path) else CUDA_ONLY))
    assert not internal, (f"{path} exports {len(internal)} symbols no public header declares "
                          f"(of {len(exported)} exported): {internal[:40]}")
    assert not missing, f"declared with PXDIFF_API but not exported by {path}: {missing}"


def test_public_header_has_no_test_hooks():
    """Test-only hooks live in pxdiff_testing.h, not in the header applications include."""
    api = declared_api()
    for name in ("px_design_create_probe", "px_denoise_probe"):
        assert api.get(name) == "pxdiff_testing.h", (name, api.get(name))


def test_version():
    text = open(os.path.join(INCLUDE, "pxdiff.h")).read()
    ver = re.search(r'#define PXDIFF_VERSION "([^"]+)"', text).group(1)
    parts = {k: int(re.search(rf"#define PXDIFF_VERSION_{k} (\d+)", text).group(1))
             for k in ("MAJOR", "MINOR", "PATCH")}
    assert ver == "%d.%d.%d" % (parts["MAJOR"], parts["MINOR"], parts["PATCH"])
    assert lib.px_version().decode() == ver == pxdiff.version()
    assert lib.px_version_number() == parts["MAJOR"] * 10000 + parts["MINOR"] * 100 + parts["PATCH"]


def test_blas_name_names_the_build_choice():
    """px_blas_name (pxdiff.blas_name, `pxdiff info`) starts with the cblas the build chose:
    the one scripts/detect-blas.sh wrote into the build dir's blas.mk when the build detected
    it; one of the known labels otherwise (an explicit BLAS=). Then the library loaded."""
    labels = {"openblas": "OpenBLAS", "blis": "BLIS", "mkl": "MKL", "accelerate": "Accelerate", "blas": "cblas"}
    name = pxdiff.blas_name()
    built, _, rest = name.partition("; ")
    assert rest.startswith("loaded: "), name
    blas_mk = os.path.join(os.path.dirname(os.path.abspath(lib._name)), "blas.mk")
    kind = None
    if os.path.exists(blas_mk):
        kind = next((ln.split(":=", 1)[1].strip() for ln in open(blas_mk) if ln.startswith("BLAS_KIND :=")), None)
    if kind is not None and os.path.exists(os.path.join(os.path.dirname(blas_mk), ".flags")) and \
            f"blas={kind} " in open(os.path.join(os.path.dirname(blas_mk), ".flags")).read():
        assert built == labels[kind], (kind, name)
    else:
        assert built in labels.values(), name


def test_name_parsers_return_invalid_enumerators():
    text = open(os.path.join(INCLUDE, "pxdiff.h")).read()

    def enum_value(name):
        return int(re.search(rf"\b{name}\s*=\s*(-?\d+)", text).group(1))

    for bad in (b"", b"gpu0", b"CPU", None):
        assert lib.px_device_from_name(bad) == enum_value("PX_DEVICE_INVALID") == -1
        assert lib.px_precision_from_name(bad) == enum_value("PX_PRECISION_INVALID") == -2
        assert lib.px_eta_type_from_name(bad) == enum_value("PX_ETA_INVALID") == -1
    assert lib.px_device_from_name(b"cpu") == enum_value("PX_DEVICE_CPU")
    assert lib.px_precision_from_name(b"default") == enum_value("PX_PRECISION_DEFAULT")
    # The public signatures take the enums, not bare ints.
    assert re.search(r"px_model_set_backend\(px_model \*m, enum px_device device, enum px_precision", text)
    assert re.search(r"enum px_device px_device_from_name\(", text)
    assert re.search(r"enum px_precision px_precision_from_name\(", text)


# ------------------------------------------------------------------ errors --
def test_error_classes_by_code():
    expect = {errors.PX_ERR_IO: OSError, errors.PX_ERR_FORMAT: ValueError,
              errors.PX_ERR_WEIGHTS: ValueError, errors.PX_ERR_INPUT: ValueError,
              errors.PX_ERR_NOMEM: MemoryError}
    for code, builtin in expect.items():
        e = errors.error_for(code, "msg")
        assert isinstance(e, builtin) and isinstance(e, pxdiff.PxdiffError), (code, type(e).__mro__)
        assert e.code == code and str(e) == "msg"
    b = errors.error_for(errors.PX_ERR_BACKEND, "no GPU")
    assert type(b) is pxdiff.PxdiffBackendError
    assert not isinstance(b, (ValueError, OSError, MemoryError))
    assert type(errors.error_for(errors.PX_ERR_CANCELLED, "stop")) is pxdiff.PxdiffCancelledError
    # one copy of the helpers
    import pxdiff._lib as L
    assert L.check is errors.check and pxdiff.PxdiffError is errors.PxdiffError


def test_missing_checkpoint_is_file_not_found(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError) as ei:
        pxdiff.DiffusionModule.from_checkpoint(missing)
    assert isinstance(ei.value, pxdiff.PxdiffIOError) and ei.value.code == errors.PX_ERR_IO
    assert "nope.pt" in str(ei.value)


def test_malformed_checkpoint_is_value_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError) as ei:
        pxdiff.DiffusionModule.from_checkpoint(bad)
    assert isinstance(ei.value, pxdiff.PxdiffError) and not isinstance(ei.value, OSError)


def test_engine_input_error_is_value_error():
    c = sampler_config(n_step=0)
    t = (ctypes.c_float * 4)()
    with pytest.raises(ValueError) as ei:
        errors.check(lib.px_noise_schedule(ctypes.byref(c), t))
    assert isinstance(ei.value, pxdiff.PxdiffInputError) and ei.value.code == errors.PX_ERR_INPUT


def test_shape_errors_are_value_errors():
    pair = get_pair("small", SMALL, seed=0)
    inp = pair.inputs(n_token=5, atoms_per_token=[3] * 5, seed=1)
    x = torch.zeros(2, 7, 3)  # 7 atoms; the features have 15
    with pytest.raises(ValueError) as ei:
        pair.dm(x, torch.tensor([1.0, 2.0]), inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    assert isinstance(ei.value, pxdiff.PxdiffInputError)
    with pytest.raises(ValueError):
        pair.dm.set_backend("tpu")


@pytest.mark.skipif(lib.px_cuda_device_count() > 0, reason="a CUDA device is present: the backend is available")
def test_unavailable_backend_is_backend_error():
    pair = get_pair("small", SMALL, seed=0)
    with pytest.raises(pxdiff.PxdiffBackendError) as ei:
        pair.dm.set_backend("cuda")
    assert not isinstance(ei.value, ValueError)
    pair.dm.set_backend("cpu")


# --------------------------------------------------------------- packaging --
def test_pyproject_builds_a_wheel(tmp_path):
    """`pip wheel` on python/ (no build isolation, no network): the wheel holds the package and
    its error module. Skips only when this Python has no pip/setuptools to build with."""
    try:
        import setuptools  # noqa: F401
        import pip  # noqa: F401
    except ImportError as e:
        pytest.skip(f"cannot build wheels with this Python: {e}")
    src = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "python"), src, ignore=shutil.ignore_patterns(
        "__pycache__", "*.so", "*.dylib", "build", "*.egg-info"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = os.listdir(tmp_path / "dist")
    assert len(wheels) == 1 and wheels[0].startswith("pxdiff-"), wheels
    import zipfile
    names = zipfile.ZipFile(tmp_path / "dist" / wheels[0]).namelist()
    for f in ("pxdiff/__init__.py", "pxdiff/_lib.py", "pxdiff/errors.py"):
        assert f in names, (f, names)
