"""Measure the digits metric and the cost of an evaluation on this machine.

    python benchmarks/evaluation/evaluation.py [--repeats 3] [--json PATH]   # writes evaluation.json here
    python benchmarks/evaluation/report.py                                   # the table of the record

Prints a table: the shipped classifier's held-out accuracy; digits FID / precision / recall /
class accuracy of real and degraded digits against the held-out split; the time to score
1,000 samples (median of --repeats), to build the reference, and the Frechet distance itself
at 128-d (digits) and 2048-d (Inception) feature sizes. Results: benchmarks/RESULTS.md, section evaluation.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from maskdit.data import MNIST5k
from maskdit.eval import FeatureStats, Reference, evaluate_samples, frechet_distance, load_digits_classifier
from maskdit.io import atomic_write

HERE = Path(__file__).resolve().parent


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def blur(x: torch.Tensor, size: int) -> torch.Tensor:
    pad = size // 2
    return F.conv2d(F.pad(x, (pad,) * 4, value=-1.0), torch.ones(1, 1, size, size) / size**2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=HERE / "evaluation.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    classifier = load_digits_classifier()
    train, heldout = MNIST5k("train"), MNIST5k("heldout")
    with torch.no_grad():
        accuracy = (classifier(heldout.images).argmax(1) == heldout.labels).float().mean().item()
    reference, ref_seconds = timed(lambda: Reference.from_images(classifier.features, heldout.images, name="heldout"),
                                   args.repeats)
    generator = torch.Generator().manual_seed(0)
    subset = slice(None, None, 4)  # every 4th train digit: 1,000 digits, 100 per class
    x, y = train.images[subset], train.labels[subset]
    cases = {
        "train (4000)": (train.images, train.labels),
        "train (1000)": (x, y),
        "train shifted 2px": (torch.roll(x, 2, dims=-1), y),
        "train blur 3x3": (blur(x, 3), y),
        "train blur 5x5": (blur(x, 5), y),
        "train + noise 0.3": ((x + 0.3 * torch.randn(x.shape, generator=generator)).clamp(-1, 1), y),
        "uniform noise": (torch.rand(x.shape, generator=generator) * 2 - 1, y),
    }
    rows = {}
    for name, (images, labels) in cases.items():
        rows[name] = evaluate_samples(images, labels, reference=reference, classifier=classifier)
    _, eval_seconds = timed(lambda: evaluate_samples(x, y, reference=reference, classifier=classifier), args.repeats)
    _, fid_only = timed(lambda: evaluate_samples(x, y, reference=reference, classifier=classifier,
                                                 metrics=("fid", "class_accuracy")), args.repeats)
    rng = np.random.default_rng(0)
    fd_seconds = {}
    for dim in (128, 2048):
        a = FeatureStats.from_features(rng.normal(size=(dim * 2, dim)))
        b = FeatureStats.from_features(rng.normal(size=(dim * 2, dim)) + 0.1)
        _, fd_seconds[dim] = timed(lambda: frechet_distance(a, b), 1 if dim > 128 else args.repeats)

    result = {"heldout_accuracy": accuracy, "cases": rows, "eval_1000_seconds": eval_seconds,
              "eval_1000_fid_class_seconds": fid_only, "reference_seconds": ref_seconds,
              "frechet_seconds": {str(k): v for k, v in fd_seconds.items()}, "threads": torch.get_num_threads(),
              "repeats": args.repeats}
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    print(format_report(result))
    atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8"))
    print(f"wrote {args.json}")
    return 0


def format_report(result: dict[str, Any]) -> str:
    """The classifier's accuracy, the metric of each case and the evaluation's costs, from a record
    (records written before ``repeats`` was stored used the default, 3)."""
    lines = [f"classifier held-out accuracy: {result['heldout_accuracy']:.4f} (1000 digits)", "",
             f"{'samples vs held-out':<20} {'FID':>9} {'precision':>9} {'recall':>7} {'class acc':>9}"]
    for name, r in result["cases"].items():
        lines.append(f"{name:<20} {r['fid']:9.2f} {r['precision']:9.3f} {r['recall']:7.3f} {r['class_accuracy']:9.3f}")
    frechet = result["frechet_seconds"]
    lines += ["", f"score 1000 samples (FID + precision/recall + class acc): {result['eval_1000_seconds']:.2f}s "
                  f"(median of {result.get('repeats', 3)})",
              f"score 1000 samples (FID + class acc):                   {result['eval_1000_fid_class_seconds']:.2f}s",
              f"build the held-out reference (1000 digits):              {result['reference_seconds']:.2f}s",
              f"Frechet distance 128-d: {frechet['128'] * 1000:.0f} ms; 2048-d: {frechet['2048']:.1f}s"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
