"""Post-hoc EMA: weight averages rebuilt after training from a run's kept raw-weight snapshots.

Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models" (EDM2),
Sec. 3: any average sum_n w_n theta_n of the weights theta_n after update n can be chosen after
training if enough of the theta_n were kept. A run that keeps a checkpoint every few steps keeps
them at a spacing; between two snapshots the weights are taken to move on the straight line, so
update n's weight is split between its two neighbouring snapshots in proportion to distance.
Weight on updates before the first snapshot cannot be placed and goes to the first snapshot:
it is reported (``weight_before_first``) and refused above ``max_lost``.

Profiles (weights over the positions n = 0 (the initial weights) .. N (the newest snapshot)):
:class:`PowerProfile` (EDM2's power-function EMA, weight ~ t^gamma, set by its relative width
sigma_rel, their Eq. 3), :class:`EMAProfile` (a plain EMA with the decay schedule of
:class:`maskdit.train.ema.EMA`) and :class:`WindowProfile` (the mean of the last updates).
Averages are summed in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskdit.core.denoiser import DDPMDenoiser, Denoiser
from maskdit.core.factory import build_model, wrap
from maskdit.core.specs import ModelSpec
from maskdit.interop.strict import load_strict
from maskdit.losses.heads import split_heads
from maskdit.io.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, read_state
from maskdit.train.specs import EMASpec

SIGMA_REL_MAX = math.sqrt(1 / 12)  # sigma_rel at gamma = 0: the uniform average of the whole run
MAX_LOST_WEIGHT = 0.01  # default share of a profile's weight allowed before the first snapshot


def sigma_rel_of(gamma: float) -> float:
    """Relative standard deviation of the power-function profile t^gamma (EDM2, Eq. 3)."""
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


def gamma_for(sigma_rel: float) -> float:
    """The exponent gamma >= 0 whose profile t^gamma has relative width ``sigma_rel`` (inverse of
    EDM2's Eq. 3): with t = sigma_rel^-2, Eq. 3 is the cubic g^3 + 7g^2 + (16 - t)g + 12 - t = 0,
    whose largest real root is the answer (as in EDM2's released ``sigma_rel_to_gamma``)."""
    if not 0 < sigma_rel <= SIGMA_REL_MAX:
        raise ValueError(f"sigma_rel {sigma_rel:g} is outside (0, {SIGMA_REL_MAX:.4f}] (the profile needs gamma >= 0)")
    if sigma_rel == SIGMA_REL_MAX:
        return 0.0  # the root 0 comes out of the eigenvalue solver as +-1e-16
    t = sigma_rel ** -2
    return max(0.0, float(np.roots([1.0, 7.0, 16.0 - t, 12.0 - t]).real.max()))


@dataclass(frozen=True)
class PowerProfile:
    """EDM2's power-function EMA (Sec. 3.1): weight proportional to t^gamma over the run, gamma
    chosen so the profile's relative standard deviation is ``sigma_rel`` (Eq. 3)."""

    sigma_rel: float

    def __post_init__(self) -> None:
        gamma_for(self.sigma_rel)  # raises for an out-of-range width

    @property
    def name(self) -> str:
        return f"power-{self.sigma_rel:g}"

    @property
    def gamma(self) -> float:
        return gamma_for(self.sigma_rel)

    def position_weights(self, updates: int) -> np.ndarray:
        """Update n gets the integral of t^gamma over (n - 1, n] (t in units of the run's length, so
        a large gamma does not overflow); the initial weights get none."""
        edges = np.arange(updates + 1, dtype=np.float64) / updates
        return np.concatenate([[0.0], np.diff(edges ** (self.gamma + 1))])


@dataclass(frozen=True)
class EMAProfile:
    """A plain EMA with ``decay`` and, with ``warmup``, decay_n = min(decay, (1 + n) / (10 + n))
    after n updates: the schedule of :class:`maskdit.train.ema.EMA`, i.e. ``train.ema``."""

    decay: float
    warmup: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {self.decay}")

    @property
    def name(self) -> str:
        return f"ema-{self.decay:g}"

    def position_weights(self, updates: int) -> np.ndarray:
        """The EMA's weight on the initial weights (the product of all decays) and on each update."""
        n = np.arange(updates, dtype=np.float64)  # the updates before each one
        decays = np.minimum(self.decay, (1 + n) / (10 + n)) if self.warmup else np.full(updates, self.decay)
        later = np.append(np.cumprod(decays[::-1])[::-1][1:], 1.0)  # product of the decays after each update
        return np.concatenate([[float(np.prod(decays))], (1 - decays) * later])


@dataclass(frozen=True)
class WindowProfile:
    """The plain mean of the last ``length`` updates' weights (all of them in a shorter run)."""

    length: int

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"window length must be >= 1, got {self.length}")

    @property
    def name(self) -> str:
        return f"window-{self.length}"

    def position_weights(self, updates: int) -> np.ndarray:
        kept = min(self.length, updates)
        weights = np.zeros(updates + 1)
        weights[updates + 1 - kept:] = 1.0 / kept
        return weights


Profile = PowerProfile | EMAProfile | WindowProfile


def snapshot_weights(position_weights: np.ndarray, positions: Sequence[int]) -> tuple[np.ndarray, float]:
    """Spread weights over positions n = 0 .. N onto snapshots at ``positions`` (ascending, at
    least two): a position between snapshots a < n <= b goes to both in proportion to its
    distance (the weights are taken to move linearly), one before the first snapshot to the
    first, one after the last to the last. Returns the snapshot weights and the weight of the
    positions before the first snapshot (what the line cannot reach)."""
    at = np.asarray(positions, dtype=np.int64)
    if at.ndim != 1 or len(at) < 2 or not bool(np.all(np.diff(at) > 0)):
        raise ValueError(f"snapshot positions must be at least two, strictly increasing; got {list(positions)}")
    weights = np.asarray(position_weights, dtype=np.float64)
    n = np.arange(len(weights))
    right = np.clip(np.searchsorted(at, n, side="left"), 1, len(at) - 1)  # the snapshot at or after n
    a, b = at[right - 1], at[right]
    share = np.clip((n - a) / (b - a), 0.0, 1.0)  # 0 before the first snapshot, 1 after the last
    spread = (np.bincount(right - 1, weights * (1 - share), minlength=len(at))
              + np.bincount(right, weights * share, minlength=len(at)))
    return spread, float(weights[n < at[0]].sum())


@dataclass(frozen=True)
class Snapshots:
    """A run's kept checkpoints, oldest first: their folders, training steps, the optimizer updates
    each had seen (the EMA's count; the step where none is recorded), and the newest's spec."""

    paths: tuple[Path, ...]
    steps: tuple[int, ...]
    updates: tuple[int, ...]
    spec: Mapping[str, Any] | None

    @property
    def ema(self) -> EMASpec | None:
        """The run's own ``train.ema`` settings (None without a saved spec)."""
        found = ((self.spec or {}).get("train") or {}).get("ema")
        return EMASpec.model_validate(found) if isinstance(found, Mapping) else None

    @property
    def model(self) -> ModelSpec | None:
        """The run's model spec (None without a saved spec)."""
        found = (self.spec or {}).get("model")
        return ModelSpec.model_validate(found) if isinstance(found, Mapping) else None


def read_snapshots(run_dir: str | Path) -> Snapshots:
    """The snapshots of a run folder (or its ``checkpoints/`` folder). Raises ValueError with
    fewer than two, CheckpointError naming an unreadable state.json."""
    run_dir = Path(run_dir)
    root = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    paths = list_checkpoints(root)
    if len(paths) < 2:
        raise ValueError(f"{root} holds {len(paths)} checkpoint(s); post-hoc averages need at least two raw-weight "
                         "snapshots (train with train.keep_checkpoints > 1)")
    states = [read_state(path) for path in paths]
    kept: list[tuple[Path, int, int]] = []
    for path, state in zip(paths, states):
        update = int(state.get("ema_updates", state["step"]))
        if kept and update < kept[-1][2]:
            raise ValueError(f"{path}: {update} updates after {kept[-1][0]}'s {kept[-1][2]}: not one run's snapshots")
        if kept and update == kept[-1][2]:
            continue  # only skipped steps in between: the same weights
        kept.append((path, int(state["step"]), update))
    if len(kept) < 2:
        raise ValueError(f"{root}: its checkpoints hold one set of weights; post-hoc averages need two")
    spec = states[-1].get("spec")
    return Snapshots(paths=tuple(p for p, _, _ in kept), steps=tuple(s for _, s, _ in kept),
                     updates=tuple(u for _, _, u in kept), spec=spec if isinstance(spec, Mapping) else None)


@dataclass(frozen=True)
class AveragePlan:
    """What averaging ``profile`` over the snapshots takes: each snapshot's weight (summing to 1)
    and the share of the profile's weight that lies before the first snapshot."""

    profile: str
    paths: tuple[Path, ...]
    steps: tuple[int, ...]
    weights: tuple[float, ...]
    weight_before_first: float


def plan_average(snapshots: Snapshots, profile: Profile, *, max_lost: float = MAX_LOST_WEIGHT) -> AveragePlan:
    """The snapshot weights of ``profile``; ValueError if more than ``max_lost`` of its weight lies
    before the first snapshot (the average would then be mostly the first snapshot's)."""
    if not 0 <= max_lost <= 1:
        raise ValueError(f"max_lost is a share of the profile's weight, in [0, 1]; got {max_lost}")
    weights, lost = snapshot_weights(profile.position_weights(snapshots.updates[-1]), snapshots.updates)
    if lost > max_lost:
        raise ValueError(f"{profile.name}: {lost:.1%} of its weight lies before the first snapshot (step "
                         f"{snapshots.steps[0]}); at most {max_lost:.1%} may (keep earlier checkpoints or pick a "
                         "narrower profile)")
    return AveragePlan(profile=profile.name, paths=snapshots.paths, steps=snapshots.steps,
                       weights=tuple(float(w) for w in weights), weight_before_first=lost)


def average_snapshots(plan: AveragePlan) -> dict[str, torch.Tensor]:
    """sum_k plan.weights[k] * (raw ``model`` weights of snapshot k), summed in float64 and cast
    back to each tensor's dtype; non-floating tensors come from the newest weighted snapshot.
    Raises CheckpointError naming a corrupt snapshot or one whose tensors do not match."""
    total: dict[str, torch.Tensor] = {}
    first: dict[str, torch.Tensor] = {}
    for path, weight in zip(plan.paths, plan.weights):
        if weight == 0:
            continue  # not read: a window profile may use only the last few snapshots
        tensors = load_checkpoint(path).tensors.get("model")
        if not tensors:
            raise CheckpointError(f"{path}: holds no raw 'model' weights")
        if first and {n: (v.shape, v.dtype) for n, v in tensors.items()} != {n: (v.shape, v.dtype) for n, v in first.items()}:
            raise CheckpointError(f"{path}: its model tensors differ in names, shapes or dtypes from the other snapshots'")
        first = first or tensors
        for name, value in tensors.items():
            if value.is_floating_point():
                total[name] = total.get(name, 0.0) + weight * value.to(torch.float64)
            else:
                total[name] = value
    return {name: value.to(first[name].dtype) for name, value in total.items()}


@dataclass(frozen=True)
class PosthocAverage:
    """A rebuilt average: its plan (profile, snapshots, weights, weight before the first), the
    averaged raw weights (keys as the checkpoint's ``model`` group) and the run's model spec."""

    plan: AveragePlan
    tensors: dict[str, torch.Tensor]
    model: ModelSpec | None

    def denoiser(self) -> Denoiser | DDPMDenoiser:
        """The run's denoiser holding these weights, in eval mode (samples like ``load_run``'s)."""
        if self.model is None:
            raise ValueError(f"{self.plan.paths[-1]}: no saved spec, so no model to load the average into")
        return averaged_denoiser(self.tensors, self.model, source=f"{self.plan.paths[-1].parent} ({self.plan.profile})")


def posthoc_ema(run_dir: str | Path, *, sigma_rel: float | None = None, decay: float | None = None,
                warmup: bool | None = None, max_lost: float = MAX_LOST_WEIGHT) -> PosthocAverage:
    """The power-function EMA of width ``sigma_rel`` (EDM2, Sec. 3) or the plain EMA with
    ``decay`` (with the run's own warm-up setting unless ``warmup`` is given) of the run at
    ``run_dir``, rebuilt from its kept checkpoints. Give exactly one of the two."""
    if (sigma_rel is None) == (decay is None):
        raise ValueError("give exactly one of sigma_rel and decay")
    snapshots = read_snapshots(run_dir)
    if sigma_rel is not None:
        profile: Profile = PowerProfile(sigma_rel)
    else:
        if warmup is None:
            own = snapshots.ema
            if own is None:
                raise ValueError(f"{snapshots.paths[-1]}: no saved spec to read train.ema.warmup from; pass warmup=")
            warmup = own.warmup
        profile = EMAProfile(decay, warmup=warmup)
    plan = plan_average(snapshots, profile, max_lost=max_lost)
    return PosthocAverage(plan=plan, tensors=average_snapshots(plan), model=snapshots.model)


def averaged_denoiser(tensors: Mapping[str, torch.Tensor], model: ModelSpec, *,
                      source: str = "averaged weights") -> Denoiser | DDPMDenoiser:
    """The denoiser holding averaged weights (the wrapper's ``net.`` prefix is dropped), in eval mode."""
    net = build_model(model, device="meta")
    tensors, _ = split_heads(tensors)  # training heads (repa's projector) are not part of the sampled model
    load_strict(net, {name.removeprefix("net."): value for name, value in tensors.items()}, source=source)
    return wrap(net, model).eval()
