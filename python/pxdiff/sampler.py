"""PXDesign's sampler with the whole loop in the engine.

`sample_diffusion` has the signature and semantics of PXDesign's
`pxdesign.model.generator.sample_diffusion` (AF3 Algorithm 18 as PXDesign runs it):

    x = noise_schedule[0] * N(0, I)
    for each step (t_prev, t_cur): centre + random rotation/translation; gamma = gamma0 if
        t_cur > gamma_min else 0; t_hat = t_prev (gamma + 1); x_noisy = x + lambda
        sqrt(t_hat^2 - t_prev^2) N(0, I); x = x_noisy + eta (t_cur - t_hat)(x_noisy - D(x_noisy, t_hat)) / t_hat

How upstream's arguments map onto the engine:

| argument | engine |
|---|---|
| denoise_net | an accelerated module (pxdiff.enable_acceleration) or a pxdiff.DiffusionModule runs in the engine; any other nn.Module with upstream's layout gets an engine built once (cached per module); when none can be had, the PyTorch loop below runs with denoise_net itself |
| noise_schedule | its values (as float32). When they equal the engine's own schedule for len-1 steps (the bfloat16 one of PXDesign's default GPU run, or the float32 one) each chunk is one px_sample call; otherwise the loop runs step by step over the caller's schedule (px_sampler_step, same random streams) |
| N_sample, diffusion_chunk_size | samples, and samples per engine call (None: all in one call) |
| gamma0, gamma_min, noise_scale_lambda | the same fields of px_sampler_config |
| step_scale_eta | a float (constant) or {"type", "min", "max"}: const, linear, poly, cos, piecewise, piecewise_65, piecewise_70; K = len(noise_schedule) as upstream |
| inplace_safe, attn_chunk_size | PyTorch memory knobs: accepted, no effect in the engine |
| seed (keyword, pxdiff only) | the engine's counter-based generator; None draws one from torch's global generator, so torch.manual_seed / PXDesign's seed_everything make runs repeatable |
| progress (keyword, pxdiff only) | True: the progress display (pxdiff.progress) on stderr; False: none; or a Progress |

Randomness comes from the engine's Philox streams (sample i of a call is stream `first + i`),
so results do not depend on the chunk size, and agree with PyTorch's loop statistically, not
bitwise; the denoiser and the step arithmetic agree to float32 rounding (tests/python/test_dropin.py
shows both with injected random numbers).
"""
import ctypes
import logging
import math
import weakref

from ._lib import PROGRESS_FN, SamplerConfig, _torch, c_float_p, lib
from .errors import PxdiffError, PxdiffInputError  # noqa: F401
from . import accel
from .progress import Progress

__all__ = ["sample_diffusion", "torch_sample_diffusion", "run_steps", "engine_draws",
           "make_config", "parse_eta", "engine_schedule", "UPSTREAM_DEFAULTS"]

log = logging.getLogger("pxdiff")

# upstream's keyword defaults (pxdesign.model.generator.sample_diffusion)
UPSTREAM_DEFAULTS = dict(N_sample=1, gamma0=0.8, gamma_min=1.0, noise_scale_lambda=1.003,
                         step_scale_eta={"type": "const", "min": 1.5, "max": 1.5},
                         diffusion_chunk_size=None, inplace_safe=False, attn_chunk_size=None)

_ETA_TYPES = ("const", "linear", "poly", "cos", "piecewise", "piecewise_65", "piecewise_70")
_RNG_INIT, _RNG_ROT, _RNG_TRANS, _RNG_NOISE = 0, 1, 2, 3

# Set by pxdiff.pxdesign when it patches PXDesign: upstream's own function, used as fallback.
upstream_sample_diffusion = None


def check(rc):
    return accel.check(rc, lib)


def _ptr(t):
    return ctypes.cast(t.data_ptr(), c_float_p)


# ----------------------------------------------------------------- config --
def parse_eta(step_scale_eta):
    """(type name, eta_min, eta_max) as upstream reads step_scale_eta."""
    if isinstance(step_scale_eta, (int, float)) and not isinstance(step_scale_eta, bool):
        v = float(step_scale_eta)
        return "const", v, v
    try:
        kind = step_scale_eta["type"]
    except (TypeError, KeyError):
        raise ValueError(f"Unsupported eta schedule {step_scale_eta!r}") from None
    if kind == "const":
        assert step_scale_eta["min"] == step_scale_eta["max"]
        return "const", float(step_scale_eta["min"]), float(step_scale_eta["min"])
    if kind not in _ETA_TYPES:
        raise ValueError("Unsupported eta schedule!")
    return kind, float(step_scale_eta["min"]), float(step_scale_eta["max"])


def make_config(n_step, gamma0, gamma_min, noise_scale_lambda, step_scale_eta, seed=0,
                sigma_data=None, schedule_bf16=True):
    c = SamplerConfig()
    lib.px_sampler_config_default(ctypes.byref(c))
    kind, lo, hi = parse_eta(step_scale_eta)
    c.n_step = int(n_step)
    c.gamma0 = float(gamma0)
    c.gamma_min = float(gamma_min)
    c.noise_scale_lambda = float(noise_scale_lambda)
    c.eta_type = lib.px_eta_type_from_name(kind.encode())
    if c.eta_type < 0:
        raise ValueError("Unsupported eta schedule!")
    c.eta_min, c.eta_max = lo, hi
    c.schedule_bf16 = int(bool(schedule_bf16))
    if sigma_data is not None:
        c.sigma_data = float(sigma_data)
    c.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return c


def engine_schedule(c):
    """The engine's noise schedule for config c, [n_step + 1] float32."""
    torch = _torch()
    t = torch.empty(c.n_step + 1, dtype=torch.float32)
    check(lib.px_noise_schedule(ctypes.byref(c), _ptr(t)))
    return t


# --------------------------------------------------------- random numbers --
def _rotation(seed, sample, step):
    torch = _torch()
    R = torch.empty(9, dtype=torch.float32)
    if accel.has_symbol("px_rng_rotation"):
        lib.px_rng_rotation(seed, sample, step, _ptr(R))
        return R.reshape(3, 3)
    q = torch.empty(4, dtype=torch.float32)  # same stream, rounded to float first
    lib.px_rng_normal(seed, sample, step, _RNG_ROT, _ptr(q), 4)
    w, x, y, z = (q.double() / q.double().norm()).tolist()
    return torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                         [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                         [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]],
                        dtype=torch.float32)


def engine_draws(seed, first, n_sample, n_atom):
    """(x0_unit [S,N,3], draw) from the engine's streams: the numbers px_sample uses for
    samples first..first+S-1; draw(k) -> (rot [S,3,3], trans [S,3], noise [S,N,3])."""
    torch = _torch()
    n3 = n_atom * 3

    def normal(sample, step, purpose, n):
        out = torch.empty(n, dtype=torch.float32)
        lib.px_rng_normal(seed, sample, step, purpose, _ptr(out), n)
        return out

    x0 = torch.stack([normal(first + s, 0, _RNG_INIT, n3) for s in range(n_sample)])

    def draw(k):
        rot = torch.stack([_rotation(seed, first + s, k) for s in range(n_sample)])
        trans = torch.stack([normal(first + s, k, _RNG_TRANS, 3) for s in range(n_sample)])
        noise = torch.stack([normal(first + s, k, _RNG_NOISE, n3) for s in range(n_sample)])
        return rot, trans, noise.reshape(n_sample, n_atom, 3)

    return x0.reshape(n_sample, n_atom, 3), draw


# ------------------------------------------------------- step-by-step loop --
def run_steps(model_handle, design, c, schedule, x, draw, on_step=None):
    """The sampler loop over `schedule` with px_sampler_step, x [S,N,3] float32 CPU tensor
    updated in place; draw(k) -> (rot [S,3,3], trans [S,3], noise [S,N,3]) (rot None: no
    augmentation). eta per step from px_eta (K = len(schedule), as upstream)."""
    torch = _torch()
    t = schedule.detach().to("cpu", torch.float32)
    n_step = t.numel() - 1
    cc = SamplerConfig()
    ctypes.memmove(ctypes.byref(cc), ctypes.byref(c), ctypes.sizeof(SamplerConfig))
    cc.n_step = n_step
    assert x.dtype == torch.float32 and x.is_contiguous() and x.device.type == "cpu"
    S = x.shape[0]
    tl = t.tolist()
    for k in range(n_step):
        rot, trans, noise = draw(k)
        rot = None if rot is None else rot.to(torch.float32).contiguous()
        trans = None if trans is None else trans.to(torch.float32).contiguous()
        noise = noise.to(torch.float32).contiguous()
        check(lib.px_sampler_step(
            model_handle, design, ctypes.byref(cc), S, _ptr(x), ctypes.c_float(tl[k]),
            ctypes.c_float(tl[k + 1]), lib.px_eta(ctypes.byref(cc), k),
            None if rot is None else _ptr(rot), None if trans is None else _ptr(trans),
            _ptr(noise)))
        if on_step is not None:
            on_step(k + 1, n_step)
    return x


# ----------------------------------------------------------------- engine --
_built = weakref.WeakKeyDictionary()  # plain nn.Module -> AcceleratedDiffusionModule


def _accelerated(denoise_net):
    """An active AcceleratedDiffusionModule for denoise_net, or None."""
    if accel.is_accelerated(denoise_net):
        return denoise_net if denoise_net.pxdiff_ready() is not None else None
    if accel.acceleration_disabled():
        return None
    try:
        import torch.nn as nn
    except ImportError:
        return None
    if not isinstance(denoise_net, nn.Module):
        return None
    acc = _built.get(denoise_net)
    if acc is None:
        try:
            acc = accel._cls()(denoise_net)
        except Exception as e:  # noqa: BLE001
            log.warning("pxdiff: set-up failed (%s: %s); the PyTorch sampler runs",
                        type(e).__name__, e)
            acc = False
        _built[denoise_net] = acc
    if acc is False or acc.pxdiff_ready() is None:
        return None
    return acc


class _Cancelled(Exception):
    pass


def _engine_sample(acc, input_feature_dict, s_inputs, s_trunk, z_trunk, noise_schedule,
                   N_sample, gamma0, gamma_min, noise_scale_lambda, step_scale_eta,
                   diffusion_chunk_size, seed, bar):
    torch = _torch()
    eng = acc.pxdiff_ready()
    design, N = acc.pxdiff_design(input_feature_dict, s_inputs, s_trunk, z_trunk)
    sched = noise_schedule.detach().to("cpu", torch.float32).reshape(-1)
    n_step = sched.numel() - 1
    if n_step < 1:
        raise PxdiffInputError("noise_schedule needs at least 2 entries")
    c = make_config(n_step, gamma0, gamma_min, noise_scale_lambda, step_scale_eta, seed,
                    sigma_data=eng.dims.sigma_data, schedule_bf16=True)
    whole = False
    for bf16 in (1, 0):
        c.schedule_bf16 = bf16
        if torch.equal(engine_schedule(c), sched):
            whole = True
            break
    chunk = int(diffusion_chunk_size) if diffusion_chunk_size else N_sample
    if chunk <= 0:
        raise PxdiffInputError(f"diffusion_chunk_size must be positive, got {diffusion_chunk_size}")
    out = torch.empty((N_sample, N, 3), dtype=torch.float32)
    state = {"base": 0, "S": 0, "stop": None}

    def progress(user, done, total, step, n):
        try:
            if bar is not None:
                if done >= state["S"]:
                    bar.update(state["base"] + state["S"])
                else:
                    bar.update(state["base"] + done, step, n, state["S"])
            return 0
        except BaseException as e:  # KeyboardInterrupt included: stop the engine cleanly
            state["stop"] = e
            return 1

    cb = PROGRESS_FN(progress)
    for c0 in range(0, N_sample, chunk):
        S = min(chunk, N_sample - c0)
        state["base"], state["S"] = c0, S
        xs = out[c0:c0 + S]
        if whole:  # one engine call per chunk
            rc = lib.px_sample(eng._m, design, ctypes.byref(c), c0, S, S, _ptr(xs), cb, None)
            if state["stop"] is not None:
                raise state["stop"]
            check(rc)
        elif accel.has_symbol("px_sample_schedule", lib):  # the caller's schedule, one call
            rc = lib.px_sample_schedule(eng._m, design, ctypes.byref(c), _ptr(sched), c0, S, S,
                                        _ptr(xs), cb, None)
            if state["stop"] is not None:
                raise state["stop"]
            check(rc)
        else:  # the caller's own schedule, step by step, same random streams
            x0, draw = engine_draws(c.seed, c0, S, N)
            xs.copy_(sched[0] * x0)
            run_steps(eng._m, design, c, sched, xs, draw,
                      on_step=lambda k, n: progress(None, 0, S, k, n))
            if state["stop"] is not None:
                raise state["stop"]
        if bar is not None:
            bar.update(c0 + S)
    return out


def sample_diffusion(denoise_net, input_feature_dict, s_inputs, s_trunk, z_trunk,
                     noise_schedule, N_sample=1, gamma0=0.8, gamma_min=1.0,
                     noise_scale_lambda=1.003,
                     step_scale_eta={"type": "const", "min": 1.5, "max": 1.5},  # noqa: B006
                     diffusion_chunk_size=None, inplace_safe=False, attn_chunk_size=None,
                     *, seed=None, progress=True):
    """PXDesign's sample_diffusion, run by the engine one call per chunk.
    Returns [..., N_sample, N_atom, 3] on s_inputs' device (module docstring: the mapping)."""
    torch = _torch()
    kw = dict(N_sample=N_sample, gamma0=gamma0, gamma_min=gamma_min,
              noise_scale_lambda=noise_scale_lambda, step_scale_eta=step_scale_eta,
              diffusion_chunk_size=diffusion_chunk_size, inplace_safe=inplace_safe,
              attn_chunk_size=attn_chunk_size)
    args = (denoise_net, input_feature_dict, s_inputs, s_trunk, z_trunk, noise_schedule)
    parse_eta(step_scale_eta)  # upstream's errors for a bad eta, before any work
    batch_shape = tuple(s_inputs.shape[:-2])
    acc = None
    if math.prod(batch_shape) == 1:
        acc = _accelerated(denoise_net)
    if acc is None:
        return _fallback(args, kw, progress)
    if seed is None:  # follows torch's global generator (PXDesign's seed_everything)
        seed = int(torch.randint(0, 2 ** 62, (1,), dtype=torch.int64).item())
    bar = progress if isinstance(progress, Progress) else (
        Progress(N_sample, desc="pxdiff sampling") if progress else None)
    try:
        out = _engine_sample(acc, input_feature_dict, s_inputs, s_trunk, z_trunk,
                             noise_schedule, int(N_sample), gamma0, gamma_min,
                             noise_scale_lambda, step_scale_eta, diffusion_chunk_size, seed, bar)
    except Exception as e:  # noqa: BLE001
        acc.pxdiff_fail(f"engine sampling failed: {type(e).__name__}: {e}")
        if bar is not None:
            bar.enabled = False
        return _fallback(args, kw, progress)
    finally:
        if bar is not None and bar is not progress:
            bar.close()
    dtype = torch.promote_types(s_inputs.dtype, torch.float32)
    return out.reshape(*batch_shape, *out.shape).to(device=s_inputs.device, dtype=dtype)


def _fallback(args, kw, progress):
    if upstream_sample_diffusion is not None:
        return upstream_sample_diffusion(*args, **kw)
    return torch_sample_diffusion(*args, **kw, progress=progress)


# ---------------------------------------------------------- PyTorch loop --
def _random_rotation(n, device, dtype):
    torch = _torch()
    q = torch.randn(n, 4, device=device, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)
    return R.reshape(n, 3, 3).to(dtype)


def _eta_at(step_scale_eta, k, K):
    kind, lo, hi = parse_eta(step_scale_eta)
    f = k / K
    if kind == "const":
        return lo
    if kind == "linear":
        return lo + (hi - lo) * f
    if kind == "poly":
        return lo + (hi - lo) * f ** 2
    if kind == "cos":
        return lo + 0.5 * (hi - lo) * (1 - math.cos(math.pi * f))
    cut = {"piecewise": 0.5, "piecewise_65": 0.65, "piecewise_70": 0.70}[kind]
    return lo if f < cut else hi


def torch_sample_diffusion(denoise_net, input_feature_dict, s_inputs, s_trunk, z_trunk,
                           noise_schedule, N_sample=1, gamma0=0.8, gamma_min=1.0,
                           noise_scale_lambda=1.003,
                           step_scale_eta={"type": "const", "min": 1.5, "max": 1.5},  # noqa: B006
                           diffusion_chunk_size=None, inplace_safe=False, attn_chunk_size=None,
                           progress=True):
    """The same loop in PyTorch with denoise_net (torch's global generator; rotations from
    normalised Gaussian quaternions). The fallback when the engine cannot run."""
    torch = _torch()
    N_atom = input_feature_dict["atom_to_token_idx"].size(-1)
    batch_shape = s_inputs.shape[:-2]
    device, dtype = s_inputs.device, s_inputs.dtype
    T = len(noise_schedule)
    bar = progress if isinstance(progress, Progress) else (
        Progress(N_sample, desc="pytorch sampling") if progress else None)

    def chunk_run(n, done):
        x = noise_schedule[0] * torch.randn((*batch_shape, n, N_atom, 3), device=device,
                                            dtype=dtype)
        for k, (t_prev, t_cur) in enumerate(zip(noise_schedule[:-1], noise_schedule[1:])):
            x = x - x.mean(dim=-2, keepdim=True)
            R = _random_rotation(n, device, dtype)
            u = torch.randn((n, 3), device=device, dtype=dtype)
            x = (torch.einsum("sij,...snj->...sni", R, x) + u[:, None, :]).to(dtype)
            gamma = float(gamma0) if t_cur > gamma_min else 0
            t_hat = t_prev * (gamma + 1)
            x_noisy = x + noise_scale_lambda * torch.sqrt(t_hat ** 2 - t_prev ** 2) * \
                torch.randn(x.shape, device=device, dtype=dtype)
            t_hat = t_hat.reshape((1,) * (len(batch_shape) + 1)).expand(*batch_shape, n).to(dtype)
            x_den = denoise_net(x_noisy=x_noisy, t_hat_noise_level=t_hat,
                                input_feature_dict=input_feature_dict, s_inputs=s_inputs,
                                s_trunk=s_trunk, z_trunk=z_trunk, chunk_size=attn_chunk_size,
                                inplace_safe=inplace_safe)
            delta = (x_noisy - x_den) / t_hat[..., None, None]
            x = x_noisy + _eta_at(step_scale_eta, k, T) * (t_cur - t_hat)[..., None, None] * delta
            if bar is not None:
                bar.update(done, k + 1, T - 1, n)
        return x

    chunk = diffusion_chunk_size or N_sample
    outs = []
    try:
        for c0 in range(0, N_sample, chunk):
            n = min(chunk, N_sample - c0)
            outs.append(chunk_run(n, c0))
            if bar is not None:
                bar.update(c0 + n)
    finally:
        if bar is not None and bar is not progress:
            bar.close()
    return torch.cat(outs, -3)
