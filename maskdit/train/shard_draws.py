"""The objective on one rank's rows, with the randomness of the whole global micro-batch.

Every rank holds the same generator (seeded with the run seed) and draws sigma, noise, label
dropout and the mask for the *global* micro-batch, exactly as :class:`Objective` would for a
single process, then keeps its own rows. So each rank gets different noise for its samples,
the union over the ranks is the single-process draw whatever the world size, and the
generator state stays identical on every rank (one state to checkpoint). The extra cost is
drawing W times the noise a rank needs, small next to a forward pass.
"""

from __future__ import annotations

from typing import Any

import torch

from maskdit.losses.objective import Objective, ObjectiveOutput
from maskdit.masking.mask import Mask


def mask_rows(mask: Mask, rows: slice) -> Mask:
    """The mask of a batch restricted to ``rows`` (every row keeps the same count, so this is a Mask)."""
    return Mask(ids_keep=mask.ids_keep[rows], ids_restore=mask.ids_restore[rows], dropped=mask.dropped[rows])


class ShardedObjective:
    """``sharded(denoiser, y, labels, *, rows, total, generator, step)``: ``y`` [b, C, H, W] holds
    rows ``rows`` of a global micro-batch of ``total`` samples. Draw order follows
    :meth:`Objective.__call__` (sigma, noise, label dropout, mask), which a test pins down."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        # label dropout is drawn here for the global batch, so the inner call must not draw it again
        self.inner = Objective(objective.terms, objective.noise, masking=objective.masking,
                               patch_size=objective.patch_size, label_dropout=0.0, num_classes=objective.num_classes)

    def draws(self, shape: tuple[int, ...], labels: torch.Tensor | None, *, rows: slice, generator: torch.Generator,
              step: int | None, dtype: torch.dtype) -> dict[str, Any]:
        """sigma, noise, labels (after dropout) and mask for ``rows`` of a global batch shaped ``shape``."""
        obj = self.objective
        total, _, height, width = shape
        draw_on = generator.device
        sigma = obj.noise(total, generator=generator, device=draw_on, dtype=dtype)  # [N]
        noise = torch.randn(shape, generator=generator, device=draw_on, dtype=dtype)  # [N, C, H, W]
        if labels is not None and obj.label_dropout > 0:
            u = torch.rand((total,), generator=generator, device=draw_on)[rows]  # drop_labels' draw, global
            labels = torch.where(u.to(labels.device) < obj.label_dropout, torch.full_like(labels, obj.num_classes),
                                 labels)
        mask = None
        if obj.masking is not None:
            if obj.patch_size is None:
                raise ValueError("drawing a mask needs the patch size: build the objective with patch_size=...")
            grid = (height // obj.patch_size, width // obj.patch_size)
            mask = mask_rows(obj.masking(total, grid, sigma=sigma, step=step, generator=generator, device=draw_on),
                             rows)
        return {"sigma": sigma[rows], "noise": noise[rows], "labels": labels, "mask": mask}

    def __call__(self, denoiser: Any, y: torch.Tensor, labels: torch.Tensor | None = None, *, rows: slice,
                 total: int, generator: torch.Generator, step: int | None = None) -> ObjectiveOutput:
        if rows.stop - rows.start != y.shape[0] or not 0 <= rows.start < rows.stop <= total:
            raise ValueError(f"rows {rows.start}:{rows.stop} of {total} do not match a batch of {y.shape[0]}")
        drawn = self.draws((total, *y.shape[1:]), labels, rows=rows, generator=generator, step=step, dtype=y.dtype)
        return self.inner(denoiser, y, drawn["labels"], sigma=drawn["sigma"].to(y.device),
                          noise=drawn["noise"].to(y.device), mask=drawn["mask"], step=step)
