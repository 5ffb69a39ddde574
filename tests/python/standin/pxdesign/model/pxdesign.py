"""Stand-in for pxdesign.model.pxdesign: ProtenixDesign with upstream's attribute names; the
generator's sample_diffusion is imported into this module's namespace, as upstream does."""
import torch
import torch.nn as nn

import pxfixtures
import pxref

from pxdesign.model.generator import InferenceNoiseScheduler
from pxdesign.model.generator import sample_diffusion


class ProtenixDesign(nn.Module):
    def __init__(self, configs) -> None:
        super().__init__()
        self.configs = configs
        self.dims = dict(configs["dims"])
        self.inference_noise_scheduler = InferenceNoiseScheduler()
        self.diffusion_module = pxfixtures.build_model(self.dims)

    def get_condition_embedding(self, input_feature_dict, chunk_size=None):
        return (input_feature_dict["s_inputs"], input_feature_dict["s_trunk"],
                input_feature_dict["z_trunk"])

    def sample_diffusion(self, **kwargs):
        sd = self.configs["sample_diffusion"]
        _configs = {k: sd[k] for k in ("gamma0", "gamma_min", "noise_scale_lambda", "step_scale_eta")}
        _configs["attn_chunk_size"] = 4
        _configs["diffusion_chunk_size"] = self.configs["sample_diffusion_chunk_size"]
        return sample_diffusion(**_configs, **kwargs)  # the module global, looked up per call

    def forward(self, input_feature_dict, mode="inference"):
        s_inputs, s, z = self.get_condition_embedding(input_feature_dict)
        N_step = self.configs["sample_diffusion"]["N_step"]
        noise_schedule = self.inference_noise_scheduler(N_step=N_step, device=s_inputs.device,
                                                        dtype=s_inputs.dtype)
        return {"coordinate": self.sample_diffusion(
            denoise_net=self.diffusion_module, input_feature_dict=input_feature_dict,
            s_inputs=s_inputs, s_trunk=s, z_trunk=z,
            N_sample=self.configs["sample_diffusion"]["N_sample"],
            noise_schedule=noise_schedule, inplace_safe=True)}
