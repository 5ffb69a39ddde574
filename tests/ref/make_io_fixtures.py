#!/usr/bin/python3
"""Fixtures for tests/test_io.c: torch.save archives, safetensors files and broken variants.

Usage: /usr/bin/python3 tests/ref/make_io_fixtures.py OUTDIR

Every good fixture FOO comes with
  FOO.manifest          one line per tensor the reader must index: name<TAB>DTYPE<TAB>d0,d1,..
  FOO.expect.safetensors  the float tensors' values as contiguous float32, written by the
                          small safetensors writer below (not by the reader under test)
Bad fixtures are named bad_*: the reader must refuse each with a one-line message.

Written for Debian's torch 1.13 (/usr/bin/python3); it also runs under torch 2.x, which is how
tests/ref/io_torch2/ was produced (see TORCH2 below).

torch 2.x archives differ from 1.13's in the records around data.pkl: they add "byteorder"
("little"), ".data/serialization_id" and (2.4+) ".format_version"/".storage_alignment",
name the top folder after the file's stem, and pad every record's local header with an
"FB" extra field so that data starts on a 64-byte boundary; large files use zip64 records.
The pickle itself (protocol 2, _rebuild_tensor_v2 over torch.<X>Storage persistent ids)
is unchanged. emulate_torch2() re-packs a 1.13 data.pkl with such a layout (our own zip
writer), and zip64 variants force zip64 extra fields and the zip64 end records.
"""
import io
import json
import os
import pickle
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict

import torch

OUT = sys.argv[1] if len(sys.argv) > 1 else "io_fixtures"
os.makedirs(OUT, exist_ok=True)


def P(name):
    return os.path.join(OUT, name)


# ----------------------------------------------------------------- safetensors writer --
ST_DT = {
    torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2),
    torch.float64: ("F64", 8), torch.int64: ("I64", 8), torch.int32: ("I32", 4),
    torch.int16: ("I16", 2), torch.int8: ("I8", 1), torch.uint8: ("U8", 1),
    torch.bool: ("BOOL", 1),
}


def tensor_bytes(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def st_raw(path, header_obj=None, data=b"", header_bytes=None, hlen=None):
    """Write a safetensors file from a header (dict or raw bytes) and a data blob."""
    if header_bytes is None:
        header_bytes = json.dumps(header_obj, separators=(",", ":")).encode()
        pad = (8 - (8 + len(header_bytes)) % 8) % 8
        header_bytes += b" " * pad
    if hlen is None:
        hlen = len(header_bytes)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", hlen))
        f.write(header_bytes)
        f.write(data)


def st_write(path, tensors, metadata=None):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blob = b""
    for name, t in tensors.items():
        dt, _ = ST_DT[t.dtype]
        b = tensor_bytes(t)
        header[name] = {"dtype": dt, "shape": list(t.shape),
                        "data_offsets": [len(blob), len(blob) + len(b)]}
        blob += b
    st_raw(path, header, blob)


def write_expect(stem, tensors):
    """stem.manifest (all tensors) and stem.expect.safetensors (float ones as f32)."""
    with open(P(stem + ".manifest"), "w") as f:
        for name, t in tensors.items():
            dt, _ = ST_DT[t.dtype]
            f.write("%s\t%s\t%s\n" % (name, dt, ",".join(str(d) for d in t.shape)))
    fl = OrderedDict((n, t.detach().float().contiguous()) for n, t in tensors.items()
                     if t.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64))
    st_write(P(stem + ".expect.safetensors"), fl)


# ----------------------------------------------------------------------- zip writer --
def zip_write(path, records, prefix="archive/", align=64, zip64=False, method=0,
              comment=b""):
    """A stored (or deflated) zip archive like PyTorch's writer: records in order,
    each local header padded with an 'FB' extra field so data starts at `align`."""
    out = bytearray()
    central = []
    for name, data in records:
        fname = (prefix + name).encode()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        if method == 8:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = c.compress(data) + c.flush()
        else:
            payload = data
        off = len(out)
        extra = b""
        if zip64:
            extra += struct.pack("<HHQQ", 1, 16, len(data), len(payload))
        fixed = 30 + len(fname) + len(extra)
        if align:
            need = (-(off + fixed + 4)) % align
            extra += struct.pack("<HH", 0x4246, need) + b"Z" * need  # "FB" padding
        lh = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64 else 20, 0, method, 0, 0x21,
                         crc, 0xFFFFFFFF if zip64 else len(payload),
                         0xFFFFFFFF if zip64 else len(data), len(fname), len(extra))
        out += lh + fname + extra
        out += payload
        central.append((fname, crc, len(data), len(payload), off))
    cd_off = len(out)
    for fname, crc, size, csize, off in central:
        extra = b""
        if zip64:
            extra = struct.pack("<HHQQQ", 1, 24, size, csize, off)
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45 if zip64 else 20,
                           45 if zip64 else 20, 0, method, 0, 0x21, crc,
                           0xFFFFFFFF if zip64 else csize, 0xFFFFFFFF if zip64 else size,
                           len(fname), len(extra), 0, 0, 0, 0,
                           0xFFFFFFFF if zip64 else off)
        out += fname + extra
    cd_size = len(out) - cd_off
    n = len(central)
    if zip64:
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_off)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF,
                           0xFFFFFFFF, 0xFFFFFFFF, len(comment))
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_off, len(comment))
    out += comment
    with open(path, "wb") as f:
        f.write(bytes(out))


def zip_records(path):
    """(name without top folder, bytes) of an archive, in order, and the top folder."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        prefix = names[0].split("/")[0] + "/"
        return [(n[len(prefix):], z.read(n)) for n in names], prefix


def save_pkl_with_storages(pkl, storages, path, prefix="archive/", extra=()):
    """An archive around a hand-made data.pkl and storages {key: bytes}."""
    recs = [("data.pkl", pkl)] + [("data/%s" % k, b) for k, b in storages.items()]
    recs += list(extra) + [("version", b"3\n")]
    zip_write(path, recs, prefix=prefix)


# -------------------------------------------------------------- hand-made pickles --
class Pk:
    """A tiny opcode emitter for crafted pickles."""

    def __init__(self, proto=2):
        self.b = bytearray(b"\x80" + bytes([proto]))

    def op(self, raw):
        self.b += raw
        return self

    def glob(self, mod, name):
        return self.op(b"c" + mod.encode() + b"\n" + name.encode() + b"\n")

    def s(self, text):
        e = text.encode()
        return self.op(b"X" + struct.pack("<I", len(e)) + e)

    def i(self, v):
        if -2 ** 31 <= v < 2 ** 31:
            return self.op(b"J" + struct.pack("<i", v))
        raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        return self.op(b"\x8a" + bytes([len(raw)]) + raw)  # LONG1

    def ints(self, vals):
        self.op(b"(")
        for v in vals:
            self.i(v)
        return self.op(b"t")

    def storage(self, stype, key, numel):
        self.op(b"(")
        self.s("storage").glob("torch", stype).s(key).s("cpu").i(numel)
        return self.op(b"tQ")

    def tensor(self, stype, key, numel, off, shape, stride):
        self.glob("torch._utils", "_rebuild_tensor_v2").op(b"(")
        self.storage(stype, key, numel).i(off).ints(shape).ints(stride)
        self.op(b"\x89").glob("collections", "OrderedDict").op(b")R")
        return self.op(b"tR")

    def done(self):
        return bytes(self.b + b".")


def f32bytes(vals):
    return struct.pack("<%df" % len(vals), *vals)


# ============================================================== good .pt fixtures ==
torch.manual_seed(1234)


def rn(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


plain = OrderedDict()
plain["diffusion_module.layernorm_s.weight"] = rn(16)
plain["diffusion_module.linear_no_bias_s.weight"] = rn(8, 16)
plain["diffusion_module.blocks.0.w3"] = rn(2, 3, 4)
plain["diffusion_module.scalar"] = torch.tensor(3.25)
plain["diffusion_module.empty"] = torch.zeros(0, 5)
plain["diffusion_module.big"] = rn(64, 33)
plain["x.4d"] = rn(2, 1, 3, 2)
torch.save(plain, P("plain.pt"))
write_expect("plain", plain)

for proto in (2, 3, 4, 5):
    if proto <= pickle.HIGHEST_PROTOCOL:
        torch.save(plain, P("plain_p%d.pt" % proto), pickle_protocol=proto)
        write_expect("plain_p%d" % proto, plain)
torch.save(dict(plain), P("plain_newzip.pt"), _use_new_zipfile_serialization=True)
write_expect("plain_newzip", plain)

# A training checkpoint: {"model": {"module."+name: t}, optimizer state, counters, ...}.
model = OrderedDict(("module." + k, v) for k, v in plain.items())
optim = {
    "state": {i: {"step": torch.tensor(float(7 + i)), "exp_avg": torch.zeros_like(v),
                  "exp_avg_sq": torch.ones_like(v)} for i, v in enumerate(plain.values())},
    "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                      "amsgrad": False, "maximize": False, "foreach": None,
                      "params": list(range(len(plain)))}],
}
ckpt = {
    "model": model,
    "optimizer": optim,
    "scheduler": {"last_epoch": 12, "_step_count": 13, "base_lrs": [0.001],
                  "verbose": False},
    "step": 123456,
    "epoch": 3,
    "big_int": 2 ** 70,
    "neg_int": -5,
    "huge_neg": -(2 ** 100),
    "loss": 0.125,
    "name": "pxdesign \u00e9t\u00e9 \u4e2d",
    "blob": b"\x00\x01binary",
    "nested": {"a": [1, 2.5, None, True, False, (1, "two", (3.0,))], "b": {"c": {"d": []}},
               "s": {1, 2, 3}, "fs": frozenset(["x"]), "t": ()},
    "ema": {"decay": 0.999, "shadow": OrderedDict((k, v.clone()) for k, v in plain.items())},
    "rng": torch.get_rng_state(),
    "dtype": torch.float32,
    "shared_list": None,
}
lst = [1, 2]
ckpt["shared_list"] = [lst, lst, {"again": lst}]
torch.save(ckpt, P("ckpt.pt"))
write_expect("ckpt", model)
torch.save(ckpt, P("ckpt_p4.pt"), pickle_protocol=4)
write_expect("ckpt_p4", model)

# dtypes: float16, bfloat16, float64 convert; integer tensors are indexed, not read as f32.
dt = OrderedDict()
dt["f16"] = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1035e-05, 5.96e-08, float("inf"),
                          -float("inf"), 3.140625]).to(torch.float16)
dt["f16_r"] = rn(7, 5, dtype=torch.float16)
dt["bf16"] = rn(4, 9, dtype=torch.bfloat16)
dt["f64"] = torch.randn(3, 11, dtype=torch.float64) * 1e3
dt["f64_small"] = torch.tensor([1e-40, 1e-50, 3.4e38, 1 / 3.0], dtype=torch.float64)
dt["i64"] = torch.arange(6, dtype=torch.int64).reshape(2, 3)
dt["i32"] = torch.arange(4, dtype=torch.int32)
dt["i16"] = torch.arange(4, dtype=torch.int16)
dt["i8"] = torch.arange(4, dtype=torch.int8)
dt["u8"] = torch.arange(4, dtype=torch.uint8)
dt["bool"] = torch.tensor([True, False, True])
torch.save(dt, P("dtypes.pt"))
write_expect("dtypes", dt)

# Views: a transposed (non-contiguous) tensor, views sharing one storage, offsets,
# an expanded tensor (stride 0) and a strided slice.
base = rn(6, 10)
views = OrderedDict()
views["transposed"] = base.t()
views["row0"] = base[0]
views["rows_2_4"] = base[2:4]
views["col3"] = base[:, 3]
views["every_other"] = base[::2, 1::3]
views["expanded"] = rn(5)[None, :].expand(4, 5)
views["base"] = base
views["half_t"] = rn(3, 4, dtype=torch.float16).t()
views["f64_view"] = torch.randn(4, 6, dtype=torch.float64)[1:, ::2]
# A tensor carrying a Python attribute pickles through torch._tensor._rebuild_from_type_v2.
withattr = rn(3, 2)
withattr.note = "python state"
views["with_attr"] = withattr
torch.save(views, P("views.pt"))
write_expect("views", views)

# nn.Parameter values (torch._utils._rebuild_parameter) and a module's state_dict()
# (an OrderedDict carrying _metadata, pickled with BUILD).
lin = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
params = OrderedDict((k, v) for k, v in lin.named_parameters())
params["requires_nograd"] = torch.nn.Parameter(rn(2, 2), requires_grad=False)
torch.save(params, P("params.pt"))
write_expect("params", OrderedDict((k, v.detach()) for k, v in params.items()))
sd = lin.state_dict()
torch.save(sd, P("statedict.pt"))
write_expect("statedict", sd)
torch.save({"model": params, "step": 1}, P("params_model.pt"))
write_expect("params_model", OrderedDict((k, v.detach()) for k, v in params.items()))

# "model" that is not a dict: the top-level tensors are indexed instead.
notmodel = OrderedDict([("model", "a string"), ("w", rn(3))])
torch.save(notmodel, P("model_str.pt"))
write_expect("model_str", OrderedDict([("w", notmodel["w"])]))

# Empty dict.
torch.save({}, P("empty_dict.pt"))
write_expect("empty_dict", OrderedDict())

# torch 2.x layout emulation (see module docstring) and zip64 variants.
recs, _ = zip_records(P("plain.pt"))
pkl = dict(recs)["data.pkl"]
storage_recs = [(n, b) for n, b in recs if n.startswith("data/")]
t2 = [("data.pkl", pkl), (".format_version", b"1"), (".storage_alignment", b"64"),
      ("byteorder", b"little")] + storage_recs + [("version", b"3\n"),
                                                   (".data/serialization_id",
                                                    b"1234567890123456789012345678901234567890")]
zip_write(P("torch2emu.pt"), t2, prefix="torch2emu/")
write_expect("torch2emu", plain)
zip_write(P("zip64.pt"), t2, prefix="zip64/", zip64=True)
write_expect("zip64", plain)
zip_write(P("zip64_noalign.pt"), t2, prefix="archive/", zip64=True, align=0,
          comment=b"a comment PK\x05\x06 inside")
write_expect("zip64_noalign", plain)
# torch 2.x protocol-2 pickle with a hand-made pickle: memo reuse of one storage,
# a storage offset, a 0-dim tensor, LONG_BINPUT/LONG_BINGET, and an empty tensor.
pk = Pk(2)
pk.op(b"}q\x00(")  # EMPTY_DICT BINPUT 0 MARK
pk.s("a").glob("torch._utils", "_rebuild_tensor_v2").op(b"(")
pk.storage("FloatStorage", "0", 6).op(b"r\x01\x01\x00\x00")  # LONG_BINPUT 257
pk.i(0).ints([2, 3]).ints([3, 1]).op(b"\x89").glob("collections", "OrderedDict").op(b")RtR")
pk.s("b").glob("torch._utils", "_rebuild_tensor_v2").op(b"(")
pk.op(b"j\x01\x01\x00\x00")  # LONG_BINGET 257: the same storage
pk.i(4).ints([2]).ints([1]).op(b"\x88").glob("collections", "OrderedDict").op(b")RtR")
pk.s("c").tensor("FloatStorage", "0", 6, 5, [], [])
pk.s("d").tensor("HalfStorage", "1", 0, 0, [0, 4], [4, 1])
# e: torch._tensor._rebuild_from_type_v2(_rebuild_tensor_v2, torch.Tensor, args, state),
# as torch writes for tensors that carry Python attributes.
pk.s("e").glob("torch._tensor", "_rebuild_from_type_v2").op(b"(")
pk.glob("torch._utils", "_rebuild_tensor_v2").glob("torch", "Tensor").op(b"(")
pk.storage("FloatStorage", "0", 6).i(1).ints([2]).ints([1]).op(b"\x89")
pk.glob("collections", "OrderedDict").op(b")Rt}").s("note").s("hi").op(b"stR")
# f: _rebuild_parameter_with_state over a tensor whose size is a torch.Size.
pk.s("f").glob("torch._utils", "_rebuild_parameter_with_state").op(b"(")
pk.glob("torch._utils", "_rebuild_tensor_v2").op(b"(")
pk.storage("FloatStorage", "0", 6).i(3).glob("torch", "Size").ints([3]).op(b"\x85R")
pk.ints([1]).op(b"\x88").glob("collections", "OrderedDict").op(b")RtR")
pk.op(b"\x88").glob("collections", "OrderedDict").op(b")R}").s("x").i(1).op(b"stR")
pk.op(b"u")
handmade = pk.done()
save_pkl_with_storages(handmade, {"0": f32bytes([1, 2, 3, 4, 5, 6]), "1": b""},
                       P("handmade.pt"), prefix="handmade/",
                       extra=[("byteorder", b"little")])
with open(P("handmade.manifest"), "w") as f:
    f.write("a\tF32\t2,3\nb\tF32\t2\nc\tF32\t\nd\tF16\t0,4\ne\tF32\t2\nf\tF32\t3\n")
st_write(P("handmade.expect.safetensors"), OrderedDict([
    ("a", torch.tensor([[1., 2, 3], [4, 5, 6]])), ("b", torch.tensor([5., 6])),
    ("c", torch.tensor(6.)), ("d", torch.zeros(0, 4)), ("e", torch.tensor([2., 3])),
    ("f", torch.tensor([4., 5, 6]))]))

# ======================================================================= bad .pt ====
torch.save(plain, P("bad_legacy.pt"), _use_new_zipfile_serialization=False)
torch.save([plain["x.4d"]], P("bad_toplist.pt"))
with open(P("plain.pt"), "rb") as f:
    whole = f.read()
for frac, name in ((0.5, "bad_trunc_half.pt"), (0.99, "bad_trunc_end.pt")):
    with open(P(name), "wb") as f:
        f.write(whole[: int(len(whole) * frac)])
with open(P("bad_trunc_10.pt"), "wb") as f:
    f.write(whole[:10])

evil = {
    "bad_evil_os.pt": Pk(2).op(b"}").s("x").glob("os", "system").s("echo pwned")
    .op(b"\x85R").op(b"s").done(),
    "bad_evil_eval.pt": Pk(2).op(b"}").s("x").glob("builtins", "eval").s("1+1")
    .op(b"\x85Rs").done(),
    "bad_evil_posix.pt": Pk(2).glob("posix", "system").s("id").op(b"\x85R").done(),
    "bad_evil_getattr.pt": Pk(4).op(b"\x8c\x08builtins\x8c\x07getattr\x93").done(),
    "bad_evil_inst.pt": Pk(2).op(b"(X\x02\x00\x00\x00idios\nsystem\n").done(),
    "bad_evil_torchload.pt": Pk(2).glob("torch", "load").s("x").op(b"\x85R").done(),
    # REDUCE applied to something that is not a whitelisted callable
    "bad_reduce_dict.pt": Pk(2).op(b"})R").done(),
    "bad_reduce_dtype.pt": Pk(2).glob("torch", "float32").op(b")R").done(),
    # structural garbage
    "bad_pkl_empty_stack.pt": Pk(2).op(b"s").done(),
    "bad_pkl_no_stop.pt": bytes(Pk(2).op(b"}").b),
    "bad_pkl_unknown_op.pt": Pk(2).op(b"}\xff").done(),
    "bad_pkl_memo_miss.pt": Pk(2).op(b"h\x05").done(),
    "bad_pkl_long_str.pt": bytes(Pk(2).op(b"X\xff\xff\xff\x7fabc").b),
    "bad_pkl_mark_missing.pt": Pk(2).op(b"}Ju\x00\x00\x00").op(b"t").done(),
    "bad_pkl_stack_left.pt": Pk(2).op(b"}}").done(),
    "bad_pkl_ext.pt": Pk(2).op(b"\x82\x01").done(),
    # tensors that do not fit their storage, or storages that are missing
    "bad_span.pt": Pk(2).op(b"}").s("w").tensor("FloatStorage", "0", 6, 0, [3, 3], [3, 1])
    .op(b"s").done(),
    "bad_offset.pt": Pk(2).op(b"}").s("w").tensor("FloatStorage", "0", 6, 5, [2], [1])
    .op(b"s").done(),
    "bad_stride_huge.pt": Pk(2).op(b"}").s("w")
    .tensor("FloatStorage", "0", 6, 0, [2, 2], [0x7FFFFFFF, 1]).op(b"s").done(),
    "bad_numel_overflow.pt": Pk(2).op(b"}").s("w")
    .tensor("FloatStorage", "0", 6, 0, [1 << 40, 1 << 40], [0, 0]).op(b"s").done(),
    "bad_huge_offset.pt": Pk(2).op(b"}").s("w")
    .tensor("FloatStorage", "0", 6, 1 << 62, [1], [1]).op(b"s").done(),
    "bad_neg_shape.pt": Pk(2).op(b"}").s("w").tensor("FloatStorage", "0", 6, 0, [-2], [1])
    .op(b"s").done(),
    "bad_missing_storage.pt": Pk(2).op(b"}").s("w").tensor("FloatStorage", "9", 6, 0, [6],
                                                          [1]).op(b"s").done(),
    "bad_storage_type.pt": Pk(2).op(b"}").s("w").tensor("os", "0", 6, 0, [6], [1])
    .op(b"s").done(),
    "bad_ndim.pt": Pk(2).op(b"}").s("w").tensor("FloatStorage", "0", 6, 0, [1] * 9, [1] * 9)
    .op(b"s").done(),
    "bad_rank_mismatch.pt": Pk(2).op(b"}").s("w").tensor("FloatStorage", "0", 6, 0, [2, 3],
                                                        [1]).op(b"s").done(),
    "bad_model_complex.pt": Pk(2).op(b"}").s("w")
    .tensor("ComplexFloatStorage", "0", 3, 0, [3], [1]).op(b"s").done(),
}
for name, p in evil.items():
    save_pkl_with_storages(p, {"0": f32bytes([1, 2, 3, 4, 5, 6])}, P(name))
# A GLOBAL deep inside otherwise valid containers.
deep = Pk(2).op(b"}").s("model").op(b"}").s("w").glob("subprocess", "Popen").op(b"s").op(b"s")
save_pkl_with_storages(deep.done(), {}, P("bad_evil_nested.pt"))
# deep nesting past the bounds
save_pkl_with_storages(Pk(2).op(b"(" * 100000).done(), {}, P("bad_pkl_deep_marks.pt"))
save_pkl_with_storages(Pk(2).op(b"]" * 20 + b"\x85" * 1).done(), {}, P("bad_pkl_wrong_top.pt"))

# Zip-level damage.
recs, prefix = zip_records(P("plain.pt"))
zip_write(P("bad_compressed.pt"), recs, prefix=prefix, method=8)
zip_write(P("bad_bigendian.pt"), [(n, b) for n, b in recs if n != "byteorder"]
          + [("byteorder", b"big")], prefix=prefix)
zip_write(P("bad_no_pkl.pt"), [(n, b) for n, b in recs if n != "data.pkl"], prefix=prefix)
zip_write(P("bad_dup_entry.pt"), recs + [recs[-1]], prefix=prefix)
zip_write(P("bad_short_storage.pt"), [(n, b[:-4] if n == "data/0" else b) for n, b in recs],
          prefix=prefix)


def patch(src, dst, off, data):
    with open(P(src), "rb") as f:
        b = bytearray(f.read())
    b[off:off + len(data)] = data
    with open(P(dst), "wb") as f:
        f.write(bytes(b))
    return b


b = open(P("torch2emu.pt"), "rb").read()
eocd = b.rfind(b"PK\x05\x06")
cd_off = struct.unpack_from("<I", b, eocd + 16)[0]
patch("torch2emu.pt", "bad_cd_offset.pt", eocd + 16, struct.pack("<I", len(b) + 100))
patch("torch2emu.pt", "bad_cd_count.pt", eocd + 8, struct.pack("<HH", 500, 500))
patch("torch2emu.pt", "bad_local_offset.pt", cd_off + 42, struct.pack("<I", len(b) - 10))
b2 = bytearray(b)
lh2 = b.find(b"PK\x03\x04", 4)
b2[lh2:lh2 + 4] = b"XX\x03\x04"
open(P("bad_local_sig.pt"), "wb").write(bytes(b2))
patch("torch2emu.pt", "bad_cd_size_huge.pt", cd_off + 20, struct.pack("<II", 0x7FFFFFF0,
                                                                        0x7FFFFFF0))
patch("torch2emu.pt", "bad_name_len.pt", cd_off + 28, struct.pack("<H", 0xFFFF))
patch("torch2emu.pt", "bad_encrypted.pt", cd_off + 8, struct.pack("<H", 1))
z = open(P("zip64.pt"), "rb").read()
loc = z.rfind(b"PK\x06\x07")
patch("zip64.pt", "bad_zip64_locator.pt", loc + 8, struct.pack("<Q", len(z) * 3))
z64 = z.rfind(b"PK\x06\x06")
patch("zip64.pt", "bad_zip64_count.pt", z64 + 24, struct.pack("<QQ", 1 << 40, 1 << 40))
zcd = struct.unpack_from("<Q", z, z64 + 48)[0]
patch("zip64.pt", "bad_zip64_extra.pt", zcd + 46 + len(b"zip64/data.pkl") + 4,
      struct.pack("<Q", 1 << 62))
open(P("bad_empty.bin"), "wb").close()
open(P("bad_text.bin"), "wb").write(b"hello, this is not a checkpoint at all\n" * 3)
open(P("bad_pk_only.bin"), "wb").write(b"PK\x03\x04")
zip_write(P("bad_empty_zip.pt"), [], prefix="x/")

# ====================================================================== safetensors ==
stt = OrderedDict()
stt["w"] = rn(3, 4)
stt["f16"] = dt["f16"]
stt["bf16"] = dt["bf16"]
stt["f64"] = dt["f64"]
stt["i64"] = dt["i64"]
stt["i32"] = dt["i32"]
stt["i16"] = dt["i16"]
stt["i8"] = dt["i8"]
stt["u8"] = dt["u8"]
stt["bool"] = dt["bool"]
stt["scalar"] = torch.tensor(-1.5)
stt["empty"] = torch.zeros(2, 0)
stt["name with \"quotes\" \\ and \u00e9\u4e2d"] = rn(2)
st_write(P("st_good.safetensors"), stt, metadata={"format": "pt", "note": "x\ny"})
write_expect("st_good", stt)
# Written in another key order, data out of header order (offsets sorted differently).
hdr = {}
blob = b""
items = list(stt.items())[:4]
for name, t in reversed(items):
    bts = tensor_bytes(t)
    hdr[name] = {"dtype": ST_DT[t.dtype][0], "shape": list(t.shape),
                 "data_offsets": [len(blob), len(blob) + len(bts)]}
    blob += bts
hdr = OrderedDict(sorted(hdr.items()))
hdr["__metadata__"] = {}
st_raw(P("st_order.safetensors"), hdr, blob)
write_expect("st_order", OrderedDict(items))
# Header with whitespace, exponent-free ints, escapes in keys.
raw = (b'{ "__metadata__" : { "a" : "b\\u00e9" } ,\n\t"t\\u0041" : { "shape" : [ 2 ] ,'
       b' "dtype" : "F32" , "data_offsets" : [ 0 , 8 ] } }')
st_raw(P("st_ws.safetensors"), header_bytes=raw, data=f32bytes([1.5, -2.0]))
with open(P("st_ws.manifest"), "w") as f:
    f.write("tA\tF32\t2\n")
st_write(P("st_ws.expect.safetensors"), OrderedDict([("tA", torch.tensor([1.5, -2.0]))]))

good = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
d8 = f32bytes([1.0, 2.0])
st_raw(P("bad_st_hdr_absurd.safetensors"), {"a": good}, d8, hlen=1 << 62)
st_raw(P("bad_st_hdr_past_end.safetensors"), {"a": good}, d8, hlen=200)
st_raw(P("bad_st_overlap.safetensors"),
       {"a": good, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
       d8 + d8)
st_raw(P("bad_st_oob.safetensors"), {"a": {"dtype": "F32", "shape": [4],
                                           "data_offsets": [0, 16]}}, d8)
st_raw(P("bad_st_wrongsize.safetensors"), {"a": {"dtype": "F16", "shape": [2],
                                                 "data_offsets": [0, 8]}}, d8)
st_raw(P("bad_st_backwards.safetensors"), {"a": {"dtype": "F32", "shape": [0],
                                                 "data_offsets": [8, 0]}}, d8)
st_raw(P("bad_st_dtype.safetensors"), {"a": {"dtype": "F31", "shape": [2],
                                             "data_offsets": [0, 8]}}, d8)
st_raw(P("bad_st_neg_shape.safetensors"), {"a": {"dtype": "F32", "shape": [-2],
                                                 "data_offsets": [0, 8]}}, d8)
st_raw(P("bad_st_float_shape.safetensors"), {"a": {"dtype": "F32", "shape": [2.0],
                                                   "data_offsets": [0, 8]}}, d8)
st_raw(P("bad_st_missing_dtype.safetensors"), {"a": {"shape": [2], "data_offsets": [0, 8]}},
       d8)
st_raw(P("bad_st_ndim.safetensors"), {"a": {"dtype": "F32", "shape": [1] * 9 + [2],
                                            "data_offsets": [0, 8]}}, d8)
st_raw(P("bad_st_shape_overflow.safetensors"),
       {"a": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 8]}}, d8)
st_raw(P("bad_st_top_array.safetensors"), [1, 2], d8)
st_raw(P("bad_st_tensor_not_obj.safetensors"), {"a": [1]}, d8)
for i, hb in enumerate([
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},}',   # trailing comma
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}',     # unterminated
        b'{"a":{"dtype":"F32\\q","shape":[2],"data_offsets":[0,8]}}',  # bad escape
        b'{"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}}',   # leading zero
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x',  # trailing garbage
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}\x00',  # NUL
        b'{"a\x01":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',  # control char
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}',  # 3 offsets
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32",'
        b'"shape":[2],"data_offsets":[0,8]}}',                         # duplicate name
        b'{"a":' * 200 + b'1' + b'}' * 200,                            # deep nesting
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8e0]}}',   # float offset
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999999]}}',
        b'{"\\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',  # lone surrogate
        b'',
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"x":tru}}',
]):
    pad = b" " * ((8 - (8 + len(hb)) % 8) % 8)
    st_raw(P("bad_st_json%02d.safetensors" % i), header_bytes=hb + pad, data=d8)
with open(P("st_good.safetensors"), "rb") as f:
    sg = f.read()
with open(P("bad_st_trunc.safetensors"), "wb") as f:
    f.write(sg[: len(sg) - 3])
with open(P("bad_st_trunc_hdr.safetensors"), "wb") as f:
    f.write(sg[:40])

with open(P("bad_list.txt"), "w") as f:
    for name in sorted(os.listdir(OUT)):
        if name.startswith("bad_") and name != "bad_list.txt":
            f.write(name + "\n")
print("wrote fixtures to", OUT, "with torch", torch.__version__)
