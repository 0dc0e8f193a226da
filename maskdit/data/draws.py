"""Randomness for datasets that draw (flips, latent z): one generator per batch, or one per row.

A data-parallel run gives each rank some rows of the global batch. Drawing row i from its own
generator, seeded by (run seed, batch index, row position) with :func:`row_seeds`, makes every
row's draw the same for any number of ranks and any resume point, with no generator state to
checkpoint. With a single generator the whole batch is drawn from it in one call.
"""

from __future__ import annotations

import torch

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads nearby (seed, index) pairs apart


def row_seeds(run_seed: int, batch_index: int, positions) -> torch.Tensor:
    """int64 [B] seeds for the rows at ``positions`` (0-based within the global batch) of batch ``batch_index``."""
    positions = torch.as_tensor(positions, dtype=torch.int64).flatten()
    if len(positions) and int(positions.min()) < 0:
        raise ValueError("row positions must be >= 0")
    base = ((run_seed * 1_000_003 + batch_index) * _MIX) % 2**62
    return (positions * 2_654_435_761 + base) % 2**62


class Draws:
    """Uniforms and normals for a batch of ``rows`` items, from ``generator`` (whole batch at once,
    on its device) or from one CPU generator per entry of ``seeds`` (row i only uses generator i).
    Results are float32 on the CPU. Successive calls continue the same streams."""

    def __init__(self, rows: int, *, generator: torch.Generator | None = None, seeds=None) -> None:
        if (generator is None) == (seeds is None):
            raise ValueError("pass exactly one of generator (one stream per batch) or seeds (one per row)")
        self.rows, self.generator = rows, generator
        self.per_row = None
        if seeds is not None:
            seeds = torch.as_tensor(seeds, dtype=torch.int64).flatten()
            if len(seeds) != rows:
                raise ValueError(f"{len(seeds)} seeds for {rows} rows")
            self.per_row = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

    def uniform(self) -> torch.Tensor:
        """[rows] uniforms in [0, 1)."""
        if self.per_row is None:
            return torch.rand(self.rows, generator=self.generator, device=self.generator.device).cpu()
        return torch.cat([torch.rand(1, generator=g) for g in self.per_row]) if self.rows else torch.empty(0)

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        """[rows, *shape] standard normals."""
        if self.per_row is None:
            g = self.generator
            return torch.randn((self.rows, *shape), generator=g, device=g.device, dtype=torch.float32).cpu()
        if not self.rows:
            return torch.empty((0, *shape))
        return torch.stack([torch.randn(shape, generator=g) for g in self.per_row])  # B x [*shape] -> [B, *shape]
