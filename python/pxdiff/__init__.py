"""pxdiff: PXDesign's diffusion module and sampler, computed by a C engine.

    import pxdiff
    dm = pxdiff.DiffusionModule.from_checkpoint("pxdesign_v0.1.0.pt")   # or .safetensors
    dm = pxdiff.DiffusionModule.from_torch(model.diffusion_module)       # a live module
    x_denoised = dm(x_noisy, t_hat_noise_level, input_feature_dict, s_inputs, s_trunk, z_trunk)

The call takes the arguments of upstream's DiffusionModule.forward, with torch tensors
shaped as PXDesign passes them, and returns a torch tensor.
"""
import ctypes
import os

from ._lib import (PX_DEVICE_INVALID, PX_PRECISION_INVALID, Dims, Features, SamplerConfig, _torch,
                   c_float_p, c_int64_p, lib, shared_level, torch_stream)
from .errors import (PxdiffBackendError, PxdiffCancelledError, PxdiffError, PxdiffFileNotFoundError,
                     PxdiffFormatError, PxdiffInputError, PxdiffIOError, PxdiffMemoryError,
                     PxdiffWeightsError, check)

__all__ = ["DiffusionModule", "PxdiffError", "PxdiffIOError", "PxdiffFileNotFoundError",
           "PxdiffFormatError", "PxdiffWeightsError", "PxdiffInputError", "PxdiffMemoryError",
           "PxdiffBackendError", "PxdiffCancelledError", "version", "set_num_threads", "num_threads", "blas_name",
           "cpu_bf16_name", "__version__"]
__version__ = "0.2.0"

_FLOAT_FEATURES = {  # name: width per atom (None: per-atom scalar)
    "ref_pos": 3, "ref_charge": None, "ref_mask": None, "ref_element": 128,
    "ref_atom_name_chars": 256,
}
_INT_ATOM_FEATURES = ("ref_space_uid", "atom_to_token_idx")
_INT_TOKEN_FEATURES = ("asym_id", "residue_index", "entity_id", "token_index", "sym_id")


def set_num_threads(n) -> None:
    """Threads of the CPU backend (None or 0: back to the default); results do not depend on
    it. Only the engine's own count changes: torch's and the process's OpenMP setting stay."""
    global _threads_set
    _threads_set = max(0, min(4096, int(n or 0)))
    lib.px_set_num_threads(_threads_set)


_threads_set = 0  # the last set_num_threads value (0: none)


def _threads_source():
    """Why num_threads() is what it is (for banners and reports)."""
    if _threads_set > 0:
        return "pxdiff.set_num_threads"
    env = os.environ.get("PXDIFF_NUM_THREADS", "").strip()
    if env.isdigit() and 1 <= int(env) <= 4096:
        return "PXDIFF_NUM_THREADS"
    return "all usable cores"


def num_threads() -> int:
    """Threads the CPU backend runs on: set_num_threads's value, else $PXDIFF_NUM_THREADS
    (read once), else the CPUs this process may use (affinity mask, cgroup quota). None
    with a libpxdiff older than px_num_threads."""
    try:
        f = lib.px_num_threads
    except AttributeError:
        return None
    f.restype, f.argtypes = ctypes.c_int, []
    return int(f())


def blas_name() -> str:
    return lib.px_blas_name().decode()


def cpu_bf16_name() -> str:
    """The CPU's bf16 precision: its kernel, or why there is none."""
    return lib.px_cpu_bf16_name().decode()


def version() -> str:
    """The version of the libpxdiff actually loaded (px_version); __version__ is the package's."""
    f = getattr(lib, "px_version", None)
    return f().decode() if f is not None else "unknown (libpxdiff without px_version)"


def _squeeze_to(t, ndim, name):
    """Drop leading size-1 batch dimensions until `ndim` remain."""
    while t.dim() > ndim and t.shape[0] == 1:
        t = t[0]
    if t.dim() != ndim:
        raise PxdiffInputError(f"{name} has shape {tuple(t.shape)}; expected {ndim} dimensions")
    return t


def _f32(t, torch):
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous()


def _i64(t, torch):
    return t.detach().to(device="cpu", dtype=torch.int64).contiguous()


def _fptr(t):
    return ctypes.cast(t.data_ptr(), c_float_p)


def _iptr(t):
    return ctypes.cast(t.data_ptr(), c_int64_p)


class DiffusionModule:
    """Engine-backed PXDesign DiffusionModule (float32, CPU backend).

    Everything independent of the noise level and sample is computed once per design and
    kept (the design cache); a call with different features rebuilds it."""

    def __init__(self, handle):
        self._m = ctypes.c_void_p(handle)
        self._design = None
        self._design_key = None
        self._quick_key = None
        self._n_atom = 0
        self.dims = Dims()
        check(lib.px_model_get_dims(self._m, ctypes.byref(self.dims)))

    # ------------------------------------------------------------ constructors --
    @classmethod
    def from_checkpoint(cls, path):
        """Load a .pt (torch.save) or .safetensors checkpoint, detected by content."""
        h = ctypes.c_void_p()
        check(lib.px_model_load(os.fspath(path).encode(), ctypes.byref(h)), path=path)
        return cls(h.value)

    @classmethod
    def from_torch(cls, module, prefix="diffusion_module."):
        """Copy the weights of a live PyTorch module laid out like upstream's
        DiffusionModule (its state_dict names, with or without `prefix`)."""
        torch = _torch()
        sd = module.state_dict() if hasattr(module, "state_dict") else dict(module)
        names, keep = [], []
        for k, v in sd.items():
            if not torch.is_tensor(v) or not v.is_floating_point():
                continue
            name = k if k.startswith(prefix) or k.startswith("module.") else prefix + k
            names.append(name.encode())
            keep.append(_f32(v, torch))
        n = len(keep)
        c_names = (ctypes.c_char_p * n)(*names)
        c_data = (c_float_p * n)(*[_fptr(t) for t in keep])
        c_ndims = (ctypes.c_int * n)(*[t.dim() for t in keep])
        shapes = [(ctypes.c_int64 * max(1, t.dim()))(*t.shape) for t in keep]
        c_shapes = (c_int64_p * n)(*[ctypes.cast(s, c_int64_p) for s in shapes])
        h = ctypes.c_void_p()
        check(lib.px_model_from_arrays(n, c_names, c_data, c_ndims, c_shapes, ctypes.byref(h)))
        return cls(h.value)

    def __del__(self):
        try:
            if self._design:
                lib.px_design_free(self._design)
            if self._m:
                lib.px_model_free(self._m)
        except Exception:  # interpreter shutdown
            pass
        self._design = None
        self._m = None

    def set_backend(self, device="auto", precision=None):
        """Compute on "cpu", "cuda" or "auto" (CUDA when a GPU is present), at precision
        "fp32", "tf32", "bf16", "fp16" or None (the backend's default). Rebuilds the design cache."""
        dev = lib.px_device_from_name(str(device).split(":")[0].encode())
        if dev == PX_DEVICE_INVALID:
            raise PxdiffInputError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'")
        prec = lib.px_precision_from_name((precision or "default").encode())
        if prec == PX_PRECISION_INVALID:
            raise PxdiffInputError(f"unknown precision {precision!r}; use 'fp32', 'tf32', 'bf16' or 'fp16'")
        if self._design:
            lib.px_design_free(self._design)
            self._design = None
            self._design_key = None
            self._quick_key = None
        check(lib.px_model_set_backend(self._m, dev, prec))
        return self

    def set_num_threads(self, n):
        """Threads this module's CPU work runs on: n > 0, or 0 for the process's count
        (pxdiff.set_num_threads, $PXDIFF_NUM_THREADS). Other modules of the process keep their
        own; results do not depend on it. On CUDA it raises PxdiffBackendError (the work runs
        on the GPU); set it after set_backend("cpu"). Not while another call on this module runs."""
        if not hasattr(lib, "px_model_set_num_threads"):
            raise PxdiffBackendError("this libpxdiff has no per-model thread count (px_model_set_num_threads)")
        check(lib.px_model_set_num_threads(self._m, int(n)))
        return self

    @property
    def backend(self):
        return lib.px_model_backend_name(self._m).decode()

    @property
    def precision(self):
        return lib.px_model_precision_name(self._m).decode()

    @property
    def x16_blocks(self):
        """Token blocks whose GEMMs take 16-bit inputs (fp16 / bf16 on CUDA; 0 otherwise)."""
        return int(lib.px_model_x16_blocks(self._m))

    @property
    def x16_atom_blocks(self):
        """Atom blocks (encoder and decoder) whose GEMMs take fp16 inputs (CUDA fp16; 0 otherwise)."""
        if not hasattr(lib, "px_model_x16_atom_blocks"):
            return 0
        return int(lib.px_model_x16_atom_blocks(self._m))

    @property
    def n_params(self):
        return int(lib.px_model_n_params(self._m))

    # ---------------------------------------------------------------- features --
    def _features(self, input_feature_dict, s_inputs, s_trunk, z_trunk):
        """Convert to contiguous float32/int64 CPU tensors; returns (Features, keep-alive)."""
        torch = _torch()
        f = input_feature_dict
        try:
            a2t = _squeeze_to(_i64(f["atom_to_token_idx"], torch), 1, "atom_to_token_idx")
        except KeyError as e:
            raise PxdiffInputError(f"input_feature_dict lacks {e.args[0]}") from None
        N = a2t.shape[0]
        s_inputs = _squeeze_to(_f32(s_inputs, torch), 2, "s_inputs")
        T = s_inputs.shape[0]
        keep = {"atom_to_token_idx": a2t, "s_inputs": s_inputs,
                "s_trunk": _squeeze_to(_f32(s_trunk, torch), 2, "s_trunk"),
                "z_trunk": _squeeze_to(_f32(z_trunk, torch), 3, "z_trunk")}
        for name, width in _FLOAT_FEATURES.items():
            if name not in f:
                raise PxdiffInputError(f"input_feature_dict lacks {name}")
            t = _f32(f[name], torch)
            want = (N, width) if width is not None else (N,)
            if t.numel() != N * (width or 1):
                raise PxdiffInputError(f"{name} has shape {tuple(f[name].shape)}; expected {want}")
            t = t.reshape(N, -1) if width is not None else t.reshape(-1)
            if tuple(t.shape) != want:
                raise PxdiffInputError(f"{name} has shape {tuple(f[name].shape)}; expected {want}")
            keep[name] = t.contiguous()
        for name in _INT_ATOM_FEATURES[:1] + _INT_TOKEN_FEATURES:
            if name not in f:
                raise PxdiffInputError(f"input_feature_dict lacks {name}")
            t = _i64(f[name], torch).reshape(-1)
            want = N if name in _INT_ATOM_FEATURES else T
            if t.shape[0] != want:
                raise PxdiffInputError(f"{name} has {t.shape[0]} entries; expected {want}")
            keep[name] = t
        d = self.dims
        checks = {"s_inputs": (T, d.c_s_inputs), "s_trunk": (T, d.c_s), "z_trunk": (T, T, d.c_z)}
        for name, want in checks.items():
            if tuple(keep[name].shape) != want:
                raise PxdiffInputError(f"{name} has shape {tuple(keep[name].shape)}; expected {want}")
        feats = Features(n_token=T, n_atom=N)
        for name in _FLOAT_FEATURES:
            setattr(feats, name, _fptr(keep[name]))
        for name in ("s_inputs", "s_trunk", "z_trunk"):
            setattr(feats, name, _fptr(keep[name]))
        for name in _INT_ATOM_FEATURES + _INT_TOKEN_FEATURES:
            setattr(feats, name, _iptr(keep[name]))
        return feats, keep

    def design(self, input_feature_dict, s_inputs, s_trunk, z_trunk):
        """The design cache for these inputs (built on first use, reused while they match).

        Fast path: the very same tensor objects as last call, none modified in place
        (torch's version counters unchanged), reuse the design without reading them. The
        cache holds references to those tensors, so their identities cannot be recycled.
        Otherwise the inputs are fingerprinted (px_features_hash) and the design rebuilt
        only when the fingerprint changed."""
        torch = _torch()
        refs = [("s_inputs", s_inputs), ("s_trunk", s_trunk), ("z_trunk", z_trunk)] + sorted(
            ((k, v) for k, v in input_feature_dict.items() if torch.is_tensor(v)), key=lambda kv: kv[0])
        quick = [(k, v, v._version) for k, v in refs if torch.is_tensor(v)]
        if self._design is not None and self._quick_key is not None and len(quick) == len(self._quick_key) \
                and all(k1 == k2 and v1 is v2 and n1 == n2
                        for (k1, v1, n1), (k2, v2, n2) in zip(quick, self._quick_key)):
            return self._design, self._n_atom
        feats, keep = self._features(input_feature_dict, s_inputs, s_trunk, z_trunk)
        key = lib.px_features_hash(self._m, ctypes.byref(feats))
        if self._design is None or key != self._design_key:
            if self._design:
                lib.px_design_free(self._design)
                self._design = None
            h = ctypes.c_void_p()
            check(lib.px_design_create(self._m, ctypes.byref(feats), ctypes.byref(h)))
            self._design = h
            self._design_key = key
        self._quick_key = quick
        self._n_atom = feats.n_atom
        return self._design, feats.n_atom

    @property
    def design_cache_bytes(self):
        return int(lib.px_design_bytes(self._design)) if self._design else 0

    # -------------------------------------------------------------------- call --
    def forward(self, x_noisy, t_hat_noise_level, input_feature_dict, s_inputs, s_trunk,
                z_trunk, inplace_safe=False, chunk_size=None, use_conditioning=True):
        """x_denoised = DiffusionModule(x_noisy [S, N, 3], t_hat [S]); returns a tensor
        of x_noisy's dtype and device."""
        torch = _torch()
        if not use_conditioning:  # upstream zeroes the trunk conditioning
            s_trunk = torch.zeros_like(s_trunk)
            z_trunk = torch.zeros_like(z_trunk)
        design, N = self.design(input_feature_dict, s_inputs, s_trunk, z_trunk)
        if x_noisy.dim() < 2 or x_noisy.shape[-1] != 3 or x_noisy.shape[-2] != N:
            raise PxdiffInputError(f"x_noisy has shape {tuple(x_noisy.shape)}; expected [..., {N}, 3]")
        lead = x_noisy.shape[:-2]
        # CUDA tensors and a model on the GPU: by device pointer on the current stream.
        on_gpu = x_noisy.is_cuda and self.backend.startswith("cuda")
        where = x_noisy.device if on_gpu else torch.device("cpu")
        x = x_noisy.detach().to(device=where, dtype=torch.float32).reshape(-1, N, 3).contiguous()
        S = x.shape[0]
        t = torch.as_tensor(t_hat_noise_level).detach().to(device=where, dtype=torch.float32).reshape(-1)
        if t.numel() not in (1, S):
            raise PxdiffInputError(f"t_hat_noise_level has {t.numel()} values for {S} samples")
        # One level for every sample (a scalar, or upstream's expanded tensor): on the GPU
        # it is passed once and the token conditioning is computed once per call.
        shared = on_gpu and shared_level(t)
        if shared:
            t = t[:1].contiguous()
        else:
            t = (t.expand(S) if t.numel() == 1 else t).contiguous()
        out = torch.empty_like(x)
        if on_gpu:
            check(lib.px_set_cuda_stream(self._m, ctypes.c_void_p(torch_stream(torch, where))))
            call = lib.px_denoise_device_shared_t if shared else lib.px_denoise_device
            check(call(self._m, design, S, _fptr(x), _fptr(t), _fptr(out)))
        else:
            check(lib.px_denoise(self._m, design, S, _fptr(x), _fptr(t), _fptr(out)))
        return out.reshape(*lead, N, 3).to(device=x_noisy.device, dtype=x_noisy.dtype)

    __call__ = forward

# Drop-in acceleration of PXDesign (docs/dropin.md).
from .accel import disable_acceleration, enable_acceleration  # noqa: E402
from .sampler import sample_diffusion  # noqa: E402

__all__ += ["enable_acceleration", "disable_acceleration", "sample_diffusion"]
