"""sample_heun against a plain float64 transcription of EDM Algorithm 2 (Karras et al. 2022)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskdit.samplers import get_sigmas_karras, sample_heun
from tests.samplers.toys import GaussianDenoiser, ListNoise


def edm_algorithm_2(x_T: np.ndarray, denoise, n: int, noises: list[np.ndarray], *, s_churn=0.0, s_tmin=0.0,
                    s_tmax=math.inf, s_noise=1.0, sigma_min=0.002, sigma_max=80.0, rho=7.0) -> np.ndarray:
    """Algorithm 2, line by line, in numpy float64 (t_i from eq. 5, sigma(t) = t, s(t) = 1)."""
    t = [(sigma_max ** (1 / rho) + i / (n - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
         for i in range(n)] + [0.0]
    x = x_T.copy()  # line 2: x_0 = t_0 * noise (the caller already scaled it)
    used = 0
    for i in range(n):  # line 3
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= t[i] <= s_tmax else 0.0  # line 4
        t_hat = t[i] + gamma * t[i]  # line 5
        if gamma > 0:  # line 6 (eps ~ N(0, S_noise^2 I))
            x_hat = x + math.sqrt(t_hat**2 - t[i] ** 2) * s_noise * noises[used]
            used += 1
        else:
            x_hat = x
        d = (x_hat - denoise(x_hat, t_hat)) / t_hat  # line 7
        x_next = x_hat + (t[i + 1] - t_hat) * d  # line 8
        if t[i + 1] != 0:  # line 9
            d_prime = (x_next - denoise(x_next, t[i + 1])) / t[i + 1]  # line 10
            x_next = x_hat + (t[i + 1] - t_hat) * (0.5 * d + 0.5 * d_prime)  # line 11
        x = x_next
    return x


@pytest.mark.parametrize("churn", [False, True], ids=["deterministic", "churn"])
def test_heun_matches_edm_algorithm_2(churn):
    model = GaussianDenoiser(mu=0.3, s=0.5)
    numpy_denoise = lambda x, t: model.mu + model.s**2 / (model.s**2 + t**2) * (x - model.mu)  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    x_T = 80.0 * torch.randn(6, 2, 4, 4, generator=gen, dtype=torch.float64)
    noises = [torch.randn(6, 2, 4, 4, generator=gen, dtype=torch.float64) for _ in range(18)]
    options = dict(s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003) if churn else {}
    expected = edm_algorithm_2(x_T.numpy(), numpy_denoise, 18, [z.numpy() for z in noises], **options)
    pinned = ListNoise(noises)
    got = sample_heun(model, x_T, get_sigmas_karras(18), noise_sampler=pinned, **options)
    err = np.abs(got.numpy() - expected).max()
    assert err < 1e-10, err
    assert pinned.used == (sum(1 for t in get_sigmas_karras(18)[:-1].tolist() if 0.05 <= t <= 50.0) if churn else 0)
    assert model.calls == 2 * 18 - 1


def test_karras_sigmas_are_edm_time_steps():
    n, smin, smax, rho = 18, 0.002, 80.0, 7.0
    expected = [(smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho for i in range(n)]
    got = get_sigmas_karras(n, smin, smax, rho)
    assert got.dtype == torch.float64 and got.shape == (n + 1,) and got[-1] == 0
    assert np.abs(got[:-1].numpy() - np.array(expected)).max() < 1e-12
    assert got[0] == smax and abs(got[-2] - smin) < 1e-15
