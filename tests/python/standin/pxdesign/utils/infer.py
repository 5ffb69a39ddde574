"""Stand-in for pxdesign.utils.infer: get_configs (an ml_collections ConfigDict with
upstream's field names, the CLI's short flags mapped onto them as upstream's aliases do) and
download_inference_cache (upstream downloads whatever is missing of: the CCD files, the
pdb cluster file, <load_checkpoint_dir>/<model_name>.pt and three Protenix checkpoints;
here a missing file is an error naming it, since tests have no network)."""
import argparse
import os

from ml_collections import ConfigDict

import pxfixtures

# Files upstream looks for in load_checkpoint_dir (besides <model_name>.pt).
PROTENIX_CHECKPOINTS = ("protenix_base_default_v0.5.0", "protenix_mini_default_v0.5.0",
                        "protenix_mini_tmpl_v0.5.0")


def get_configs(argv=None) -> ConfigDict:
    p = argparse.ArgumentParser()
    p.add_argument("--dump_dir", required=True)
    p.add_argument("--input_json_path", required=True)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--N_sample", type=int, default=5)
    p.add_argument("--N_step", type=int, default=400)
    p.add_argument("--eta_type", default="const")
    p.add_argument("--eta_min", type=float, default=2.5)
    p.add_argument("--eta_max", type=float, default=2.5)
    p.add_argument("--load_checkpoint_dir", required=True)
    p.add_argument("--model_name", default="pxdesign_v0.1.0")
    p.add_argument("--load_strict", default="true")
    p.add_argument("--seeds", type=int, nargs="*", default=[101])
    p.add_argument("--sample_diffusion_chunk_size", type=int, default=10)
    p.add_argument("--cuda", action="store_true")
    a = p.parse_args(argv)
    return ConfigDict({
        "dump_dir": a.dump_dir, "input_json_path": a.input_json_path, "dtype": a.dtype,
        "load_checkpoint_dir": a.load_checkpoint_dir, "model_name": a.model_name,
        "load_strict": a.load_strict.lower() in ("true", "1"), "seeds": a.seeds, "cuda": a.cuda,
        "model": {"diffusion_module": dict(pxfixtures.SMALL_DIMS)},
        "inference_noise_scheduler": {"s_max": 160.0, "s_min": 4e-4, "rho": 7, "sigma_data": 16.0},
        "skip_amp": {"sample_diffusion": True},
        "infer_setting": {"chunk_size": 64,
                          "sample_diffusion_chunk_size": a.sample_diffusion_chunk_size},
        # upstream has no step_scale_eta field: eta_schedule replaces it at the call
        "sample_diffusion": {"N_sample": a.N_sample, "N_step": a.N_step, "gamma0": 1.0,
                             "gamma_min": 0.01, "noise_scale_lambda": 1.003,
                             "eta_schedule": {"type": a.eta_type, "min": a.eta_min,
                                              "max": a.eta_max}},
    })


def download_inference_cache(configs) -> None:
    for name in (configs.model_name,) + PROTENIX_CHECKPOINTS:
        path = os.path.join(configs.load_checkpoint_dir, f"{name}.pt")
        if not os.path.exists(path):
            raise RuntimeError(f"{path} is missing (upstream would download it)")
