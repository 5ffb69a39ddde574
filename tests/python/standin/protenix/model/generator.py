"""Stand-in for protenix.model.generator: the inference noise scheduler (EDM's rho-schedule
scaled by sigma_data, last level 0), which PXDesign's model imports from here."""
import torch


class InferenceNoiseScheduler:
    def __init__(self, s_max: float = 160.0, s_min: float = 4e-4, rho: float = 7,
                 sigma_data: float = 16.0) -> None:
        self.sigma_data, self.s_max, self.s_min, self.rho = sigma_data, s_max, s_min, rho

    def __call__(self, N_step: int = 200, device=torch.device("cpu"), dtype=torch.float32):
        i = torch.arange(N_step + 1, device=device, dtype=dtype)
        hi = self.s_max ** (1 / self.rho)
        t = self.sigma_data * (hi + i * (1 / N_step) * (self.s_min ** (1 / self.rho) - hi)) ** self.rho
        t[..., -1] = 0
        return t
