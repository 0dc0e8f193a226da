"""Preconditioning wrappers: ``denoiser(x, sigma, *, labels=None, mask=None) -> x0_hat``.

:class:`Denoiser` is EDM's preconditioning (Karras et al. 2022, "Elucidating the Design Space
of Diffusion-Based Generative Models", Table 1, column "Ours"), used by MaskDiT.
:class:`DDPMDenoiser` wraps an epsilon-predicting network trained on integer DDPM timesteps
(Ho et al. 2020; DiT) so that its weights can be sampled with the same sigma-space samplers.
The backbone stays a plain network in ``.net``.
"""

from __future__ import annotations

import math
import os
import sys
import warnings

from typing import TYPE_CHECKING

import torch
from torch import nn

from maskdit.masking.mask import Mask
from maskdit.processes.vp import BetaSchedule, ddpm_sigmas

if TYPE_CHECKING:  # the spec module builds these wrappers through the process plugins
    from maskdit.core.specs import ModelSpec

_TORCH_NN = os.path.dirname(nn.__file__)


def sigma_batch(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """sigma as a [B] float tensor (a scalar is broadcast to the batch); every level must be finite
    and > 0 (ln(sigma) is the noise label: 0 or NaN would give a silent NaN output). One check,
    one device sync, per call."""
    given = sigma
    try:
        sigma = None if isinstance(given, bool) else torch.as_tensor(given, device=x.device)
    except (TypeError, RuntimeError, ValueError):
        sigma = None
    if sigma is None or sigma.dtype == torch.bool or sigma.is_complex():
        raise TypeError(f"sigma must be a number or a real tensor [B], got {describe(given)}")
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or [B={x.shape[0]}], got shape {tuple(sigma.shape)}")
    sigma = sigma.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    valid = (sigma > 0) & (sigma < math.inf)  # after the cast: a level float32 rounds to 0 counts as 0
    if sigma.device.type != "meta" and not bool(valid.all()):
        bad = sigma[~valid]
        raise ValueError(f"sigma must hold finite noise levels > 0, got {bad[:3].tolist()}"
                         f"{' ...' if bad.numel() > 3 else ''} ({bad.numel()} of {sigma.numel()})")
    return sigma


def describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _caller_level() -> int:
    """The warnings stacklevel of the first frame outside this file and torch.nn (the user's call)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename == __file__ or _TORCH_NN in frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


class UnconditionalCallWarning(UserWarning):
    """A class-conditional denoiser was called without labels."""


class Preconditioned(nn.Module):
    """Shared plumbing: the backbone, its spec, and the attributes samplers / losses need."""

    def __init__(self, net: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec

    in_channels = property(lambda self: self.spec.in_channels)
    input_size = property(lambda self: self.spec.input_size)
    patch_size = property(lambda self: self.spec.patch_size)
    grid_size = property(lambda self: self.spec.grid_size)
    num_tokens = property(lambda self: self.spec.num_tokens)
    num_classes = property(lambda self: self.spec.num_classes)

    @property
    def null_label(self) -> int:
        """The label id that means 'no class' (classifier-free guidance)."""
        return self.spec.num_classes

    def _labels(self, labels: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        """A class-conditional model called without labels warns (once per calling line, Python's
        default warning filter) and runs with the null label, as it did before."""
        if labels is None and self.num_classes:
            warnings.warn(f"a class-conditional denoiser ({self.num_classes} classes) was called without labels: it "
                          f"runs unconditionally (null label {self.num_classes}); pass labels=... , or labels equal "
                          f"to {self.num_classes} to mean it", UnconditionalCallWarning, stacklevel=_caller_level())
            return torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
        return labels

    def _check_x(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            # an int image would run through the float network and be cast back to all zeros
            raise TypeError(f"x must be a floating-point tensor [B, C, H, W] (e.g. x.float()), got {describe(x)}")
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected x [B, {', '.join(map(str, expected))}], got {tuple(x.shape)}")

    def _net_dtype(self) -> torch.dtype:
        return self.net.final_layer.linear.weight.dtype


class Denoiser(Preconditioned):
    """EDM preconditioning: D(x; sigma) = c_skip x + c_out F(c_in x; c_noise, y).

    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4, sd = ``sigma_data``.
    With a Mask the backbone's encoder sees only the kept tokens and the decoder fills the rest,
    so D is still [B, C, H, W]. Only the first C channels of F are used (with a learned variance
    the rest is ignored). The result has x's dtype; the network runs in its own dtype.
    """

    precond = "edm"

    def __init__(self, net: nn.Module, spec: ModelSpec, *, sigma_data: float | None = None) -> None:
        super().__init__(net, spec)
        if sigma_data is None:  # the spec's process is the one source of truth (saved with the weights)
            sigma_data = getattr(spec, "sigma_data", None) or 0.5
        self.sigma_data = float(sigma_data)

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float,
        *,
        labels: torch.Tensor | None = None,
        mask: Mask | None = None,
    ) -> torch.Tensor:
        self._check_x(x)
        labels = self._labels(labels, x)
        sigma = sigma_batch(sigma, x)
        sd = self.sigma_data
        s = sigma.reshape(-1, 1, 1, 1)  # [B, 1, 1, 1]
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        c_noise = sigma.log() / 4  # [B]
        out = self.net((c_in * x).to(self._net_dtype()), c_noise.float(), labels=labels, mask=mask)
        return (c_skip * x + c_out * out[:, : self.in_channels].to(x.dtype)).to(x.dtype)


class DDPMDenoiser(Preconditioned):
    """An epsilon-prediction network on DDPM timesteps, seen as a sigma-space denoiser.

    A DDPM state x_t = sqrt(a_t) (x0 + sigma_t n) with sigma_t = sqrt((1 - a_t) / a_t), so
    the network gets x / sqrt(sigma^2 + 1) and the fractional timestep t(sigma) found by linear
    interpolation of ln(sigma_t) over the 1000-step table (as k-diffusion's discrete wrappers do;
    sigma outside [sigma_min, sigma_max] of the table is clamped to its ends). Returns
    x0_hat = x - sigma * eps, eps = the first C output channels.
    """

    precond = "ddpm"

    def __init__(
        self, net: nn.Module, spec: ModelSpec, *, num_steps: int = 1000, beta_start: float = 1e-4,
        beta_end: float = 0.02, beta_schedule: BetaSchedule = "linear",
    ) -> None:
        super().__init__(net, spec)
        sigmas = ddpm_sigmas(num_steps, beta_start, beta_end, beta_schedule)  # DDPM: linear betas (Ho et al. 2020, sec. 4)
        self.register_buffer("log_sigmas", sigmas.log(), persistent=False)  # [num_steps], increasing

    @property
    def sigma_min(self) -> float:
        return float(self.log_sigmas[0].exp())

    @property
    def sigma_max(self) -> float:
        return float(self.log_sigmas[-1].exp())

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """[B] sigma -> [B] fractional timestep in [0, num_steps - 1]."""
        log_sigmas = self.log_sigmas.to(sigma.device)
        log_sigma = sigma.to(torch.float64).log().clamp(log_sigmas[0], log_sigmas[-1])
        high = torch.searchsorted(log_sigmas, log_sigma).clamp(1, len(log_sigmas) - 1)
        low = high - 1
        frac = (log_sigma - log_sigmas[low]) / (log_sigmas[high] - log_sigmas[low])
        return low.to(torch.float64) + frac

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float,
        *,
        labels: torch.Tensor | None = None,
        mask: Mask | None = None,
    ) -> torch.Tensor:
        self._check_x(x)
        labels = self._labels(labels, x)
        sigma = sigma_batch(sigma, x)
        s = sigma.reshape(-1, 1, 1, 1)  # [B, 1, 1, 1]
        c_in = 1 / (s**2 + 1).sqrt()
        t = self.sigma_to_t(sigma).float()
        eps = self.net((c_in * x).to(self._net_dtype()), t, labels=labels, mask=mask)[:, : self.in_channels]
        return (x - s * eps.to(x.dtype)).to(x.dtype)
