"""From a sampler spec to a ready sampler: sigmas + sampler function + guidance, one object."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from maskdit.config.registry import registry
from maskdit.config.spec_model import SpecModel
from maskdit.processes.flow import sigma_to_t
from maskdit.samplers.common import Callback, NoiseSampler
from maskdit.samplers.guidance import cfg
from maskdit.samplers.path_drop import path_drop_guidance


@dataclass(frozen=True)
class Sampler:
    """A sampler ready to run: ``sampler(denoiser, noise, labels=..., generator=...) -> x0``.

    ``noise`` is unit Gaussian [B, C, H, W]. A sigma-space sampler (``state`` 'sigma') starts at
    x = sigmas[0] * noise (EDM); a flow-space one ('flow') at x_t = s_0 * noise with
    s_0 = sigma_0 / (1 + sigma_0), the noise itself at pure noise (sigma_0 = inf).
    Guidance (``cfg_scale`` != 1) wraps the denoiser; its null label is ``null_label`` or,
    when that is None, the denoiser's ``num_classes``; ``cfg_interval`` is in sigma. With
    ``path_drop`` the weak branch is the path-dropped model (label ``path_drop_label``, 'null' or
    'same'), see :mod:`maskdit.samplers.path_drop`.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    sigmas: torch.Tensor  # [steps + 1], float64, usually ends in 0; a flow-space sampler's may start at inf
    options: dict[str, Any] = field(default_factory=dict)
    cfg_scale: float = 1.0
    cfg_interval: tuple[float, float] | None = None
    cfg_channels: int | None = None
    null_label: int | None = None
    evals_per_step: tuple[int, int] | None = (1, 1)  # (calls on a step to a nonzero sigma, on the step to 0)
    state: str = "sigma"  # 'sigma' or 'flow': what the function's x is (see above)
    path_drop: bool = False
    path_drop_label: str = "null"

    @property
    def steps(self) -> int:
        return self.sigmas.numel() - 1

    @property
    def num_evaluations(self) -> int | None:
        """Denoiser calls per sample (a guided call counts once, though it runs a doubled batch);
        None for an adaptive solver (dopri5), whose count its callback reports after a run.
        heun on a flow-time grid counts a model with a velocity at the data end (a flow model); a
        sigma-space model takes an Euler step there instead, one call fewer."""
        if self.evals_per_step is None:
            return None
        inner, last = self.evals_per_step
        final_zero = bool(self.sigmas[-1] == 0)
        return inner * (self.steps - 1) + (last if final_zero else inner)

    def guided(self, denoiser: Any) -> Any:
        """The denoiser the sampler actually calls (wrapped with guidance when cfg_scale != 1)."""
        if self.cfg_scale == 1.0:
            return denoiser
        if self.path_drop:
            return path_drop_guidance(denoiser, self.cfg_scale, label=self.path_drop_label,
                                      sigma_interval=self.cfg_interval, channels=self.cfg_channels,
                                      null_label=self.null_label if self.path_drop_label == "null" else None)
        return cfg(denoiser, self.cfg_scale, sigma_interval=self.cfg_interval, channels=self.cfg_channels,
                   null_label=self.null_label)

    def __call__(
        self,
        denoiser: Any,
        noise: torch.Tensor,
        *,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise_sampler: NoiseSampler | None = None,
        callback: Callback | None = None,
    ) -> torch.Tensor:
        if not isinstance(noise, torch.Tensor) or not noise.is_floating_point():
            raise ValueError("noise must be a floating tensor of unit Gaussian noise [B, C, H, W]")
        sigmas = self.sigmas.to(noise.device)
        start = sigma_to_t(sigmas[0], "repa") if self.state == "flow" else sigmas[0]  # s_0 (1 at inf) or sigma_0
        x = noise.to(torch.float64) * start  # the state starts in float64
        return self.fn(self.guided(denoiser), x, sigmas, labels=labels, generator=generator,
                       noise_sampler=noise_sampler, callback=callback, dtype=noise.dtype, **self.options)


def sampler_from_spec(
    spec: Any,
    fn: Callable[..., torch.Tensor],
    sigmas: torch.Tensor,
    *,
    options: dict[str, Any] | None = None,
    evals_per_step: tuple[int, int] | None = (1, 1),
    null_label: int | None = None,
) -> Sampler:
    """The Sampler a sampler spec describes, given its function and its sigmas (the guidance
    interval in sigma and the state from the spec when it says them)."""
    interval = spec.guidance_interval() if callable(getattr(spec, "guidance_interval", None)) else spec.cfg_interval
    return Sampler(
        name=spec.name, fn=fn, sigmas=sigmas, options=dict(options or {}), cfg_scale=spec.cfg_scale,
        cfg_interval=interval, cfg_channels=spec.cfg_channels, null_label=null_label,
        evals_per_step=evals_per_step, state=getattr(spec, "state_space", "sigma"),
        path_drop=bool(getattr(spec, "path_drop", False)), path_drop_label=getattr(spec, "path_drop_label", "null"),
    )


def sampler_spec(spec: Any) -> SpecModel:
    """``spec`` as a validated sampler spec: a registered sampler's spec is kept, a name gives its
    defaults, a dict is validated into the spec its ``"name"`` names (pydantic's ValidationError
    names the field); anything else is a TypeError."""
    samplers = registry("sampler")
    if isinstance(spec, str):
        return samplers.get(spec)()
    if isinstance(spec, Mapping):
        if "name" not in spec:
            raise ValueError(f"a sampler dict needs a 'name' field; valid names: {', '.join(samplers.names())}")
        return samplers.get(spec["name"]).model_validate(dict(spec))
    name = getattr(spec, "name", None)
    if isinstance(spec, SpecModel) and isinstance(name, str) and name in samplers and isinstance(spec, samplers.get(name)):
        return spec
    raise TypeError(f"expected a sampler spec (e.g. HeunSamplerSpec(steps=18)), a registered sampler's name, or a "
                    f"dict of its fields such as {{'name': 'heun', 'steps': 18}}; got {type(spec).__name__}")
