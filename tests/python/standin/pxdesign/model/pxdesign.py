"""Stand-in for pxdesign.model.pxdesign: ProtenixDesign with upstream's attribute names and
call structure. The noise scheduler comes from protenix.model.generator; the generator's
sample_diffusion is imported into this module's namespace and called, per call, through
protenix's autocasting_disable_decorator(configs.skip_amp.sample_diffusion); its arguments
come from an ml_collections ConfigDict (step_scale_eta replaced by the eta_schedule
ConfigDict); upstream's prints before sampling are kept."""
import torch.nn as nn

import pxfixtures
from protenix.model.generator import InferenceNoiseScheduler
from protenix.utils.torch_utils import autocasting_disable_decorator

from pxdesign.model.generator import sample_diffusion


class ProtenixDesign(nn.Module):
    def __init__(self, configs) -> None:
        super().__init__()
        self.configs = configs
        self.inference_noise_scheduler = InferenceNoiseScheduler(**configs.inference_noise_scheduler)
        self.diffusion_module = pxfixtures.build_model(configs.model.diffusion_module.to_dict())

    def get_condition_embedding(self, input_feature_dict, chunk_size=None):
        # upstream: DesignConditionEmbedder; here the conditioning comes with the features
        return (input_feature_dict["s_inputs"], input_feature_dict["s_trunk"],
                input_feature_dict["z_trunk"])

    def sample_diffusion(self, **kwargs):
        _configs = {key: self.configs.sample_diffusion.get(key)
                    for key in ["gamma0", "gamma_min", "noise_scale_lambda", "step_scale_eta"]}
        _configs.update({
            "attn_chunk_size": self.configs.infer_setting.chunk_size if not self.training else None,
            "diffusion_chunk_size": (self.configs.infer_setting.sample_diffusion_chunk_size
                                     if not self.training else None),
        })
        if hasattr(self.configs.sample_diffusion, "eta_schedule"):
            _configs.update({"step_scale_eta": self.configs.sample_diffusion.eta_schedule})
        # the module global, looked up at each call (what pxdiff patches)
        return autocasting_disable_decorator(self.configs.skip_amp.sample_diffusion)(
            sample_diffusion)(**_configs, **kwargs)

    def forward(self, input_feature_dict, mode="inference"):
        assert mode == "inference", mode
        s_inputs, s, z = self.get_condition_embedding(input_feature_dict)
        N_sample = self.configs.sample_diffusion["N_sample"]
        N_step = self.configs.sample_diffusion["N_step"]
        print(f"Design inference with {N_step} N_step")
        noise_schedule = self.inference_noise_scheduler(N_step=N_step, device=s_inputs.device,
                                                        dtype=s_inputs.dtype)
        print(f"Protenix-Design sample diffusion: {self.configs.sample_diffusion}")
        return {"coordinate": self.sample_diffusion(
            denoise_net=self.diffusion_module, input_feature_dict=input_feature_dict,
            s_inputs=s_inputs, s_trunk=s, z_trunk=z, N_sample=N_sample,
            noise_schedule=noise_schedule, inplace_safe=True)}
