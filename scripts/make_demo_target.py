"""Write pxdiff's demo target: PD-L1 (PDB 5O45, chain A, the target of PXDesign's quick start)
as a small mmCIF holding only what `pxdiff design` reads.

    build/venv-test/bin/python scripts/make_demo_target.py 5o45.cif data/demo/pdl1_5o45_A.cif

Kept: the data block, _entry, entity 1 (_entity, _entity_poly, _entity_poly_seq), _struct_asym
row A, _struct_conn rows whose partners are both in chain A, and the _atom_site rows of chain A
(label_asym_id A, protein atoms only: the waters of that author chain have other label_asym_ids).
Residues cropped away by the demo task stay in the file: cropping is the task's job.
Needs gemmi (PyPI)."""
import sys

import gemmi

src, dst = sys.argv[1], sys.argv[2]
doc = gemmi.cif.read(src)
block = doc.sole_block()
out = gemmi.cif.Document()
ob = out.add_new_block(block.name)


def copy_table(prefix, keep=lambda row: True):
    tab = block.find_mmcif_category(prefix)
    if not tab:
        return
    tags = [t[len(prefix):] for t in tab.tags]
    rows = [[row[i] for i in range(len(tags))] for row in tab if keep(row)]
    loop = ob.init_mmcif_loop(prefix, tags)
    for r in rows:
        loop.add_row(r)


ob.set_pair("_entry.id", block.find_value("_entry.id"))
copy_table("_entity.", lambda r: r.str(0) == "1")
copy_table("_entity_poly.", lambda r: r.str(0) == "1")
copy_table("_entity_poly_seq.", lambda r: r.str(0) == "1")
copy_table("_struct_asym.", lambda r: r.str(0) == "A")
conn = block.find_mmcif_category("_struct_conn.")
if conn:
    a1 = conn.find_column("ptnr1_label_asym_id") if False else None
    tags = [t[len("_struct_conn."):] for t in conn.tags]
    i1, i2 = tags.index("ptnr1_label_asym_id"), tags.index("ptnr2_label_asym_id")
    copy_table("_struct_conn.", lambda r: r.str(i1) == "A" and r.str(i2) == "A")
atoms = block.find_mmcif_category("_atom_site.")
tags = [t[len("_atom_site."):] for t in atoms.tags]
ia = tags.index("label_asym_id")
copy_table("_atom_site.", lambda r: r.str(ia) == "A")
out.write_file(dst, gemmi.cif.Style.Pdbx)
print("wrote", dst)
