"""Fixtures for tests/test_embedder.c: upstream PXDesign's DesignConditionEmbedder
(pxdesign/model/embedders.py) run on features made by upstream's own featurizer.

Dev time only (needs upstream's sources and a venv to run them, as docs/design-spec.md
section 12.3 describes; neither is part of this repository):

  1. features: upstream's featurizer (12.3, step 2) with NO_AUG=1 (no ref_pos augmentation)
     on two tasks: quick_start = PXDesign's PDL1 quick-start task (tests/data/tasks/PDL1_quick_start.yaml), small =
     tests/data/embedder/small.yaml (the same target cropped to residues 20-60, hotspots
     40 and 54, binder length 12); each
     run saves RUN_DIR/features.pt (the input_feature_dict's tensors under "features")
  2. FULLPORT=<folder with upstream's src/ and ccd/> <its venv's python> \
        tests/ref/make_embedder_fixtures.py upstream OUT.pt quick_start=RUN_DIR1 small=RUN_DIR2
     builds upstream's module with seeded random weights (the harness's recipe:
     randn * 0.5/sqrt(fan_in) for matrices, 0.3 * randn for vectors), at the widths DIMS
     (below; env FULL=1: the released widths, for a check that is not committed), runs it
     in float32 on the CPU and saves weights, features and outputs.
  3. build/venv-test/bin/python tests/ref/make_embedder_fixtures.py write OUT.pt tests/data/embedder
     writes the committed safetensors files:
       weights.safetensors   the module's state dict under "design_condition_embedder."
       <task>.safetensors    the features the embedder reads, in compact exact form:
                             ref_pos, ref_charge, ref_mask, ref_space_uid, atom_to_token_idx,
                             ref_element_idx [N] (the one-hot's index), ref_atom_name_idx
                             [N, 4] (per character), restype [T, 36], hotspot [T],
                             conditional_templ [T, T], conditional_templ_mask [T, T]
                             (integer-valued arrays as exact float16), and the expected s_inputs;
                             z_trunk in full for small, for quick_start the rows z_rows
                             (first and last target token, first and last binder token).

The widths are reduced (c_atom 32, c_atompair 8, c_token 48, c_s_inputs 40, c_z 16; 3 blocks
and 4 heads as upstream's constructor fixes them) so that the weights stay small; the names
are the released ones and the engine reads every width off the weights.
"""
import os
import sys

DIMS = dict(c_atom=32, c_atompair=8, c_token=48, c_s_inputs=40, c_z=16)
PREFIX = "design_condition_embedder."


def upstream(out_path, tasks):
    fp = os.environ.get("FULLPORT", os.path.abspath("third_party/fullport"))
    os.environ.setdefault("PROTENIX_DATA_ROOT_DIR", os.path.join(fp, "ccd"))
    sys.path.insert(0, os.path.join(fp, "src"))
    import torch
    from pxdesign.configs.configs_base import configs as base
    from protenix.config import parse_configs
    from pxdesign.model.embedders import DesignConditionEmbedder

    cfg = parse_configs(configs={**base}, arg_str="", fill_required_with_null=True)
    if not os.environ.get("FULL"):
        ie = cfg.model.condition_embedder.input_embedder
        for k in ("c_atom", "c_atompair", "c_token", "c_s_inputs"):
            ie[k] = DIMS[k]
        cfg.model.condition_embedder.template_embedder.c_z = DIMS["c_z"]
    torch.manual_seed(int(os.environ.get("WSEED", "0")))
    m = DesignConditionEmbedder(cfg).eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 / max(1, p.shape[-1]) ** 0.5 if p.dim() > 1 else 0.3))
    res = {"state": {PREFIX + k: v.clone() for k, v in m.state_dict().items()}, "tasks": {}}
    keys = ["ref_pos", "ref_charge", "ref_mask", "ref_element", "ref_atom_name_chars", "ref_space_uid",
            "atom_to_token_idx", "restype", "hotspot", "conditional_templ", "conditional_templ_mask",
            "deletion_mean"]
    for spec in tasks:
        name, run = spec.split("=", 1)
        feat = torch.load(os.path.join(run, "features.pt"))["features"]
        with torch.no_grad():
            s_inputs, z = m(dict(feat), chunk_size=cfg.infer_setting.chunk_size)
        print(name, "s_inputs", tuple(s_inputs.shape), s_inputs.dtype, "z", tuple(z.shape), z.dtype)
        res["tasks"][name] = {"features": {k: feat[k] for k in keys}, "s_inputs": s_inputs, "z": z}
    torch.save(res, out_path)


def write(in_path, out_dir):
    import torch
    from safetensors.torch import save_file

    res = torch.load(in_path)
    os.makedirs(out_dir, exist_ok=True)
    state = {k: v.float().contiguous() for k, v in res["state"].items()}
    save_file(state, os.path.join(out_dir, "weights.safetensors"), metadata={"what": "pxdiff embedder test weights"})
    E = state[PREFIX + "condition_template_embedder.embedder.weight"]
    for name, t in res["tasks"].items():
        f = t["features"]
        N, T = f["ref_pos"].shape[0], f["restype"].shape[0]
        el, nc = f["ref_element"].reshape(N, 128), f["ref_atom_name_chars"].reshape(N, 4, 64)
        # compact one-hots, exactly (each row one 1, zeros elsewhere)
        assert (el.sum(-1) == 1).all() and ((el == 0) | (el == 1)).all()
        assert (nc.sum(-1) == 1).all() and ((nc == 0) | (nc == 1)).all()
        mask = f["conditional_templ_mask"].long()
        templ = f["conditional_templ"].long()
        z = t["z"]
        assert torch.equal(z, E[mask * (1 + templ)]), "upstream z is not the embedding lookup"
        assert int(f["atom_to_token_idx"].max()) == T - 1
        out = {
            "ref_pos": f["ref_pos"].float(), "ref_charge": f["ref_charge"].float(),
            "ref_mask": f["ref_mask"].float(), "ref_space_uid": f["ref_space_uid"].float(),
            "atom_to_token_idx": f["atom_to_token_idx"].float(),
            "ref_element_idx": el.argmax(-1).float(), "ref_atom_name_idx": nc.argmax(-1).float(),
            "restype": f["restype"].float(), "hotspot": f["hotspot"].float(),
            "conditional_templ": templ.float(), "conditional_templ_mask": mask.float(),
            "s_inputs": t["s_inputs"].float(),
        }
        # integer-valued arrays as float16 (exact up to 2048: asserted), to keep the files small
        for k in ("ref_space_uid", "atom_to_token_idx", "ref_element_idx", "ref_atom_name_idx",
                  "conditional_templ", "conditional_templ_mask"):
            assert out[k].abs().max() <= 2048, k
            out[k] = out[k].half()
        for k, ref in (("ref_space_uid", f["ref_space_uid"]), ("atom_to_token_idx", f["atom_to_token_idx"]),
                       ("conditional_templ", templ), ("conditional_templ_mask", mask)):
            assert torch.equal(out[k].long(), ref.long()), k
        if name == "small":
            out["z_trunk"] = z.float()
        else:
            binder = f["restype"][:, 32] == 1
            nt = int((~binder).sum())
            assert not binder[:nt].any() and binder[nt:].all()
            rows = torch.tensor([0, nt - 1, nt, T - 1])
            out["z_rows"] = rows.float()
            out["z_slice"] = z[rows].float()
        out = {k: v.contiguous() for k, v in out.items()}
        save_file(out, os.path.join(out_dir, name + ".safetensors"), metadata={"task": name})
        print(name, "T", T, "N", N, {k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "upstream":
        upstream(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
