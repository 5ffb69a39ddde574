"""The two-chain target behind tests/data/output/two_chains.* (development-time only).

PD-L1 chain A of 5o45 (reference data, not in the repository) copied as a second chain E,
moved 40 A along x, with its own copy of the Cys24-Cys98 disulfide; ligands and waters
dropped. Protenix's parser wants _struct_conn.pdbx_value_order, which gemmi does not write:
it is added as '?'. usage (gemmi):  python make_two_chain_cif.py 5o45.cif two.cif
Then, with the upstream harness, from the directory holding two.cif and a task
  {task_name: two_chains, binder_length: 5,
   target: {file: two.cif, chains: {E: {crop: ["90-100", "20-26"], hotspots: [24, 98]},
                                    A: {crop: "15-28"}}}}
run featurize.py and tests/ref/make_output_fixtures.py two_chains RUN_DIR two_chains 0."""
import sys

import gemmi

st = gemmi.read_structure(sys.argv[1])
st.remove_ligands_and_waters()
m = st[0]
e = m["A"].clone()
e.name = "E"
for r in e:
    r.subchain = "E"
    for at in r:
        at.pos = gemmi.Position(at.pos.x + 40, at.pos.y, at.pos.z)
m.add_chain(e)
for c in list(st.connections):
    if c.type == gemmi.ConnectionType.Disulf:
        c2 = gemmi.Connection()
        c2.name, c2.type, c2.asu = "disulf2", c.type, c.asu
        c2.partner1, c2.partner2 = c.partner1, c.partner2
        c2.partner1.chain_name = c2.partner2.chain_name = "E"
        st.connections.append(c2)
st.setup_entities()
doc = st.make_mmcif_document()
b = doc.sole_block()
cat = b.get_mmcif_category("_struct_conn.")
cat["pdbx_value_order"] = [None] * len(cat["id"])
b.set_mmcif_category("_struct_conn.", cat)
doc.write_file(sys.argv[2])
