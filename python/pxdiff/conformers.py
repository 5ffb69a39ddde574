"""Reference-conformer tables for `pxdiff design --conformers FILE` (docs/conformers.md).

    python -m pxdiff.conformers export CCD_CACHE_DIR OUT    # the table PXDesign's CCD cache holds
    python -m pxdiff.conformers etkdg CCD_CACHE_DIR OUT [--seed S]   # fresh RDKit ETKDGv3 conformers
    python -m pxdiff.conformers compare A B                 # per-residue heavy-atom RMSD of two tables

`export` reads PXDesign's RDKit pickle (components.v20240608.cif.rdkit_mol.pkl, or any
*.rdkit_mol.pkl in the directory): for each standard residue, the heavy atoms of
mol.GetConformer(mol.ref_conf_id), named through mol.atom_map: exactly the coordinates
upstream's featurizer puts into ref_pos (protenix/data/ccd.py get_ccd_ref_info). Loading the
pickle needs RDKit; `compare` needs only numpy.

Table format: one line per atom, "RES ATOM x y z", '#' starts a comment. Coordinates are
written with Python's repr (the shortest text that reads back as the same double), so the
float32 that pxdiff reads is the float32 upstream casts the same double to.
"""
import glob
import os
import pickle
import sys

# The residues pxdiff's table covers (the 20 amino acids and UNK; GLY also serves the binder).
RESIDUES = ["ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
            "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL", "UNK"]


def find_pickle(ccd_dir):
    """The RDKit pickle of a CCD cache directory (or the path itself if it is a file)."""
    if os.path.isfile(ccd_dir):
        return ccd_dir
    exact = os.path.join(ccd_dir, "components.v20240608.cif.rdkit_mol.pkl")
    if os.path.exists(exact):
        return exact
    found = sorted(glob.glob(os.path.join(ccd_dir, "*.rdkit_mol.pkl")))
    if len(found) != 1:
        raise SystemExit(f"{ccd_dir}: expected one *.rdkit_mol.pkl, found {len(found)}")
    return found[0]


def _heavy_atoms(mol, conf):
    """[(name, (x, y, z))] of the heavy atoms in the molecule's atom order."""
    name_of = {i: n for n, i in mol.atom_map.items()}
    pos = conf.GetPositions()
    out = []
    for i, atom in enumerate(mol.GetAtoms()):
        if atom.GetAtomicNum() == 1:
            continue
        out.append((name_of[i], tuple(float(v) for v in pos[i])))
    return out


def _write(path, header, table):
    lines = [f"# {h}" for h in header]
    for res, atoms in table:
        for name, (x, y, z) in atoms:
            lines.append(f"{res} {name} {x!r} {y!r} {z!r}")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def export(ccd_dir, out):
    pkl = find_pickle(ccd_dir)
    with open(pkl, "rb") as f:
        mols = pickle.load(f)
    table, missing = [], []
    for res in RESIDUES:
        mol = mols.get(res)
        if mol is None:
            missing.append(res)
            continue
        mask = getattr(mol, "ref_mask", None)
        if mask is not None and not all(bool(m) for m in mask):
            # A masked atom has no conformer position upstream (ref_mask 0); pxdiff's table has
            # none to give it, so such a residue keeps pxdiff's built-in coordinates.
            print(f"{res}: ref_mask has zeros; left out (pxdiff keeps its built-in conformer)", file=sys.stderr)
            missing.append(res)
            continue
        table.append((res, _heavy_atoms(mol, mol.GetConformer(mol.ref_conf_id))))
    header = [f"pxdiff conformer table exported from {os.path.basename(pkl)}",
              "(python -m pxdiff.conformers export): RES ATOM x y z, the heavy atoms of",
              "mol.GetConformer(mol.ref_conf_id) of each standard residue."]
    if missing:
        header.append("Not in the cache (built-in coordinates used): " + " ".join(missing))
    _write(out, header, table)
    return table, missing


def etkdg(ccd_dir, out, seed=0):
    """RDKit ETKDGv3 conformers of the cache's molecules (as Protenix's gen_ccd_cache.py makes
    them, but seeded): a table of the kind PXDesign's released cache holds."""
    from rdkit import Chem
    from rdkit.Chem import AllChem
    pkl = find_pickle(ccd_dir)
    with open(pkl, "rb") as f:
        mols = pickle.load(f)
    table = []
    for res in RESIDUES:
        src = mols[res]
        mol = Chem.Mol(src)
        mol.RemoveAllConformers()
        Chem.SanitizeMol(mol)
        params = AllChem.ETKDGv3()
        params.randomSeed = seed
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise SystemExit(f"{res}: ETKDGv3 embedding failed")
        # Chem.Mol copies keep atom order, so the source's atom_map names the atoms.
        mol.atom_map = src.atom_map
        table.append((res, _heavy_atoms(mol, mol.GetConformer())))
    _write(out, [f"RDKit ETKDGv3 conformers (seed {seed}) of {os.path.basename(pkl)}'s residues",
                 "(python -m pxdiff.conformers etkdg)"], table)
    return table


def read(path):
    """{res: {atom: (x, y, z)}} of a table file."""
    table = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].split()
            if not line:
                continue
            if len(line) != 5:
                raise SystemExit(f"{path}:{lineno}: expected RES ATOM x y z")
            table.setdefault(line[0], {})[line[1]] = tuple(float(v) for v in line[2:])
    return table


def rmsd_superposed(a, b):
    """Heavy-atom RMSD of two coordinate sets after optimal rigid superposition (Kabsch)."""
    import numpy as np
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(0)
    b = b - b.mean(0)
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    # The residual of the superposed sets itself, not |a|^2 + |b|^2 - 2 sum(s): that difference
    # cancels to ~1e-15 for identical shapes and its square root reads as ~5e-8.
    r = (u * np.array([1.0, 1.0, d])) @ vt
    return float(np.sqrt(((a @ r - b) ** 2).sum() / len(a)))


def compare(path_a, path_b, atoms=None):
    """[(res, rmsd_all, rmsd_backbone)] for residues in both tables."""
    ta, tb = read(path_a), read(path_b)
    rows = []
    for res in RESIDUES:
        if res not in ta or res not in tb:
            continue
        names = [n for n in ta[res] if n in tb[res] and n != "OXT"]
        bb = [n for n in ("N", "CA", "C", "O") if n in names]
        rows.append((res, rmsd_superposed([ta[res][n] for n in names], [tb[res][n] for n in names]),
                     rmsd_superposed([ta[res][n] for n in bb], [tb[res][n] for n in bb])))
    return rows


def main(argv):
    if len(argv) >= 3 and argv[0] == "export":
        table, missing = export(argv[1], argv[2])
        print(f"{argv[2]}: {len(table)} residues, {sum(len(a) for _, a in table)} atoms"
              + (f"; missing {' '.join(missing)}" if missing else ""))
        return 0
    if len(argv) >= 3 and argv[0] == "etkdg":
        seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 0
        table = etkdg(argv[1], argv[2], seed)
        print(f"{argv[2]}: {len(table)} residues")
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        rows = compare(argv[1], argv[2])
        print("res   rmsd_heavy  rmsd_N_CA_C_O   (A, after superposition; OXT left out)")
        for res, r, rb in rows:
            print(f"{res}   {r:8.3f}   {rb:8.3f}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
