"""Checkpoint loading: DiffusionModule.from_checkpoint on files in the released layout
(pxfixtures.save_released_layout) gives what from_torch gives; other layouts, stored
dtypes, .safetensors conversion, error messages, and dims read off the weights."""
import ctypes
import os
import re
import subprocess

import pytest
import torch

import pxdiff
import pxfixtures
import pxref
from conftest import ROOT, SMALL, TOL, assert_close, lib, rel_err

# The CLI next to the library under test (PXDIFF_LIB; e.g. the sanitizer build), else build/.
_LIB = os.environ.get("PXDIFF_LIB")
CLI = os.path.join(os.path.dirname(_LIB), "pxdiff") if _LIB and os.path.exists(
    os.path.join(os.path.dirname(_LIB), "pxdiff")) else os.path.join(ROOT, "build", "pxdiff")


@pytest.fixture(scope="module")
def weights():
    """A random state dict (names without prefix) and inputs for the small dims."""
    sd = pxfixtures.random_state_dict(SMALL, seed=5)
    inp = pxfixtures.random_features_for(SMALL, n_token=10, seed=51)
    N = inp.feats["atom_to_token_idx"].shape[0]
    x = pxfixtures.random_coords(2, N, seed=52)
    t = torch.tensor([0.7, 70.0])
    return sd, inp, x, t


@pytest.fixture(scope="module")
def torch_out(weights):
    sd, inp, x, t = weights
    model = pxfixtures.build_model(SMALL)
    model.load_state_dict(sd, strict=True)
    return run(pxdiff.DiffusionModule.from_torch(model.eval()), weights)


def run(dm, weights):
    sd, inp, x, t = weights
    return dm(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)


def same_outputs(a, b, what):
    e = rel_err(a, b)
    assert e <= 1e-6, f"{what}: relative error {e:.3g} > 1e-6"
    return torch.equal(a, b)


def dims_of(dm):
    return {f: getattr(dm.dims, f) for f, _ in dm.dims._fields_}


def reference64(sd, weights, dims=SMALL):
    _, inp, x, t = weights
    model = pxfixtures.build_model(dims)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    model = model.double().eval()
    with torch.no_grad():
        return model(x.double(), t.double(), pxfixtures.cast_feats(inp.feats, torch.float64),
                     inp.s_inputs.double(), inp.s_trunk.double(), inp.z_trunk.double())


# ------------------------------------------------------------- layouts -------
@pytest.mark.parametrize("layout", ["released", "no_prefix_wrapped", "plain_state_dict",
                                    "plain_with_module_prefix"])
def test_layouts(tmp_path, weights, torch_out, layout):
    sd = weights[0]
    path = str(tmp_path / "ckpt.pt")
    if layout == "released":
        pxfixtures.save_released_layout(path, sd)  # module. prefix, extra subtree, optimizer
    elif layout == "no_prefix_wrapped":
        pxfixtures.save_released_layout(path, sd, prefix="", training_state=False)
    elif layout == "plain_state_dict":
        torch.save({"diffusion_module." + k: v for k, v in sd.items()}, path)
    else:
        torch.save({"module.diffusion_module." + k: v for k, v in sd.items()}, path)
    dm = pxdiff.DiffusionModule.from_checkpoint(path)
    out = run(dm, weights)
    identical = same_outputs(out, torch_out, f"{layout} checkpoint vs from_torch")
    print(f"{layout}: bit-identical to from_torch: {identical}")
    assert dims_of(dm)["n_token_blocks"] == SMALL["n_blocks"]
    assert dm.n_params > 0


def test_n_params_and_dims(tmp_path, weights):
    sd = weights[0]
    path = str(tmp_path / "ckpt.pt")
    pxfixtures.save_released_layout(path, sd)
    dm = pxdiff.DiffusionModule.from_checkpoint(path)
    d = dims_of(dm)
    assert d["c_s"] == SMALL["c_s"] and d["c_z"] == SMALL["c_z"]
    assert d["c_s_inputs"] == SMALL["c_s_inputs"] and d["c_token"] == SMALL["c_token"]
    assert d["c_atom"] == SMALL["c_atom"] and d["c_atompair"] == SMALL["c_atompair"]
    assert d["n_fourier"] == SMALL["n_fourier"]
    assert d["n_token_blocks"] == SMALL["n_blocks"] and d["n_token_heads"] == SMALL["n_heads"]
    assert d["n_enc_blocks"] == SMALL["atom_enc_blocks"] and d["n_dec_blocks"] == SMALL["atom_dec_blocks"]
    assert d["n_enc_heads"] == SMALL["atom_heads"] and d["n_dec_heads"] == SMALL["atom_heads"]
    assert d["c_ref_f"] == 385 and d["n_relpe"] == 139
    assert d["sigma_data"] == 16.0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_storage(tmp_path, weights, dtype):
    """Tensors stored as bf16/fp16 are converted: the result equals from_torch on the same
    rounded weights, and the float64 reference of the rounded weights within 1e-4."""
    sd = weights[0]
    path = str(tmp_path / "half.pt")
    pxfixtures.save_released_layout(path, sd, dtype=dtype)
    dm = pxdiff.DiffusionModule.from_checkpoint(path)
    out = run(dm, weights)
    rounded = {k: v.to(dtype).float() for k, v in sd.items()}
    dm_t = pxdiff.DiffusionModule.from_torch(rounded)
    same_outputs(out, run(dm_t, weights), f"{dtype} checkpoint vs from_torch(rounded)")
    assert_close(out, reference64(rounded, weights), f"{dtype} checkpoint vs float64 reference")
    # and it is not the unrounded model
    assert rel_err(out, reference64(sd, weights)) > 1e-5


def convert(src, dst):
    if os.access(CLI, os.X_OK):
        r = subprocess.run([CLI, "convert", src, dst], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"pxdiff convert failed: {r.stderr}"
        return "cli"
    rc = lib.px_convert_to_safetensors(src.encode(), dst.encode())
    assert rc == 0, lib.px_last_error().decode()
    return "lib"


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_convert_to_safetensors(tmp_path, weights, torch_out, dtype):
    sd = weights[0]
    src, dst = str(tmp_path / "ckpt.pt"), str(tmp_path / "ckpt.safetensors")
    pxfixtures.save_released_layout(path=src, state_dict=sd, dtype=dtype)
    how = convert(src, dst)
    with open(dst, "rb") as f:
        head = f.read(16)
    assert len(head) == 16 and head[8:9] == b"{", "not a safetensors file"
    a = run(pxdiff.DiffusionModule.from_checkpoint(src), weights)
    b = run(pxdiff.DiffusionModule.from_checkpoint(dst), weights)
    assert torch.equal(a, b), f".safetensors (converted by {how}) differs from the .pt"
    if dtype is None:
        same_outputs(b, torch_out, "converted safetensors vs from_torch")
    # the library entry point too
    dst2 = str(tmp_path / "lib.safetensors")
    assert lib.px_convert_to_safetensors(src.encode(), dst2.encode()) == 0, lib.px_last_error().decode()
    assert torch.equal(run(pxdiff.DiffusionModule.from_checkpoint(dst2), weights), a)
    # converting the converted file again is a fixed point in outputs
    dst3 = str(tmp_path / "again.safetensors")
    assert lib.px_convert_to_safetensors(dst.encode(), dst3.encode()) == 0, lib.px_last_error().decode()
    assert torch.equal(run(pxdiff.DiffusionModule.from_checkpoint(dst3), weights), a)


# -------------------------------------------------------------- errors -------
def load_error(path):
    with pytest.raises(pxdiff.PxdiffError) as ei:
        pxdiff.DiffusionModule.from_checkpoint(path)
    msg = str(ei.value)
    assert msg.strip(), "empty error message"
    return msg


@pytest.mark.parametrize("name", [
    "atom_attention_encoder.linear_no_bias_f.weight",
    "diffusion_transformer.blocks.0.attention_pair_bias.attention.linear_q.bias",
    "atom_attention_decoder.atom_transformer.diffusion_transformer.blocks.1.conditioned_transition_block.linear_s.weight",
    "diffusion_conditioning.fourier_embedding.w",
    "layernorm_a.weight",
])
def test_missing_tensor(tmp_path, weights, name):
    sd = dict(weights[0])
    del sd[name]
    path = str(tmp_path / "missing.pt")
    pxfixtures.save_released_layout(path, sd)
    msg = load_error(path)
    assert name in msg, f"message does not name the missing tensor: {msg!r}"


@pytest.mark.parametrize("name", [
    "diffusion_conditioning.transition_z1.linear_no_bias_a.weight",
    "atom_attention_encoder.atom_transformer.diffusion_transformer.blocks.0.attention_pair_bias.linear_a_last.bias",
    "diffusion_transformer.blocks.1.conditioned_transition_block.linear_nobias_b.weight",
])
def test_misshaped_tensor(tmp_path, weights, name):
    sd = dict(weights[0])
    old = tuple(sd[name].shape)
    new = old[:-1] + (old[-1] + 1,)
    sd[name] = torch.zeros(new)
    path = str(tmp_path / "shape.pt")
    pxfixtures.save_released_layout(path, sd)
    msg = load_error(path)
    assert name in msg, f"message does not name the tensor: {msg!r}"
    nums = [int(v) for v in re.findall(r"\d+", msg.split(name, 1)[1])]

    def has(shape):
        return any(nums[i:i + len(shape)] == list(shape) for i in range(len(nums)))
    assert has(new) and has(old), f"message lacks the shapes {new} and {old}: {msg!r}"


def test_bad_files(tmp_path, weights):
    rnd = tmp_path / "random.bin"
    rnd.write_bytes(os.urandom(4096))
    load_error(str(rnd))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    load_error(str(empty))
    text = tmp_path / "text.pt"
    text.write_text("this is not a checkpoint\n" * 50)
    load_error(str(text))
    load_error(str(tmp_path / "does_not_exist.pt"))
    # a truncated archive
    good = str(tmp_path / "good.pt")
    pxfixtures.save_released_layout(good, weights[0])
    data = open(good, "rb").read()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 2])
    load_error(str(trunc))
    # a safetensors header claiming more data than there is
    bad_st = tmp_path / "bad.safetensors"
    hdr = b'{"diffusion_module.layernorm_a.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}}'
    bad_st.write_bytes(len(hdr).to_bytes(8, "little") + hdr + b"\0" * 10)
    load_error(str(bad_st))
    # a valid archive without any diffusion-module tensor
    other = str(tmp_path / "other.pt")
    torch.save({"model": {"encoder.weight": torch.zeros(3, 3)}}, other)
    load_error(other)


def test_error_messages_are_clear(tmp_path):
    rnd = tmp_path / "garbage.bin"
    rnd.write_bytes(b"\x01\x02garbage" * 100)
    msg = load_error(str(rnd))
    assert "garbage.bin" in msg, f"the message should name the file: {msg!r}"
    msg = load_error(str(tmp_path / "nope.pt"))
    assert "nope.pt" in msg


# ------------------------------------------------------- dims from weights ---
def test_other_block_and_head_counts(tmp_path):
    """3 token blocks, 2 token heads; 3 encoder / 1 decoder atom blocks with 2 heads:
    all read off the weights."""
    dims = dict(SMALL, n_blocks=3, n_heads=2, atom_enc_blocks=3, atom_dec_blocks=1, atom_heads=2)
    sd = pxfixtures.random_state_dict(dims, seed=9)
    path = str(tmp_path / "other.pt")
    pxfixtures.save_released_layout(path, sd)
    dm = pxdiff.DiffusionModule.from_checkpoint(path)
    d = dims_of(dm)
    assert (d["n_token_blocks"], d["n_token_heads"]) == (3, 2)
    assert (d["n_enc_blocks"], d["n_enc_heads"], d["n_dec_blocks"], d["n_dec_heads"]) == (3, 2, 1, 2)
    inp = pxfixtures.random_features_for(dims, n_token=11, seed=61)
    N = inp.feats["atom_to_token_idx"].shape[0]
    x = pxfixtures.random_coords(3, N, seed=62)
    t = torch.tensor([0.3, 3.0, 300.0])
    out = dm(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    ref = reference64(sd, (sd, inp, x, t), dims)
    assert_close(out, ref, "3 blocks / 2 heads model")
