"""Bad inputs that used to end in a traceback: each must give one clear line naming the file or
field, a non-zero exit, and leave nothing behind."""

import importlib
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from maskdit.app.commands.build import main as build
from maskdit.data.imagefolder import load_image
from maskdit.data.shards import ShardRecord
from maskdit.app.commands.evaluate import main as evaluate
from maskdit.app.commands.sample import main as sample
from tests.datasets.folders import make_image_folder
from tests.test_run_folder import TINY

FOLDER_MODEL = {"input_size": 8, "in_channels": 3, "patch_size": 4, "depth": 1, "hidden_size": 16, "num_heads": 1,
                "decoder_depth": 0, "num_classes": 2}


def one_clear_line(capsys, *fragments):
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def folder_spec(tmp_path, root, **data):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**TINY, "model": FOLDER_MODEL, "masking": {"name": "none"},
                                "train": {**TINY["train"], "batch_size": 4},
                                "data": {"name": "imagefolder", "path": str(root), "resolution": 8,
                                         "num_classes": 2, **data}}))
    return str(path)


@pytest.mark.parametrize("case,fragments", [
    ("garbage", ["cannot read image", "zz_garbage.png"]),
    ("missing", ["data.path: image folder", "does not exist"]),
    ("empty_class", ["data.path:", "Found no valid file for the classes dog"]),
    ("classes", ["data.num_classes:", "has 2 class folders but num_classes is 3"]),
    ("batch", ["train.batch_size: a (micro-)batch of 64 exceeds the dataset's 4 items"]),
])
def test_bad_training_data_is_one_line(tmp_path, capsys, case, fragments):
    root = tmp_path / "images"
    if case == "garbage":
        make_image_folder(root, per_class=2, corrupt=("garbage",))
    elif case == "empty_class":
        make_image_folder(root, per_class=2)
        for file in (root / "dog").iterdir():
            file.unlink()
    elif case != "missing":
        make_image_folder(root, per_class=2)
    extra = {"num_classes": 3} if case == "classes" else {}
    args = [folder_spec(tmp_path, root, **extra), "--runs", str(tmp_path / "runs")]
    if case == "batch":
        args += ["--set", "train.batch_size=64"]
    if case == "classes":
        args += ["--set", "model.num_classes=3"]
    assert build(args) != 0
    one_clear_line(capsys, *fragments)
    assert not list((tmp_path / "runs").glob("*/checkpoints/*"))


def test_cuda_device_without_cuda_is_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(TINY))
    assert build([str(path), "--runs", str(tmp_path), "--set", "train.device=cuda"]) == 2
    one_clear_line(capsys, "train.device is 'cuda' but CUDA is not available")


def test_latent_shard_errors_through_build_are_one_line(tmp_path, capsys):
    path = tmp_path / "spec.json"
    model = {**FOLDER_MODEL, "in_channels": 4}
    path.write_text(json.dumps({**TINY, "model": model, "masking": {"name": "none"},
                                "data": {"name": "latents", "path": str(tmp_path / "lat"), "resolution": 8,
                                         "num_classes": 2}}))
    assert build([str(path), "--runs", str(tmp_path / "runs")]) == 2
    one_clear_line(capsys, "lat/manifest.json not found")


def test_manifest_shard_paths_must_stay_inside_the_folder():
    base = {"start": 0, "stop": 1, "count": 1, "bytes": 1, "sha256": "x", "key": "k"}
    for bad in ("../x.safetensors", "/etc/passwd", "..", "a/b.safetensors"):
        with pytest.raises(ValueError, match="not a plain file name inside the latent folder"):
            ShardRecord.model_validate({**base, "file": bad})
    assert ShardRecord.model_validate({**base, "file": "shard-00000.safetensors"}).file == "shard-00000.safetensors"


@pytest.mark.parametrize("content,fragment", [
    ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    ('{"name": "a", "name": "b"}', "duplicate key 'name'"),
    (" " * (1 << 20) + "{}", "larger than 1024 KiB"),
])
def test_hostile_spec_files_are_one_line(tmp_path, capsys, content, fragment):
    path = tmp_path / "spec.json"
    path.write_text(content)
    assert build([str(path), "--dry-run"]) == 2
    one_clear_line(capsys, str(path), fragment)


def test_a_spec_that_never_ends_is_refused_unread(capsys):
    assert build(["/dev/zero", "--dry-run"]) == 2
    one_clear_line(capsys, "/dev/zero: not a regular file (a character device)")


def test_hostile_overrides_are_one_line(capsys):
    assert build(["default", "--dry-run", "--set", "train.lr=" + "[" * 100_000 + "]" * 100_000]) == 2
    one_clear_line(capsys, "override 'train.lr': ", "nested too deeply")
    assert build(["default", "--dry-run", "--set", "model.preset=" + "x" * 5000]) == 2
    line = one_clear_line(capsys, "model")
    assert line.count("x") <= 210 and "(5002 characters)" in line  # the bad value quoted to ~200 characters


@pytest.mark.parametrize("value", ["false", "true"])
def test_booleans_are_not_step_counts(tmp_path, capsys, value):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(TINY))
    assert build([str(path), "--dry-run", "--set", f"train.steps={value}"]) == 2
    one_clear_line(capsys, f"train.steps: Input should be a valid integer (got {value})")


def test_steps_on_a_phased_spec_says_what_to_set(capsys):
    assert build(["maskdit-demo", "--dry-run", "--set", "train.steps=8"]) == 2
    one_clear_line(capsys, "train.steps: this spec trains in 2 phases", "train.phases.<i>.steps")
    assert build(["maskdit-demo", "--dry-run", "--set", "train.phases.0.steps=8"]) == 0
    assert "2600 steps" not in capsys.readouterr().out
    assert build(["default", "--dry-run", "--set", "train.steps=8"]) == 2
    one_clear_line(capsys, "train.steps: this spec trains in 1 phase,", "train.phases.<i>.steps")


def test_not_safetensors_to_sample_and_evaluate_is_one_line(tmp_path, capsys):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"\xff" * 64)
    (tmp_path / "model.json").write_text(json.dumps({"format": "maskdit-native", "version": 1,
                                                     "model": FOLDER_MODEL}))
    assert sample([str(fake), "--out", str(tmp_path / "g.png")]) == 2
    one_clear_line(capsys, "model.safetensors: not a readable safetensors file")
    assert evaluate([str(fake), "--no-progress"]) == 2
    one_clear_line(capsys, "model.safetensors: not a readable safetensors file")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_pickle_as_inception_weights_is_refused(tmp_path, capsys):
    from maskdit.eval.inception import FIDInception

    weights = tmp_path / "inception.pth"
    weights.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(ValueError, match="inception.pth: refusing to load"):
        FIDInception.from_file(weights)
    assert "pwned" not in capsys.readouterr().out


def test_evaluate_into_a_read_only_folder_fails_before_sampling(tmp_path, capsys):
    import os

    path = tmp_path / "spec.json"
    path.write_text(json.dumps(TINY))
    assert build([str(path), "--runs", str(tmp_path)]) == 0
    capsys.readouterr()
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):  # root writes anywhere: a folder under a file is unwritable for anyone
            (tmp_path / "file").write_text("")
            out = tmp_path / "file" / "ro"
        assert evaluate([str(tmp_path / "tiny"), "--set", "eval.num_samples=4", "--out", str(out),
                         "--no-progress"]) == 2
        captured = capsys.readouterr()
        assert "is not writable" in captured.err and "Traceback" not in captured.err
        assert "evaluating" not in captured.out  # refused before any sampling
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    wide = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0 .. 63000 of 65535
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode.startswith("I")
    pixels = np.asarray(load_image(tmp_path / "wide.png"))[..., 0].astype(int)
    assert np.abs(pixels - np.rint(wide.astype(float) * 255 / 65535)).max() == 0
    assert pixels.max() == 245 and (pixels == 255).sum() == 0


@pytest.mark.parametrize("command,args", [
    ("sample", ["run", "--cfg", "nan"]),
    ("ema", ["run", "--decay", "0.9", "inf"]),
    ("ema", ["run", "--sigma-rel", "NaN"]),
    ("latents", ["decode", "x.npz", "--vae", "vae", "--out", "out", "--scale=-inf"]),
])
def test_number_options_refuse_nan_and_infinity(command, args, capsys):
    main = importlib.import_module(f"maskdit.app.commands.{command}").main
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2 and "is not a finite number" in capsys.readouterr().err
