"""Stand-in for pxdesign.runner.inference: InferenceRunner (model built, then
<load_checkpoint_dir>/<model_name>.pt loaded in load_checkpoint, as upstream; predict under
CUDA autocast when CUDA is available) and main(argv) (configs, the download step, seeds)."""
import json
import logging
import os
from contextlib import nullcontext

import torch

import pxfixtures
from pxdesign.model.pxdesign import ProtenixDesign
from pxdesign.utils.infer import download_inference_cache, get_configs

logger = logging.getLogger(__name__)


class InferenceRunner(object):
    def __init__(self, configs) -> None:
        self.configs = configs
        self.device = torch.device("cuda" if configs.cuda and torch.cuda.is_available() else "cpu")
        self.init_model()
        self.load_checkpoint()
        with open(configs.input_json_path) as f:
            self.tasks = json.load(f)

    def init_model(self) -> None:
        self.model = ProtenixDesign(self.configs).to(self.device)

    def load_checkpoint(self) -> None:
        checkpoint_path = os.path.join(self.configs.load_checkpoint_dir,
                                       f"{self.configs.model_name}.pt")
        if not os.path.exists(checkpoint_path):
            raise FileNotFoundError(f"Given checkpoint path does not exist [{checkpoint_path}]")
        logger.info(f"Loading from {checkpoint_path}, strict: {self.configs.load_strict}")
        checkpoint = torch.load(checkpoint_path, self.device)
        sample_key = list(checkpoint["model"].keys())[0]
        if sample_key.startswith("module."):
            checkpoint["model"] = {k[len("module."):]: v for k, v in checkpoint["model"].items()}
        self.model.load_state_dict(state_dict=checkpoint["model"], strict=self.configs.load_strict)
        self.model.eval()
        logger.info("Finish loading checkpoint.")

    @torch.no_grad()
    def predict(self, data):
        eval_precision = {"fp32": torch.float32, "bf16": torch.bfloat16,
                          "fp16": torch.float16}[self.configs.dtype]
        enable_amp = (torch.autocast(device_type="cuda", dtype=eval_precision)
                      if torch.cuda.is_available() else nullcontext())
        with enable_amp:
            return self.model(input_feature_dict=data, mode="inference")

    @torch.no_grad()
    def _inference(self, seed: int):
        for task in self.tasks:
            inp = pxfixtures.random_features_for(self.configs.model.diffusion_module.to_dict(),
                                                 n_token=task["n_token"], seed=task.get("seed", 0))
            data = dict(inp.feats, s_inputs=inp.s_inputs, s_trunk=inp.s_trunk, z_trunk=inp.z_trunk)
            data = {k: v.to(self.device) for k, v in data.items()}
            pred = self.predict(data)
            out = os.path.join(self.configs.dump_dir, task["name"], f"seed_{seed}")
            os.makedirs(out, exist_ok=True)
            torch.save(pred["coordinate"].cpu(), os.path.join(out, "coordinates.pt"))


def main(argv=None):
    configs = get_configs(argv)
    os.makedirs(configs.dump_dir, exist_ok=True)
    download_inference_cache(configs)
    runner = InferenceRunner(configs)
    for seed in configs.seeds:
        print(f"----------Infer with seed {seed}----------")
        torch.manual_seed(seed)  # upstream: seed_everything(seed)
        runner._inference(seed)
