"""The held-out denoising loss: the lambda-weighted loss of a model (the weighting its dsm term trains with) on the held-out split at
fixed noise levels and fixed noise, so every model (and every step of one run) is scored on the
same noisy images. Cheap and smooth, and it does not saturate the way a guided FID does."""

from __future__ import annotations

import math
from typing import Any

import torch

from maskdit.data import build_dataset
from maskdit.losses import DSMLoss, build_noise
from maskdit.processes.noise import DDPMNoise, LogNormalNoise, LogUniformNoise

SIGMA_GRID_SIZE = 8


def sigma_grid(noise: Any, size: int) -> list[float]:
    """The noise levels at the training distribution's quantiles (i + 0.5) / size, i = 0..size-1,
    so the mean loss over them estimates the expected training loss.

    ``noise`` is a built noise distribution: lognormal (ln sigma ~ N(p_mean, p_std^2)), loguniform
    (ln sigma uniform), DDPM (the discrete uniform timestep's quantile t = ceil(q T) - 1, mapped
    through its sigma table), or any other that offers ``quantile(q: float64 tensor) -> sigma``.
    ValueError for a distribution with none."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"the sigma grid needs a size >= 1, got {size!r}")
    levels = (torch.arange(size, dtype=torch.float64) + 0.5) / size  # [size] in (0, 1)
    if isinstance(noise, LogNormalNoise):
        normal = torch.distributions.Normal(0.0, 1.0)
        return torch.exp(noise.p_mean + noise.p_std * normal.icdf(levels)).tolist()
    if isinstance(noise, LogUniformNoise):
        low, high = math.log(noise.sigma_min), math.log(noise.sigma_max)
        return torch.exp(low + (high - low) * levels).tolist()
    if isinstance(noise, DDPMNoise):
        steps = torch.ceil(levels * noise.num_timesteps).long() - 1  # the smallest t with (t + 1) / T >= q
        return noise.table[steps.clamp(min=0)].tolist()
    quantile = getattr(noise, "quantile", None)
    if callable(quantile):
        return [float(sigma) for sigma in quantile(levels)]
    raise ValueError(f"the held-out loss needs the training noise distribution's quantiles, and {noise!r} has "
                     "none: give it a quantile(q) -> sigma method, or train with lognormal, loguniform or ddpm noise")


class HeldOutLoss:
    """The weighted denoising loss of a model (lambda of the spec's dsm term: EDM's by default, the
    velocity MSE's for flow matching) on the held-out split of ``spec.data`` at a fixed
    sigma grid (:func:`sigma_grid` of ``spec.losses.noise``: for the lognormal, its quantiles
    exp(p_mean + p_std Phi^-1((i + 0.5) / n))), every token kept.

    The noise is drawn once from a fixed ``seed``, so every model is scored on the same noisy
    images; ``limit`` keeps the first images of the split (a smoke test's). The model is given
    the labels only when ``spec.model`` is class-conditional. ValueError when the dataset has no
    held-out split or the noise distribution no quantiles.
    """

    def __init__(self, spec: Any, *, grid_size: int = SIGMA_GRID_SIZE, seed: int = 1234,
                 batch_size: int = 500, limit: int | None = None) -> None:
        if "split" not in type(spec.data).model_fields:
            raise ValueError(f"the held-out loss needs a dataset with a held-out split (mnist5k's); "
                             f"{spec.data.name} has none")
        self.sigmas = sigma_grid(build_noise(spec.losses.noise), grid_size)
        data = build_dataset(spec.data.model_copy(update={"split": "heldout"}))
        count = len(data) if limit is None else min(limit, len(data))
        self.images = torch.stack([data[i][0] for i in range(count)])  # [N, C, H, W]
        labels = torch.tensor([data[i][1] for i in range(count)])
        self.labels = labels if spec.model.num_classes > 0 else None
        generator = torch.Generator().manual_seed(seed)
        self.noise = [torch.randn(self.images.shape, generator=generator) for _ in self.sigmas]
        self.weighting = _weighting(spec)
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, denoiser: torch.nn.Module) -> tuple[float, list[float]]:
        """(mean over the grid, loss per sigma) of ``denoiser`` with every token (no mask), computed
        on the device of its parameters."""
        device = next((p.device for p in denoiser.parameters()), torch.device("cpu"))
        was_training = denoiser.training
        denoiser.eval()
        per_sigma = []
        try:
            for sigma, noise in zip(self.sigmas, self.noise):
                total = 0.0
                for start in range(0, len(self.images), self.batch_size):
                    rows = slice(start, start + self.batch_size)
                    y, eps = self.images[rows].to(device), noise[rows].to(device)
                    labels = self.labels[rows].to(device) if self.labels is not None else None
                    s = torch.full((len(y),), sigma, device=device)
                    denoised = denoiser(y + sigma * eps, s, labels=labels)
                    total += float((denoised - y).square().flatten(1).mean(1).sum())
                weight = float(self.weighting.weight(torch.tensor(sigma, dtype=torch.float64)))
                per_sigma.append(weight * total / len(self.images))
        finally:
            denoiser.train(was_training)
        return sum(per_sigma) / len(per_sigma), per_sigma


def _weighting(spec: Any) -> DSMLoss:
    """The lambda(sigma) the run trains with: its dsm term's weighting, else EDM's with the model's sigma_data."""
    dsm = next((term for term in spec.losses.terms if term.name == "dsm"), None)
    if dsm is not None:
        return DSMLoss(dsm.sigma_data, weighting=dsm.weighting)
    return DSMLoss(spec.model.sigma_data or 0.5)
