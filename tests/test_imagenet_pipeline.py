"""The README's "Train on ImageNet" section, command by command, at toy scale.

The commands are read from the README itself (its ```bash blocks), so the two cannot drift:
the fast test checks that each one's module accepts its flags (and that the spec overrides
validate); the slow test runs them all, in order, in one process on the CPU, with the paths
and sizes swapped for toy ones (a random tiny VAE and FID Inception, 20 PNGs of 2 classes at
16 px, a tiny MaskDiT derived from the example spec). The encode command is launched by
torchrun with 2 gloo ranks (and compared with one process); the other commands run in this
process, their torchrun launches being covered by the 2-rank training and sampling tests.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/imagenet256-maskdit-xl2.json"
EXPECTED = [  # (launcher, module, first argument) in the README's order
    ("torchrun", "maskdit.latents", "encode"),
    ("torchrun", "maskdit.build", EXAMPLE),
    ("torchrun", "maskdit.build", EXAMPLE),
    ("torchrun", "maskdit.build", EXAMPLE),
    ("torchrun", "maskdit.sample", "runs/imagenet256-maskdit-xl2"),
    ("python", "maskdit.latents", "decode"),
    ("python", "maskdit.fid", "samples/samples.npz"),
]
TOY_VALUES = {"--resolution": "16", "--batch-size": "5", "--workers": "0", "--num-samples": "10", "--device": "cpu"}
FEATURES = 4  # leading FID Inception features the toy FID keeps: a 2048-d matrix root takes a minute here


def readme_commands() -> list[tuple[str, str, list[str]]]:
    """(launcher, module, arguments after the module) of every command in the section's bash blocks."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    parts = text.split("\n## Train on ImageNet\n", 1)
    if len(parts) != 2:
        raise ValueError("README.md has no '## Train on ImageNet' section")
    section = parts[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in re.sub(r"\\\n", " ", block).splitlines():  # join continuation lines
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            words = shlex.split(line)
            at = words.index("-m")
            if words[0] == "torchrun":
                assert words[1:at] == ["--nproc_per_node", "8"], line
            else:
                assert words[:at] == ["python"], line
            commands.append((words[0], words[at + 1], words[at + 2:]))
    return commands


def command_module(module: str) -> str:
    """The module behind a README command: ``maskdit.build`` -> ``maskdit.app.commands.build``."""
    return module.replace("maskdit.", "maskdit.app.commands.", 1)


def parser_of(module: str):
    return importlib.import_module(command_module(module)).parse_args


def test_readme_commands_are_accepted_by_their_parsers():
    from maskdit.app.experiment_spec import read_spec

    commands = readme_commands()
    assert [(launcher, module, args[0]) for launcher, module, args in commands] == EXPECTED
    for _, module, args in commands:
        parsed = parser_of(module)(args)  # exits (SystemExit) on an unknown flag or a bad value
        if module == "maskdit.build":
            spec = read_spec(str(ROOT / parsed.spec), parsed.overrides)  # the --set overrides validate
            assert spec.eval.num_samples == 0 and spec.name == "imagenet256-maskdit-xl2"
    encode, sample, fid_args = commands[0][2], commands[4][2], commands[6][2]
    assert "--flip" in encode and encode[encode.index("--resolution") + 1] == "256"
    assert sample[sample.index("--num-samples") + 1] == "50000" and "--latents" in sample
    assert commands[5][2][commands[5][2].index("--out") + 1] == "samples/"  # decode writes samples/samples.npz
    assert fid_args[1] == "data/VIRTUAL_imagenet256_labeled.npz" and "--inception-weights" in fid_args


def tiny_spec() -> dict:
    """The example spec with a tiny model and a few CPU steps; data, losses, masking, sampler as in the example."""
    spec = json.loads((ROOT / EXAMPLE).read_text(encoding="utf-8"))
    spec["model"] = {"input_size": 8, "in_channels": 4, "num_classes": 2, "patch_size": 2, "depth": 1,
                     "hidden_size": 32, "num_heads": 2, "decoder_depth": 1, "decoder_hidden_size": 16,
                     "decoder_num_heads": 2}
    spec["data"] = {**spec["data"], "resolution": 8, "num_classes": 2}  # same path: data/imagenet256-latents
    phases = [{**phase, "steps": steps} for phase, steps in zip(spec["train"]["phases"], (2, 1))]
    spec["train"] = {**spec["train"], "phases": phases, "batch_size": 4, "device": "cpu", "precision": "fp32",
                     "log_every": 1, "checkpoint_every": 1, "sample_every": None}
    return spec


def toy(args: list[str], places: dict[str, str]) -> list[str]:
    """The README's arguments with toy sizes and local folders."""
    out = []
    for i, word in enumerate(args):
        previous = args[i - 1] if i else None
        out.append(TOY_VALUES[previous] if previous in TOY_VALUES else places.get(word, word))
    if "train.parallel=fsdp" in out:  # a second run next to the DDP one
        out[out.index("--runs") + 1] = "runs-fsdp"
    return out


@pytest.mark.slow
def test_readme_pipeline_runs_at_toy_scale(tmp_path, monkeypatch, capsys):
    pytest.importorskip("diffusers")
    import torch
    from safetensors.torch import load_file

    from maskdit.app.commands import fid
    from maskdit.eval.inception import WEIGHTS_NAME, FIDInception
    from maskdit.io.checkpoint import latest_checkpoint
    from tests.datasets.folders import make_image_folder, make_tiny_vae

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASKDIT_INCEPTION_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # the README's relative paths (data/, runs, samples/, weights/) land here
    vae_dir = make_tiny_vae(tmp_path / "vae")
    train_dir = make_image_folder(tmp_path / "imagenet" / "train", classes=("n01440764", "n01443537"), per_class=10)
    places = {"VAE_DIR": str(vae_dir), "IMAGENET_TRAIN_DIR": str(train_dir)}
    (tmp_path / "examples").mkdir()
    (tmp_path / EXAMPLE).write_text(json.dumps(tiny_spec()), encoding="utf-8")
    (tmp_path / "weights").mkdir()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        inception = FIDInception()
        for module in inception.modules():  # He init keeps activations alive through the 94 layers
            if isinstance(module, torch.nn.Conv2d):  # (the default init shrinks the features to ~1e-7)
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        torch.save(inception.net.state_dict(), tmp_path / "weights" / WEIGHTS_NAME)  # random weights

    real_loader = fid.load_extractor

    def leading_features(weights, device):
        extractor, _, path = real_loader(weights, device)  # the README's weights file, really loaded
        return (lambda images: extractor(images)[:, :FEATURES]), FEATURES, path

    monkeypatch.setattr(fid, "load_extractor", leading_features)

    commands = readme_commands()
    for index, (_, module, args) in enumerate(commands):
        if module == "maskdit.fid":  # the reference batch, ADM layout: images plus their mu / sigma
            make_reference(tmp_path / "data" / "VIRTUAL_imagenet256_labeled.npz", vae_dir,
                           leading_features(tmp_path / "weights" / WEIGHTS_NAME, "cpu")[0])
        argv = toy(args, places)
        if index == 0:  # the one real torchrun launch: 2 gloo ranks share the shards
            torchrun_encode(argv + ["--shard-size", "8"], tmp_path)
            argv += ["--shard-size", "8", "--out", "data/one-rank-latents"]  # and one process, to compare
        code = importlib.import_module(command_module(module)).main(argv)
        out = capsys.readouterr()
        assert code == 0, f"{module} {shlex.join(argv)}:\n{out.out[-2000:]}\n{out.err[-2000:]}"
        if index == 0:
            two, one = tmp_path / "data" / "imagenet256-latents", tmp_path / "data" / "one-rank-latents"
            shards = sorted(p.name for p in two.glob("*.safetensors"))
            assert shards == sorted(p.name for p in one.glob("*.safetensors")) and len(shards) == 3
            for name in shards:  # the same contents whichever rank encoded them (conv results may differ
                a, b = load_file(two / name), load_file(one / name)  # in the last bit with the thread count)
                assert a.keys() == b.keys(), name
                for key in a:
                    torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")
        if index == 1:  # lose the last checkpoint, as if interrupted: the --resume command retrains step 3
            run = tmp_path / "runs" / "imagenet256-maskdit-xl2"
            assert latest_checkpoint(run / "checkpoints").name == "step-00000003"
            shutil.rmtree(run / "checkpoints" / "step-00000003")
        if index == 2:
            assert "trained 3 steps" in out.out
            assert latest_checkpoint(run / "checkpoints").name == "step-00000003"

    manifest = json.loads((tmp_path / "data" / "imagenet256-latents" / "manifest.json").read_text())
    assert manifest["count"] == 20
    assert latest_checkpoint(tmp_path / "runs-fsdp" / "imagenet256-maskdit-xl2" / "checkpoints") is not None
    with np.load(tmp_path / "samples" / "latents50k.npz") as z:
        assert z["latents"].shape == (10, 4, 8, 8) and z["labels"].tolist() == [0, 1] * 5
    with np.load(tmp_path / "samples" / "samples.npz") as batch:
        assert batch["arr_0"].shape == (10, 16, 16, 3) and batch["arr_0"].dtype == np.uint8
    assert (tmp_path / "samples" / "grid.png").is_file()
    record = json.loads((tmp_path / "samples" / "fid50k.json").read_text())
    assert record["num_samples"] == 10 and record["feature_dim"] == FEATURES
    assert 1e-4 < record["fid"] < 1e3  # an untrained model's samples are not the training images
    assert Path(record["inception_weights"]).resolve() == (tmp_path / "weights" / WEIGHTS_NAME).resolve()


def torchrun_encode(argv: list[str], cwd: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "maskdit.latents", *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[rank 1]" in done.stdout and done.stdout.count("wrote") == 1  # rank 1 encoded; rank 0 wrote the manifest


def make_reference(path: Path, vae_dir: Path, extractor) -> None:
    """Decoded training latents as arr_0, with the statistics of their (toy) Inception features."""
    import torch

    from maskdit.app.commands import fid
    from maskdit.data.latent_dataset import LatentDataset
    from maskdit.io.images import write_adm_npz
    from maskdit.data.vae import decode_latents, load_vae
    from maskdit.eval.stats import FewSamplesWarning

    dataset = LatentDataset(path.parent / "imagenet256-latents")
    z, labels = dataset.draw(torch.arange(12), generator=torch.Generator().manual_seed(0))
    images = decode_latents(load_vae(vae_dir), z, scale=dataset.manifest.scale)  # [12, 3, 16, 16]
    scratch = write_adm_npz(path.with_name("reference_images.npz"), images, labels)
    with pytest.warns(FewSamplesWarning) if FEATURES >= 12 else contextlib.nullcontext():
        stats = fid.image_statistics(fid.NpzImages(scratch), extractor, batch_size=6)
    with np.load(scratch) as data:
        np.savez(path, arr_0=data["arr_0"], mu=stats.mu, sigma=stats.sigma)
