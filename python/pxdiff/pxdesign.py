"""Run PXDesign's own CLI with pxdiff patched in:

    python -m pxdiff.pxdesign infer    -i design.yaml -o out --N_sample 100   # = pxdesign infer ...
    python -m pxdiff.pxdesign pipeline -i design.yaml -o out --preset extended

Every argument goes unchanged to PXDesign's console script (`pxdesign.runner.cli:cli`).
Before it runs, three upstream functions are patched (install() below; docs/dropin.md):

1. `pxdesign.runner.inference.InferenceRunner.load_checkpoint` (also inherited by
   `pxdesign.runner.pipeline.DesignPipeline`): upstream's method runs first (it builds nothing,
   only loads the weights with load_state_dict and calls model.eval()); then
   `pxdiff.enable_acceleration(self.model)` replaces `self.model.diffusion_module`.
2. `pxdesign.model.pxdesign.sample_diffusion`, the module global that
   `ProtenixDesign.sample_diffusion` calls (imported there from the generator), and
3. `pxdesign.model.generator.sample_diffusion` itself: both become
   `pxdiff.sample_diffusion`, which runs each chunk in the engine when the denoiser is the
   accelerated module and otherwise calls upstream's original function unchanged.

PXDIFF_DISABLE=1 patches nothing: the run is exactly `pxdesign ...`.
PXDIFF_BACKEND (auto|cpu|cuda) and PXDIFF_PRECISION (fp32|tf32|bf16|fp16) choose the engine.
"""
import functools
import inspect
import logging
import math
import os
import sys

from . import accel, sampler

log = logging.getLogger("pxdiff")

PATCHED = []  # "module.attribute" of what install() replaced


def install(verbose=True, backend=None, precision=None):
    """Patch the imported PXDesign package (idempotent). Returns the list of patched names."""
    if accel.acceleration_disabled():
        return []
    if PATCHED:
        return list(PATCHED)
    import pxdesign.model.generator as generator
    import pxdesign.model.pxdesign as pxmodel
    import pxdesign.runner.inference as inference

    runner_cls = inference.InferenceRunner
    upstream_load = runner_cls.load_checkpoint

    @functools.wraps(upstream_load)
    def load_checkpoint(self, *args, **kwargs):
        out = upstream_load(self, *args, **kwargs)
        accel.enable_acceleration(self.model, backend=backend, precision=precision,
                                  verbose=verbose)
        return out

    load_checkpoint.__pxdiff_upstream__ = upstream_load
    runner_cls.load_checkpoint = load_checkpoint
    PATCHED.append("pxdesign.runner.inference.InferenceRunner.load_checkpoint")

    upstream_sample = generator.sample_diffusion
    sampler.upstream_sample_diffusion = upstream_sample
    try:
        upstream_sig = inspect.signature(upstream_sample)
    except (TypeError, ValueError):
        upstream_sig = None

    @functools.wraps(upstream_sample)
    def sample_diffusion(*args, **kwargs):
        _upstream_prints(upstream_sig, args, kwargs)
        return sampler.sample_diffusion(*args, **kwargs)

    sample_diffusion.__pxdiff_upstream__ = upstream_sample
    generator.sample_diffusion = sample_diffusion
    PATCHED.append("pxdesign.model.generator.sample_diffusion")
    if getattr(pxmodel, "sample_diffusion", None) is upstream_sample:
        pxmodel.sample_diffusion = sample_diffusion
        PATCHED.append("pxdesign.model.pxdesign.sample_diffusion")
    else:
        log.warning("pxdiff: pxdesign.model.pxdesign.sample_diffusion is not the generator's "
                    "function; whole-loop sampling not patched there (calls still go through "
                    "the accelerated diffusion module)")
    return list(PATCHED)


def _upstream_prints(sig, args, kwargs):
    """Upstream's sample_diffusion prints its eta schedule (and, when chunked, the chunk size)
    before sampling; when the engine runs the loop instead, the same lines are printed here,
    so a run's log reads as PXDesign's. (When upstream's function runs, it prints them.)"""
    if sig is None:
        return
    try:
        b = sig.bind(*args, **kwargs)
        b.apply_defaults()
        a = b.arguments
        s_inputs = a["s_inputs"]
        if math.prod(tuple(s_inputs.shape[:-2])) != 1 or sampler._accelerated(a["denoise_net"]) is None:
            return  # upstream's loop runs and prints for itself
        eta, chunk = a["step_scale_eta"], a["diffusion_chunk_size"]
    except Exception:  # noqa: BLE001 - arguments upstream itself would reject: it reports them
        return
    print("sampling eta schedule: ", eta)
    if chunk is not None:
        print("diffusion_chunk_size: ", chunk)


def uninstall():
    """Undo install() (tests)."""
    if not PATCHED:
        return
    import pxdesign.model.generator as generator
    import pxdesign.model.pxdesign as pxmodel
    import pxdesign.runner.inference as inference
    cls = inference.InferenceRunner
    up = getattr(cls.load_checkpoint, "__pxdiff_upstream__", None)
    if up is not None:
        cls.load_checkpoint = up
    up = getattr(generator.sample_diffusion, "__pxdiff_upstream__", None)
    if up is not None:
        if getattr(pxmodel, "sample_diffusion", None) is generator.sample_diffusion:
            pxmodel.sample_diffusion = up
        generator.sample_diffusion = up
    sampler.upstream_sample_diffusion = None
    PATCHED.clear()


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from pxdesign.runner.cli import cli
    except ImportError as e:
        sys.stderr.write(f"pxdiff.pxdesign: PXDesign is not importable ({e}); install it "
                         "(pip install -e <PXDesign checkout>) in this environment\n")
        return 2
    if accel.acceleration_disabled():
        sys.stderr.write("pxdiff: PXDIFF_DISABLE is set; running PXDesign unchanged\n")
    else:
        try:
            install()
        except Exception as e:  # noqa: BLE001 - never stop PXDesign from running
            log.warning("pxdiff: could not patch PXDesign (%s: %s); running it unchanged",
                        type(e).__name__, e)
    # click group: standalone mode exits with the command's status
    return cli.main(args=argv, prog_name="pxdesign")


if __name__ == "__main__":
    sys.exit(main())
