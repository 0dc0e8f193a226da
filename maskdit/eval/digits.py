"""The digits metric's network: a small CNN classifier of MNIST digits, shipped with the package.

Trained by ``scripts/train_digits_classifier.py`` on the MNIST-5k train split only (the 1,000
held-out digits stay unseen, so they can serve as the FID reference). It provides

- ``features(x)``: a 128-d embedding (the penultimate layer, before its ReLU) for a digits FID
  and for improved precision / recall, in the spirit of FID's Inception pool3 features;
- ``forward(x)``: class logits, for the class accuracy of class-conditional samples.

Inputs are [N, 1, 32, 32] (or 28x28, padded here) in [-1, 1] with background at -1, the
range and layout of :class:`maskdit.data.MNIST5k`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

ARCH = "digits-cnn-v1"
ASSET = Path(__file__).resolve().parent.parent / "assets" / "digits_classifier.safetensors"
WEIGHTS_ENV = "MASKDIT_DIGITS_WEIGHTS"


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class DigitsClassifier(nn.Module):
    """conv16-conv16-pool, conv32-conv32-pool, conv64-pool, linear 1024->128 (features), linear 128->10."""

    num_classes = 10
    feature_dim = 128
    resolution = 32

    def __init__(self, *, dropout: float = 0.3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(1, 16), _conv(16, 16), nn.MaxPool2d(2),  # [N, 16, 16, 16]
            _conv(16, 32), _conv(32, 32), nn.MaxPool2d(2),  # [N, 32, 8, 8]
            _conv(32, 64), nn.MaxPool2d(2),  # [N, 64, 4, 4]
        )
        self.embed = nn.Linear(64 * 4 * 4, self.feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, self.num_classes)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[-2:] not in ((28, 28), (32, 32)):
            raise ValueError(f"digits classifier expects [N, 1, 32, 32] or [N, 1, 28, 28] images, got {tuple(x.shape)}")
        if x.shape[-1] == 28:
            x = F.pad(x, (2, 2, 2, 2), value=-1.0)  # [N, 1, 28, 28] -> [N, 1, 32, 32]
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 1, 32, 32] in [-1, 1] -> [N, 128] embedding (pre-activation penultimate layer)."""
        h = self.body(self._prepare(x))
        return self.embed(h.flatten(1))  # [N, 64, 4, 4] -> [N, 1024] -> [N, 128]

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """[N, 128] embedding -> [N, 10] logits."""
        return self.head(self.dropout(F.relu(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


def save_digits_classifier(model: DigitsClassifier, path: str | os.PathLike, *, metadata: dict[str, str] | None = None) -> None:
    """Write the weights as float16 safetensors (about half a megabyte) with the architecture tag."""
    tensors = {name: value.detach().to("cpu").contiguous() for name, value in model.state_dict().items()}
    tensors = {name: value.half() if value.is_floating_point() else value for name, value in tensors.items()}
    save_file(tensors, str(path), metadata={"arch": ARCH, **(metadata or {})})


def digits_weights_path(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$MASKDIT_DIGITS_WEIGHTS``, else the weights shipped in ``maskdit/assets``."""
    chosen = Path(path) if path is not None else Path(os.environ.get(WEIGHTS_ENV) or ASSET)
    if not chosen.is_file():
        raise FileNotFoundError(
            f"digits classifier weights not found at {chosen}; they ship as maskdit/assets/{ASSET.name} "
            f"(reinstall maskdit) or can be rebuilt with `python scripts/train_digits_classifier.py`"
        )
    return chosen


def check_digits_data(data) -> None:
    """Refuse a data spec the classifier cannot read (None: nothing to check)."""
    if data is not None and (data.channels, data.num_classes) != (1, 10):
        raise ValueError(
            f"the digits classifier needs 1-channel 10-class digits, but the data has {data.channels} channel(s) and "
            f"{data.num_classes} classes; use features='inception' and drop class_accuracy"
        )


def load_digits_classifier(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu") -> DigitsClassifier:
    """The trained classifier in eval mode, frozen, in float32 on ``device``."""
    chosen = digits_weights_path(path)
    with safe_open(str(chosen), framework="pt") as handle:
        arch = (handle.metadata() or {}).get("arch")
    if arch != ARCH:
        raise ValueError(f"{chosen} holds architecture {arch!r}, expected {ARCH!r}")
    state = {name: value.float() if value.is_floating_point() else value for name, value in load_file(str(chosen)).items()}
    model = DigitsClassifier()
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model.to(device)
