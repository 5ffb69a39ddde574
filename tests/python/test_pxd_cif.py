"""PXDesign's output mmCIF (px_pxd_write_cif, src/io/structure.c) read back by two independent
mmCIF readers, gemmi and biotite: every atom with its names, numbers and exact float32
coordinates, the entities, the sequence loop and the struct_conn bonds.

tests/test_pxd_cif.c checks the same writer byte for byte against upstream's own files
(tests/data/output/*.cif); this checks that what it writes is valid mmCIF that other
programs read as meant, on the same inputs (tests/data/output/*.atoms.tsv)."""
import ctypes
import os

import numpy as np
import pytest

gemmi = pytest.importorskip("gemmi")
pdbx = pytest.importorskip("biotite.structure.io.pdbx")

from pxdiff._lib import lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "output")
CASES = [("pdl1_quick_start", "PDL1_quick_start", 0), ("small", "small", 3), ("one_bond", "one_bond", 1),
         ("two_chains", "two_chains", 0)]

_cpp = ctypes.POINTER(ctypes.c_char_p)


class Bond(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int), ("b", ctypes.c_int), ("order", ctypes.c_int)]


class PxdStructure(ctypes.Structure):
    _fields_ = [("n_atom", ctypes.c_int), ("xyz", ctypes.POINTER(ctypes.c_float)),
                ("atom_name", _cpp), ("element", _cpp), ("res_name", _cpp), ("chain_id", _cpp),
                ("strand_id", _cpp), ("entity_id", _cpp), ("res_id", ctypes.POINTER(ctypes.c_int)),
                ("hetero", ctypes.POINTER(ctypes.c_ubyte)), ("n_bond", ctypes.c_int),
                ("bond", ctypes.POINTER(Bond))]


lib.px_pxd_write_cif.argtypes = [ctypes.c_char_p, ctypes.POINTER(PxdStructure), ctypes.c_char_p, ctypes.c_int]
lib.px_pxd_write_cif.restype = ctypes.c_int


def load(name):
    atoms, bonds = [], []
    with open(os.path.join(DATA, name + ".atoms.tsv")) as f:
        for line in f:
            if line.startswith("#"):
                continue
            p = line.split()
            if p[0] == "bond":
                bonds.append((int(p[1]), int(p[2])))
            else:
                atoms.append(p)
    xyz = np.array([[float.fromhex(v) for v in a[8:11]] for a in atoms], dtype=np.float32)
    return atoms, bonds, xyz


def strs(values):
    arr = (ctypes.c_char_p * len(values))(*[v.encode() for v in values])
    return ctypes.cast(arr, _cpp), arr


def write(tmp_path, name, task, sample):
    atoms, bonds, xyz = load(name)
    keep = []
    cols = {}
    for key, col in (("atom_name", 0), ("element", 1), ("res_name", 2), ("chain_id", 3), ("strand_id", 4),
                     ("entity_id", 5)):
        p, arr = strs([a[col] for a in atoms])
        cols[key] = p
        keep.append(arr)
    res_id = (ctypes.c_int * len(atoms))(*[int(a[6]) for a in atoms])
    het = (ctypes.c_ubyte * len(atoms))(*[int(a[7]) for a in atoms])
    flat = np.ascontiguousarray(xyz.reshape(-1))
    bond_arr = (Bond * max(1, len(bonds)))(*[Bond(a, b, 0) for a, b in bonds])
    s = PxdStructure(len(atoms), flat.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), cols["atom_name"],
                     cols["element"], cols["res_name"], cols["chain_id"], cols["strand_id"], cols["entity_id"],
                     res_id, het, len(bonds), bond_arr)
    path = tmp_path / f"{task}_sample_{sample}.cif"
    assert lib.px_pxd_write_cif(str(path).encode(), ctypes.byref(s), task.encode(), sample) == 0
    return path, atoms, bonds, xyz


@pytest.mark.parametrize("name,task,sample", CASES)
def test_gemmi_reads_it(tmp_path, name, task, sample):
    path, atoms, bonds, xyz = write(tmp_path, name, task, sample)
    doc = gemmi.cif.read(str(path))
    block = doc.sole_block()
    assert block.name == f"{task}_sample_{sample}_predicted_by_protenix"
    assert block.find_value("_entry.id") == task
    site = block.find("_atom_site.", ["label_atom_id", "label_comp_id", "label_asym_id", "label_seq_id",
                                      "label_entity_id", "type_symbol", "Cartn_x", "Cartn_y", "Cartn_z", "id"])
    assert len(site) == len(atoms)
    for k, row in enumerate(site):
        a = atoms[k]
        assert gemmi.cif.as_string(row[0]) == a[0] and row[1] == a[2] and row[2] == a[3]
        assert int(row[3]) == int(a[6]) and row[4] == a[5] and row[5] == a[1] and int(row[9]) == k + 1
        # the printed decimal reads back to the exact float32 input
        got = np.array([float(row[6]), float(row[7]), float(row[8])], dtype=np.float32)
        assert np.array_equal(got.view(np.uint32), xyz[k].view(np.uint32))
    st = gemmi.read_structure(str(path))
    assert sum(1 for _ in st[0].all()) == len(atoms)
    assert [ch.name for ch in st[0]] == list(dict.fromkeys(a[3] for a in atoms))
    # struct_conn: the extra bonds are there, as rows naming their atoms
    conn = block.find("_struct_conn.", ["ptnr1_label_seq_id", "ptnr1_label_atom_id", "ptnr2_label_seq_id",
                                        "ptnr2_label_atom_id", "pdbx_value_order"])
    rows = {(int(r[0]), r[1], int(r[2]), r[3]) for r in conn}
    for a, b in bonds:
        assert (int(atoms[a][6]), atoms[a][0], int(atoms[b][6]), atoms[b][0]) in rows


@pytest.mark.parametrize("name,task,sample", CASES)
def test_biotite_reads_it(tmp_path, name, task, sample):
    path, atoms, bonds, xyz = write(tmp_path, name, task, sample)
    f = pdbx.CIFFile.read(str(path))
    arr = pdbx.get_structure(f, model=1, extra_fields=["label_entity_id"], include_bonds=True)
    assert len(arr) == len(atoms)
    assert list(arr.atom_name) == [a[0] for a in atoms]
    assert list(arr.res_name) == [a[2] for a in atoms]
    assert list(arr.chain_id) == [a[3] for a in atoms]
    assert arr.res_id.tolist() == [int(a[6]) for a in atoms]
    assert np.array_equal(arr.coord.astype(np.float32).view(np.uint32), xyz.view(np.uint32))
    # the inter-residue bonds biotite reads back: our extra bonds among them
    got = {tuple(sorted(b[:2])) for b in arr.bonds.as_array().tolist()}
    for a, b in bonds:
        assert tuple(sorted((a, b))) in got
    # entity_poly_seq lists each entity's residues in order
    seq = f.block["entity_poly_seq"]
    ents = seq["entity_id"].as_array().tolist()
    nums = seq["num"].as_array(int).tolist()
    for e in dict.fromkeys(ents):
        want = [int(a[6]) for a in atoms if a[5] == e and a[0] == "CA"]
        assert [n for en, n in zip(ents, nums) if en == e] == want


@pytest.mark.parametrize("name,task,sample", CASES)
def test_same_bytes_as_upstream(tmp_path, name, task, sample):
    path, *_ = write(tmp_path, name, task, sample)
    with open(os.path.join(DATA, name + ".cif"), "rb") as f:
        assert path.read_bytes() == f.read()
