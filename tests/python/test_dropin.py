"""Drop-in acceleration of PXDesign (docs/dropin.md): enable_acceleration, the fallback,
PXDIFF_DISABLE, sample_diffusion, `python -m pxdiff.pxdesign` on the stand-in PXDesign tree
(tests/python/standin), `python -m pxdiff.selftest`, and the CUDA-pointer paths (skipped,
visibly, where torch or the engine has no CUDA device)."""
import copy
import ctypes
import io
import json
import logging
import os
import subprocess
import sys

import pytest
import torch

import pxdiff
import pxfixtures
import pxref
from conftest import ROOT, SMALL, TOL, assert_close, rel_err
from pxdiff import accel, sampler
from pxdiff._lib import lib
from pxdiff.progress import Progress

STANDIN = os.path.join(ROOT, "tests", "python", "standin")
DIMS = dict(pxfixtures.DEFAULT_DIMS, **SMALL)


class Model(torch.nn.Module):
    """A PXDesign-like model: a diffusion_module with upstream's layout, and something else."""

    def __init__(self, seed=0):
        super().__init__()
        self.diffusion_module = pxfixtures.random_model(SMALL, seed=seed)
        self.design_condition_embedder = torch.nn.Linear(3, 4)


@pytest.fixture
def model():
    return Model().eval()


@pytest.fixture(scope="module")
def inp():
    return pxfixtures.random_features_for(SMALL, n_token=12, seed=3)


def n_atom(inp):
    return inp.feats["atom_to_token_idx"].shape[0]


def call(m, inp, x, t, **kw):
    with torch.no_grad():
        return m(x_noisy=x, t_hat_noise_level=t, input_feature_dict=inp.feats,
                 s_inputs=inp.s_inputs, s_trunk=inp.s_trunk, z_trunk=inp.z_trunk, **kw)


def ref64(module, inp, x, t):
    m64 = copy.deepcopy(module).double()
    with torch.no_grad():
        return m64(x.double(), t.double(), pxfixtures.cast_feats(inp.feats, torch.float64),
                   inp.s_inputs.double(), inp.s_trunk.double(), inp.z_trunk.double())


@pytest.fixture(autouse=True)
def _no_disable(monkeypatch):
    monkeypatch.delenv("PXDIFF_DISABLE", raising=False)
    monkeypatch.delenv("PXDIFF_BACKEND", raising=False)
    monkeypatch.delenv("PXDIFF_PRECISION", raising=False)
    monkeypatch.setenv("PXDIFF_PROGRESS", "0")


# ----------------------------------------------------------- enable / parity --
def test_parity_and_module_behaviour(model, inp, capsys):
    orig = model.diffusion_module
    names = list(model.state_dict())
    acc = pxdiff.enable_acceleration(model)
    assert acc is not None and model.diffusion_module is acc and acc.original is orig
    assert isinstance(acc, torch.nn.Module) and acc.active
    assert "engine-backed diffusion module enabled" in capsys.readouterr().err
    assert list(model.state_dict()) == names  # same names: checkpoints still load
    model.eval().to(torch.float32)  # .eval()/.to() keep working
    N = n_atom(inp)
    x = pxfixtures.random_coords(3, N, seed=1)
    t = torch.tensor([0.5, 16.0, 400.0])
    out = call(model.diffusion_module, inp, x, t)
    assert_close(out, ref64(orig, inp, x, t), "drop-in fp32 vs float64 reference")
    out2 = call(model.diffusion_module, inp, x, t, inplace_safe=True, chunk_size=4)
    assert torch.equal(out, out2)
    # positional call, shared t, leading batch dimension
    with torch.no_grad():
        o3 = model.diffusion_module(x[None], torch.tensor([16.0]), inp.feats, inp.s_inputs,
                                    inp.s_trunk, inp.z_trunk)
    assert o3.shape == (1, 3, N, 3)
    assert_close(o3[0], ref64(orig, inp, x, torch.full((3,), 16.0)), "batched call")
    st = acc.pxdiff_stats.as_dict()
    assert st["design_builds"] == 1 and st["design_reuses"] >= 2, st  # no per-step feature copies
    assert st["zero_copy"] == st["calls"] and st["host_round_trips"] == 0, st
    assert pxdiff.enable_acceleration(model) is acc  # idempotent
    assert pxdiff.disable_acceleration(model) is orig and model.diffusion_module is orig


def test_use_conditioning_false(model, inp):
    orig = model.diffusion_module
    pxdiff.enable_acceleration(model, verbose=False)
    x = pxfixtures.random_coords(2, n_atom(inp), seed=2)
    t = torch.tensor([3.0, 30.0])
    out = call(model.diffusion_module, inp, x, t, use_conditioning=False)
    z = inp._replace(s_trunk=0 * inp.s_trunk, z_trunk=0 * inp.z_trunk)
    assert_close(out, ref64(orig, z, x, t), "use_conditioning=False")


def test_load_state_dict_after_enable_refreshes_engine(model, inp):
    pxdiff.enable_acceleration(model, verbose=False)
    x = pxfixtures.random_coords(2, n_atom(inp), seed=4)
    t = torch.tensor([5.0, 50.0])
    call(model.diffusion_module, inp, x, t)
    other = Model(seed=7)
    model.load_state_dict(other.state_dict())
    out = call(model.diffusion_module, inp, x, t)
    assert_close(out, ref64(other.diffusion_module, inp, x, t), "after load_state_dict")


def test_non_contiguous_and_float64_inputs_are_converted(model, inp):
    acc = pxdiff.enable_acceleration(model, verbose=False)
    N = n_atom(inp)
    x = pxfixtures.random_coords(2, N, seed=5).transpose(0, 1).contiguous().transpose(0, 1)
    assert not x.is_contiguous()
    t = torch.tensor([2.0, 20.0], dtype=torch.float64)
    out = call(acc, inp, x, t)
    assert out.dtype == torch.float32
    assert_close(out, ref64(acc.original, inp, x, t.float()), "non-contiguous x, float64 t")
    conv = acc.pxdiff_stats.converted
    assert any("not contiguous" in k for k in conv) and any("float64" in k for k in conv), conv


def test_grad_and_training_use_pytorch(model, inp):
    acc = pxdiff.enable_acceleration(model, verbose=False)
    x = pxfixtures.random_coords(1, n_atom(inp), seed=6).requires_grad_()
    out = acc(x, torch.tensor([10.0]), inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)
    out.sum().backward()
    assert x.grad is not None and acc.pxdiff_stats.calls == 0 and acc.active
    model.train()
    assert acc.training and acc.original.training
    model.eval()
    assert not acc.original.training


# ------------------------------------------------------------------ fallback --
class _FailingLib:
    """libpxdiff with px_denoise (and px_sample) failing like a backend error."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def px_denoise(self, *a):
        return -6

    def px_sample(self, *a):
        return -6

    def px_last_error(self):
        return b"injected backend failure"


def _warnings(caplog):
    return [r for r in caplog.records if r.name == "pxdiff" and r.levelno == logging.WARNING]


def test_fallback_on_call_failure(model, inp, monkeypatch, caplog):
    orig = model.diffusion_module
    acc = pxdiff.enable_acceleration(model, verbose=False)
    monkeypatch.setattr(accel, "lib", _FailingLib(lib))
    x = pxfixtures.random_coords(2, n_atom(inp), seed=8)
    t = torch.tensor([1.0, 10.0])
    with caplog.at_level(logging.WARNING, logger="pxdiff"):
        out = call(acc, inp, x, t)
        out2 = call(acc, inp, x, t)
    assert torch.equal(out, call(orig, inp, x, t)) and torch.equal(out, out2)
    w = _warnings(caplog)
    assert len(w) == 1 and "injected backend failure" in w[0].getMessage(), w
    assert not acc.active and "injected" in acc.pxdiff_failed
    monkeypatch.setattr(accel, "lib", lib)  # the engine works again: still off for the run
    call(acc, inp, x, t)
    assert acc.pxdiff_stats.calls == 0 and len(_warnings(caplog)) == 1


def test_fallback_on_setup_failure(model, monkeypatch, caplog):
    orig = model.diffusion_module

    def boom(*a, **k):
        raise pxdiff.PxdiffError("weights missing: injected")

    monkeypatch.setattr(pxdiff.DiffusionModule, "from_torch", classmethod(boom))
    with caplog.at_level(logging.WARNING, logger="pxdiff"):
        assert pxdiff.enable_acceleration(model) is None
    assert model.diffusion_module is orig
    w = _warnings(caplog)
    assert len(w) == 1 and "set-up failed" in w[0].getMessage() and "injected" in w[0].getMessage()


def test_setup_failure_bad_backend(model, caplog):
    with caplog.at_level(logging.WARNING, logger="pxdiff"):
        assert pxdiff.enable_acceleration(model, backend="tpu") is None
        if accel.cuda_device_count() == 0:
            assert pxdiff.enable_acceleration(model, backend="cuda") is None
        assert pxdiff.enable_acceleration(model, precision="fp16", backend="cpu") is None  # CPU: fp32 / bf16
    assert not accel.is_accelerated(model.diffusion_module)
    assert len(_warnings(caplog)) >= 2


def test_sample_diffusion_falls_back_when_engine_fails(model, inp, monkeypatch, caplog):
    acc = pxdiff.enable_acceleration(model, verbose=False)
    monkeypatch.setattr(sampler, "lib", _FailingLib(lib))
    monkeypatch.setattr(accel, "lib", _FailingLib(lib))
    sched = pxref.noise_schedule(3)
    with caplog.at_level(logging.WARNING, logger="pxdiff"):
        out = pxdiff.sample_diffusion(acc, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk,
                                      sched, N_sample=2, step_scale_eta=2.5, progress=False)
    assert out.shape == (2, n_atom(inp), 3) and torch.isfinite(out).all()
    assert not acc.active and len(_warnings(caplog)) == 1


# ------------------------------------------------------------ PXDIFF_DISABLE --
def test_disable_env(model, inp, monkeypatch, capsys):
    monkeypatch.setenv("PXDIFF_DISABLE", "1")
    orig = model.diffusion_module
    assert pxdiff.enable_acceleration(model) is None
    assert model.diffusion_module is orig
    assert "disabled" in capsys.readouterr().err
    # sample_diffusion with a plain module: the PyTorch loop, no engine built
    torch.manual_seed(0)
    out = pxdiff.sample_diffusion(orig, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk,
                                  pxref.noise_schedule(2), N_sample=1, progress=False)
    assert out.shape == (1, n_atom(inp), 3) and orig not in sampler._built


# ----------------------------------------------------------- sample_diffusion --
def _engine_and_design(acc, inp):
    return acc.pxdiff_engine._m, acc.pxdiff_design(inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk)[0]


def test_steps_match_pytorch_loop_with_injected_noise(model, inp):
    """pxref's loop (float64) and the engine's per-step path on identical random numbers."""
    orig = model.diffusion_module
    acc = pxdiff.enable_acceleration(model, verbose=False)
    N, S, n_step = n_atom(inp), 2, 6
    sched = pxref.noise_schedule(n_step, "bfloat16")
    eta = {"type": "piecewise", "min": 1.0, "max": 2.5}
    x0, draw = sampler.engine_draws(1234, 0, S, N)
    m, d = _engine_and_design(acc, inp)
    c = sampler.make_config(n_step, 1.0, 0.01, 1.003, eta, seed=1234)
    x = (sched[0] * x0).contiguous()
    sampler.run_steps(m, d, c, sched, x, draw)

    m64 = copy.deepcopy(orig).double()
    feats64 = pxfixtures.cast_feats(inp.feats, torch.float64)
    with torch.no_grad():
        ref = pxref.sample_diffusion(
            m64, feats64, inp.s_inputs.double(), inp.s_trunk.double(), inp.z_trunk.double(),
            n_sample=S, schedule=sched.double(), eta=eta, gamma0=1.0, gamma_min=0.01,
            noise_scale_lambda=1.003,
            draw=lambda k: (x0.double(), None, x0.double()) if k < 0 else
            tuple(v.double() for v in draw(k)), dtype=torch.float64)
    assert_close(x, ref, f"{n_step}-step loop, engine vs float64 pxref, same random numbers")


def test_whole_loop_equals_step_loop(model, inp):
    """px_sample (one call per chunk) = the per-step path on the engine's own numbers,
    so sample_diffusion's default path is the loop checked against PyTorch above."""
    acc = pxdiff.enable_acceleration(model, verbose=False)
    N, n_step = n_atom(inp), 5
    sched = pxref.noise_schedule(n_step, "bfloat16")
    kw = dict(N_sample=3, gamma0=1.0, gamma_min=0.01, step_scale_eta=2.5, progress=False)
    whole = pxdiff.sample_diffusion(acc, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk,
                                    sched, seed=77, **kw)
    m, d = _engine_and_design(acc, inp)
    c = sampler.make_config(n_step, 1.0, 0.01, 1.003, 2.5, seed=77)
    x0, draw = sampler.engine_draws(77, 0, 3, N)
    x = (sched[0] * x0).contiguous()
    sampler.run_steps(m, d, c, sched, x, draw)
    assert rel_err(whole, x) <= 1e-6
    # a schedule the engine does not have goes step by step over the caller's values
    other = sched * 1.001
    other[-1] = 0
    custom = pxdiff.sample_diffusion(acc, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk,
                                     other, seed=77, **kw)
    x = (other[0] * x0).contiguous()
    sampler.run_steps(m, d, c, other, x, draw)
    assert rel_err(custom, x) <= 1e-6 and rel_err(custom, whole) > 1e-6


def test_sample_diffusion_determinism_and_chunks(model, inp):
    acc = pxdiff.enable_acceleration(model, verbose=False)
    sched = pxref.noise_schedule(4, "bfloat16")
    args = (acc, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk, sched)
    kw = dict(N_sample=5, gamma0=1.0, gamma_min=0.01, step_scale_eta=2.5, progress=False)
    a = pxdiff.sample_diffusion(*args, seed=3, **kw)
    b = pxdiff.sample_diffusion(*args, seed=3, diffusion_chunk_size=2, **kw)
    c = pxdiff.sample_diffusion(*args, seed=4, diffusion_chunk_size=5, **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(11)
    d = pxdiff.sample_diffusion(*args, **kw)
    torch.manual_seed(11)
    e = pxdiff.sample_diffusion(*args, **kw)
    assert torch.equal(d, e)  # seed=None follows torch's global generator
    assert a.shape == (5, n_atom(inp), 3) and a.dtype == torch.float32


def test_engine_random_numbers_are_sane():
    N, S = 400, 64
    x0, draw = sampler.engine_draws(9, 0, S, N)
    rot, trans, noise = draw(3)
    for v in (x0, noise):
        assert abs(v.mean().item()) < 0.02 and abs(v.std().item() - 1) < 0.02
    assert abs(trans.mean().item()) < 0.3 and abs(trans.std().item() - 1) < 0.3
    eye = torch.eye(3).expand(S, 3, 3)
    assert (rot @ rot.transpose(1, 2) - eye).abs().max() < 1e-5
    assert (torch.det(rot) - 1).abs().max() < 1e-5
    # a uniform rotation maps a fixed vector to a uniform direction: mean ~ 0
    v = rot @ torch.tensor([1.0, 0.0, 0.0])
    assert v.mean(0).norm() < 0.5
    assert not torch.equal(draw(3)[2], draw(4)[2])


def test_sample_statistics_match_pytorch(model, inp):
    """Same model, same schedule: engine samples and PyTorch samples (its own random numbers)
    have the same spread after a short run (statistical agreement)."""
    acc = pxdiff.enable_acceleration(model, verbose=False)
    sched = pxref.noise_schedule(4, "bfloat16")
    kw = dict(N_sample=6, gamma0=1.0, gamma_min=0.01, step_scale_eta=2.5, progress=False)
    eng = pxdiff.sample_diffusion(acc, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk,
                                  sched, seed=5, **kw)
    torch.manual_seed(5)
    pt = sampler.torch_sample_diffusion(acc.original, inp.feats, inp.s_inputs, inp.s_trunk,
                                        inp.z_trunk, sched, **kw)
    r_e = (eng - eng.mean(-2, keepdim=True)).pow(2).sum(-1).mean().sqrt()
    r_p = (pt - pt.mean(-2, keepdim=True)).pow(2).sum(-1).mean().sqrt()
    assert torch.isfinite(eng).all() and 0.8 < (r_e / r_p).item() < 1.25, (r_e, r_p)


def test_eta_argument_mapping():
    assert sampler.parse_eta(2.5) == ("const", 2.5, 2.5)
    assert sampler.parse_eta({"type": "piecewise_65", "min": 1.0, "max": 2.5}) == ("piecewise_65", 1.0, 2.5)
    with pytest.raises(AssertionError):
        sampler.parse_eta({"type": "const", "min": 1.0, "max": 2.5})
    with pytest.raises(ValueError):
        sampler.parse_eta({"type": "exp", "min": 1.0, "max": 2.5})
    for kind in ("linear", "poly", "cos", "piecewise", "piecewise_70"):
        e = {"type": kind, "min": 1.0, "max": 2.5}
        c = sampler.make_config(40, 1.0, 0.01, 1.003, e)
        want = pxref.eta_schedule(e, 40)
        got = [lib.px_eta(ctypes.byref(c), k) for k in range(40)]
        assert max(abs(a - b) for a, b in zip(got, want)) < 1e-6, kind


def test_progress_display():
    buf = io.StringIO()
    bar = Progress(10, desc="x", stream=buf, interval=0.0, enabled=True)
    bar.update(0, 200, 400, 5)
    bar.update(5)
    bar.close()
    lines = buf.getvalue().strip().split("\n")
    assert len(lines) == 3 and "5/10" in lines[1] and "10/10" not in lines[1]
    assert "s/design" in lines[-1] and "%|" in lines[-1]
    quiet = io.StringIO()
    bar = Progress(10, stream=quiet, interval=3600, enabled=True)
    for i in range(10):
        bar.update(i, 1, 2, 1)
    bar.close()
    assert len(quiet.getvalue().strip().split("\n")) == 2  # not a TTY: first + final line


def test_progress_shown_by_sample_diffusion(model, inp, monkeypatch):
    acc = pxdiff.enable_acceleration(model, verbose=False)
    buf = io.StringIO()
    bar = Progress(4, stream=buf, interval=0.0, enabled=True)
    pxdiff.sample_diffusion(acc, inp.feats, inp.s_inputs, inp.s_trunk, inp.z_trunk,
                            pxref.noise_schedule(3), N_sample=4, diffusion_chunk_size=2,
                            step_scale_eta=2.5, progress=bar)
    bar.close()
    text = buf.getvalue()
    assert "2/4" in text and "4/4" in text and "s/design" in text


# ------------------------------------------------- python -m pxdiff.pxdesign --
def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "python"), STANDIN])
    env.pop("PXDIFF_DISABLE", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("standin")
    sd = pxfixtures.random_state_dict(SMALL, seed=0)
    # PXDesign's checkpoint directory: <model_name>.pt, and the Protenix checkpoints its
    # download step looks for (empty placeholders: they are not read by `infer`)
    (d / "ckpt").mkdir()
    torch.save({"model": {"module.diffusion_module." + k: v for k, v in sd.items()}},
               d / "ckpt" / "pxdesign_v0.1.0.pt")
    for name in ("protenix_base_default_v0.5.0", "protenix_mini_default_v0.5.0",
                 "protenix_mini_tmpl_v0.5.0"):
        (d / "ckpt" / f"{name}.pt").touch()
    with open(d / "in.json", "w") as f:
        json.dump([{"name": "d1", "n_token": 9, "seed": 3}, {"name": "d2", "n_token": 5, "seed": 4}], f)
    return d


def _run_cli(d, out, module="pxdiff.pxdesign", **env):
    cmd = [sys.executable, "-m", module, "infer", "-i", str(d / "in.json"), "-o", str(d / out),
           "--N_sample", "3", "--N_step", "6", "--load_checkpoint_dir", str(d / "ckpt"),
           "--sample_diffusion_chunk_size", "2", "--seeds", "5"]
    p = subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    coords = {n: torch.load(d / out / n / "seed_5" / "coordinates.pt") for n in ("d1", "d2")}
    return p, coords


def test_cli_standin(cli_inputs):
    d = cli_inputs
    p, acc1 = _run_cli(d, "acc1", PXDIFF_PROGRESS="1")
    assert "engine-backed diffusion module enabled" in p.stderr
    assert "3/3" in p.stderr and "s/design" in p.stderr  # the progress display
    _, acc2 = _run_cli(d, "acc2")
    p_off, off = _run_cli(d, "off", PXDIFF_DISABLE="1")
    assert "engine-backed" not in p_off.stderr
    p_up, up = _run_cli(d, "up", module="pxdesign.runner.cli")  # PXDesign's own entry point
    # upstream's own prints during sampling appear under the drop-in too (the eta schedule is
    # the ConfigDict's YAML block, the chunk size), as often as in the plain run
    for line in ("Design inference with 6 N_step", "sampling eta schedule:  max: 2.5",
                 "diffusion_chunk_size:  2"):
        assert p_up.stdout.count(line) == 2, (line, p_up.stdout)  # 2 tasks
        assert p.stdout.count(line) == p_up.stdout.count(line), (line, p.stdout)
    for n in ("d1", "d2"):
        assert torch.equal(acc1[n], acc2[n])  # seeded: repeatable
        assert torch.equal(off[n], up[n])  # PXDIFF_DISABLE=1: exactly upstream
        assert acc1[n].shape == up[n].shape and torch.isfinite(acc1[n]).all()
        assert not torch.equal(acc1[n], up[n])  # the engine ran (its own random numbers)


def test_cli_patch_targets():
    """install() patches exactly the documented upstream functions, and uninstall undoes it."""
    sys.path.insert(0, STANDIN)
    try:
        import pxdesign.model.generator as gen
        import pxdesign.model.pxdesign as pxm
        import pxdesign.runner.inference as inf
        from pxdiff import pxdesign as entry
        before = (inf.InferenceRunner.load_checkpoint, gen.sample_diffusion, pxm.sample_diffusion)
        patched = entry.install(verbose=False)
        try:
            assert patched == ["pxdesign.runner.inference.InferenceRunner.load_checkpoint",
                               "pxdesign.model.generator.sample_diffusion",
                               "pxdesign.model.pxdesign.sample_diffusion"]
            assert pxm.sample_diffusion is gen.sample_diffusion is not before[1]
            assert sampler.upstream_sample_diffusion is before[1]
        finally:
            entry.uninstall()
        assert (inf.InferenceRunner.load_checkpoint, gen.sample_diffusion, pxm.sample_diffusion) == before
        assert sampler.upstream_sample_diffusion is None
    finally:
        sys.path.remove(STANDIN)


def test_cli_without_pxdesign():
    env = _env()
    env["PYTHONPATH"] = os.path.join(ROOT, "python")
    p = subprocess.run([sys.executable, "-m", "pxdiff.pxdesign", "infer"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "PXDesign is not importable" in p.stderr


# ------------------------------------------------------ python -m pxdiff.selftest --
def test_selftest():
    p = subprocess.run([sys.executable, "-m", "pxdiff.selftest"], env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    for k in range(1, 8):
        assert f"[{k}/7]" in p.stdout
    assert "self-test passed" in p.stdout and "relative error" in p.stdout
    # the thread settings of the process as they are (torch's never set by the self-test)
    assert "engine threads: " in p.stdout and "torch.get_num_threads()" in p.stdout


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity") else True,
                    reason="needs at least 2 usable CPUs")
def test_selftest_fails_when_engine_threads_are_too_few():
    """An engine held below the usable cores (set_num_threads(1) before the self-test) is a
    failure the self-test reports, not hides."""
    code = ("import sys, pxdiff; pxdiff.set_num_threads(1); from pxdiff import selftest; "
            "sys.exit(selftest.main([]))")
    env = _env()
    env.pop("PXDIFF_NUM_THREADS", None)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode != 0 and "fewer than it should" in p.stdout, p.stdout


def test_selftest_fails_nonzero():
    if accel.cuda_device_count() > 0 and torch.cuda.is_available():
        args = ["--backend", "tpu"]
    else:
        args = ["--backend", "cuda"]
    p = subprocess.run([sys.executable, "-m", "pxdiff.selftest", *args], env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "FAIL" in p.stdout


# ------------------------------------------------------------------- CUDA --
_cuda_reason = None
if not torch.cuda.is_available():
    _cuda_reason = "torch.cuda is unavailable (no GPU or CPU-only torch)"
elif accel.cuda_device_count() == 0:
    _cuda_reason = "px_cuda_device_count() == 0 (libpxdiff built without CUDA)"
cuda = pytest.mark.skipif(_cuda_reason is not None, reason=f"CUDA path: {_cuda_reason}")


@cuda
def test_cuda_parity_and_pointers(inp):
    m = Model().eval().cuda()
    orig = m.diffusion_module
    acc = pxdiff.enable_acceleration(m, verbose=False)
    assert acc is not None and acc.pxdiff_info["backend"].startswith("cuda")
    g = pxfixtures.Inputs({k: v.cuda() for k, v in inp.feats.items()}, inp.s_inputs.cuda(),
                          inp.s_trunk.cuda(), inp.z_trunk.cuda())
    x = pxfixtures.random_coords(3, n_atom(inp), seed=1).cuda()
    t = torch.tensor([0.5, 16.0, 400.0], device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # the current stream is honoured
        out = call(acc, g, x, t)
    stream.synchronize()
    assert out.is_cuda
    tol = TOL if acc.pxdiff_info["precision"] == "fp32" else 3e-2
    assert_close(out.cpu(), ref64(orig.cpu(), inp, x.cpu(), t.cpu()), "CUDA drop-in", tol)
    st = acc.pxdiff_stats.as_dict()
    if accel.has_symbol("px_denoise_device"):
        assert st["host_round_trips"] == 0 and st["zero_copy"] == st["calls"], st


@cuda
def test_cuda_sample_diffusion(inp):
    m = Model().eval().cuda()
    acc = pxdiff.enable_acceleration(m, verbose=False)
    g = [{k: v.cuda() for k, v in inp.feats.items()}, inp.s_inputs.cuda(),
         inp.s_trunk.cuda(), inp.z_trunk.cuda()]
    out = pxdiff.sample_diffusion(acc, *g, pxref.noise_schedule(4).cuda(), N_sample=2,
                                  gamma0=1.0, gamma_min=0.01, step_scale_eta=2.5, seed=1,
                                  progress=False)
    assert out.is_cuda and torch.isfinite(out).all() and acc.active


@cuda
def test_cuda_shared_level(inp):
    """t_hat as upstream's sampler passes it (one level expanded over the samples, stride 0)
    takes the shared-level entry point; it must agree with the per-sample path and the
    float64 reference, and still copy nothing to the host."""
    m = Model().eval().cuda()
    orig = m.diffusion_module
    acc = pxdiff.enable_acceleration(m, verbose=False)
    g = pxfixtures.Inputs({k: v.cuda() for k, v in inp.feats.items()}, inp.s_inputs.cuda(),
                          inp.s_trunk.cuda(), inp.z_trunk.cuda())
    x = pxfixtures.random_coords(3, n_atom(inp), seed=2).cuda()
    t_shared = torch.full((1,), 7.5, device="cuda").expand(3)
    assert t_shared.stride() == (0,)
    out_shared = call(acc, g, x, t_shared)
    out_each = call(acc, g, x, t_shared.contiguous())
    torch.cuda.synchronize()
    tol = TOL if acc.pxdiff_info["precision"] == "fp32" else 3e-2
    assert_close(out_shared.cpu(), ref64(orig.cpu(), inp, x.cpu(), t_shared.cpu().contiguous()),
                 "CUDA shared level", tol)
    assert_close(out_shared.cpu(), out_each.cpu(), "shared vs per-sample levels",
                 TOL if acc.pxdiff_info["precision"] == "fp32" else 5e-3)
    st = acc.pxdiff_stats.as_dict()
    assert st["host_round_trips"] == 0, st
