"""Writes tests/data/structures/<name>.expected: the atoms, entity sequences and (PDB input)
task-id mappings that upstream's own code produces for each test structure here.

Run with the upstream harness python (Protenix v0.5.0+pxd and PXDesign sources on
FULLPORT/src, biotite 1.0.1), from the repository root:
    FULLPORT=third_party/fullport third_party/fullport/venv/bin/python \
        tests/data/structures/make_expected.py tests/data/structures/*.cif tests/data/structures/*.pdb
It imports upstream's functions (DistillationMMCIFParser's steps of get_structure_dict,
pdb_to_cif, build_chain_mapping, build_residue_maps); none of their code lives here.

Format, one record per line, blank-separated:
    atom LABEL_ASYM AUTH_ASYM ATOM_NAME RES_NAME ELEMENT RES_ID AUTH_SEQ X Y Z
    entity ID TYPE N MON_ID...            (polymer entities; TYPE from _entity_poly)
    chain AUTH NEW | chain AUTH error      (PDB: build_chain_mapping with that chain kept)
    residue AUTH NUM NEW_CHAIN NEW_NUM     (PDB: build_residue_maps' auth -> new)
    residues error                         (PDB: build_residue_maps refuses the file)
    error MESSAGE                          (upstream refuses the file)
Coordinates are float32 written with numpy's shortest round-trip form.
"""
import os
import sys
import tempfile

FP = os.environ.get("FULLPORT", os.path.abspath("third_party/fullport"))
os.environ.setdefault("PROTENIX_DATA_ROOT_DIR", os.path.join(FP, "ccd"))
sys.path.insert(0, os.path.join(FP, "src"))

import numpy as np  # noqa: E402
from protenix.data.filter import Filter  # noqa: E402
from protenix.data.parser import DistillationMMCIFParser  # noqa: E402
from pxdesign.data.utils import pdb_to_cif  # noqa: E402
from pxdesign.utils.infer import build_chain_mapping, build_residue_maps  # noqa: E402


def cif_records(path):
    """The steps of DistillationMMCIFParser.get_structure_dict up to the filters."""
    p = DistillationMMCIFParser(path)
    aa = p.get_structure()
    aa = p.mse_to_met(aa)
    seqs = p.get_poly_res_names(aa)
    aa = p.fix_arginine(aa)
    aa = Filter.remove_water(aa)
    aa = Filter.remove_hydrogens(aa)
    out = []
    for i in range(len(aa)):
        x, y, z = (repr(float(np.float32(c))) for c in aa.coord[i])
        out.append(
            f"atom {aa.label_asym_id[i]} {aa.auth_asym_id[i]} {aa.atom_name[i]} {aa.res_name[i]} "
            f"{aa.element[i]} {aa.res_id[i]} {aa.auth_seq_id[i]} {x} {y} {z}"
        )
    types = p.entity_poly_type
    for eid, names in seqs.items():
        out.append(f"entity {eid} {types[eid]} {len(names)} " + " ".join(str(n) for n in names))
    return out


def pdb_records(path):
    out = []
    with tempfile.TemporaryDirectory() as d:
        cif = os.path.join(d, "converted.cif")
        aa = pdb_to_cif(path, cif)
        for auth in dict.fromkeys(aa.auth_asym_id.tolist()):
            try:
                m = build_chain_mapping(aa.auth_asym_id, aa.chain_id, keep_chains=[auth])
                out.append(f"chain {auth or '-'} {m[auth]}")
            except ValueError:
                out.append(f"chain {auth or '-'} error")
        try:
            maps = build_residue_maps(aa)
            for (ac, ar), (nc, nr) in maps.auth2resid.items():
                out.append(f"residue {ac or '-'} {ar} {nc} {nr}")
        except ValueError:
            out.append("residues error")
        out += cif_records(cif)
    return out


def main():
    for path in sys.argv[1:]:
        try:
            recs = pdb_records(path) if path.endswith(".pdb") else cif_records(path)
        except Exception as e:  # upstream refuses the file: record that it does
            recs = ["error " + type(e).__name__ + ": " + str(e).splitlines()[0]]
        with open(os.path.splitext(path)[0] + ".expected", "w") as f:
            f.write("\n".join(recs) + "\n")
        print(path, len(recs), "records")


if __name__ == "__main__":
    main()
