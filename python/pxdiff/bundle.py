"""Feature bundles: one design's diffusion inputs in a safetensors file (docs/bundle.md).

    import pxdiff.bundle
    pxdiff.bundle.write("design.bundle", input_feature_dict, s_inputs, s_trunk, z_trunk,
                        atom_array=atom_array, designed_mask=binder_tokens)
    b = pxdiff.bundle.read("design.bundle")
    x = dm(x_noisy, t_hat, b["input_feature_dict"], b["s_inputs"], b["s_trunk"], b["z_trunk"])

`write` takes what PXDesign's featurizer and design condition embedder produce (torch
tensors or numpy arrays, leading batch dimensions of size 1 allowed, one-hots as float or
integer, ref_atom_name_chars as [N, 4, 64] or [N, 256]) and stores the one-hots as indices.
It is pure Python (struct + json); before the file appears under its name it is validated
by the engine's reader (libpxdiff's px_bundle_open), so an invalid bundle is never written.
`read` goes through the same reader and gives back PXDesign's keys, one-hots expanded.
"""
import ctypes
import json
import os
import struct

import numpy as np

from ._lib import Features, lib
from .errors import PxdiffError, PxdiffInputError, PxdiffIOError, error_for

__all__ = ["write", "read", "FORMAT", "VERSION"]

FORMAT = "pxdiff-bundle"
VERSION = "1"
_STR_MAX = 16
_SLOT = _STR_MAX + 1

_vp = ctypes.c_void_p
for _name, _res, _args in (
        ("px_bundle_open", ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_vp)]),
        ("px_bundle_free", None, [_vp]),
        ("px_bundle_features", ctypes.POINTER(Features), [_vp]),
        ("px_bundle_widths", None, [_vp, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
                                    ctypes.POINTER(ctypes.c_int)]),
        ("px_bundle_text", _vp, [_vp, ctypes.c_int]),
        ("px_bundle_res_nums", ctypes.POINTER(ctypes.c_int64), [_vp]),
        ("px_bundle_designed_flags", ctypes.POINTER(ctypes.c_uint8), [_vp]),
        ("px_bundle_annotations_present", ctypes.c_int, [_vp])):
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args

_ATOM_FLOAT = {"ref_pos": (3,), "ref_charge": ()}
_ATOM_INT = ("ref_space_uid", "atom_to_token_idx")
_TOKEN_INT = ("asym_id", "residue_index", "entity_id", "token_index", "sym_id")
_ANNOTATIONS = ("token_res_name", "token_chain_id", "token_res_num", "token_is_designed",
                "atom_name", "atom_element")


# ------------------------------------------------------------------ conversion ----
def _is_torch(x):
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _array(x, name):
    """(numpy array, safetensors dtype) of a tensor/array; bfloat16 kept as raw bits."""
    if x is None:
        raise PxdiffInputError(f"{name} is missing")
    if _is_torch(x):
        import torch
        t = x.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(np.uint16), "BF16"
        if t.dtype == torch.bool:
            return t.numpy().astype(np.uint8), "U8"
        a = t.numpy()
    else:
        a = np.asarray(x)
    if a.dtype == np.float16:
        return a, "F16"
    if a.dtype.kind == "f":
        return a.astype(np.float32, copy=False), "F32"
    if a.dtype.kind in "iu":
        return a.astype(np.int64, copy=False), "I64"
    if a.dtype.kind == "b":
        return a.astype(np.uint8), "U8"
    raise PxdiffInputError(f"{name} has dtype {a.dtype}; expected numbers")


def _squeeze(a, ndim, name):
    while a.ndim > ndim and a.shape[0] == 1:
        a = a[0]
    if a.ndim != ndim:
        raise PxdiffInputError(f"{name} has shape {tuple(a.shape)}; expected {ndim} dimensions")
    return a


def _floats(a, dt):
    """float32 values of an array from _array (BF16 bits widened)."""
    if dt == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def _onehot_index(x, name, groups, width, N):
    """Indices ([N] or [N, groups]; -1 for an all-zero group) of a one-hot tensor."""
    a, dt = _array(x, name)
    a = _floats(a, dt) if dt in ("F32", "F16", "BF16") else a
    forms = [(N, groups * width)] + ([(N, groups, width)] if groups > 1 else [])
    while tuple(a.shape) not in forms and a.ndim > 1 and a.shape[0] == 1:
        a = a[0]
    if tuple(a.shape) not in forms:
        raise PxdiffInputError(f"{name} has shape {tuple(a.shape)}; expected "
                          + " or ".join(str(list(s)) for s in forms))
    a = a.reshape(N, groups, width)
    ok01 = ((a == 0) | (a == 1)).all(axis=2)
    ones = (a == 1).sum(axis=2)
    bad = ~ok01 | (ones > 1)
    if bad.any():
        n = int(np.nonzero(bad.any(axis=1))[0][0])
        raise PxdiffInputError(f"{name} row {n} is not one-hot")
    idx = np.where(ones == 1, a.argmax(axis=2), -1).astype(np.int64)
    return idx.reshape(N) if groups == 1 else idx


def _strings(values, name, min_width):
    """U8 [len, W] of ASCII strings (W = max(min_width, longest))."""
    enc = []
    for i, v in enumerate(values):
        s = v.decode() if isinstance(v, bytes) else str(v)
        s = s.strip()
        try:
            b = s.encode("ascii")
        except UnicodeEncodeError:
            raise PxdiffInputError(f"{name}[{i}] = {s!r} is not ASCII") from None
        if not 1 <= len(b) <= _STR_MAX:
            raise PxdiffInputError(f"{name}[{i}] = {s!r} must hold 1 to {_STR_MAX} characters")
        enc.append(b)
    W = max([min_width] + [len(b) for b in enc])
    out = np.zeros((len(enc), W), dtype=np.uint8)
    for i, b in enumerate(enc):
        out[i, :len(b)] = np.frombuffer(b, dtype=np.uint8)
    return out


def _annotations_from_atoms(atom_array, a2t, T, residue_index):
    """Token and atom annotations from a biotite-like AtomArray (duck typed)."""
    N = a2t.shape[0]
    out = {}
    try:
        n_atoms = len(atom_array)
    except TypeError:
        n_atoms = len(getattr(atom_array, "atom_name"))
    if n_atoms != N:
        raise PxdiffInputError(f"atom_array has {n_atoms} atoms; the features have {N}")
    first = np.searchsorted(a2t, np.arange(T))  # first atom of each token (N when none)
    has = (first < N)
    has[has] = a2t[first[has]] == np.arange(T)[has]
    # a token without atoms borrows the chain of the nearest token before it that has some
    src = np.where(has, first, -1)
    for t in range(T):
        if src[t] < 0:
            src[t] = src[t - 1] if t > 0 else -1
    if (src < 0).any():  # leading tokens without atoms: the first token that has some
        src[src < 0] = src[src >= 0][0] if (src >= 0).any() else 0

    def get(attr):
        v = getattr(atom_array, attr, None)
        return None if v is None else np.asarray(v)

    res_name, chain_id, res_id = get("res_name"), get("chain_id"), get("res_id")
    if res_name is not None:
        out["token_res_name"] = _strings(
            [res_name[first[t]] if has[t] else "UNK" for t in range(T)], "res_name", 4)
    if chain_id is not None:
        out["token_chain_id"] = _strings([chain_id[src[t]] for t in range(T)], "chain_id", 4)
    if res_id is not None:
        out["token_res_num"] = np.array(
            [int(res_id[first[t]]) if has[t] else int(residue_index[t]) for t in range(T)],
            dtype=np.int64)
    names, elements = get("atom_name"), get("element")
    if names is not None:
        out["atom_name"] = _strings(names, "atom_name", 4)
    if elements is not None:
        out["atom_element"] = _strings([str(e).upper() or "X" for e in elements], "element", 2)
    return out


# ----------------------------------------------------------------------- write ----
def _write_safetensors(path, tensors, metadata):
    """tensors: {name: (numpy array, dtype)}; larger elements first (alignment)."""
    size = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "U8": 1,
            "I8": 1, "BOOL": 1}
    order = sorted(tensors, key=lambda k: -size[tensors[k][1]])
    header = {"__metadata__": metadata}
    off = 0
    blobs = []
    for k in order:
        a, dt = tensors[k]
        a = np.ascontiguousarray(a)
        if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and not np.little_endian):
            a = a.byteswap().view(a.dtype.newbyteorder("<"))
        n = a.nbytes
        header[k] = {"dtype": dt, "shape": [int(s) for s in a.shape], "data_offsets": [off, off + n]}
        off += n
        blobs.append(a)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for a in blobs:
            if a.nbytes:
                f.write(memoryview(a.reshape(-1)).cast("B"))


def write(path, input_feature_dict, s_inputs, s_trunk, z_trunk, atom_array=None,
          designed_mask=None, name=None, source=None):
    """Write one design's inputs as a bundle (docs/bundle.md).

    input_feature_dict: PXDesign's features (extra keys are ignored). s_trunk may be None
    (not stored; it then means zeros). atom_array: a biotite-like AtomArray with res_name,
    chain_id, res_id, atom_name, element per atom, in feature order (optional).
    designed_mask: [T] booleans, True for designed tokens, False for condition (optional).
    Raises PxdiffError with a one-line message on invalid input; nothing is left behind."""
    path = os.fspath(path)
    f = input_feature_dict
    missing = [k for k in ("ref_pos", "ref_charge", "ref_mask", "ref_element", "ref_atom_name_chars")
               + _ATOM_INT + _TOKEN_INT if k not in f]
    if missing:
        raise PxdiffInputError(f"input_feature_dict lacks {missing[0]}")
    t = {}
    a2t, _ = _array(f["atom_to_token_idx"], "atom_to_token_idx")
    a2t = _squeeze(a2t, 1, "atom_to_token_idx")
    N = a2t.shape[0]
    asym, _ = _array(f["asym_id"], "asym_id")
    T = _squeeze(asym, 1, "asym_id").shape[0]
    for k in _ATOM_INT + _TOKEN_INT:
        a, dt = _array(f[k], k)
        if dt != "I64":
            raise PxdiffInputError(f"{k} must hold integers (got {a.dtype})")
        t[k] = (_squeeze(a, 1, k), "I64")
    for k, tail in _ATOM_FLOAT.items():
        a, dt = _array(f[k], k)
        if dt == "I64":
            a, dt = a.astype(np.float32), "F32"
        t[k] = (_squeeze(a, 1 + len(tail), k), dt)
    m, dt = _array(f["ref_mask"], "ref_mask")
    m = _squeeze(m, 1, "ref_mask")
    mf = _floats(m, dt) if dt in ("F32", "F16", "BF16") else m
    if ((mf == 0) | (mf == 1)).all():
        t["ref_mask"] = (mf.astype(np.uint8), "U8")
    else:
        t["ref_mask"] = (m, dt) if dt != "I64" else (m.astype(np.float32), "F32")
    t["ref_element_index"] = (_onehot_index(f["ref_element"], "ref_element", 1, 128, N), "I64")
    t["ref_atom_name_chars_index"] = (
        _onehot_index(f["ref_atom_name_chars"], "ref_atom_name_chars", 4, 64, N), "I64")
    for k, x, nd in (("s_inputs", s_inputs, 2), ("s_trunk", s_trunk, 2), ("z_trunk", z_trunk, 3)):
        if x is None and k == "s_trunk":
            continue
        a, dt = _array(x, k)
        if dt in ("I64", "U8"):
            a, dt = a.astype(np.float32), "F32"
        t[k] = (_squeeze(a, nd, k), dt)
    if atom_array is not None:
        res_idx = t["residue_index"][0]
        for k, v in _annotations_from_atoms(atom_array, a2t, T, res_idx).items():
            t[k] = (v, "I64" if v.dtype == np.int64 else "U8")
    if designed_mask is not None:
        d, _ = _array(designed_mask, "designed_mask")
        d = _squeeze(d, 1, "designed_mask")
        if d.shape[0] != T:
            raise PxdiffInputError(f"designed_mask has {d.shape[0]} entries; expected {T} (tokens)")
        t["token_is_designed"] = ((d != 0).astype(np.uint8), "U8")
    meta = {"format": FORMAT, "version": VERSION}
    if name is not None:
        meta["name"] = str(name)
    if source is not None:
        meta["source"] = str(source)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        _write_safetensors(tmp, t, meta)
        h = _open(tmp)
        lib.px_bundle_free(h)
        os.replace(tmp, path)
    except PxdiffError as e:
        raise type(e)(str(e).replace(tmp, path), e.code) from None
    except OSError as e:
        raise PxdiffIOError(f"{path}: cannot write: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ------------------------------------------------------------------------ read ----
def _open(path):
    h = _vp()
    rc = lib.px_bundle_open(os.fspath(path).encode(), ctypes.byref(h))
    if rc != 0:
        raise error_for(rc, lib.px_last_error().decode("utf-8", "replace"), path)
    return h


def _metadata(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return dict(json.loads(f.read(n)).get("__metadata__", {}))


def read(path, as_numpy=False):
    """The bundle's contents, validated by the engine's reader:
    {"input_feature_dict": {ref_pos, ref_charge, ref_mask, ref_element [N, 128],
     ref_atom_name_chars [N, 256] (float32), ref_space_uid, atom_to_token_idx, asym_id,
     residue_index, entity_id, token_index, sym_id (int64)}, "s_inputs", "s_trunk" (None
     when not stored), "z_trunk" (float32), "annotations": {res_name, chain_id (lists of
     str, [T]), res_num (int64 [T]), is_designed (bool [T]), atom_name, element (lists,
     [N]), stored (names of the annotations stored rather than synthesized)}, "metadata"}.
    Tensors are torch tensors unless as_numpy (or torch is unavailable)."""
    path = os.fspath(path)
    h = _open(path)
    try:
        fp = lib.px_bundle_features(h).contents
        T, N = fp.n_token, fp.n_atom
        ci, cs, cz = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        lib.px_bundle_widths(h, ctypes.byref(ci), ctypes.byref(cs), ctypes.byref(cz))

        def arr(ptr, shape):
            n = int(np.prod(shape))
            return np.ctypeslib.as_array(ptr, shape=(n,)).reshape(shape).copy()

        feats = {
            "ref_pos": arr(fp.ref_pos, (N, 3)), "ref_charge": arr(fp.ref_charge, (N,)),
            "ref_mask": arr(fp.ref_mask, (N,)), "ref_element": arr(fp.ref_element, (N, 128)),
            "ref_atom_name_chars": arr(fp.ref_atom_name_chars, (N, 256)),
        }
        for k in _ATOM_INT:
            feats[k] = arr(getattr(fp, k), (N,))
        for k in _TOKEN_INT:
            feats[k] = arr(getattr(fp, k), (T,))
        out = {"input_feature_dict": feats,
               "s_inputs": arr(fp.s_inputs, (T, ci.value)),
               "s_trunk": arr(fp.s_trunk, (T, cs.value)) if fp.s_trunk else None,
               "z_trunk": arr(fp.z_trunk, (T, T, cz.value))}

        def text(field, count):
            raw = ctypes.string_at(lib.px_bundle_text(h, field), count * _SLOT)
            return [raw[i * _SLOT:(i + 1) * _SLOT].split(b"\0", 1)[0].decode("ascii")
                    for i in range(count)]

        present = lib.px_bundle_annotations_present(h)
        ann = {"res_name": text(0, T), "chain_id": text(1, T),
               "res_num": arr(lib.px_bundle_res_nums(h), (T,)),
               "is_designed": arr(lib.px_bundle_designed_flags(h), (T,)).astype(bool),
               "atom_name": text(2, N), "element": text(3, N),
               "stored": [n for i, n in enumerate(_ANNOTATIONS) if present & (1 << i)]}
    finally:
        lib.px_bundle_free(h)
    out["annotations"] = ann
    out["metadata"] = _metadata(path)
    if not as_numpy:
        try:
            import torch
        except ImportError:
            return out
        conv = lambda a: torch.from_numpy(a) if isinstance(a, np.ndarray) else a  # noqa: E731
        out["input_feature_dict"] = {k: conv(v) for k, v in feats.items()}
        for k in ("s_inputs", "s_trunk", "z_trunk"):
            out[k] = conv(out[k])
        ann["res_num"] = conv(ann["res_num"])
        ann["is_designed"] = conv(ann["is_designed"])
    return out
