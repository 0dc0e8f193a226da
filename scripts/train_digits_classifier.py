"""Train the digits metric's classifier on the MNIST-5k train split and ship it in maskdit/assets.

    python scripts/train_digits_classifier.py [--epochs 15] [--seed 0] [--out maskdit/assets/digits_classifier.safetensors]

About a minute on 2 CPU cores. Only the 4,000 train digits are used (with small random
affine jitter); the 1,000 held-out digits measure accuracy and stay a clean FID reference.
The reported accuracy is that of the float16 weights as written and loaded back.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from maskdit.data import MNIST5k
from maskdit.eval.digits import ASSET, DigitsClassifier, load_digits_classifier, save_digits_classifier


def jitter(x: torch.Tensor, generator: torch.Generator, *, degrees: float = 10.0, scale: float = 0.1,
           shift: float = 2.0) -> torch.Tensor:
    """Random rotation / scale / translation per image, background stays -1."""
    n, _, h, _ = x.shape
    u = torch.rand(n, 4, generator=generator) * 2 - 1  # [N, 4] in [-1, 1]
    angle = u[:, 0] * math.radians(degrees)
    zoom = 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([
        torch.stack([cos, -sin, u[:, 2] * shift * 2 / h], dim=1),
        torch.stack([sin, cos, u[:, 3] * shift * 2 / h], dim=1),
    ], dim=1)  # [N, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    predictions = torch.cat([model(chunk).argmax(1) for chunk in images.split(500)])
    return (predictions == labels).float().mean().item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ASSET)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # parameter initialisation
    generator = torch.Generator().manual_seed(args.seed)  # batches and jitter
    train, heldout = MNIST5k("train"), MNIST5k("heldout")
    model = DigitsClassifier()
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)

    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for batch in order.split(args.batch_size):
            x = jitter(train.images[batch], generator)
            loss = F.cross_entropy(model(x), train.labels[batch], label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        acc = accuracy(model, heldout.images, heldout.labels)
        print(f"epoch {epoch + 1:2d}/{args.epochs}  loss {total / len(train):.4f}  held-out acc {acc:.4f}  "
              f"({time.perf_counter() - start:.0f}s)", flush=True)

    train_acc = accuracy(model, train.images, train.labels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_digits_classifier(model, args.out, metadata={"seed": str(args.seed), "epochs": str(args.epochs)})
    shipped = load_digits_classifier(args.out)
    held_acc = accuracy(shipped, heldout.images, heldout.labels)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, float16)")
    print(f"train accuracy {train_acc:.4f}; held-out accuracy of the shipped weights {held_acc:.4f} "
          f"({len(heldout)} digits); {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
