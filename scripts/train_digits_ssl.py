"""Train the ``digits_ssl`` encoder (a masked autoencoder, no labels) and ship it in maskdit/assets.

    python scripts/train_digits_ssl.py [--steps 1100] [--seed 0] [--out maskdit/assets/digits_ssl.safetensors]

About 8 minutes on one CPU core (35 passes over the digits at batch 128).

Only the pixels of the 4,000 MNIST-5k train digits are read, with small random shifts; no label
is read during training. MAE (He et al. 2022): 75 % of the 64 patches hidden per digit, the
encoder sees the rest, a light decoder (width 64, 2 blocks) predicts the hidden patches' pixels,
each target patch normalised by its own mean and variance. Afterwards, and only to report how
much the features know, a k-NN and a linear probe are fitted on the train digits' features with
their labels and scored on the 1,000 held-out digits, for the trained encoder and for the same
network drawn at random. Prints the file's SHA-256, to be copied into maskdit/encoders/digits_ssl.py.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from maskdit.core.embeddings import sincos_2d
from maskdit.data import MNIST5k
from maskdit.encoders.digits_ssl import ASSET, Block, DigitsSSLEncoder, DigitsViT, init_transformer, load_digits_ssl, \
    save_digits_ssl
from maskdit.io.files import file_sha256


class MAEDecoder(nn.Module):
    """Kept tokens [B, K, D] (+ where they sit) -> predicted pixels of every patch [B, L, p*p*C]."""

    def __init__(self, encoder: DigitsViT, *, generator: torch.Generator, width: int = 64, depth: int = 2,
                 num_heads: int = 4) -> None:
        super().__init__()
        grid = encoder.image_size // encoder.patch_size
        self.embed = nn.Linear(encoder.width, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("pos_embed", sincos_2d(width, grid)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(width, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, encoder.patch_size ** 2 * encoder.in_channels)
        init_transformer(self, generator)
        with torch.no_grad():
            self.mask_token.normal_(0.0, 0.02, generator=generator)

    def forward(self, kept: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.embed(kept)  # [B, K, W]
        batch, num_kept, width = x.shape
        fill = self.mask_token.expand(batch, ids_restore.shape[1] - num_kept, width)
        x = torch.cat([x, fill], dim=1)  # kept first, then the hidden ones: [B, L, W]
        x = torch.gather(x, 1, ids_restore[..., None].expand(-1, -1, width))  # back to raster order
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # [B, L, p*p*C]


def shift(images: torch.Tensor, generator: torch.Generator, *, pixels: int = 2) -> torch.Tensor:
    """Translate each digit by up to ``pixels`` in each direction (background -1 comes in)."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pixels,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * pixels + 1, (n, 2), generator=generator)
    rows = (offsets[:, 0, None] + torch.arange(h))[:, :, None]  # [N, H, 1]
    cols = (offsets[:, 1, None] + torch.arange(w))[:, None, :]  # [N, 1, W]
    return padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # [N, H, W, C] -> [N, C, H, W]


def mae_loss(encoder: DigitsViT, decoder: MAEDecoder, images: torch.Tensor, generator: torch.Generator,
             *, ratio: float = 0.75) -> torch.Tensor:
    """Mean squared error of the hidden patches' normalised pixels (MAE, eq. in sec. 3)."""
    patches = rearrange(images, "b c (h p) (w q) -> b (h w) (p q c)", p=encoder.patch_size, q=encoder.patch_size)
    batch, length, _ = patches.shape
    num_kept = round(length * (1 - ratio))
    order = torch.rand(batch, length, generator=generator).argsort(dim=1)  # a random permutation per digit
    ids_keep, ids_restore = order[:, :num_kept], order.argsort(dim=1)
    predicted = decoder(encoder(images, ids_keep), ids_restore)  # [B, L, p*p*C]
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
    target = (patches - mean) / (var + 1e-6) ** 0.5
    hidden = torch.ones(batch, length)
    hidden.scatter_(1, ids_keep, 0.0)  # 1 where the encoder did not see the patch
    return (((predicted - target) ** 2).mean(-1) * hidden).sum() / hidden.sum()


@torch.no_grad()
def features(encoder: DigitsSSLEncoder, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([encoder(chunk) for chunk in images.split(500)])  # [N, D, 8, 8]


def knn_accuracy(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
                 *, k: int = 20) -> float:
    """Cosine k-NN (majority of the k nearest train digits) accuracy on the test digits."""
    train, test = F.normalize(train.flatten(1), dim=1), F.normalize(test.flatten(1), dim=1)
    nearest = (test @ train.T).topk(k, dim=1).indices  # [N_test, k]
    votes = F.one_hot(train_labels[nearest], 10).sum(1)  # [N_test, 10]
    return (votes.argmax(1) == test_labels).float().mean().item()


def linear_probe_accuracy(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor,
                          test_labels: torch.Tensor, *, steps: int = 300) -> float:
    """Multinomial logistic regression (standardised inputs, weight decay 1e-4, L-BFGS) on the
    train digits' features, scored on the test digits."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mean) / std, (test - mean) / std
    probe = nn.Linear(train.shape[1], 10)
    with torch.no_grad():
        probe.weight.zero_()
        probe.bias.zero_()
    optimizer = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(train), train_labels) + 1e-4 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return (probe(test).argmax(1) == test_labels).float().mean().item()


def probe(encoder: DigitsSSLEncoder, train: MNIST5k, heldout: MNIST5k) -> dict[str, float]:
    """How much the features know about the digit's class (labels read here only)."""
    f_train, f_test = features(encoder, train.images), features(encoder, heldout.images)  # [N, D, 8, 8]
    pooled_train, pooled_test = f_train.mean((2, 3)), f_test.mean((2, 3))  # [N, D]
    return {
        "linear_patches": linear_probe_accuracy(f_train.flatten(1), train.labels, f_test.flatten(1), heldout.labels,
                                                steps=100),
        "knn_patches": knn_accuracy(f_train, train.labels, f_test, heldout.labels),
        "knn_pooled": knn_accuracy(pooled_train, train.labels, pooled_test, heldout.labels),
        "linear_pooled": linear_probe_accuracy(pooled_train, train.labels, pooled_test, heldout.labels),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="small matrices: one thread is as fast on 2 cores")
    parser.add_argument("--out", type=Path, default=ASSET)
    parser.add_argument("--no-probe", action="store_true", help="skip the k-NN and linear probes at the end")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)  # weights, batches, shifts and masks: nothing else
    images = MNIST5k("train").images  # [4000, 1, 32, 32] in [-1, 1]; the labels are not read
    encoder = DigitsViT(generator=generator)
    decoder = MAEDecoder(encoder, generator=generator)
    params = list(encoder.parameters()) + list(decoder.parameters())
    decay = [p for p in params if p.ndim >= 2]  # no weight decay on biases and norms (MAE)
    rest = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / args.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(step, args.steps) / args.steps)))

    start = time.perf_counter()
    order, cursor, running = torch.randperm(len(images), generator=generator), 0, 0.0
    for step in range(1, args.steps + 1):
        if cursor + args.batch_size > len(order):  # a new pass over the train digits
            order, cursor = torch.randperm(len(images), generator=generator), 0
        batch = shift(images[order[cursor:cursor + args.batch_size]], generator)
        cursor += args.batch_size
        loss = mae_loss(encoder, decoder, batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 100 == 0 or step == args.steps:
            print(f"step {step:5d}/{args.steps}  loss {running:.4f}  ({time.perf_counter() - start:.0f}s)", flush=True)
    seconds = time.perf_counter() - start

    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "scripts/train_digits_ssl.py", *(sys.argv[1:] if argv is None else argv)])
    metadata = {"command": command, "seed": str(args.seed), "steps": str(args.steps),
                "batch_size": str(args.batch_size), "data": "MNIST5k train, no labels"}
    save_digits_ssl(encoder, args.out, metadata=metadata)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, float16) after {seconds:.0f}s of training")
    print(f"sha256 {file_sha256(args.out)}")
    if args.no_probe:
        return 0

    train, heldout = MNIST5k("train"), MNIST5k("heldout")
    trained = probe(DigitsSSLEncoder(load_digits_ssl(args.out)), train, heldout)  # the float16 weights as shipped
    untrained = probe(DigitsSSLEncoder(DigitsViT(generator=torch.Generator().manual_seed(args.seed))), train, heldout)
    for name in trained:
        print(f"held-out {name:14s} trained {trained[name]:.4f}   random init {untrained[name]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
