"""The latent dataset: VAE posteriors stored as (mean, logvar); a fresh z at every draw.

MaskDiT (like DiT's and LDM's training code) does not train on one fixed latent per image: each
time an image is used, z = scale * (mean + std * eps) with new Gaussian eps (latent diffusion's
posterior sampling, Rombach et al. 2022, sec. 3; MaskDiT sec. 4.1). The randomness is passed in:

    z, labels = dataset.draw(ids, generator=g)   # [B, C, h, w], [B]
    z, labels = dataset.draw(ids, seeds=s)       # s: int64 [B], one generator per row

``draw`` consumes, from ``g`` and in this order: B uniforms for the mirror choice (only when the
dataset flips), then B * C * h * w normals for eps, drawn on ``g``'s device. With ``seeds`` row
i draws its uniform and then its C * h * w normals from a CPU generator seeded with ``s[i]``, so a
row's latent does not depend on which other rows share its batch (or rank). The same generator
state or seeds therefore give the same batch. With ``with_images=True`` (shards encoded with
``--keep-images``) ``draw`` also returns each row's source crop [B, 3, R, R] in [-1, 1], mirrored
where the row drew the mirrored latent, for terms that read clean images (REPA); it draws nothing
more, so z is the same with or without them. ``dataset[i]`` (for DataLoader users) returns the stored
moments ``cat(mean, logvar)`` [2C, h, w] - eight channels for kl-f8, as the reference stores them -
so code that forgets the draw fails on the channel count instead of training on the mean.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from maskdit.data.crop import from_uint8
from maskdit.data.draws import Draws
from maskdit.data.shards import IMAGES, LatentManifest, ShardError, check_shard, read_manifest


def sample_latents(mean: torch.Tensor, std: torch.Tensor, *, scale: float, generator: torch.Generator) -> torch.Tensor:
    """z = scale * (mean + std * eps), eps ~ N(0, I) drawn from ``generator`` on its device (float32)."""
    if mean.shape != std.shape:
        raise ValueError(f"mean {tuple(mean.shape)} and std {tuple(std.shape)} differ in shape")
    eps = torch.randn(mean.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return scale * (mean.float() + std.float() * eps.to(mean.device))


class LatentDataset(Dataset):
    """The shards of one latent folder (``python -m maskdit.latents encode --out DIR``).

    Shards are checked when the dataset is built (size always; SHA-256 with ``verify='sha256'``)
    and read through memory maps. ``expect`` (channels, resolution, num_classes) is compared with
    the manifest, so a spec that disagrees with the files fails before training.
    """

    def __init__(self, path: str | os.PathLike, *, flip: bool = False, verify: str = "sha256",
                 expect: tuple[int, int, int] | None = None) -> None:
        if verify not in ("sha256", "size"):
            raise ValueError(f"verify must be 'sha256' or 'size', got {verify!r}")
        self.path = Path(path)
        self.manifest: LatentManifest = read_manifest(self.path)
        manifest = self.manifest
        channels, height, width = manifest.latent_shape
        if height != width:
            raise ShardError(f"{self.path}: latents are {height}x{width}; the model needs square inputs")
        found = (channels, height, manifest.num_classes)
        if expect is not None and tuple(expect) != found:
            raise ShardError(f"the spec expects latents with (channels, resolution, classes) = {tuple(expect)}, "
                             f"but {self.path} holds {found}")
        if flip and not manifest.flip:
            raise ShardError(f"data.flip is on but {self.path} holds no mirrored latents; encode with --flip or set flip false")
        self.flip = flip
        self.shards = [check_shard(self.path, record, manifest, verify=verify) for record in manifest.shards]
        counts = torch.tensor([record.count for record in manifest.shards], dtype=torch.int64)
        self.ends = counts.cumsum(0)  # [S]: one past each shard's last item
        if not self.shards or manifest.count == 0:
            raise ShardError(f"{self.path} holds no latents")
        self.labels = torch.cat([shard["label"].clone() for shard in self.shards])  # [N]
        if len(self.labels) != manifest.count:
            raise ShardError(f"{self.path}: the shards hold {len(self.labels)} latents, the manifest {manifest.count}")
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= manifest.num_classes:
            raise ShardError(f"{self.path}: labels outside 0..{manifest.num_classes - 1}")

    @classmethod
    def from_spec(cls, spec) -> LatentDataset:
        return cls(spec.path, flip=spec.flip, verify=spec.verify,
                   expect=(spec.channels, spec.resolution, spec.num_classes))

    @property
    def scale(self) -> float:
        return self.manifest.scale

    @property
    def channels(self) -> int:
        return self.manifest.latent_shape[0]

    @property
    def resolution(self) -> int:
        return self.manifest.latent_shape[1]

    @property
    def num_classes(self) -> int:
        return self.manifest.num_classes

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def stores_images(self) -> bool:
        """Whether the shards hold the source crops (``encode --keep-images``): ``draw(..., with_images=True)``."""
        return self.manifest.images

    def require_images(self) -> None:
        """Raise a ShardError naming the folder and the fix unless the shards hold the source crops."""
        if not self.stores_images:
            raise ShardError(f"{self.path} holds no source images, which a term that reads clean images (repa) "
                             "needs: encode it again with `python -m maskdit.latents encode --keep-images` into a "
                             "new --out folder")

    def _gather(self, ids: torch.Tensor, name: str, shape: tuple[int, ...] | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Rows ``ids`` of tensor ``name`` across shards: ``dtype`` [B, *shape] (default float32 [B, C, h, w])."""
        out = torch.empty((len(ids), *(shape or self.manifest.latent_shape)), dtype=dtype)
        shard_of = torch.bucketize(ids, self.ends, right=True)  # [B]: which shard holds each id
        for s in shard_of.unique().tolist():
            chosen = shard_of == s
            first = int(self.ends[s - 1]) if s else 0
            out[chosen] = self.shards[s][name][ids[chosen] - first].to(dtype)
        return out

    def _ids(self, ids) -> torch.Tensor:
        ids = torch.as_tensor(ids, dtype=torch.int64).flatten().contiguous()
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= len(self)):
            raise IndexError(f"latent ids must lie in 0..{len(self) - 1}")
        return ids

    def _posterior(self, ids: torch.Tensor, draws: Draws | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, std, labels, mirror [B] bool: the rows that drew their mirrored copy)."""
        mean, logvar = self._gather(ids, "mean"), self._gather(ids, "logvar")
        mirror = torch.zeros(len(ids), dtype=torch.bool)
        if self.flip:
            if draws is None:
                raise ValueError("flip is on: pass a generator (or seeds) to choose the mirrored copies")
            mirror = draws.uniform() < 0.5  # [B]
            if mirror.any():
                mean[mirror] = self._gather(ids[mirror], "mean_flip")
                logvar[mirror] = self._gather(ids[mirror], "logvar_flip")
        return mean, torch.exp(0.5 * logvar), self.labels[ids], mirror

    def _images(self, ids: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
        """The source crops of ``ids`` in [-1, 1], float32 [B, 3, R, R], mirrored where ``mirror``."""
        side = self.manifest.source.resolution
        crops = self._gather(ids, IMAGES, (3, side, side), dtype=torch.uint8)  # a byte a value until the end
        if mirror.any():
            crops[mirror] = crops[mirror].flip(-1)  # the mirrored latents were encoded from the flipped crops
        return from_uint8(crops)  # [-1, 1] as the VAE saw them (to_tensor's scaling)

    def posterior(self, ids, *, generator: torch.Generator | None = None, seeds=None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, std, labels) of ``ids``: float32 [B, C, h, w] twice and int64 [B], unscaled.

        With ``flip`` each item is its mirror with probability 1/2 (one uniform per item)."""
        ids = self._ids(ids)
        unseeded = generator is None and seeds is None
        return self._posterior(ids, None if unseeded else Draws(len(ids), generator=generator, seeds=seeds))[:3]

    def draw(self, ids, *, generator: torch.Generator | None = None, seeds=None, with_images: bool = False
             ) -> tuple[torch.Tensor, ...]:
        """A training batch: z = scale * (mean + std * eps) [B, C, h, w] float32 and labels [B]
        (and, ``with_images``, the source crops [B, 3, R, R] in [-1, 1], mirrored as the latents).

        Randomness from ``generator`` (whole batch) or ``seeds`` (int64 [B], one generator per row,
        see :func:`maskdit.data.draws.row_seeds`); each stream gives the flip uniform first, then eps."""
        ids = self._ids(ids)
        if with_images:
            self.require_images()
        draws = Draws(len(ids), generator=generator, seeds=seeds)
        mean, std, labels, mirror = self._posterior(ids, draws)
        eps = draws.normal(self.manifest.latent_shape)  # [B, C, h, w]
        z = self.scale * (mean + std * eps)
        return (z, labels, self._images(ids, mirror)) if with_images else (z, labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"latent index {i} out of range for {len(self)} items")
        ids = torch.tensor([i % len(self)])
        moments = torch.cat([self._gather(ids, "mean"), self._gather(ids, "logvar")], dim=1)  # [1, 2C, h, w]
        return moments[0], int(self.labels[i])

    def __repr__(self) -> str:
        c, h, w = self.manifest.latent_shape
        return (f"LatentDataset({str(self.path)!r}, n={len(self)}, {c}x{h}x{w}, classes={self.num_classes}, "
                f"scale={self.scale:g}, flip={self.flip}, images={self.stores_images})")
