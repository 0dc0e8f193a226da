"""Drawing the samples an evaluation scores: seeded per image, balanced over classes.

Image ``i`` gets its own generator seeded from (run seed, i), which supplies both its initial
noise and any noise a stochastic sampler draws, so a given image does not depend on the batch
size or on which batch it falls in. Labels cycle through the classes (``i % num_classes``) so
every class gets the same number of samples.

Across ranks, the samples are cut into the same batches as in one process and rank r draws
batches r, r + W, r + 2W, ... (W ranks), so every image, and the whole set, is the same for any
number of ranks (each image even sees the same batch-mates, so batch-size-dependent kernels
cannot change it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from maskdit.samplers import Sampler, per_sample_noise_sampler

MIX = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: spreads (seed, index) pairs over the 64-bit seed space


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of a run seeded with ``seed``. torch's generators keep its low 32
    bits, so the images of one run get distinct seeds (below 2^32 images), but an image of one run
    may share its seed with an image of another."""
    return (seed * MIX + index) % 2**64


def balanced_labels(num_samples: int, num_classes: int) -> torch.Tensor | None:
    """[N] labels 0, 1, ..., K-1, 0, 1, ...; None for an unconditional model (``num_classes == 0``)."""
    if num_classes <= 0:
        return None
    return torch.arange(num_samples) % num_classes


def rank_batch_starts(num_samples: int, batch_size: int, *, rank: int = 0, world_size: int = 1) -> list[int]:
    """First image index of each batch that ``rank`` of ``world_size`` draws (batches rank, rank + W, ...)."""
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
    return list(range(rank * batch_size, num_samples, world_size * batch_size))


@torch.no_grad()
def generate_batches(
    denoiser: Callable[..., torch.Tensor],
    sampler: Sampler,
    *,
    num_samples: int,
    batch_size: int,
    shape: tuple[int, int, int],
    num_classes: int,
    seed: int,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world_size: int = 1,
    labels: torch.Tensor | None = None,
    callback: Callable[[dict], None] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield (images [B, C, H, W] on the CPU, labels [B] or None) until ``num_samples`` are drawn;
    with ``world_size`` > 1 only the batches of ``rank`` (see :func:`rank_batch_starts`).
    ``labels`` [num_samples]: the class of each image (default: balanced over ``num_classes``);
    ``callback``: the sampler's, after every step of every batch."""
    starts = rank_batch_starts(num_samples, batch_size, rank=rank, world_size=world_size)
    if labels is None:
        labels = balanced_labels(num_samples, num_classes)
    elif labels.shape != (num_samples,):
        raise ValueError(f"labels must have shape [{num_samples}], got {tuple(labels.shape)}")
    for start in starts:
        stop = min(start + batch_size, num_samples)
        generators = [torch.Generator().manual_seed(image_seed(seed, i)) for i in range(start, stop)]
        noise = torch.stack([torch.randn(shape, generator=g) for g in generators])  # B x [C, H, W] -> [B, C, H, W]
        batch_labels = None if labels is None else labels[start:stop]
        on_cpu = per_sample_noise_sampler(generators, noise)  # CPU generators: same draws on any device
        images = sampler(
            denoiser,
            noise.to(device),
            labels=None if batch_labels is None else batch_labels.to(device),
            noise_sampler=lambda sigma, sigma_next, draw=on_cpu: draw(sigma, sigma_next).to(device),
            callback=callback,
        )
        yield images.float().cpu(), batch_labels
