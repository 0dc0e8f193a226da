"""Deterministic batches: the order depends only on (seed, step), so a resumed run sees the same data."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from maskdit.data.draws import row_seeds
from maskdit.data.errors import DataError


class BatchStream:
    """Batch ``k`` of a run is a fixed function of the seed and k: epoch e = k // batches_per_epoch
    uses a permutation drawn from a generator seeded with (seed, e); incomplete tail batches are
    dropped. Datasets with a ``draw(ids, seeds=...)`` method (latents, flipped image folders) draw
    row j of batch k from its own seed ``row_seeds(seed, k, j)``, so a row's draw is the same on
    any rank and after any resume. Datasets exposing ``images``/``labels`` tensors are sliced
    directly (no per-item loop)."""

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int) -> None:
        self.size = len(dataset)
        if batch_size > self.size:
            raise DataError(f"train.batch_size: a (micro-)batch of {batch_size} exceeds the dataset's {self.size} items")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.per_epoch = self.size // batch_size
        self._epoch, self._order = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            self._epoch, self._order = epoch, torch.randperm(self.size, generator=generator)
        return self._order

    def batch(self, index: int, *, rows: slice | None = None, with_images: bool = False) -> tuple[torch.Tensor, ...]:
        """Batch number ``index`` (0-based, counted over the whole run): images [B, C, H, W], labels [B].

        ``rows`` keeps only those rows of the batch (a rank's share), read without loading the rest.
        ``with_images`` (a latent dataset that stores its source crops): also the clean images
        [B, 3, R, R] of the latents, from the same draw."""
        epoch, within = divmod(index, self.per_epoch)
        ids = self._permutation(epoch)[within * self.batch_size : (within + 1) * self.batch_size]
        positions = torch.arange(len(ids))  # places in the global batch, for per-row seeds
        if rows is not None:
            ids, positions = ids[rows], positions[rows]
        draw = getattr(self.dataset, "draw", None)
        if with_images:
            if not callable(draw) or getattr(self.dataset, "stores_images", None) is None:
                raise DataError(f"{type(self.dataset).__name__} has no stores_images and draw(ids, seeds=..., "
                                "with_images=True): it cannot hand out the clean images of its samples")
            return draw(ids, seeds=row_seeds(self.seed, index, positions), with_images=True)
        if callable(draw):
            return draw(ids, seeds=row_seeds(self.seed, index, positions))
        images = getattr(self.dataset, "images", None)
        labels = getattr(self.dataset, "labels", None)
        if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
            return images[ids], labels[ids]
        items = [self.dataset[int(i)] for i in ids]
        return torch.stack([item[0] for item in items]), torch.as_tensor([int(item[1]) for item in items])
