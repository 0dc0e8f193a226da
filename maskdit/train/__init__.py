"""maskdit.train: the training loop and its hooks, EMA and post-hoc EMA."""

from maskdit.train.callbacks import Callbacks, Every, StepResult
from maskdit.train.posthoc_ema import (
    SIGMA_REL_MAX,
    AveragePlan,
    EMAProfile,
    PosthocAverage,
    PowerProfile,
    Snapshots,
    WindowProfile,
    average_snapshots,
    averaged_denoiser,
    gamma_for,
    plan_average,
    posthoc_ema,
    read_snapshots,
    sigma_rel_of,
    snapshot_weights,
)

__all__ = [
    "Callbacks",
    "Every",
    "StepResult",
    "SIGMA_REL_MAX",
    "AveragePlan",
    "EMAProfile",
    "PosthocAverage",
    "PowerProfile",
    "Snapshots",
    "WindowProfile",
    "average_snapshots",
    "averaged_denoiser",
    "gamma_for",
    "plan_average",
    "posthoc_ema",
    "read_snapshots",
    "sigma_rel_of",
    "snapshot_weights",
]
