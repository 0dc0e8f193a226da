"""Our backbone against diffusers' DiTTransformer2DModel on the same input, after an export.

``python scripts/compare_diffusers.py [RUN] [--preset DiT-S/2]``: exports RUN (or a DiT preset with
random, perturbed weights) with ``python -m maskdit.export --format diffusers``, loads the folder
with ``DiTTransformer2DModel.from_pretrained``, and prints max |ours - theirs| and the output scale
at several timesteps, then the same with diffusers' ``downscale_freq_shift`` set to DiT's 0, which
isolates the one difference between diffusers' port and DiT (Peebles & Xie 2023): the frequencies
of the sinusoidal timestep embedding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import torch


def main(argv: list[str] | None = None) -> int:
    import diffusers

    from maskdit.app.run_loading import load_run
    from maskdit.core import ModelSpec, build_denoiser
    from maskdit.interop.diffusers import save_diffusers

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", default=None, help="run / checkpoint folder (default: a random DiT)")
    parser.add_argument("--preset", default="DiT-S/2", help="preset of the random DiT (default DiT-S/2)")
    parser.add_argument("--input-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.run is None:
        spec = ModelSpec(preset=args.preset, input_size=args.input_size, num_classes=1000, precond="ddpm",
                         label_embedder="table", learn_sigma=True)
        ours = build_denoiser(spec, generator=torch.Generator().manual_seed(0)).eval()
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():  # adaLN-Zero starts at zero: perturb so every path contributes
            for param in ours.net.parameters():
                param.add_(0.02 * torch.randn(param.shape, generator=gen))
    else:
        ours, _ = load_run(args.run)
    spec = ours.spec
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, spec.in_channels, spec.input_size, spec.input_size, generator=gen)
    labels = torch.arange(4) % spec.num_classes
    with tempfile.TemporaryDirectory() as folder:
        save_diffusers(ours, folder)
        theirs = diffusers.DiTTransformer2DModel.from_pretrained(folder).eval()
    print(f"model: depth {spec.depth}, width {spec.hidden_size}, patch {spec.patch_size}, {spec.input_size} px")
    print(f"{'timestep':>9} {'max |diff|':>11} {'max |ours|':>11} {'DiT freqs':>11}")
    for t in (0.0, 1.0, 10.0, 100.0, 500.0, 999.0):
        steps = torch.full((4,), t)
        with torch.no_grad():
            mine = ours.net(x, steps, labels=labels)
            for block in theirs.transformer_blocks:
                block.norm1.emb.time_proj.downscale_freq_shift = 1  # diffusers' own setting
            port = theirs(x, timestep=steps, class_labels=labels).sample
            for block in theirs.transformer_blocks:
                block.norm1.emb.time_proj.downscale_freq_shift = 0  # DiT's frequencies
            same = theirs(x, timestep=steps, class_labels=labels).sample
        print(f"{t:>9g} {(mine - port).abs().max().item():>11.3g} {mine.abs().max().item():>11.3g} "
              f"{(mine - same).abs().max().item():>11.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
