"""ctypes declarations of libpxdiff (include/pxdiff.h), found without any setup.

Search order: $PXDIFF_LIB (a path to libpxdiff.so); a copy bundled in the package folder
(python/pxdiff/libpxdiff.so, installed by `pip install ./python` when it is there at install
time); the repository's build/ folder (so that after `make`, PYTHONPATH=python is all that is
needed)."""
import ctypes
import os
import sys

from .errors import PxdiffError, check  # noqa: F401  (re-exported: the package's one copy)

_here = os.path.dirname(os.path.abspath(__file__))
_libname = "libpxdiff.dylib" if sys.platform == "darwin" else "libpxdiff.so"


def _candidates():
    env = os.environ.get("PXDIFF_LIB")
    if env:
        yield env
    yield os.path.join(_here, _libname)
    yield os.path.join(_here, "..", "..", "build", _libname)


def _load():
    errors = []
    for path in _candidates():
        if os.path.exists(path):
            try:
                return ctypes.CDLL(os.path.abspath(path))
            except OSError as e:  # wrong architecture, missing BLAS, ...
                errors.append(f"{path}: {e}")
    hint = "; ".join(errors) if errors else (
        "set PXDIFF_LIB to the path of libpxdiff.so (built by `make` in the pxdiff repository), "
        "or copy it into the installed package's folder " + _here)
    raise ImportError(f"pxdiff: cannot load {_libname}: {hint}")


lib = _load()

# include/pxdiff.h's enums.
PX_DEVICE_INVALID, PX_DEVICE_AUTO, PX_DEVICE_CPU, PX_DEVICE_CUDA = -1, 0, 1, 2
PX_PRECISION_INVALID, PX_PRECISION_DEFAULT = -2, -1
PX_PRECISION_FP32, PX_PRECISION_TF32, PX_PRECISION_BF16, PX_PRECISION_FP16 = 0, 1, 2, 3
PX_ETA_INVALID = -1

c_float_p = ctypes.POINTER(ctypes.c_float)
c_int64_p = ctypes.POINTER(ctypes.c_int64)


class Dims(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in (
        "c_s", "c_z", "c_s_inputs", "c_token", "c_atom", "c_atompair", "n_fourier",
        "n_token_blocks", "n_token_heads", "n_enc_blocks", "n_enc_heads", "n_dec_blocks",
        "n_dec_heads", "c_ref_f", "n_relpe")] + [("sigma_data", ctypes.c_float)]


class Features(ctypes.Structure):
    _fields_ = [("n_token", ctypes.c_int), ("n_atom", ctypes.c_int)] + [
        (n, c_float_p) for n in ("s_inputs", "s_trunk", "z_trunk", "ref_pos", "ref_charge",
                                 "ref_mask", "ref_element", "ref_atom_name_chars")] + [
        (n, c_int64_p) for n in ("ref_space_uid", "atom_to_token_idx", "asym_id",
                                 "residue_index", "entity_id", "token_index", "sym_id")]


class SamplerConfig(ctypes.Structure):
    _fields_ = [("n_step", ctypes.c_int), ("gamma0", ctypes.c_float),
                ("gamma_min", ctypes.c_float), ("noise_scale_lambda", ctypes.c_float),
                ("eta_type", ctypes.c_int), ("eta_min", ctypes.c_float),
                ("eta_max", ctypes.c_float), ("schedule_bf16", ctypes.c_int),
                ("s_max", ctypes.c_float), ("s_min", ctypes.c_float), ("rho", ctypes.c_float),
                ("sigma_data", ctypes.c_float), ("seed", ctypes.c_uint64)]


PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                               ctypes.c_int, ctypes.c_int)

_vp = ctypes.c_void_p
_sig = {
    "px_last_error": (ctypes.c_char_p, []),
    "px_model_load": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_vp)]),
    "px_model_from_arrays": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p),
                                            ctypes.POINTER(c_float_p), ctypes.POINTER(ctypes.c_int),
                                            ctypes.POINTER(c_int64_p), ctypes.POINTER(_vp)]),
    "px_model_free": (None, [_vp]),
    "px_model_get_dims": (ctypes.c_int, [_vp, ctypes.POINTER(Dims)]),
    "px_model_n_params": (ctypes.c_int64, [_vp]),
    "px_set_num_threads": (None, [ctypes.c_int]),
    "px_design_create": (ctypes.c_int, [_vp, ctypes.POINTER(Features), ctypes.POINTER(_vp)]),
    "px_design_free": (None, [_vp]),
    "px_design_bytes": (ctypes.c_int64, [_vp]),
    "px_design_key": (ctypes.c_uint64, [_vp]),
    "px_features_hash": (ctypes.c_uint64, [_vp, ctypes.POINTER(Features)]),
    "px_denoise": (ctypes.c_int, [_vp, _vp, ctypes.c_int, c_float_p, c_float_p, c_float_p]),
    "px_sampler_config_default": (None, [ctypes.POINTER(SamplerConfig)]),
    "px_eta_type_from_name": (ctypes.c_int, [ctypes.c_char_p]),
    "px_noise_schedule": (ctypes.c_int, [ctypes.POINTER(SamplerConfig), c_float_p]),
    "px_eta": (ctypes.c_float, [ctypes.POINTER(SamplerConfig), ctypes.c_int]),
    "px_sample": (ctypes.c_int, [_vp, _vp, ctypes.POINTER(SamplerConfig), ctypes.c_int,
                                 ctypes.c_int, ctypes.c_int, c_float_p, PROGRESS_FN, _vp]),
    "px_sampler_step": (ctypes.c_int, [_vp, _vp, ctypes.POINTER(SamplerConfig), ctypes.c_int,
                                       c_float_p, ctypes.c_float, ctypes.c_float, ctypes.c_float,
                                       c_float_p, c_float_p, c_float_p]),
    "px_rng_normal": (None, [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
                             c_float_p, ctypes.c_int64]),
    "px_convert_to_safetensors": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p]),
    "px_blas_name": (ctypes.c_char_p, []),
    "px_cpu_bf16_name": (ctypes.c_char_p, []),
    "px_cuda_device_count": (ctypes.c_int, []),
    "px_device_built": (ctypes.c_int, [ctypes.c_int]),
    "px_denoise_device": (ctypes.c_int, [_vp, _vp, ctypes.c_int, c_float_p, c_float_p, c_float_p]),
    "px_denoise_device_shared_t": (ctypes.c_int, [_vp, _vp, ctypes.c_int, c_float_p, c_float_p, c_float_p]),
    "px_set_cuda_stream": (ctypes.c_int, [_vp, _vp]),
    "px_model_set_backend": (ctypes.c_int, [_vp, ctypes.c_int, ctypes.c_int]),
    "px_model_backend_name": (ctypes.c_char_p, [_vp]),
    "px_model_precision_name": (ctypes.c_char_p, [_vp]),
    "px_model_x16_blocks": (ctypes.c_int, [_vp]),
    "px_device_from_name": (ctypes.c_int, [ctypes.c_char_p]),
    "px_precision_from_name": (ctypes.c_int, [ctypes.c_char_p]),
    "px_denoise_probe": (ctypes.c_int, [_vp, _vp, ctypes.c_int, c_float_p, c_float_p, c_float_p,
                                        ctypes.c_void_p, ctypes.c_void_p]),
    "px_design_create_probe": (ctypes.c_int, [_vp, ctypes.POINTER(Features), ctypes.c_void_p,
                                              ctypes.c_void_p, ctypes.POINTER(_vp)]),
}
for _name, (_res, _args) in _sig.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args
# Newer entry points, declared when the library has them.
_optional = {
    "px_model_x16_atom_blocks": (ctypes.c_int, [_vp]),
    "px_version": (ctypes.c_char_p, []),
    "px_version_number": (ctypes.c_int, []),
    "px_device_list_parse": (ctypes.c_int, [ctypes.c_char_p, _vp, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]),
    "px_model_share": (ctypes.c_int, [_vp, ctypes.POINTER(_vp)]),
    "px_model_set_device": (ctypes.c_int, [_vp, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]),
    "px_model_device_index": (ctypes.c_int, [_vp]),
    "px_device_memory": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64),
                                        ctypes.POINTER(ctypes.c_int64)]),
    "px_sample_bytes": (ctypes.c_int64, [_vp, ctypes.c_int, ctypes.c_int, ctypes.c_int]),
    "px_model_set_num_threads": (ctypes.c_int, [_vp, ctypes.c_int]),
}
for _name, (_res, _args) in _optional.items():
    _f = getattr(lib, _name, None)
    if _f is not None:
        _f.restype = _res
        _f.argtypes = _args


def shared_level(t):
    """True when every sample's noise level is one stored value: a 1-D tensor of one
    element, or one expanded with stride 0 (how upstream's sampler passes t_hat). Decided
    from the layout alone, so nothing is read back from the device."""
    return t.dim() == 1 and (t.numel() == 1 or t.stride(0) == 0)


# cudaStreamLegacy: the handle that names CUDA's legacy default stream explicitly.
CUDA_STREAM_LEGACY = 1


def torch_stream(torch, device):
    """The cudaStream_t of torch's current stream on `device`, for px_set_cuda_stream. torch's
    default stream is CUDA's legacy default stream, whose handle torch reports as 0; passed
    as 0 (NULL: no stream) the engine would neither order its work after torch's (its own
    streams do not wait for the legacy stream) nor return without a host wait, so it is
    passed as cudaStreamLegacy instead."""
    return torch.cuda.current_stream(device).cuda_stream or CUDA_STREAM_LEGACY


def _torch():
    """torch, imported on first use (the package imports without it)."""
    import torch
    return torch
