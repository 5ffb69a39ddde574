"""Expected output mmCIF files for tests/test_pxd_cif.c, written by upstream's own DataDumper.

For each case: a run directory of the upstream harness's featurize.py (atom_array.pkl,
features.pt) gets deterministic coordinates (normal * 15 as float32, plus a few values
that exercise numpy's float32 formatting: 0, -0, 1e-05, 12345.678, -0.00012345), and
pxdesign.runner.dumper.DataDumper writes <task>_sample_<i>.cif exactly as `pxdesign infer`
does. Written to tests/data/output/:
  <name>.cif        the expected file (upstream's bytes)
  <name>.atoms.tsv  the writer's inputs: per atom name, element, residue, chain id, strand
                    (label_asym_id), entity, residue number, hetero flag and x y z as
                    float32 hex (exact); then "bond a b" lines: the inter-residue bonds of
                    type ANY (the input's _struct_conn bonds; the peptide bonds, type
                    SINGLE, are the writer's own to produce).
Development-time only (needs third_party/fullport), from the repository root:
  FULLPORT=third_party/fullport third_party/fullport/venv/bin/python \\
      tests/ref/make_output_fixtures.py NAME RUN_DIR TASK_NAME SAMPLE"""
import os, sys, pickle, shutil, tempfile

FP = os.environ.get("FULLPORT", os.path.abspath("third_party/fullport"))
os.environ.setdefault("PROTENIX_DATA_ROOT_DIR", os.path.join(FP, "ccd"))
sys.path.insert(0, os.path.join(FP, "src"))
import numpy as np  # noqa: E402
import torch  # noqa: E402
import biotite.structure as struc  # noqa: E402
from pxdesign.runner.dumper import DataDumper  # noqa: E402

name, run, task, sample = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
aa = pickle.load(open(os.path.join(run, "atom_array.pkl"), "rb"))
ept = torch.load(os.path.join(run, "features.pt"))["entity_poly_type"]
n = len(aa)
rng = np.random.default_rng(1234 + sample)
x = (rng.standard_normal((n, 3)) * 15).astype(np.float32)
x[0, 0], x[1, 1], x[2, 2], x[3, 0], x[4, 1] = 0.0, -0.0, 1e-05, 12345.678, -0.00012345
coords = np.zeros((sample + 1, n, 3), dtype=np.float32)
coords[sample] = x
tmp = tempfile.mkdtemp()
try:
    DataDumper(base_dir=tmp).dump("", task, 42, pred_dict={"coordinate": torch.from_numpy(coords)},
                                  atom_array=aa, entity_poly_type=ept)
    src = os.path.join(tmp, task, "seed_42", "predictions", f"{task}_sample_{sample}.cif")
    shutil.copyfile(src, f"tests/data/output/{name}.cif")
finally:
    shutil.rmtree(tmp)

b = aa.bonds.as_array()
rs = struc.get_residue_starts_for(aa, b[:, :2].flatten()).reshape(-1, 2)
extra = [(int(i), int(j)) for (i, j, t) in b[rs[:, 0] != rs[:, 1]] if t == 0]
with open(f"tests/data/output/{name}.atoms.tsv", "w") as f:
    f.write(f"# {name}: {n} atoms, task {task}, sample {sample}; made by tests/ref/make_output_fixtures.py\n")
    for k in range(n):
        xyz = " ".join(float(v).hex() for v in x[k])
        f.write(f"{aa.atom_name[k]}\t{aa.element[k]}\t{aa.res_name[k]}\t{aa.chain_id[k]}\t{aa.label_asym_id[k]}\t"
                f"{aa.label_entity_id[k]}\t{int(aa.res_id[k])}\t{int(aa.hetero[k])}\t{xyz}\n")
    for i, j in extra:
        f.write(f"bond\t{i}\t{j}\n")
print(name, n, "atoms", len(extra), "extra bonds")
