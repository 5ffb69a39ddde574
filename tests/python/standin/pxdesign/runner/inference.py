"""Stand-in for pxdesign.runner.inference: InferenceRunner (model built, then the checkpoint
loaded in load_checkpoint, as upstream) and main(argv)."""
import argparse
import json
import logging
import os

import torch

import pxfixtures
from pxdesign.model.pxdesign import ProtenixDesign

logger = logging.getLogger(__name__)


class InferenceRunner(object):
    def __init__(self, configs) -> None:
        self.configs = configs
        self.device = torch.device("cuda" if configs.get("cuda") and torch.cuda.is_available() else "cpu")
        self.init_model()
        self.load_checkpoint()

    def init_model(self) -> None:
        self.model = ProtenixDesign(self.configs).to(self.device)

    def load_checkpoint(self) -> None:
        checkpoint = torch.load(self.configs["load_checkpoint_path"], self.device)
        sample_key = list(checkpoint["model"].keys())[0]
        if sample_key.startswith("module."):
            checkpoint["model"] = {k[len("module."):]: v for k, v in checkpoint["model"].items()}
        self.model.load_state_dict(state_dict=checkpoint["model"], strict=True)
        self.model.eval()
        logger.info("Finish loading checkpoint.")

    @torch.no_grad()
    def predict(self, data):
        return self.model(input_feature_dict=data, mode="inference")

    @torch.no_grad()
    def _inference(self, seed: int):
        for task in self.configs["tasks"]:
            inp = pxfixtures.random_features_for(self.configs["dims"], n_token=task["n_token"],
                                                 seed=task.get("seed", 0))
            data = dict(inp.feats, s_inputs=inp.s_inputs, s_trunk=inp.s_trunk, z_trunk=inp.z_trunk)
            data = {k: v.to(self.device) for k, v in data.items()}
            pred = self.predict(data)
            out = os.path.join(self.configs["dump_dir"], task["name"], f"seed_{seed}")
            os.makedirs(out, exist_ok=True)
            torch.save(pred["coordinate"].cpu(), os.path.join(out, "coordinates.pt"))


def get_configs(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--dump_dir", required=True)
    p.add_argument("--input_json_path", required=True)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--N_sample", type=int, default=5)
    p.add_argument("--N_step", type=int, default=400)
    p.add_argument("--eta_type", default="const")
    p.add_argument("--eta_min", type=float, default=2.5)
    p.add_argument("--eta_max", type=float, default=2.5)
    p.add_argument("--load_checkpoint_path", required=True)
    p.add_argument("--seeds", type=int, nargs="*", default=[101])
    p.add_argument("--sample_diffusion_chunk_size", type=int, default=10)
    p.add_argument("--cuda", action="store_true")
    a = p.parse_args(argv)
    with open(a.input_json_path) as f:
        tasks = json.load(f)
    return {
        "dump_dir": a.dump_dir, "tasks": tasks, "dims": dict(pxfixtures.SMALL_DIMS),
        "load_checkpoint_path": a.load_checkpoint_path, "seeds": a.seeds, "cuda": a.cuda,
        "sample_diffusion_chunk_size": a.sample_diffusion_chunk_size,
        "sample_diffusion": {"N_sample": a.N_sample, "N_step": a.N_step, "gamma0": 1.0,
                             "gamma_min": 0.01, "noise_scale_lambda": 1.003,
                             "step_scale_eta": {"type": a.eta_type, "min": a.eta_min,
                                                "max": a.eta_max}},
    }


def main(argv=None):
    configs = get_configs(argv)
    runner = InferenceRunner(configs)
    for seed in configs["seeds"]:
        print(f"----------Infer with seed {seed}----------")
        torch.manual_seed(seed)  # upstream: seed_everything(seed)
        runner._inference(seed)
