"""A network trained on the linear interpolant (flow matching), seen two ways.

As every model of the library it is a Denoiser in EDM's sigma space,
``denoiser(x, sigma, *, labels=None, mask=None) -> x0_hat``, so every sampler, guidance, loss and
metric works with it. It is also a velocity field on its own time, ``velocity(x_t, t) -> v``,
defined at both ends of [0, 1] (pure noise included), which the flow samplers (SiT's) integrate.

The network is fed the process's own time t in [0, 1] as is (Ma et al. 2024, SiT; Yu et al. 2025,
REPA), in the model's convention (see :mod:`maskdit.processes.flow`). Its output is, per
``prediction``: the velocity (SiT, REPA, SPRINT), the clean data, or the noise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

import torch
from torch import nn

from maskdit.core.denoiser import Preconditioned, describe, sigma_batch
from maskdit.masking.mask import Mask
from maskdit.processes.flow import Convention, check_convention, v_to_x0, x0_to_v

if TYPE_CHECKING:
    from maskdit.core.specs import ModelSpec

Prediction = Literal["v", "x0", "eps"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)


class FlowDenoiser(Preconditioned):
    """D(x; sigma) for a flow-matching network F(x_t, t, y).

    With s = sigma / (1 + sigma) the noise-end time: x_t = x / (1 + sigma) (so x_t = (1 - s) x0 +
    s eps when x = x0 + sigma eps), t = s under ``'repa'`` and 1 - s under ``'sit'``, and
    x0_hat = x_t - s v_repa = x_t + (1 - t) v_sit for a velocity, = F for an x0 prediction,
    = x - sigma F for a noise prediction. Only the first C output channels are used (SiT's
    checkpoints have learn_sigma outputs whose second half is dropped).
    """

    precond = "flow"

    def __init__(self, net: nn.Module, spec: ModelSpec, *, convention: Convention = "repa",
                 prediction: Prediction = "v") -> None:
        super().__init__(net, spec)
        self.convention = check_convention(convention)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {list(PREDICTIONS)}, got {prediction!r}")
        self.prediction = prediction

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
        sigma = sigma_batch(sigma, x)  # [B], finite and > 0
        # processes.flow's maps, inlined: sigma is checked already, and each check there syncs a device
        s = sigma / (1 + sigma)  # [B] noise-end time
        t = s if self.convention == "repa" else 1 / (1 + sigma)  # 1 - s without cancellation
        x_t = x / (1 + sigma.reshape(-1, 1, 1, 1))  # [B, C, H, W]
        out = self._network(x_t, t, labels, mask)
        if self.prediction == "x0":
            return out
        if self.prediction == "eps":
            return (x - sigma.reshape(-1, 1, 1, 1) * out).to(x.dtype)
        sign = 1 if self.convention == "sit" else -1  # x0 = x_t + (1 - t) v_sit = x_t - s v_repa
        return (x_t + sign * s.reshape(-1, 1, 1, 1) * out).to(x.dtype)

    def velocity(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor | float,
        *,
        labels: torch.Tensor | None = None,
        mask: Mask | None = None,
    ) -> torch.Tensor:
        """The velocity dx_t/dt at time ``t`` (scalar or [B], in [0, 1], this model's convention).

        A velocity network answers at both ends exactly (SiT's samplers evaluate it at pure noise
        and at the data end); an x0 network has no velocity at the data end and an eps network
        none at pure noise: a time there raises ValueError."""
        self._check_x(x_t)
        labels = self._labels(labels, x_t)
        t = _time_batch(t, x_t)  # [B]
        out = self._network(x_t, t, labels, mask)
        if self.prediction == "v":
            return out
        if self.prediction == "x0":
            return x0_to_v(x_t, out, t.to(x_t.dtype), self.convention)
        noise_time = t if self.convention == "repa" else 1 - t
        if bool((noise_time == 1).any()):
            raise ValueError("an eps-prediction model has no velocity at pure noise (x0 is undetermined there)")
        # v_repa = eps - x0 with x0 = (x_t - s eps) / (1 - s), i.e. (eps - x_t) / (1 - s)
        v_repa = (out - x_t) / (1 - noise_time.to(x_t.dtype).reshape(-1, 1, 1, 1))
        return v_repa if self.convention == "repa" else -v_repa

    def _network(self, x_t: torch.Tensor, t: torch.Tensor, labels, mask) -> torch.Tensor:
        """F(x_t, t, y): the first C channels, in x_t's dtype (the network runs in its own)."""
        out = self.net(x_t.to(self._net_dtype()), t.float(), labels=labels, mask=mask)
        return out[:, : self.in_channels].to(x_t.dtype)

    def extra_repr(self) -> str:
        return f"convention={self.convention!r}, prediction={self.prediction!r}"


def _time_batch(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """t as a [B] float tensor in [0, 1] (a scalar is broadcast to the batch)."""
    if isinstance(t, bool) or not isinstance(t, (int, float, torch.Tensor)):
        raise TypeError(f"t must be a number or a float tensor [B], got {describe(t)}")
    if not isinstance(t, torch.Tensor):  # a Python int (velocity(x, 1): pure noise in REPA's time) is a time too
        t = torch.tensor(float(t), dtype=torch.float64)
    t = t.to(x.device)
    if not t.is_floating_point():
        raise TypeError(f"t must be a number or a float tensor [B], got {describe(t)}")
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or [B={x.shape[0]}], got shape {tuple(t.shape)}")
    t = t.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    inside = (t >= 0) & (t <= 1)  # NaN is outside
    if t.device.type != "meta" and not bool(inside.all()):
        raise ValueError(f"t must lie in [0, 1], got {t[~inside][:3].tolist()}")
    return t
