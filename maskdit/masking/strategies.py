"""Masking strategies: ``strategy(batch_size, grid_hw, *, sigma=None, step=None, generator=None) -> Mask``
(or a GroupedMask, below).

Every strategy asks its ratio schedule for the batch's ratio and keeps exactly
``int(L * (1 - r))`` tokens per sample (the reference's rounding); all randomness comes from
the ``generator`` passed in. A schedule may instead give one ratio per sample (a [B] tensor, as
noise-adaptive masking does): the samples that keep the same count then form one group, each
group is drawn as one Mask (groups in order of decreasing count, each group's rows in batch
order, all from the same generator), and the result is a
:class:`~maskdit.masking.grouped.GroupedMask` (or a plain Mask when every sample keeps the same count).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask
from maskdit.masking.ratio_schedules import ConstantRatio


def num_kept(num_tokens: int, ratio: float) -> int:
    """Tokens the encoder sees at mask ratio ``ratio``: int(L * (1 - r)), as the reference computes it."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    kept = int(num_tokens * (1.0 - ratio))
    if kept < 1:
        raise ValueError(f"mask ratio {ratio} leaves no visible token out of {num_tokens}")
    return kept


def kept_per_sample(num_tokens: int, ratio: float | torch.Tensor, batch_size: int) -> list[int]:
    """The kept count of each sample: ``ratio`` is one ratio for the batch or a [B] tensor of
    per-sample ratios (each rounded as :func:`num_kept` does, in float64)."""
    if not isinstance(ratio, torch.Tensor):
        return [num_kept(num_tokens, ratio)] * batch_size
    if ratio.shape != (batch_size,):
        raise ValueError(f"the ratio schedule gave per-sample ratios of shape {tuple(ratio.shape)} for a batch of "
                         f"{batch_size}; per-sample ratios must be a [B={batch_size}] tensor")
    return [num_kept(num_tokens, r) for r in ratio.detach().to("cpu", torch.float64).tolist()]


DEFAULT_RATIO = 0.5  # MaskDiT's mask ratio (Zheng et al. 2024, sec. 3.1)


class MaskingStrategy:
    """Base of every strategy: validates the call, asks the ratio schedule for this batch's ratio,
    short-cuts r = 0 to the identity mask, and hands the rest to :meth:`draw`.

    ``ratio`` is a number (a constant ratio; default 0.5, the paper's) or a ratio schedule, any
    object ``schedule(*, step, sigma, generator) -> float`` with a ``max_ratio`` property (see
    :mod:`maskdit.masking.ratio_schedules`). A schedule that returns a [B] tensor gives each
    sample its own ratio: samples with the same kept count form a group, :meth:`draw` is called
    once per group, and the strategy returns a :class:`~maskdit.masking.grouped.GroupedMask`
    (each group a Mask with its own K; a plain Mask when all samples keep the same count).

    To write a strategy, subclass and implement the one hook, :meth:`draw`; register a spec for
    it (``@maskdit.config.registry.register("masking")``) to use it from JSON."""

    def __init__(self, ratio: float | Any = DEFAULT_RATIO) -> None:
        if isinstance(ratio, bool) or ratio is None:
            raise TypeError(f"ratio must be a number or a ratio schedule, got {ratio!r}")
        if isinstance(ratio, (int, float)):
            ratio = ConstantRatio(float(ratio))
        elif not (callable(ratio) and hasattr(ratio, "max_ratio")):
            raise TypeError(f"ratio must be a number or a ratio schedule (callable with max_ratio), got {ratio!r}")
        self.schedule = ratio

    @property
    def max_ratio(self) -> float:
        return self.schedule.max_ratio

    def __call__(
        self,
        batch_size: int,
        grid_hw: tuple[int, int],
        *,
        sigma: torch.Tensor | None = None,
        step: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Mask | GroupedMask:
        height, width = _check_grid(batch_size, grid_hw)
        if device is None:
            device = generator.device if generator is not None else "cpu"
        device = torch.device(device)
        counts = self.kept_counts(batch_size, height * width, sigma=sigma, step=step, generator=generator)
        levels = sorted(set(counts), reverse=True)  # most tokens kept (lowest ratio) first
        if len(levels) == 1:
            return self._draw_group(batch_size, (height, width), levels[0], generator, device)
        groups, members = [], []
        for kept in levels:
            rows = [b for b, count in enumerate(counts) if count == kept]
            groups.append(self._draw_group(len(rows), (height, width), kept, generator, device))
            members.append(torch.tensor(rows, dtype=torch.long, device=device))
        return GroupedMask.combine(groups, members)

    def kept_counts(self, batch_size: int, num_tokens: int, *, sigma: torch.Tensor | None = None,
                    step: int | None = None, generator: torch.Generator | None = None) -> list[int]:
        """The tokens each sample of a call keeps, as the call would decide them (the schedule is
        asked once and draws from ``generator`` as in the call); no mask is drawn."""
        ratio = self.schedule(step=step, sigma=sigma, generator=generator)
        return kept_per_sample(num_tokens, ratio, batch_size)

    def _draw_group(self, batch_size: int, grid_hw: tuple[int, int], kept: int, generator: torch.Generator | None,
                    device: torch.device) -> Mask:
        if kept == grid_hw[0] * grid_hw[1]:
            return Mask.identity(batch_size, kept, device=device)
        return self.draw(batch_size, grid_hw, kept, generator, device)

    def draw(self, batch_size: int, grid_hw: tuple[int, int], kept: int, generator: torch.Generator | None,
             device: torch.device) -> Mask:
        """The hook a strategy implements: a Mask keeping exactly ``kept`` of the ``grid_hw[0] *
        grid_hw[1]`` tokens (0 < kept < L) in each of ``batch_size`` rows, every random draw from
        ``generator`` (never the global RNG), tensors on ``device``. Called with validated inputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement draw(batch_size, grid_hw, kept, "
                                  "generator, device)")

    def _options(self) -> str:
        return ""

    def __repr__(self) -> str:
        ratio = self.schedule.ratio if isinstance(self.schedule, ConstantRatio) else self.schedule
        return f"{type(self).__name__}(ratio={ratio!r}{self._options()})"


class RandomMasking(MaskingStrategy):
    """Per-sample shuffle by argsort of uniform noise; kept tokens stay in shuffled order (reference)."""

    def draw(self, batch_size, grid_hw, kept, generator, device) -> Mask:
        noise = torch.rand(batch_size, grid_hw[0] * grid_hw[1], generator=generator, device=device)
        return Mask.from_order(torch.argsort(noise, dim=1), kept)


class BlockMasking(MaskingStrategy):
    """BEiT-style block masking with an exact count.

    Rectangles with area in [min_block, min(max_block, still-to-drop)] and log-uniform aspect in
    [min_aspect, 1/min_aspect] are dropped at random places; the last one is trimmed (raster
    order inside it) so the count is exact. If rectangles stop making progress, the remaining
    tokens are taken at random.
    """

    def __init__(self, ratio: float | Any = DEFAULT_RATIO, *, min_block: int = 4, max_block: int | None = None,
                 min_aspect: float = 0.3):
        super().__init__(ratio)
        if min_block < 1 or (max_block is not None and max_block < min_block) or not 0 < min_aspect <= 1:
            raise ValueError(f"bad block parameters: min_block={min_block}, max_block={max_block}, min_aspect={min_aspect}")
        self.min_block, self.max_block, self.min_aspect = min_block, max_block, min_aspect

    def _options(self) -> str:
        return f", min_block={self.min_block}, max_block={self.max_block}, min_aspect={self.min_aspect:g}"

    def draw(self, batch_size, grid_hw, kept, generator, device) -> Mask:
        height, width = grid_hw
        length = height * width
        tries = 4 * length
        # all draws up front, from the caller's generator: [B, tries, 4] uniforms + a fallback order
        uniforms = torch.rand(batch_size, tries, 4, generator=generator, device=device).tolist()
        fallback = torch.argsort(torch.rand(batch_size, length, generator=generator, device=device), dim=1).tolist()
        rows = [self._one(uniforms[b], fallback[b], height, width, length - kept) for b in range(batch_size)]
        return Mask.from_dropped(torch.tensor(rows, dtype=torch.bool, device=device))

    def _one(self, uniforms, fallback, height, width, target) -> list[bool]:
        dropped = [False] * (height * width)
        count = 0
        log_aspect = math.log(self.min_aspect)
        for u_area, u_aspect, u_top, u_left in uniforms:
            if count >= target:
                break
            remaining = target - count
            hi = min(self.max_block or remaining, remaining)
            lo = min(self.min_block, hi)
            area = lo + (hi - lo) * u_area
            aspect = math.exp(log_aspect * (2.0 * u_aspect - 1.0))
            bh = min(max(int(round(math.sqrt(area * aspect))), 1), height)
            bw = min(max(int(round(math.sqrt(area / aspect))), 1), width)
            top = min(int(u_top * (height - bh + 1)), height - bh)
            left = min(int(u_left * (width - bw + 1)), width - bw)
            for i in range(top, top + bh):
                for j in range(left, left + bw):
                    if count < target and not dropped[i * width + j]:
                        dropped[i * width + j] = True
                        count += 1
        for pos in fallback:  # only reached when the rectangles ran out of tries
            if count >= target:
                break
            if not dropped[pos]:
                dropped[pos] = True
                count += 1
        return dropped


class GridMasking(MaskingStrategy):
    """Regular pattern: within each cell x cell block tokens are kept in ordered-dither (Bayer)
    order, so r = 0.75 with cell 2 keeps one token per 2x2 cell and r = 0.5 a checkerboard. The
    pattern is shifted by a random (dy, dx) per sample; counts that do not fill a whole dither
    level take the next level's tokens in raster order."""

    def __init__(self, ratio: float | Any = DEFAULT_RATIO, *, cell: int = 2) -> None:
        super().__init__(ratio)
        if cell < 2 or cell & (cell - 1):
            raise ValueError(f"cell must be a power of two >= 2, got {cell}")
        self.cell = cell
        self.bayer = _bayer(cell)  # [cell, cell] ranks 0 .. cell^2 - 1

    def _options(self) -> str:
        return f", cell={self.cell}"

    def draw(self, batch_size, grid_hw, kept, generator, device) -> Mask:
        height, width = grid_hw
        length = height * width
        offsets = torch.randint(0, self.cell, (batch_size, 2), generator=generator, device=device)
        rows = torch.arange(height, device=device).view(1, height, 1)
        cols = torch.arange(width, device=device).view(1, 1, width)
        ri = (rows + offsets[:, 0].view(-1, 1, 1)) % self.cell  # [B, H, 1]
        ci = (cols + offsets[:, 1].view(-1, 1, 1)) % self.cell  # [B, 1, W]
        rank = self.bayer.to(device)[ri, ci]  # [B, H, W] dither level of each token
        raster = torch.arange(length, device=device)
        key = rank.reshape(batch_size, length) * length + raster  # level first, then raster order
        return Mask.from_order(torch.argsort(key, dim=1), kept)


class NoMasking(MaskingStrategy):
    """Always the identity mask."""

    def __init__(self) -> None:
        super().__init__(0.0)

    def __repr__(self) -> str:
        return "NoMasking()"


def _bayer(size: int) -> torch.Tensor:
    """Ordered-dither matrix: B2 = [[0, 2], [3, 1]], B2n = [[4B, 4B + 2], [4B + 3, 4B + 1]]."""
    matrix = torch.zeros(1, 1, dtype=torch.long)
    while matrix.shape[0] < size:
        m = 4 * matrix
        matrix = torch.cat([torch.cat([m, m + 2], 1), torch.cat([m + 3, m + 1], 1)], 0)
    return matrix


def _check_grid(batch_size: int, grid_hw) -> tuple[int, int]:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    try:
        height, width = (int(v) for v in grid_hw)
    except (TypeError, ValueError):
        raise ValueError(f"grid_hw must be a pair (height, width) of token counts, got {grid_hw!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"grid_hw must be positive, got {grid_hw!r}")
    return height, width
