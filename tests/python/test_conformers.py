"""pxdiff.conformers: the export from a PXDesign CCD cache.

The only CCD cache here is the reference harness's (third_party/fullport/ccd, git-ignored,
built from biotite's CCD with the ideal coordinates as its conformer; loading it needs the
harness's RDKit). On it the export must reproduce pxdiff's built-in table
(data/residue_templates.tsv) exactly and the committed tests/data/featurize/conformers_ideal.txt
byte for byte (which tests/test_featurize.c reads back as the built-in table). The table
reader and the RMSD helper are tested without RDKit."""
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS = os.path.join(ROOT, "third_party", "fullport")
COMMITTED = os.path.join(ROOT, "tests", "data", "featurize", "conformers_ideal.txt")


def templates():
    out = {}
    with open(os.path.join(ROOT, "data", "residue_templates.tsv")) as f:
        rows = [l.rstrip("\n").split("\t") for l in f if l.strip() and not l.startswith("#")]
    for res, atom, _e, _c, x, y, z in rows[1:]:
        out.setdefault(res, {})[atom] = tuple(np.float32(v) for v in (x, y, z))
    return out


def test_committed_table_is_the_builtin_one():
    from pxdiff import conformers
    t, ref = conformers.read(COMMITTED), templates()
    assert sorted(t) == sorted(ref)
    for res in ref:
        assert list(t[res]) == list(ref[res]), res  # CCD order, OXT included
        for atom, xyz in ref[res].items():
            assert tuple(np.float32(v) for v in t[res][atom]) == xyz, (res, atom)


def test_rmsd_superposed():
    from pxdiff import conformers
    rng = np.random.default_rng(0)
    a = rng.normal(size=(9, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    assert conformers.rmsd_superposed(a, a @ q.T + 3.0) < 1e-9
    b = a.copy()
    b[0] += [0.3, 0, 0]
    assert 0.0 < conformers.rmsd_superposed(a, b) <= 0.3 / 3


@pytest.mark.skipif(not os.path.exists(os.path.join(HARNESS, "venv", "bin", "python")),
                    reason="reference harness (third_party/fullport) not set up: needs its RDKit and CCD cache")
def test_export_reproduces_builtin_table(tmp_path):
    out = tmp_path / "c.txt"
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    subprocess.run([os.path.join(HARNESS, "venv", "bin", "python"), "-m", "pxdiff.conformers", "export",
                    os.path.join(HARNESS, "ccd"), str(out)], check=True, env=env, cwd=ROOT)
    assert out.read_bytes() == open(COMMITTED, "rb").read()
