"""Step-for-step cross-checks against diffusers' DDPM, DDIM and DPM-Solver++ schedulers.

Both sides run the same epsilon model on the same noise. diffusers works in the variance-
preserving scaling x_vp; ours in EDM's x = x_vp / sqrt(abar) = x_vp * sqrt(1 + sigma^2), so
each of our intermediate states is converted before comparing. For DDPM and DDIM the
scheduler's cumulative alphas are promoted to float64 so both sides compute in float64; DPM-
Solver++ computes its update in float32 inside diffusers, hence its looser tolerance.
"""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from maskdit.samplers import (  # noqa: E402
    ddpm_alphas_cumprod,
    ddpm_timesteps,
    get_sigmas_ddpm,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
)
from tests.samplers.toys import ListNoise, eps_denoiser, eps_model  # noqa: E402

SHAPE = (3, 2, 4, 4)


def _ours(sampler, sigmas, x_vp, **kwargs):
    """Run our sampler from the same start; return its states after each step, in VP scaling."""
    states = []

    def record(info):
        states.append(info["x"] / (1.0 + info["sigma_next"] ** 2).sqrt())

    x = x_vp * (1.0 + sigmas[0] ** 2).sqrt()  # VP -> EDM scaling
    final = sampler(eps_denoiser, x, sigmas, callback=record, **kwargs)
    assert torch.equal(final, states[-1])
    return states


def _worst(ours, theirs):
    assert len(ours) == len(theirs)
    return max(float((a - b).abs().max()) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("steps", [10, 50])
def test_ddpm_step_for_step(steps):
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                    variance_type="fixed_small")
    sched.set_timesteps(steps)
    sched.alphas_cumprod = sched.alphas_cumprod.to(torch.float64)
    abar = sched.alphas_cumprod
    sigmas = torch.cat([((1 - abar[sched.timesteps]) / abar[sched.timesteps]).sqrt(), torch.zeros(1, dtype=torch.float64)])
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    theirs, x, gen = [], x0.clone(), torch.Generator().manual_seed(7)
    for t in sched.timesteps:
        x = sched.step(eps_model(x, abar[t]), t, x, generator=gen).prev_sample
        theirs.append(x)
    ours = _ours(sample_ddpm, sigmas, x0, generator=torch.Generator().manual_seed(7))
    assert _worst(ours, theirs) < 1e-10


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_for_step(eta):
    steps = 25
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                    set_alpha_to_one=True)
    sched.set_timesteps(steps)
    sched.alphas_cumprod = sched.alphas_cumprod.to(torch.float64)
    sched.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    abar = sched.alphas_cumprod
    sigmas = torch.cat([((1 - abar[sched.timesteps]) / abar[sched.timesteps]).sqrt(), torch.zeros(1, dtype=torch.float64)])
    gen = torch.Generator().manual_seed(3)
    noises = [torch.randn(SHAPE, generator=gen, dtype=torch.float64) for _ in range(steps)]
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    theirs, x = [], x0.clone()
    for i, t in enumerate(sched.timesteps):
        x = sched.step(eps_model(x, abar[t]), t, x, eta=eta, variance_noise=noises[i]).prev_sample
        theirs.append(x)
    ours = _ours(sample_ddim, sigmas, x0, noise_sampler=ListNoise(noises), eta=eta)
    assert _worst(ours, theirs) < 1e-10


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("steps, spacing", [(10, "linspace"), (20, "trailing")])
def test_dpmpp_2m_step_for_step(steps, spacing):
    sched = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="linear", algorithm_type="dpmsolver++", solver_order=2,
        solver_type="midpoint", final_sigmas_type="zero", timestep_spacing=spacing, thresholding=False,
    )
    sched.set_timesteps(steps)
    sigmas = sched.sigmas.to(torch.float64)  # diffusers' own (float32) levels, ending in 0
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    theirs, x = [], x0.clone()
    for i, t in enumerate(sched.timesteps):
        x = sched.step(eps_model(x, 1.0 / (1.0 + sigmas[i] ** 2)), t, x).prev_sample
        theirs.append(x.to(torch.float64))
    ours = _ours(sample_dpmpp_2m, sigmas, x0)
    assert _worst(ours, theirs) < 2e-5  # diffusers updates in float32


@pytest.mark.parametrize("scheduler", ["DDPMScheduler", "DDIMScheduler"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 7, 50, 1000])
def test_timesteps_and_sigmas_match_diffusers(scheduler, spacing, steps):
    sched = getattr(diffusers, scheduler)(num_train_timesteps=1000, beta_schedule="linear", timestep_spacing=spacing)
    sched.set_timesteps(steps)
    assert ddpm_timesteps(steps, 1000, spacing).tolist() == sched.timesteps.tolist()
    # our schedule is float64, diffusers' float32: agree to float32 rounding
    assert (ddpm_alphas_cumprod(1000) - sched.alphas_cumprod.double()).abs().max() < 1e-6
    abar = ddpm_alphas_cumprod(1000)[sched.timesteps]
    expected = torch.cat([((1 - abar) / abar).sqrt(), torch.zeros(1, dtype=torch.float64)])
    assert torch.allclose(get_sigmas_ddpm(steps, spacing=spacing), expected, rtol=1e-12, atol=0)


def test_scaled_linear_betas_match_diffusers():
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                    beta_schedule="scaled_linear")
    ours = ddpm_alphas_cumprod(1000, 0.00085, 0.012, "scaled_linear")
    assert (ours - sched.alphas_cumprod.double()).abs().max() < 1e-6
