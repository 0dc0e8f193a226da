"""The standard FID feature extractor: Inception-v3 pool3 (2048-d) with the FID weights, offline.

FID numbers are only comparable when computed with the network of the original TensorFlow
implementation (Heusel et al. 2017; the "pt_inception-2015-12-05" weights as ported to
PyTorch). That network is torchvision's :class:`~torchvision.models.Inception3` with 1008
output classes and four blocks whose pooling differs from torchvision's:

- Mixed_5b/5c/5d (A), Mixed_6b..6e (C) and Mixed_7b (E, first): the 3x3 average pool of the
  pooling branch excludes the zero padding from the average (``count_include_pad=False``);
- Mixed_7c (E, second): that branch uses a 3x3 *max* pool instead.

Images in [-1, 1] are resized to 299x299 (bilinear, ``align_corners=False``), grey images are
repeated to three channels, and the 2048-d output of the global average pool is returned.

Weights are read from a local file only (``.pth`` state dict or ``.safetensors``): the
``weights`` argument, else ``$MASKDIT_INCEPTION_WEIGHTS``, else
``<cache_dir>/pt_inception-2015-12-05-6726825d.pth``. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import (
    BasicConv2d,
    Inception3,
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
)

from maskdit.config.errors import CheckpointError, InputError, listed, printable
from maskdit.data.cache import cache_dir
from maskdit.io.weight_files import read_checkpoint

WEIGHTS_ENV = "MASKDIT_INCEPTION_WEIGHTS"
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_NAME}"
FID_CLASSES = 1008
FEATURE_DIM = 2048
INPUT_SIZE = 299


def _avg_pool_excluding_padding(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(InceptionA):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_excluding_padding(x))
        return [b1, b5, b3, bp]


class FIDInceptionC(InceptionC):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(bd))))
        bp = self.branch_pool(_avg_pool_excluding_padding(x))
        return [b1, b7, bd, bp]


class FIDInceptionE(InceptionE):
    """Mixed_7b (``max_pool=False``: average pool without padding) or Mixed_7c (``max_pool=True``)."""

    def __init__(self, in_channels: int, conv_block=None, *, max_pool: bool = False) -> None:
        super().__init__(in_channels, conv_block)
        self.max_pool = max_pool

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], dim=1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], dim=1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_excluding_padding(x)
        bp = self.branch_pool(pooled)
        return [b1, b3, bd, bp]


def inception_weights_path(weights: str | os.PathLike | None = None) -> Path:
    """Resolve the local weights file, or raise saying where to put it."""
    if weights is not None:
        path, origin = Path(weights).expanduser(), "the given path"
    elif os.environ.get(WEIGHTS_ENV):
        path, origin = Path(os.environ[WEIGHTS_ENV]).expanduser(), f"${WEIGHTS_ENV}"
    else:
        path, origin = cache_dir() / WEIGHTS_NAME, "the default location"
    if not path.is_file():
        raise FileNotFoundError(
            f"FID Inception weights not found at {path} ({origin}). maskdit never downloads them: fetch "
            f"{WEIGHTS_URL} on a machine with internet access and put it at {cache_dir() / WEIGHTS_NAME}, "
            f"or point ${WEIGHTS_ENV} (or the eval spec's inception_weights) at the file"
        )
    return path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only, never pickled code: a pickle that needs code (or a garbage file) is a ValueError
    naming the file (:func:`maskdit.io.weight_files.read_checkpoint`)."""
    try:
        state = read_checkpoint(path)
    except CheckpointError as err:  # the metric's weights are input, not a checkpoint of the run: exit 2 anywhere
        raise InputError(*err.lines) from None
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()):
        raise ValueError(f"{printable(path)}: the Inception weights must be a flat state dict of tensors keyed by name")
    return state


class FIDInception(nn.Module):
    """images [N, C in {1, 3}, H, W] in [-1, 1] -> pool3 features [N, 2048] (float32)."""

    feature_dim = FEATURE_DIM

    def __init__(self) -> None:
        super().__init__()
        blocks = [BasicConv2d, FIDInceptionA, InceptionB, FIDInceptionC, InceptionD, FIDInceptionE, None]
        net = Inception3(num_classes=FID_CLASSES, aux_logits=False, transform_input=False,
                         inception_blocks=blocks, init_weights=False)
        net.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.net = net

    @classmethod
    def from_file(cls, weights: str | os.PathLike | None = None) -> FIDInception:
        """Load local FID weights (see module docstring for the lookup order); eval mode, frozen."""
        path = inception_weights_path(weights)
        model = cls()
        state = _read_state_dict(path)
        state = {key.removeprefix("net."): value for key, value in state.items()}
        own = model.net.state_dict()
        wrong = [key for key, value in state.items() if key in own and (
            value.shape != own[key].shape or value.is_floating_point() != own[key].is_floating_point())]
        if wrong:  # load_state_dict would fail with a traceback (shapes) or cast silently (dtypes)
            raise ValueError(f"{printable(path)} is not an FID Inception state dict: wrong shape or dtype for "
                             f"{listed(wrong, limit=3)}")
        missing, unexpected = model.net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{printable(path)} is not an FID Inception state dict: {len(missing)} missing keys (e.g. "
                f"{listed(missing, limit=3)}), {len(unexpected)} unexpected keys (e.g. {listed(unexpected, limit=3)})"
            )
        return model.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images [N, 1 or 3, H, W], got {tuple(images.shape)}")
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # [N, 1, H, W] -> [N, 3, H, W]: grey -> RGB
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        net = self.net
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(net, name)(x)  # ends at [N, 2048, 8, 8]
        return net.avgpool(x).flatten(1)  # [N, 2048, 1, 1] -> [N, 2048]
