"""Reference features for tests/test_featurize.c, made by upstream PXDesign's own featurizer.

Dev time only: it runs upstream PXDesign + Protenix from the git-ignored harness in
third_party/fullport (sources, venv, a CCD cache whose conformers are the CCD ideal
coordinates, i.e. pxdiff's built-in conformer table). From the repository root:

    build/venv-test/bin/python tests/ref/make_feature_fixtures.py            # every case
    build/venv-test/bin/python tests/ref/make_feature_fixtures.py qs multi   # some cases

1. writes the modified targets tests/data/featurize/5o45_edit.cif, 5o45_multi.cif and
   5o45_AB.pdb from tests/data/structures/5o45.cif (edits listed in make_structures below);
2. for each case tests/data/featurize/<case>.yaml runs upstream's YAML -> features path
   (pxdesign.utils.inputs.process_input_file, pxdesign.utils.infer.convert_to_bioassembly_dict,
   pxdesign.data.infer_data_pipeline.InferenceDataset) with the per-residue ref_pos augmentation
   off (as the harness's NO_AUG=1), in a child process on third_party/fullport/venv/bin/python
   with this file's --upstream mode;
3. writes tests/data/featurize/<case>.safetensors: integer features as small ints (one-hot
   features as the index of their one, checked to be one-hot here), ref_pos float32, the
   atom annotations the output writer needs, and the bonds between residues of upstream's
   atom array (inter_bonds [n, 3]: atom i < atom j, biotite bond type).

The YAML files name their structure relative to the repository root (upstream resolves a
relative path against the current directory; so does pxdiff).
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "featurize")
FULLPORT = os.environ.get("FULLPORT", os.path.join(ROOT, "third_party", "fullport"))
CASES = ["qs", "whole", "discont", "short", "long", "edit", "multi", "pdb"]


# ---------------------------------------------------------------- upstream (child) ---------

def run_upstream(yaml_path, out_npz):
    """Upstream's input path exactly as pxdesign/runner/inference.py main() runs it, with
    ref_pos augmentation off. Runs under the harness venv (torch 1.13, biotite 1.0.1)."""
    os.environ.setdefault("PROTENIX_DATA_ROOT_DIR", os.path.join(FULLPORT, "ccd"))
    sys.path.insert(0, os.path.join(FULLPORT, "src"))
    import random
    import numpy as np
    import torch
    import protenix.utils.geometry as geo
    import pxdesign.data.featurizer as fz
    from pxdesign.utils.inputs import process_input_file
    from pxdesign.utils.infer import convert_to_bioassembly_dict
    from pxdesign.data.infer_data_pipeline import InferenceDataset

    orig = geo.random_transform
    fz.random_transform = lambda p, apply_augmentation=False, centralize=True, **k: orig(
        p, apply_augmentation=False, centralize=centralize)
    with tempfile.TemporaryDirectory() as out_dir:
        json_path = process_input_file(yaml_path, out_dir=out_dir)
        inputs = json.load(open(json_path))
        for x in inputs:
            convert_to_bioassembly_dict(x, out_dir)
        json_path = os.path.join(out_dir, "input_tasks.json")
        json.dump(inputs, open(json_path, "w"), indent=4)
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)
        data, atom_array, err = InferenceDataset(input_json_path=json_path, use_msa=True)[0]
    if err:
        raise SystemExit(f"upstream failed on {yaml_path}: {err}")
    f = data["input_feature_dict"]
    out = {k: f[k].numpy() for k in [
        "token_index", "residue_index", "asym_id", "entity_id", "sym_id", "restype", "hotspot",
        "conditional_templ", "conditional_templ_mask", "deletion_mean", "ref_pos", "ref_mask",
        "ref_element", "ref_charge", "ref_atom_name_chars", "ref_space_uid", "atom_to_token_idx"]}
    for k in ["atom_name", "element", "res_name", "chain_id", "label_entity_id"]:
        out["annot_" + k] = np.array([str(v) for v in atom_array.get_annotation(k)])
    out["annot_res_id"] = np.asarray(atom_array.res_id)
    out["annot_is_resolved"] = np.asarray(atom_array.is_resolved)
    out["annot_coord_from_cif"] = np.asarray(atom_array.coord_from_cif, dtype=np.float32)
    # Bonds between residues (what biotite writes as _struct_conn): peptide bonds and the
    # input's covalent _struct_conn rows that survived.
    b = atom_array.bonds.as_array()
    inter = [(min(i, j), max(i, j), t) for i, j, t in b
             if atom_array.res_id[i] != atom_array.res_id[j] or atom_array.chain_id[i] != atom_array.chain_id[j]]
    out["inter_bonds"] = np.array(sorted(inter), dtype=np.int64).reshape(-1, 3)
    np.savez(out_npz, **out)


# ---------------------------------------------------------------- structures ---------------

def _category(block, name):
    cat = block.get_mmcif_category(name, raw=True)
    return {k: list(v) for k, v in cat.items()}


def _rows(cat):
    keys = list(cat)
    return keys, [dict(zip(keys, vals)) for vals in zip(*(cat[k] for k in keys))]


def _set_rows(block, name, keys, rows):
    block.set_mmcif_category(name, {k: [r[k] for r in rows] for k in keys}, raw=True)


def make_structures():
    """5o45_edit.cif, chain A (5o45 carries hydrogens and altlocs A/B of its own):
    residues 52-54 removed (missing residues), residue 62 cut to its backbone and CB, residue
    63 without CA, residue 70 with ceil(n/2) of its n heavy atoms renamed (matched <= unmatched:
    the residue counts as unresolved and is dropped), residue 72 with (n-1)/2 renamed (kept,
    those atoms unresolved), an OXT added to residue 80 (not the last: dropped), residue 90's
    side chain in two altlocs A/B, residue 91's CB only in altloc B (dropped: the first
    altloc of the file is A), residue 100 renamed UNK (also in _entity_poly_seq), MET 20 written
    as MSE with SE. Waters and most hydrogens removed to keep it small.

    5o45_multi.cif: chain A plus nine copies C..K (entity 1, label and author chain ids) of
    residues 1-30 of chain A shifted by 2.5 A per copy along x; chain B, waters and hydrogens
    removed."""
    import gemmi
    src = os.path.join(ROOT, "tests", "data", "structures", "5o45.cif")

    doc = gemmi.cif.read(src)
    block = doc.sole_block()
    keys, rows = _rows(_category(block, "_atom_site."))
    # Hydrogens are kept only around the edited residues 60-75 (the reader drops them before
    # the matched/unmatched count), to keep the file small.
    rows = [r for r in rows if r["label_comp_id"] != "HOH" and (r["type_symbol"] != "H" or (
        r["label_asym_id"] == "A" and 60 <= int(r["label_seq_id"]) <= 75))]
    heavy = {}
    for r in rows:
        if r["label_asym_id"] == "A" and r["type_symbol"] != "H":
            heavy.setdefault(int(r["label_seq_id"]), []).append(r)
    for seq in (52, 53, 54, 62, 63, 70, 72, 80, 90, 91, 100, 20):
        if any(r["label_alt_id"] not in (".", "?") for r in heavy[seq]):
            raise SystemExit(f"5o45 A {seq} has altlocs: pick another residue")
    if heavy[20][0]["label_comp_id"] != "MET":
        raise SystemExit("5o45 A 20 is not MET")
    n70, n72 = len(heavy[70]), len(heavy[72])
    ren70 = {r["label_atom_id"] for r in heavy[70][n70 - (n70 + 1) // 2:]}
    ren72 = {r["label_atom_id"] for r in heavy[72][n72 - (n72 - 1) // 2:]}
    out = []
    for r in rows:
        if r["label_asym_id"] != "A":
            out.append(r)
            continue
        seq = int(r["label_seq_id"])
        name = r["label_atom_id"]
        h = r["type_symbol"] == "H"
        if seq in (52, 53, 54):
            continue
        if seq == 62 and name not in ("N", "CA", "C", "O", "CB"):
            continue
        if seq == 63 and name == "CA":
            continue
        if (seq == 70 and name in ren70) or (seq == 72 and name in ren72):
            r = dict(r, label_atom_id="X" + name[:3], auth_atom_id="X" + name[:3])
        if seq == 100:
            r = dict(r, label_comp_id="UNK", auth_comp_id="UNK")
        if seq == 20:
            r = dict(r, label_comp_id="MSE", auth_comp_id="MSE")
            if name == "SD":
                r.update(label_atom_id="SE", auth_atom_id="SE", type_symbol="SE")
        if seq == 90 and not h and name not in ("N", "CA", "C", "O"):
            a = dict(r, label_alt_id="A", occupancy="0.5")
            b = dict(r, label_alt_id="B", occupancy="0.5",
                     Cartn_x="%.3f" % (float(r["Cartn_x"]) + 0.7))
            out += [a, b]
            continue
        if seq == 91 and name == "CB":
            r = dict(r, label_alt_id="B")
        out.append(r)
        if seq == 80 and name == "O":
            out.append(dict(r, label_atom_id="OXT", auth_atom_id="OXT",
                            Cartn_x="%.3f" % (float(r["Cartn_x"]) + 1.2)))
    for i, r in enumerate(out):
        r["id"] = str(i + 1)
    _set_rows(block, "_atom_site.", keys, out)
    pk, prow = _rows(_category(block, "_entity_poly_seq."))
    for r in prow:
        if r["entity_id"] == "1" and r["num"] == "100":
            r["mon_id"] = "UNK"
        if r["entity_id"] == "1" and r["num"] == "20":
            r["mon_id"] = "MSE"
    _set_rows(block, "_entity_poly_seq.", pk, prow)
    doc.write_file(os.path.join(DATA, "5o45_edit.cif"))

    doc = gemmi.cif.read(src)
    block = doc.sole_block()
    keys, rows = _rows(_category(block, "_atom_site."))
    a_rows = [r for r in rows if r["label_asym_id"] == "A" and r["type_symbol"] != "H"]
    out = list(a_rows)
    for k, cid in enumerate("CDEFGHIJK"):
        for r in a_rows:
            if int(r["label_seq_id"]) > 30:
                continue
            out.append(dict(r, label_asym_id=cid, auth_asym_id=cid,
                            Cartn_x="%.3f" % (float(r["Cartn_x"]) + 2.5 * (k + 1))))
    for i, r in enumerate(out):
        r["id"] = str(i + 1)
    _set_rows(block, "_atom_site.", keys, out)
    # The removed chains' categories would name atoms that are gone: keep chain A's rows only.
    sk, srow = _rows(_category(block, "_struct_conn."))
    srow = [r for r in srow if r["ptnr1_label_asym_id"] == "A" and r["ptnr2_label_asym_id"] == "A"]
    _set_rows(block, "_struct_conn.", sk, srow)
    doc.write_file(os.path.join(DATA, "5o45_multi.cif"))

    # 5o45_AB.pdb: chains A and B of 5o45 as a PDB file (author numbering, A starts at 17;
    # B's non-standard residues are HETATM, so the conversion splits B), without waters,
    # hydrogens and ANISOU records. The task names chain A with author numbers.
    st = gemmi.read_structure(src)
    st.remove_hydrogens()
    st.remove_waters()
    st.setup_entities()
    text = st.make_pdb_string(gemmi.PdbWriteOptions(minimal=True))
    with open(os.path.join(DATA, "5o45_AB.pdb"), "w") as f:
        f.write("".join(l for l in text.splitlines(True) if not l.startswith("ANISOU")))


# ---------------------------------------------------------------- fixtures -----------------

def _onehot_index(x, what):
    import numpy as np
    x = np.asarray(x)
    if not (np.all((x == 0) | (x == 1)) and np.all(x.sum(-1) == 1)):
        raise SystemExit(f"{what} is not one-hot")
    return x.argmax(-1)


def _chars(strings, width):
    import numpy as np
    a = np.zeros((len(strings), width), dtype=np.uint8)
    for i, s in enumerate(strings):
        b = s.encode("ascii")
        if len(b) > width:
            raise SystemExit(f"annotation {s!r} longer than {width}")
        a[i, :len(b)] = list(b)
    return a


def make_fixture(case):
    import numpy as np
    from safetensors.numpy import save_file
    yaml_path = os.path.join(DATA, case + ".yaml")
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "f.npz")
        py = os.path.join(FULLPORT, "venv", "bin", "python")
        subprocess.run([py, os.path.abspath(__file__), "--upstream", os.path.relpath(yaml_path, ROOT), npz],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        f = dict(np.load(npz))
    T, N = f["token_index"].shape[0], f["ref_pos"].shape[0]
    assert (f["token_index"] == np.arange(T)).all()
    i8 = lambda x: np.ascontiguousarray(x, dtype=np.int8)
    i16 = lambda x: np.ascontiguousarray(x, dtype=np.int16)
    i32 = lambda x: np.ascontiguousarray(x, dtype=np.int32)
    u8 = lambda x: np.ascontiguousarray(x, dtype=np.uint8)
    for k in ["hotspot", "conditional_templ_mask", "ref_mask", "annot_is_resolved"]:
        assert np.all((f[k] == 0) | (f[k] == 1)), k
    assert np.all(f["deletion_mean"] == 0)
    t = {
        "token_index": i32(f["token_index"]),
        "residue_index": i32(f["residue_index"]),
        "asym_id": i16(f["asym_id"]),
        "entity_id": i16(f["entity_id"]),
        "sym_id": i16(f["sym_id"]),
        "restype_index": i8(_onehot_index(f["restype"], "restype")),
        "hotspot": u8(f["hotspot"]),
        "conditional_templ": i8(f["conditional_templ"]),
        "conditional_templ_mask": u8(f["conditional_templ_mask"]),
        "deletion_mean": np.ascontiguousarray(f["deletion_mean"], dtype=np.float32),
        "ref_pos": np.ascontiguousarray(f["ref_pos"], dtype=np.float32),
        "ref_mask": u8(f["ref_mask"]),
        "ref_element_index": i8(_onehot_index(f["ref_element"], "ref_element")),
        "ref_charge": i8(f["ref_charge"]),
        "ref_atom_name_chars_index": i8(_onehot_index(f["ref_atom_name_chars"], "ref_atom_name_chars")),
        "ref_space_uid": i32(f["ref_space_uid"]),
        "atom_to_token_idx": i32(f["atom_to_token_idx"]),
        "atom_name": _chars(f["annot_atom_name"], 4),
        "element": _chars(f["annot_element"], 2),
        "res_name": _chars(f["annot_res_name"], 4),
        "chain_id": _chars(f["annot_chain_id"], 4),
        "label_entity_id": i16([int(x) for x in f["annot_label_entity_id"]]),
        "res_id": i32(f["annot_res_id"]),
        "is_resolved": u8(f["annot_is_resolved"]),
        "coord_from_cif": np.ascontiguousarray(f["annot_coord_from_cif"], dtype=np.float32),
        "inter_bonds": i32(f["inter_bonds"]),
    }
    assert t["ref_pos"].shape == (N, 3) and t["conditional_templ"].shape == (T, T)
    meta = {"case": case, "task": open(yaml_path).read(),
            "source": "upstream PXDesign featurizer, ref_pos augmentation off (tests/ref/make_feature_fixtures.py)"}
    out = os.path.join(DATA, case + ".safetensors")
    save_file(t, out + ".tmp", metadata=meta)
    os.replace(out + ".tmp", out)
    print(f"{case}: T={T} N={N} -> {os.path.relpath(out, ROOT)} ({os.path.getsize(out)} bytes)")


def main(argv):
    if argv[:1] == ["--upstream"]:
        run_upstream(argv[1], argv[2])
        return
    cases = argv or CASES
    os.makedirs(DATA, exist_ok=True)
    make_structures()
    for c in cases:
        make_fixture(c)


if __name__ == "__main__":
    main(sys.argv[1:])
