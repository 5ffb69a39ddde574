"""Feature bundles (docs/bundle.md): pxdiff.bundle.write -> read round trips exactly,
bundle features denoise exactly like the same features passed directly, annotations,
refusals with one-line messages, `pxdiff bundle-info` on good and bad files, and a
cross-check against the independent `safetensors` package (in a venv, when available)."""
import json
import os
import struct
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import pxdiff
import pxdiff.bundle as bundle
import pxfixtures
from conftest import ROOT

TOKEN_KEYS = ("asym_id", "residue_index", "entity_id", "token_index", "sym_id")


def _inputs(dims, **kw):
    kw.setdefault("n_token", 14)
    kw.setdefault("atoms_per_token", (4, 0, 7, 2, 11))
    return pxfixtures.random_features_for(dims, **kw)


def _cli():
    lib = os.environ.get("PXDIFF_LIB")
    for cand in ([os.path.join(os.path.dirname(lib), "pxdiff")] if lib else []) + [
            os.path.join(ROOT, "build", "pxdiff")]:
        if os.path.exists(cand):
            return cand
    pytest.skip("pxdiff CLI not built")


def _assert_features_equal(inp, r):
    f = r["input_feature_dict"]
    for k, v in inp.feats.items():
        w = f[k]
        assert w.dtype == (torch.float32 if v.is_floating_point() else torch.int64), k
        assert torch.equal(v.reshape(w.shape).to(w.dtype), w), k
    for k in ("s_inputs", "s_trunk", "z_trunk"):
        assert torch.equal(getattr(inp, k).float(), r[k]), k


def test_roundtrip_exact(tmp_path):
    inp = _inputs(pxfixtures.SMALL_DIMS, s_trunk_zero=False, seed=3)
    p = tmp_path / "a.bundle"
    bundle.write(p, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk, name="demo", source="test")
    r = bundle.read(p)
    _assert_features_equal(inp, r)
    assert r["metadata"] == {"format": "pxdiff-bundle", "version": "1", "name": "demo",
                             "source": "test"}
    assert r["annotations"]["stored"] == []
    assert [f for f in os.listdir(tmp_path)] == ["a.bundle"]  # no temp files left


def test_roundtrip_pxdesign_shapes(tmp_path):
    """Leading batch dims, [N, 4, 64] integer one-hots, bfloat16 s_inputs, s_trunk=None."""
    inp = _inputs(pxfixtures.SMALL_DIMS, seed=4)
    N = inp.feats["atom_to_token_idx"].shape[0]
    feats = {k: v[None] for k, v in inp.feats.items()}
    feats["ref_atom_name_chars"] = inp.feats["ref_atom_name_chars"].reshape(1, N, 4, 64).long()
    feats["ref_element"] = inp.feats["ref_element"].to(torch.int32)[None]
    feats["restype"] = torch.zeros(1, 14, 32)  # extra keys are ignored
    s_bf16 = inp.s_inputs.to(torch.bfloat16)[None]
    p = tmp_path / "b.bundle"
    bundle.write(p, feats, s_bf16, None, inp.z_trunk[None])
    r = bundle.read(p)
    assert r["s_trunk"] is None
    assert torch.equal(r["s_inputs"], s_bf16[0].float())
    assert torch.equal(r["input_feature_dict"]["ref_atom_name_chars"], inp.feats["ref_atom_name_chars"])
    assert torch.equal(r["input_feature_dict"]["ref_element"], inp.feats["ref_element"])
    # bf16 stays bf16 on disk (half the bytes); one-hots are stored as indices
    with open(p, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
    assert h["s_inputs"]["dtype"] == "BF16"
    assert "ref_element_index" in h and "ref_element" not in h
    assert h["ref_atom_name_chars_index"]["shape"] == [N, 4]


def _atom_array(inp):
    a2t = inp.feats["atom_to_token_idx"].numpy()
    asym = inp.feats["asym_id"].numpy()
    N = a2t.shape[0]
    names = ["N", "CA", "C", "O", "CB", "CG", "CD"]
    elements = ["N", "C", "C", "O", "C", "C", "C"]
    pos = np.zeros(N, dtype=int)
    for n in range(1, N):
        pos[n] = pos[n - 1] + 1 if a2t[n] == a2t[n - 1] else 0
    arr = types.SimpleNamespace(
        res_name=np.array(["GLY" if t % 2 else "ALA" for t in a2t]),
        chain_id=np.array(["ABCD"[asym[t]] for t in a2t]),
        res_id=np.array([t + 100 for t in a2t]),
        atom_name=np.array([names[k % 7] for k in pos]),
        element=np.array([elements[k % 7].lower() for k in pos]))
    return arr


def test_annotations(tmp_path):
    inp = _inputs(pxfixtures.SMALL_DIMS, seed=5)
    arr = _atom_array(inp)
    T = inp.s_inputs.shape[0]
    designed = torch.arange(T) >= 10
    p = tmp_path / "c.bundle"
    bundle.write(p, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk, atom_array=arr,
                 designed_mask=designed)
    a = bundle.read(p)["annotations"]
    assert sorted(a["stored"]) == sorted(bundle._ANNOTATIONS)
    a2t = inp.feats["atom_to_token_idx"]
    has = [bool((a2t == t).any()) for t in range(T)]
    for t in range(T):
        if has[t]:
            assert a["res_name"][t] == ("GLY" if t % 2 else "ALA")
            assert a["res_num"][t].item() == t + 100
        else:  # a token without atoms
            assert a["res_name"][t] == "UNK"
            assert a["res_num"][t].item() == inp.feats["residue_index"][t].item()
        assert a["chain_id"][t] in "ABC"
    assert torch.equal(a["is_designed"], designed)
    assert a["atom_name"][:4] == ["N", "CA", "C", "O"]
    assert a["element"][:4] == ["N", "C", "C", "O"]  # upper-cased


def test_annotation_defaults(tmp_path):
    inp = _inputs(pxfixtures.SMALL_DIMS, n_chains=3, seed=6)
    p = tmp_path / "d.bundle"
    bundle.write(p, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    a = bundle.read(p)["annotations"]
    labels = {0: "A", 1: "B", 2: "C"}
    assert a["chain_id"] == [labels[int(x)] for x in inp.feats["asym_id"]]
    assert a["res_name"] == ["UNK"] * inp.s_inputs.shape[0]
    assert torch.equal(a["res_num"], inp.feats["residue_index"])
    assert not a["is_designed"].any()
    el = inp.feats["ref_element"].argmax(-1)
    symbols = {5: "C", 6: "N", 7: "O", 15: "S"}
    assert a["element"] == [symbols[int(e)] for e in el]
    assert all(1 <= len(s) <= 16 and " " not in s for s in a["atom_name"])


def test_bundle_denoise_equals_direct(small, tmp_path):
    inp = small.inputs(n_token=12, atoms_per_token=(5, 9, 0, 3), seed=7)
    p = tmp_path / "e.bundle"
    bundle.write(p, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    r = bundle.read(p)
    N = inp.feats["atom_to_token_idx"].shape[0]
    x = pxfixtures.random_coords(3, N, seed=2)
    t = torch.tensor([0.5, 7.0, 160.0])
    direct = small.dm(x, t, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    via = small.dm(x, t, r["input_feature_dict"], r["s_inputs"], r["s_trunk"], r["z_trunk"])
    assert torch.equal(direct, via)


@pytest.mark.parametrize("case", ["nan", "inf", "onehot", "order", "range", "atoms", "chars"])
def test_write_refuses(tmp_path, case):
    inp = _inputs(pxfixtures.SMALL_DIMS, seed=8)
    f = dict(inp.feats)
    s_inputs, z = inp.s_inputs.clone(), inp.z_trunk.clone()
    want = {"nan": "'s_inputs' holds NaN", "inf": "'z_trunk' holds Inf",
            "onehot": "ref_element row 3 is not one-hot", "order": "not ascending",
            "range": "is out of range", "atoms": "atom_array has",
            "chars": "ref_atom_name_chars has shape"}[case]
    arr = None
    if case == "nan":
        s_inputs[2, 3] = float("nan")
    elif case == "inf":
        z[1, 2, 0] = float("inf")
    elif case == "onehot":
        f["ref_element"] = f["ref_element"].clone()
        f["ref_element"][3, 0] = 0.5
    elif case == "order":
        f["atom_to_token_idx"] = f["atom_to_token_idx"].flip(0)
    elif case == "range":
        f["atom_to_token_idx"] = f["atom_to_token_idx"] + 1
    elif case == "atoms":
        arr = types.SimpleNamespace(atom_name=np.array(["CA"] * 3))
    elif case == "chars":
        f["ref_atom_name_chars"] = f["ref_atom_name_chars"][:, :200]
    p = tmp_path / "bad.bundle"
    with pytest.raises(pxdiff.PxdiffError) as e:
        bundle.write(p, f, s_inputs, inp.s_trunk, z, atom_array=arr)
    msg = str(e.value)
    assert want in msg and "\n" not in msg and ".tmp-" not in msg, msg
    assert os.listdir(tmp_path) == []


def _run_cli(*args):
    r = subprocess.run([_cli(), *map(str, args)], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def test_cli_good(small, tmp_path):
    inp = small.inputs(n_token=9, atoms_per_token=(3, 5), n_chains=2, seed=9)
    p = tmp_path / "g.bundle"
    T = inp.s_inputs.shape[0]
    bundle.write(p, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk,
                 designed_mask=torch.arange(T) >= 5, name="good one")
    rc, out, err = _run_cli("bundle-info", p)
    assert rc == 0 and err == "", err
    assert "tokens: 9 (4 designed, 5 condition)" in out
    assert "chains: 2" in out and "name: good one" in out
    assert f"c_s_inputs {pxfixtures.SMALL_DIMS['c_s_inputs']}" in out
    # widths against a checkpoint: the small model agrees, the released-width file does not
    ck = tmp_path / "small.pt"
    pxfixtures.save_released_layout(str(ck), small.m32.state_dict(), extra=False,
                                    training_state=False)
    rc, out, err = _run_cli("bundle-info", p, "--checkpoint", ck)
    assert rc == 0 and "widths agree" in out, err
    big = _inputs(pxfixtures.DEFAULT_DIMS, n_token=3, atoms_per_token=2)
    pb = tmp_path / "big.bundle"
    bundle.write(pb, big.feats, big.s_inputs, big.s_trunk, big.z_trunk)
    rc, out, err = _run_cli("bundle-info", pb, "--checkpoint", ck)
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"pxdiff: {pb}: s_inputs has width 449"), err


def _bad_files(tmp_path, good):
    data = open(good, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    h = json.loads(data[8:8 + n])
    files = {}

    def put(name, b):
        q = tmp_path / name
        q.write_bytes(b)
        files[name] = q

    put("empty", b"")
    put("text", b"just some text, not a bundle\n" * 3)
    put("truncated_header", data[:8 + n // 2])
    put("truncated_data", data[:-5])
    put("absurd_length", struct.pack("<Q", 1 << 60) + data[8:])
    z = bytearray(data)
    o = 8 + n + h["s_inputs"]["data_offsets"][0]
    z[o:o + 4] = struct.pack("<f", float("nan"))
    put("nan", bytes(z))
    hh = dict(h)
    hh.pop("__metadata__")
    hb = json.dumps(hh).encode()
    hb += b" " * (-len(hb) % 8)
    body = data[8 + n:]
    put("foreign", struct.pack("<Q", len(hb)) + hb + body)
    hh = json.loads(json.dumps(h))
    hh["z_trunk"]["data_offsets"] = [0, hh["z_trunk"]["data_offsets"][1] - hh["z_trunk"]["data_offsets"][0]]
    hh["s_inputs"]["data_offsets"] = [0, hh["s_inputs"]["data_offsets"][1] - hh["s_inputs"]["data_offsets"][0]]
    hb = json.dumps(hh).encode()
    put("overlap", struct.pack("<Q", len(hb)) + hb + body)
    put("pt_zip", b"PK\x03\x04" + b"\0" * 60)
    files["missing"] = tmp_path / "no-such-file.bundle"
    files["directory"] = tmp_path
    return files


def test_cli_bad_files(tmp_path):
    inp = _inputs(pxfixtures.SMALL_DIMS, n_token=6, seed=10)
    good = tmp_path / "good.bundle"
    bundle.write(good, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    for name, q in _bad_files(tmp_path, good).items():
        rc, out, err = _run_cli("bundle-info", q)
        assert rc == 1, (name, rc, err)
        assert out == "", name
        assert err.count("\n") == 1 and err.startswith(f"pxdiff: {q}"), (name, err)
        assert "Traceback" not in err and "Sanitizer" not in err, name
        with pytest.raises(pxdiff.PxdiffError) as e:  # the Python reader says the same
            bundle.read(q)
        assert "\n" not in str(e.value) and str(e.value) == err[len("pxdiff: "):-1], name
    rc, out, err = _run_cli("bundle-info")
    assert rc == 2 and "usage" in err
    rc, out, err = _run_cli("bundle-info", good, "--frobnicate")
    assert rc == 2 and err.count("\n") == 1


def _venv_python():
    for cand in (os.environ.get("PXDIFF_SAFETENSORS_PYTHON"), "/tmp/venv_bundle/bin/python",
                 "/tmp/venv/bin/python"):
        if cand and os.path.exists(cand):
            r = subprocess.run([cand, "-c", "import safetensors.numpy"], capture_output=True)
            if r.returncode == 0:
                return cand
    pytest.skip("no python with the safetensors package (set PXDIFF_SAFETENSORS_PYTHON)")


_CROSS = r"""
import sys, numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
src, npz, back = sys.argv[1:4]
with safe_open(src, framework="np") as f:
    meta = f.metadata()
    arrays = {k: f.get_tensor(k) for k in f.keys() if f.get_slice(k).get_dtype() != "BF16"}
np.savez(npz, __meta__=np.array(repr(sorted(meta.items()))), **arrays)
save_file(arrays, back, metadata=meta)  # the independent writer, read back by pxdiff
"""


def test_safetensors_crosscheck(tmp_path):
    py = _venv_python()
    inp = _inputs(pxfixtures.SMALL_DIMS, seed=11)
    arr = _atom_array(inp)
    p = tmp_path / "x.bundle"
    bundle.write(p, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk, atom_array=arr,
                 designed_mask=torch.arange(inp.s_inputs.shape[0]) < 3, name="x")
    npz, back = tmp_path / "x.npz", tmp_path / "back.bundle"
    r = subprocess.run([py, "-c", _CROSS, str(p), str(npz), str(back)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    z = np.load(npz)
    assert str(z["__meta__"]) == repr(sorted({"format": "pxdiff-bundle", "version": "1",
                                                "name": "x"}.items()))
    ours = bundle.read(p, as_numpy=True)
    f = ours["input_feature_dict"]
    for k in ("ref_pos", "ref_charge", "ref_space_uid", "atom_to_token_idx") + TOKEN_KEYS:
        assert np.array_equal(z[k], f[k]), k
    for k in ("s_inputs", "s_trunk", "z_trunk"):
        assert np.array_equal(z[k], ours[k]), k
    assert np.array_equal(np.eye(128, dtype=np.float32)[z["ref_element_index"]], f["ref_element"])
    assert z["token_res_name"].dtype == np.uint8 and z["atom_element"].shape[1] == 2
    assert np.array_equal(z["token_is_designed"].astype(bool), ours["annotations"]["is_designed"])
    again = bundle.read(back, as_numpy=True)
    for k, v in f.items():
        assert np.array_equal(v, again["input_feature_dict"][k]), k
    assert again["annotations"]["atom_name"] == ours["annotations"]["atom_name"]
