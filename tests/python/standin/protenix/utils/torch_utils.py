"""Stand-in for protenix.utils.torch_utils.autocasting_disable_decorator, through which
PXDesign's model calls sample_diffusion: when casting is disabled, CUDA autocast is off for
the call and every floating-point tensor passed at the top level (positionally or by
keyword; not inside dicts) is cast to float32; other values pass unchanged."""
from contextlib import nullcontext

import torch


def autocasting_disable_decorator(disable_casting):
    def wrap(func):
        def cast(v):
            if disable_casting and isinstance(v, torch.Tensor) and torch.is_floating_point(v):
                return v.to(dtype=torch.float32)
            return v

        def new_func(*args, **kwargs):
            ctx = torch.autocast(device_type="cuda", enabled=False) if disable_casting else nullcontext()
            with ctx:
                return func(*(cast(a) for a in args), **{k: cast(v) for k, v in kwargs.items()})

        return new_func

    return wrap
