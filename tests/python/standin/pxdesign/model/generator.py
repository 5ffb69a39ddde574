"""Stand-in for pxdesign.model.generator: sample_diffusion with upstream's signature, loop
semantics and prints (the eta schedule, the chunk size), written on tests/ref/pxref.py.
(The noise scheduler PXDesign's model uses comes from protenix.model.generator.)"""
import math
from typing import Any, Callable, Optional, Union

import torch

import pxref


def _eta(step_scale_eta, k, T):
    if isinstance(step_scale_eta, float):
        return step_scale_eta
    return pxref.eta_schedule(step_scale_eta, T - 1)[k]


def sample_diffusion(
    denoise_net: Callable,
    input_feature_dict: dict,
    s_inputs: torch.Tensor,
    s_trunk: torch.Tensor,
    z_trunk: torch.Tensor,
    noise_schedule: torch.Tensor,
    N_sample: int = 1,
    gamma0: float = 0.8,
    gamma_min: float = 1.0,
    noise_scale_lambda: float = 1.003,
    step_scale_eta: Union[float, dict] = {"type": "const", "min": 1.5, "max": 1.5},
    diffusion_chunk_size: Optional[int] = None,
    inplace_safe: bool = False,
    attn_chunk_size: Optional[int] = None,
) -> torch.Tensor:
    N_atom = input_feature_dict["atom_to_token_idx"].size(-1)
    device, dtype = s_inputs.device, s_inputs.dtype
    T = len(noise_schedule)
    print("sampling eta schedule: ", step_scale_eta)  # upstream prints these two lines

    def chunk(n):
        x = noise_schedule[0] * torch.randn((n, N_atom, 3), device=device, dtype=dtype)
        for k, (tp, tc) in enumerate(zip(noise_schedule[:-1], noise_schedule[1:])):
            rot = pxref.random_rotation(n, None, dtype).to(device)
            trans = torch.randn((n, 3), device=device, dtype=dtype)
            x = pxref.centre_and_augment(x, rot, trans).to(dtype)
            gamma = float(gamma0) if tc > gamma_min else 0
            t_hat = tp * (gamma + 1)
            x_noisy = x + noise_scale_lambda * torch.sqrt(t_hat ** 2 - tp ** 2) * torch.randn(
                x.shape, device=device, dtype=dtype)
            t_hat = t_hat.reshape(1).expand(n).to(dtype)
            x_den = denoise_net(x_noisy=x_noisy, t_hat_noise_level=t_hat,
                                input_feature_dict=input_feature_dict, s_inputs=s_inputs,
                                s_trunk=s_trunk, z_trunk=z_trunk, chunk_size=attn_chunk_size,
                                inplace_safe=inplace_safe)
            delta = (x_noisy - x_den) / t_hat[..., None, None]
            x = x_noisy + _eta(step_scale_eta, k, T) * (tc - t_hat)[..., None, None] * delta
        return x

    if diffusion_chunk_size is None:
        return chunk(N_sample)
    print("diffusion_chunk_size: ", diffusion_chunk_size)
    n_chunks = math.ceil(N_sample / diffusion_chunk_size)
    return torch.cat([chunk(min(diffusion_chunk_size, N_sample - i * diffusion_chunk_size))
                      for i in range(n_chunks)], -3)
