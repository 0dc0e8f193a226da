"""Representation alignment, REPA (Yu et al. 2025, "Representation Alignment for Generation", sec. 3).

The tokens after an early encoder block go through a small projector MLP and are pulled towards
a frozen pretrained encoder's features of the clean image at the same grid positions: the term
is minus the cosine similarity, averaged over the tokens. Under token sparsity it aligns exactly
the tokens present at that block (the kept ones inside a sparse span, as SPRINT, Park et al.
2025, aligns only its kept tokens), read from the denoiser's own forward pass (no second pass).
The projector is a training head (:mod:`maskdit.losses.heads`): it trains with the model and is
never part of sampling or exports. ``until_step`` switches the term off after that many steps
(HASTE's early stop of the alignment term).

On latent data the clean images come with the batch (``LossInputs.pixels``: the crops a latent
folder encoded with ``--keep-images`` stores, mirrored with their latents), as REPA's own
pipeline keeps the images beside the latents and runs the encoder on them at every step.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from maskdit.losses.inputs import LossInputs


def repa_projector(width: int, hidden: int, out: int, *, generator: torch.Generator | None = None) -> nn.Sequential:
    """REPA's projector: Linear(width, hidden), SiLU, Linear(hidden, hidden), SiLU, Linear(hidden, out),
    in the layout of REPA's checkpoints (``projectors.0.{0,2,4}``), with PyTorch's default Linear
    initialisation drawn from ``generator`` (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases)."""
    projector = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                              nn.Linear(hidden, out))
    with torch.no_grad():
        for layer in projector:
            if isinstance(layer, nn.Linear):
                bound = 1 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return projector


def features_on_grid(features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Encoder features [B, D, h, w] -> [B, L, D] on the model's token grid (row-major, as the
    Mask's positions): averaged over whole cells when the grid divides the encoder's, else
    bilinearly resized (REPA's encoder and model grids are equal: 16 x 16)."""
    height, width = features.shape[-2:]
    if (height, width) != grid:
        if height % grid[0] == 0 and width % grid[1] == 0:
            features = F.adaptive_avg_pool2d(features, grid)
        else:
            features = F.interpolate(features, size=grid, mode="bilinear", align_corners=False)
    return rearrange(features, "b d h w -> b (h w) d")


def _image_key(image: torch.Tensor, grid: tuple[int, int]) -> bytes:
    """A digest of one image's values (and the grid its features are laid on): the cache key."""
    digest = hashlib.blake2b(image.detach().cpu().contiguous().numpy().tobytes(), digest_size=16)
    digest.update(repr((tuple(image.shape), str(image.dtype), grid)).encode())
    return digest.digest()


class RepaLoss:
    """Per sample [B]: - mean over the tokens present after block ``depth`` of cos(projector(h), f).

    ``encoder``: a frozen encoder (:class:`~maskdit.encoders.base.FrozenEncoder`: clean images
    [B, C, H, W] in [-1, 1] -> features [B, D_enc, h, w]); ``depth``: how many encoder blocks run
    before the tokens are read (REPA's ``--encoder-depth``, 8 of SiT-XL's 28); ``projector_dim``:
    the projector's hidden width (REPA: 2048); ``until_step``: the last step the term is on
    (None: always); ``cache_features``: keep each clean image's features (keyed by its bytes), so
    the encoder runs once per distinct image: only for data without augmentation that fits in
    memory (the digits). A missed image is encoded alone, so its features do not depend on the
    batch it came in and a resumed run gets the same ones; ``encoded_images`` counts the encoder
    calls (the one-off extraction cost). The denoiser must hold the projector as
    ``heads['repa']`` (attach_heads)."""

    name = "repa"
    reads_pixels = True  # the encoder reads the clean images: a latent batch must bring them

    def __init__(self, encoder: nn.Module, *, depth: int, projector_dim: int = 2048, until_step: int | None = None,
                 cache_features: bool = False, eps: float = 1e-8) -> None:
        if not isinstance(encoder, nn.Module) or not isinstance(getattr(encoder, "width", None), int):
            raise TypeError(f"encoder must be a frozen encoder module with an int width, got {type(encoder).__name__}")
        if any(p.requires_grad for p in encoder.parameters()):
            raise ValueError(f"the encoder {type(encoder).__name__} has trainable parameters: REPA's target must be "
                             "frozen (FrozenEncoder.freeze)")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be an int >= 1 (blocks run before alignment), got {depth!r}")
        if not isinstance(projector_dim, int) or projector_dim < 1:
            raise ValueError(f"projector_dim must be a positive int, got {projector_dim!r}")
        if until_step is not None and (not isinstance(until_step, int) or until_step < 0):
            raise ValueError(f"until_step must be None or an int >= 0, got {until_step!r}")
        self.encoder = encoder
        self.depth = depth
        self.projector_dim = projector_dim
        self.until_step = until_step
        self.eps = float(eps)
        self.cache: dict[bytes, torch.Tensor] | None = {} if cache_features else None
        self.encoded_images = 0

    @property
    def blocks(self) -> tuple[int, ...]:
        """The block whose output is aligned (0-based: after ``depth`` blocks)."""
        return (self.depth - 1,)

    def make_head(self, backbone: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        """The projector for ``backbone``'s encoder width (a training head)."""
        blocks = getattr(backbone, "blocks", ())
        if self.depth > len(blocks):
            raise ValueError(f"repa depth {self.depth} is deeper than the backbone's {len(blocks)} encoder blocks")
        return repa_projector(backbone.spec.hidden_size, self.projector_dim, self.encoder.width, generator=generator)

    def training_macs(self, hidden_size: int, tokens: int, image_shape: tuple[int, int, int]) -> tuple[int, int]:
        """(projector, encoder) multiply-adds per sample of a training step: the projector forward
        and backward (3 forwards) on ``tokens`` aligned tokens of width ``hidden_size``, and the
        frozen encoder's forward (no backward) on one image of ``image_shape`` (C, H, W), counted by
        torch's FLOP counter."""
        width, dim = hidden_size, self.projector_dim
        projector = 3 * tokens * (width * dim + dim * dim + dim * self.encoder.width)
        param = next(self.encoder.parameters(), None)
        image = torch.zeros(1, *image_shape, device=param.device if param is not None else "cpu")
        with FlopCounterMode(display=False) as counter:
            self.encoder(image)
        return projector, counter.get_total_flops() // 2  # the counter counts a multiply-add as 2 FLOPs

    def active(self, step: int | None) -> bool:
        return self.until_step is None or step is None or step < self.until_step

    def target_features(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """The frozen encoder's features of the clean images on the token grid: [B, L, D_enc]."""
        if images.shape[1] not in (1, 3):
            raise ValueError(f"repa aligns to the encoder's features of the clean images, but the batch has "
                             f"{images.shape[1]} channels (latents?): the encoder needs images in [-1, 1] with 1 or "
                             f"3 channels; a latent batch must bring its images as the objective's pixels "
                             f"(a latent folder encoded with --keep-images)")
        param = next(self.encoder.parameters(), None)
        if param is not None and param.device != images.device:
            self.encoder.to(images.device)
        if param is not None:
            images = images.to(param.dtype)  # the encoder runs in its own dtype
        if self.cache is None:
            self.encoded_images += images.shape[0]
            return features_on_grid(self.encoder(images), grid).detach()
        keys = [_image_key(image, grid) for image in images]
        for row, key in enumerate(keys):
            if key not in self.cache:
                self.cache[key] = features_on_grid(self.encoder(images[row:row + 1]), grid)[0].detach()  # [L, D]
                self.encoded_images += 1
        return torch.stack([self.cache[key] for key in keys])  # [B, L, D]

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        batch = inputs.y.shape[0]
        if not self.active(inputs.step):
            return inputs.y.new_zeros(batch)
        projector = inputs.heads.get(self.name)
        if projector is None:
            raise ValueError("the repa term needs its projector on the denoiser: maskdit.losses.attach_heads(...)")
        pieces = inputs.hidden.get(self.blocks[0])
        if not pieces:
            raise ValueError(f"the repa term needs the tokens after block {self.blocks[0]} from the forward pass; "
                             "run it inside an Objective, which taps the blocks its terms name")
        if inputs.pixels is not None and inputs.pixels.shape[1] not in (1, 3):  # not a latent batch's fault
            raise ValueError(f"repa aligns to the encoder's features of the clean images, but the objective's "
                             f"pixels have {inputs.pixels.shape[1]} channels: pass images in [-1, 1] with 1 or 3")
        targets = self.target_features(inputs.clean_images, pieces[0].grid)  # [B, L, D_enc]
        dtype = torch.promote_types(inputs.denoised.dtype, torch.float32)  # cosines in at least float32
        per_sample = inputs.y.new_zeros(batch, dtype=dtype)
        for piece in pieces:
            target = targets if piece.rows is None else targets[piece.rows]  # [B_g, L, D_enc]
            if piece.positions is not None:  # the kept tokens: their own grid positions
                index = piece.positions.unsqueeze(-1).expand(-1, -1, target.shape[-1])  # [B_g, K, D_enc]
                target = target.gather(1, index)
            projected = projector(piece.tokens)  # [B_g, N, D] -> [B_g, N, D_enc]
            cosine = F.cosine_similarity(projected.to(dtype), target.to(dtype), dim=-1, eps=self.eps)  # [B_g, N]
            loss = -cosine.sum(dim=1) / max(cosine.shape[1], 1)  # [B_g]; 0 where a path drop kept no token
            per_sample = loss if piece.rows is None else per_sample.index_copy(0, piece.rows, loss)
        return per_sample.to(inputs.denoised.dtype)

    def __repr__(self) -> str:
        return (f"RepaLoss(encoder={type(self.encoder).__name__}, depth={self.depth}, "
                f"projector_dim={self.projector_dim}, until_step={self.until_step}, "
                f"cache_features={self.cache is not None})")
