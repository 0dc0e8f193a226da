"""DINOv2 (Oquab et al. 2024) through timm: the encoders REPA aligns to (Yu et al. 2025, table 2:
DINOv2-B is its default target), ViT-S/B/L/G with patch 14, with and without 4 registers (Darcet
et al. 2024).

The features are DINOv2's ``x_norm_patchtokens``: the tokens after the final LayerNorm with the
class and register tokens removed, [B, D, 16, 16] at 224 pixels. Weights come from a safetensors
file (timm's layout: the ``model.safetensors`` of the hub's ``timm/<name>.lvd142m`` repositories),
from that file on the Hugging Face hub when asked, or are drawn at random from a generator (the
control that aligns to an untrained network of the same shape). Position embeddings stored for
another resolution (timm's files are for 518 pixels) are resampled bicubically without
antialiasing, as DINOv2's own ``interpolate_pos_encoding`` does.
"""

from __future__ import annotations

import math
import os
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from maskdit.config.errors import CheckpointError, printable
from maskdit.encoders.base import FrozenEncoder
from maskdit.encoders.preprocess import imagenet_normalise, resize_square, to_channels
from maskdit.encoders.weights import check_keys, load_weights, read_weights

PATCH_SIZE = 14
#: the pretrained tag of DINOv2's released weights in timm (LVD-142M)
PRETRAINED_TAG = "lvd142m"
SIZES = ("small", "base", "large", "giant")


def timm_name(size: str, registers: bool) -> str:
    """timm's architecture name, e.g. ``vit_base_patch14_reg4_dinov2``."""
    if size not in SIZES:
        raise ValueError(f"unknown DINOv2 size {size!r}; valid sizes: {', '.join(SIZES)}")
    return f"vit_{size}_patch14_{'reg4_' if registers else ''}dinov2"


def create_network(size: str, registers: bool, image_size: int) -> nn.Module:
    """timm's DINOv2 ViT for ``image_size`` pixels, without weights (timm's own initialisation,
    drawn from a forked global RNG so the caller's random state is untouched)."""
    if image_size % PATCH_SIZE:
        raise ValueError(f"image_size {image_size} is not a multiple of DINOv2's patch size {PATCH_SIZE}")
    try:  # deferred: timm is an optional dependency, imported only when a DINOv2 encoder is built
        import timm
    except ImportError as err:
        raise ImportError(f"the dinov2 encoder needs timm ({err}): pip install 'maskdit[repa]'") from err
    with torch.random.fork_rng(devices=[]):
        return timm.create_model(timm_name(size, registers), pretrained=False, img_size=image_size, num_classes=0)


def hub_weights_file(size: str, registers: bool) -> str:
    """Download (or find in the cache) the safetensors file of the released weights on the Hugging
    Face hub; only the safetensors file is fetched, never a pickle."""
    name = timm_name(size, registers)
    try:  # deferred: optional dependencies (timm brings huggingface_hub)
        from huggingface_hub import hf_hub_download
        from timm.models import get_pretrained_cfg
    except ImportError as err:
        raise ImportError(f"the dinov2 encoder needs timm ({err}): pip install 'maskdit[repa]'") from err
    config = get_pretrained_cfg(f"{name}.{PRETRAINED_TAG}")
    if config is None or not config.hf_hub_id:
        raise ValueError(f"timm knows no hub weights for {name}.{PRETRAINED_TAG}")
    return hf_hub_download(config.hf_hub_id, "model.safetensors")


def init_random(network: nn.Module, generator: torch.Generator) -> None:
    """Draw every random parameter from ``generator`` the way timm initialises a ViT: linear
    weights N(0, 0.02^2) (timm truncates at +-2, 100 standard deviations: never reached), biases 0,
    the patch convolution as torch's default (uniform in +-1/sqrt(fan_in)), positions N(0, 0.02^2),
    class and register tokens with standard deviation 1e-6. LayerNorms (1, 0) and LayerScales keep their constants."""
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 0.02, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Conv2d):
                bound = (module.weight[0].numel()) ** -0.5  # 1 / sqrt(fan_in)
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        for name, std in (("pos_embed", 0.02), ("cls_token", 1e-6), ("reg_token", 1e-6)):
            param = getattr(network, name, None)
            if param is not None:
                param.normal_(0.0, std, generator=generator)


def resample_positions(state: dict[str, torch.Tensor], network: nn.Module, *, source: str | os.PathLike) -> None:
    """Bring the file's ``pos_embed`` to the network's grid in place (bicubic, no antialiasing)."""
    stored, wanted = state.get("pos_embed"), network.state_dict().get("pos_embed")
    if stored is None or wanted is None or stored.shape == wanted.shape:
        return  # nothing to resample
    prefix = 0 if network.no_embed_class else network.num_prefix_tokens  # tokens with their own position
    wanted_side = math.isqrt(wanted.shape[1] - prefix)
    stored_side = math.isqrt(max(stored.shape[1] - prefix, 0)) if stored.ndim == 3 else 0
    if stored.ndim != 3 or stored.shape[0] != 1 or stored.shape[2] != wanted.shape[2] \
            or stored_side < 1 or stored_side ** 2 + prefix != stored.shape[1]:
        raise CheckpointError(f"{printable(source)}: pos_embed is {tuple(stored.shape)}, not [1, {prefix} + n^2, "
                              f"{wanted.shape[2]}] position embeddings of this encoder")
    head, grid = stored[:, :prefix], stored[:, prefix:].float()
    grid = rearrange(grid, "1 (h w) d -> 1 d h w", h=stored_side)  # [1, n^2, D] -> [1, D, n, n]
    grid = F.interpolate(grid, size=(wanted_side, wanted_side), mode="bicubic", align_corners=False)
    grid = rearrange(grid, "1 d h w -> 1 (h w) d")  # [1, D, m, m] -> [1, m^2, D]
    state["pos_embed"] = torch.cat([head, grid.to(stored.dtype)], dim=1)


class DINOv2Encoder(FrozenEncoder):
    """A timm DINOv2 network as a frozen encoder: images [B, 1 or 3, H, W] in [-1, 1] -> the final
    normalised patch tokens [B, D, image_size / 14, image_size / 14]."""

    in_channels = 3
    patch_size = PATCH_SIZE

    def __init__(self, network: nn.Module, *, image_size: int = 224) -> None:
        super().__init__()
        grid = getattr(getattr(network, "patch_embed", None), "grid_size", None)
        if grid != (image_size // PATCH_SIZE,) * 2:
            raise ValueError(f"the network's patch grid {grid} does not match image_size {image_size} with patch "
                             f"{PATCH_SIZE}; create it with create_network(..., image_size={image_size})")
        self.network = network
        self.image_size = image_size
        self.width = int(network.embed_dim)
        self.freeze()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = to_channels(images, 3, encoder="dinov2")
        x = resize_square(imagenet_normalise(x), self.image_size)  # REPA's order: normalise, then resize
        tokens = self.network.forward_features(x)  # [B, prefix + h*w, D], after the final LayerNorm
        patches = tokens[:, self.network.num_prefix_tokens:]  # class and register tokens removed
        return rearrange(patches, "b (h w) d -> b d h w", h=self.grid_size)  # [B, h*w, D] -> [B, D, h, w]


def build_dinov2(size: str, *, registers: bool = False, image_size: int = 224, weights: str = "pretrained",
                 source: str = "file", path: str | os.PathLike | None = None, seed: int = 0) -> DINOv2Encoder:
    """A DINOv2 encoder: ``weights='random'`` draws them from ``seed``; ``'pretrained'`` reads them
    from ``path`` (source 'file') or from the hub's safetensors file (source 'hub')."""
    network = create_network(size, registers, image_size)
    if weights == "random":
        init_random(network, torch.Generator().manual_seed(seed))
    elif weights == "pretrained":
        if source == "hub":
            path = hub_weights_file(size, registers)
        elif path is None:
            raise ValueError("pretrained dinov2 weights from a file need its path")
        state = read_weights(path)
        check_keys(network, state, source=path)  # a file of the other variant is named as such, not resampled
        resample_positions(state, network, source=path)
        load_weights(network, state, source=path)
    else:
        raise ValueError(f"weights must be 'pretrained' or 'random', got {weights!r}")
    return DINOv2Encoder(network, image_size=image_size)

