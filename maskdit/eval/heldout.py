"""The held-out denoising loss: EDM's lambda-weighted loss of a model on the held-out split at
fixed noise levels and fixed noise, so every model (and every step of one run) is scored on the
same noisy images. Cheap and smooth, and it does not saturate the way a guided FID does."""

from __future__ import annotations

from typing import Any

import torch

from maskdit.data import build_dataset
from maskdit.losses import edm_weight

SIGMA_GRID_SIZE = 8


class HeldOutLoss:
    """EDM's weighted denoising loss of a model on the held-out digits at a fixed sigma grid.

    The grid is the training noise distribution's quantiles (ln sigma ~ N(p_mean, p_std^2) at
    (i + 0.5) / n), so the mean over it estimates the expected training loss; the noise is drawn
    once from a fixed seed, so every model is scored on the same noisy images. Cheap and smooth,
    and it does not saturate the way a guided FID does.
    """

    def __init__(self, spec: Any, *, grid_size: int = SIGMA_GRID_SIZE, seed: int = 1234,
                 batch_size: int = 500, limit: int | None = None) -> None:
        data = build_dataset(spec.data.model_copy(update={"split": "heldout"}))
        count = len(data) if limit is None else min(limit, len(data))  # the first ``limit`` (a smoke test's)
        self.images = torch.stack([data[i][0] for i in range(count)])  # [N, C, H, W]
        self.labels = torch.tensor([data[i][1] for i in range(count)])
        noise = spec.losses.noise
        normal = torch.distributions.Normal(0.0, 1.0)
        quantiles = normal.icdf((torch.arange(grid_size, dtype=torch.float64) + 0.5) / grid_size)
        self.sigmas = torch.exp(noise.p_mean + noise.p_std * quantiles).tolist()
        generator = torch.Generator().manual_seed(seed)
        self.noise = [torch.randn(self.images.shape, generator=generator) for _ in self.sigmas]
        self.sigma_data, self.batch_size = spec.model.sigma_data, batch_size

    @torch.no_grad()
    def __call__(self, denoiser: torch.nn.Module) -> tuple[float, list[float]]:
        """(mean over the grid, loss per sigma) of ``denoiser`` with every token (no mask)."""
        was_training = denoiser.training
        denoiser.eval()
        per_sigma = []
        try:
            for sigma, noise in zip(self.sigmas, self.noise):
                total = 0.0
                for start in range(0, len(self.images), self.batch_size):
                    y = self.images[start:start + self.batch_size]
                    s = torch.full((len(y),), sigma)
                    denoised = denoiser(y + sigma * noise[start:start + self.batch_size], s,
                                        labels=self.labels[start:start + self.batch_size])
                    total += float((denoised - y).square().flatten(1).mean(1).sum())
                weight = float(edm_weight(torch.tensor(sigma), self.sigma_data))
                per_sigma.append(weight * total / len(self.images))
        finally:
            denoiser.train(was_training)
        return sum(per_sigma) / len(per_sigma), per_sigma
