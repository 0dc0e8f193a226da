"""Hostile files handed to the commands: each is refused before anything large is allocated, as one
``error:`` line naming the file, exit 2, no traceback; names read from files reach the terminal
escaped and cut short. The files are forged by hand in tmp_path; the commands run as subprocesses,
as a user would run them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from maskdit.config.errors import InputError
from maskdit.core import build_denoiser
from maskdit.core.specs import ModelSpec
from maskdit.interop import CheckpointError
from maskdit.interop.diffusers import save_diffusers
from maskdit.interop.native import load_native, save_native

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"input_size": 8, "in_channels": 4, "patch_size": 2, "depth": 1, "hidden_size": 32, "num_heads": 2,
         "decoder_depth": 0, "num_classes": 3, "label_embedder": "table", "learn_sigma": False, "precond": "ddpm"}


def run(*args: str, tmp_path: Path, extra_path: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m maskdit.<args>`` from this worktree, caches and weights pointed into tmp_path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT, extra_path) if p),
           "MASKDIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("MASKDIT_INCEPTION_WEIGHTS", None)
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def one_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The single ``error:`` line of a run that exited 2 without a traceback, holding every fragment."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def npy_bytes(shape: tuple[int, ...], descr: str = "|u1", data: bytes = b"") -> bytes:
    """An .npy member: a header declaring ``shape`` of ``descr``, followed by ``data`` (not checked)."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": descr, "fortran_order": False, "shape": shape})
    return head.getvalue() + data


# --- npz --------------------------------------------------------------------------------------------

def test_an_npz_whose_header_claims_huge_images_is_refused_before_reading(tmp_path):
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:  # 40000x40000 images over 1 MiB of zeros
        archive.writestr("arr_0.npy", npy_bytes((10, 40000, 40000, 3), data=bytes(1 << 20)))
    np.savez(tmp_path / "ref.npz", mu=np.zeros(4), sigma=np.eye(4))
    result = run("maskdit.fid", str(bomb), str(tmp_path / "ref.npz"), tmp_path=tmp_path)
    one_error(result, str(bomb), "arr_0", "(10, 40000, 40000, 3)", "48,000,000,000 bytes", "forged or damaged")


def test_images_larger_than_the_limit_are_refused_even_when_the_file_is_honest(tmp_path):
    from maskdit.app.commands import fid

    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:  # 2 honest all-zero 4100x4100 images
        with archive.open("arr_0.npy", "w", force_zip64=True) as member:
            member.write(npy_bytes((2, 4100, 4100, 3)))
            for _ in range(2 * 3):
                member.write(bytes(4100 * 4100))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(InputError, match=r"big.npz: arr_0: images of 4100x4100 pixels are larger than the 48 MiB"):
        fid.NpzImages(path)


def test_statistics_whose_header_claims_terabytes_are_refused(tmp_path):
    ref = tmp_path / "ref.npz"
    with zipfile.ZipFile(ref, "w") as archive:
        archive.writestr("mu.npy", npy_bytes((1_000_000,), "<f8", bytes(8)))
        archive.writestr("sigma.npy", npy_bytes((1_000_000, 1_000_000), "<f8", bytes(8)))
    np.savez(tmp_path / "s.npz", arr_0=np.zeros((4, 8, 8, 3), dtype=np.uint8))
    result = run("maskdit.fid", str(tmp_path / "s.npz"), str(ref), tmp_path=tmp_path)
    one_error(result, str(ref), "mu", "8,000,000 bytes", "holds 8 bytes")


def test_load_npz_limits_ratios_and_dtypes(tmp_path):
    from maskdit.io.npz import NpzError, load_npz

    np.savez(tmp_path / "ok.npz", a=np.arange(6, dtype=np.float32).reshape(2, 3),
             b=np.asfortranarray(np.arange(6.0).reshape(2, 3)), c=np.array(7, dtype=">i4"))
    loaded = load_npz(tmp_path / "ok.npz", max_bytes=1 << 10)
    assert loaded["a"].tolist() == [[0, 1, 2], [3, 4, 5]] and loaded["b"].flags.f_contiguous and loaded["c"] == 7
    with pytest.raises(NpzError, match=r"ok.npz: a: shape \(2, 3\) of float32 is 24 bytes, more than the 20"):
        load_npz(tmp_path / "ok.npz", max_bytes=20)
    with pytest.raises(NpzError, match=r"ok.npz: its arrays declare 76 bytes together, more than the 60"):
        load_npz(tmp_path / "ok.npz", max_bytes=60)
    np.savez(tmp_path / "str.npz", s=np.array(["x"]))
    with pytest.raises(NpzError, match=r"str.npz: s: dtype <U1 is not a plain numeric array"):
        load_npz(tmp_path / "str.npz", max_bytes=1 << 10)
    bomb = tmp_path / "zeros.npz"  # honest, but 65 MiB of zeros inflate from ~65 KiB: over 100:1
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("z.npy", "w", force_zip64=True) as member:
            member.write(npy_bytes((65, 1 << 20)))
            for _ in range(65):
                member.write(bytes(1 << 20))
    with pytest.raises(NpzError, match=r"zeros.npz: z: .* compressed bytes would inflate to 68,157,568 \(over 100:1\): refusing what looks like a zip bomb"):
        load_npz(bomb, max_bytes=1 << 30)


def test_latent_samples_npz_with_a_forged_header_is_refused(tmp_path):
    from maskdit.data.latent_files import load_latent_samples

    path = tmp_path / "z.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("latents.npy", npy_bytes((10**6, 4, 512, 512), "<f4", bytes(64)))
    with pytest.raises(InputError, match=r"z.npz: latents: its header declares shape \(1000000, 4, 512, 512\)"):
        load_latent_samples(path, channels=4)


# --- .pt, native, diffusers --------------------------------------------------------------------------

def test_a_reference_checkpoint_with_an_int_key_is_one_line(tmp_path):
    path = tmp_path / "ref.pt"
    torch.save({"ema": {0: torch.zeros(2), "x_embedder.proj.weight": torch.zeros(1)}}, path)
    result = run("maskdit.sample", str(path), "--out", str(tmp_path / "g.png"), tmp_path=tmp_path)
    one_error(result, str(path), "state dict keys must be parameter names (strings), found 0")


def test_a_torch_file_whose_record_inflates_far_past_its_size_is_refused_unread(tmp_path):
    from maskdit.io.weight_files import read_checkpoint

    torch.save({"w": torch.zeros(4)}, tmp_path / "small.pt")
    bomb = tmp_path / "bomb.pt"  # its 16-byte storage record replaced by 65 MiB of deflated zeros (torch
    with zipfile.ZipFile(tmp_path / "small.pt") as src, zipfile.ZipFile(bomb, "w") as out:  # inflates it all)
        for info in src.infolist():
            if not info.filename.endswith("data/0"):
                out.writestr(info, src.read(info))
                continue
            record = zipfile.ZipInfo(info.filename)
            record.compress_type = zipfile.ZIP_DEFLATED
            with out.open(record, "w", force_zip64=True) as member:
                for _ in range(65):
                    member.write(bytes(1 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match=r"bomb.pt: its records would inflate to 68,157,[0-9]+ bytes from a "
                                              r"file of [0-9,]+ \(torch stores them uncompressed\): refusing a zip bomb"):
        read_checkpoint(bomb)
    assert read_checkpoint(tmp_path / "small.pt")["w"].shape == (4,)


def small_denoiser(**changes):
    return build_denoiser(ModelSpec(**{**SMALL, **changes}), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("case", ["qkv", "table"])
def test_a_diffusers_folder_with_mismatched_shapes_is_one_line(tmp_path, case):
    folder = save_diffusers(small_denoiser(label_embedder="onehot"), tmp_path / "hf")
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    if case == "qkv":  # to_k with another input width: torch.cat of q, k, v used to fail inside torch
        key = "transformer_blocks.0.attn1.to_k.weight"
        state[key] = torch.zeros(32, 16)
        expected = f"mis-shaped key {key}: checkpoint has (32, 16), the model expects (32, 32)"
    else:  # a 0-d class table: indexing its null row used to fail inside torch
        key = "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"
        state[key] = torch.tensor(1.0)
        expected = f"mis-shaped key {key}: checkpoint has (), the model expects (4, 32)"
    save_file(state, str(weights))
    result = run("maskdit.sample", str(folder), "--out", str(tmp_path / "g.png"), tmp_path=tmp_path)
    one_error(result, str(weights), expected)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int8])
def test_native_weights_stored_as_integers_are_refused_naming_the_key(tmp_path, dtype):
    path = save_native(small_denoiser(), tmp_path / "m")
    state = load_file(str(path))
    state["final_layer.linear.weight"] = state["final_layer.linear.weight"].to(dtype)
    save_file(state, str(path))
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(CheckpointError, match=rf"m.safetensors: weights stored as {name} where the model has "
                                              r"floating point: final_layer.linear.weight \(refusing"):
        load_native(path)
    if dtype == torch.bool:  # and through the command, which used to sample garbage from it
        result = run("maskdit.sample", str(path), "--out", str(tmp_path / "g.png"), tmp_path=tmp_path)
        one_error(result, str(path), f"weights stored as {name}", "final_layer.linear.weight")
        assert not (tmp_path / "g.png").exists()


def test_save_native_refuses_non_finite_weights_naming_them(tmp_path):
    denoiser = small_denoiser()
    with torch.no_grad():
        denoiser.net.final_layer.linear.weight[0, 0] = float("nan")
        denoiser.net.x_embedder.proj.bias[0] = float("inf")
    with pytest.raises(CheckpointError, match=r"m.safetensors: not written: non-finite weights \(NaN or inf\) in "
                                              r"x_embedder.proj.bias, final_layer.linear.weight"):
        save_native(denoiser, tmp_path / "m")
    assert not list(tmp_path.iterdir())


# --- latent shards -----------------------------------------------------------------------------------

def shard_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


GOOD = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
BAD_ENTRIES = {
    "short view": ({**GOOD, "shape": [2, 3]}, "shape [2, 3] of F32 does not fill its offsets' span of 16 bytes"),
    "float offsets": ({**GOOD, "data_offsets": [0.0, 16.0]}, "data_offsets [0.0, 16.0]; expected [begin, end] integers"),
    "string shape": ({**GOOD, "shape": ["2", "2"]}, "has shape ['2', '2']; expected a list of non-negative integers"),
    "huge shape": ({**GOOD, "shape": [10**30]}, "shape [1000000000000000000000000000000] of F32 does not fill"),
    "negative shape": ({**GOOD, "shape": [-1, 4]}, "has shape [-1, 4]"),
    "bool shape": ({**GOOD, "shape": [True, 4]}, "has shape [True, 4]"),
    "odd bytes": ({**GOOD, "shape": [3], "data_offsets": [0, 15]}, "shape [3] of F32 does not fill"),
    "not an object": (3, "needs exactly dtype, shape and data_offsets"),
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_malformed_shard_headers_are_shard_errors(tmp_path, case):
    from maskdit.data.shards import ShardError, open_shard

    entry, fragment = BAD_ENTRIES[case]
    path = tmp_path / "shard-00000.safetensors"
    path.write_bytes(shard_bytes({"mean": entry}, bytes(16)))
    with pytest.raises(ShardError, match="shard-00000.safetensors is corrupt") as caught:
        open_shard(path)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_overlapping_shard_tensors_are_refused(tmp_path):
    from maskdit.data.shards import ShardError, open_shard

    path = tmp_path / "s.safetensors"
    path.write_bytes(shard_bytes({"a": GOOD, "b": GOOD}, bytes(16)))
    with pytest.raises(ShardError, match="tensor b starts at byte 0 of the data, not 16: tensors overlap"):
        open_shard(path)
    path.write_bytes(shard_bytes({"a": GOOD, "__metadata__": {"k": "v"}}, bytes(16)))
    assert open_shard(path)["a"].shape == (2, 2)


def latent_folder(root: Path, header: dict, data: bytes) -> Path:
    """A latent folder with one 1-latent shard of ``header`` and a manifest that vouches for it."""
    root.mkdir()
    raw = shard_bytes(header, data)
    (root / "shard-00000.safetensors").write_bytes(raw)
    record = {"file": "shard-00000.safetensors", "start": 0, "stop": 1, "count": 1, "bytes": len(raw),
              "sha256": hashlib.sha256(raw).hexdigest(), "key": "k"}
    manifest = {"vae": {"path": "vae", "config_sha256": "0", "scaling_factor": 0.18215}, "scale": 0.18215,
                "source": {"path": "imgs", "resolution": 64, "num_images": 1, "listing_sha256": "0"},
                "classes": ["a", "b"], "latent_shape": [4, 8, 8], "dtype": "float32", "flip": False,
                "shard_size": 1, "key": "k", "count": 1, "shards": [record]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_a_shard_with_a_short_view_through_build_is_one_line(tmp_path):
    moment = {"dtype": "F32", "shape": [1, 4, 8, 8], "data_offsets": [0, 1024]}
    header = {"mean": {**moment, "shape": [1, 4, 8, 9]}, "logvar": {**moment, "data_offsets": [1024, 2048]},
              "label": {"dtype": "I64", "shape": [1], "data_offsets": [2048, 2056]}}
    folder = latent_folder(tmp_path / "lat", header, bytes(2056))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "t", "model": {**SMALL, "precond": "edm"}, "masking": {"name": "none"},
                                "sampler": {"name": "euler", "steps": 2}, "eval": {"num_samples": 0},
                                "train": {"steps": 1, "batch_size": 1},
                                "data": {"name": "latents", "path": str(folder), "resolution": 8, "num_classes": 2}}))
    result = run("maskdit.build", str(spec), "--runs", str(tmp_path / "runs"), tmp_path=tmp_path, timeout=300)
    one_error(result, str(folder / "shard-00000.safetensors"), "shape [1, 4, 8, 9] of F32 does not fill")


# --- plugins and specs -------------------------------------------------------------------------------

def broken_package(root: Path, entries: str) -> Path:
    dist = root / "broken_plugins-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[maskdit.plugins]\n{entries}")
    return root


def test_broken_entry_points_are_reported_once_and_break_nothing(tmp_path):
    site = broken_package(tmp_path / "site", "empty =\npath = ../../etc/passwd\nmissing = no_such_plugin_module\n"
                                             "evil\x1b[2J = ../x\n")
    result = run("maskdit.build", "--schema", tmp_path=tmp_path, extra_path=site)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert json.loads(result.stdout)["$defs"]
    warnings = result.stderr.splitlines()
    assert len(warnings) == 4 and all(line.startswith("warning: entry point ") for line in warnings), warnings
    assert "'empty' = ''" in warnings[0] and "not a module name" in warnings[0] and "skipped" in warnings[0]
    assert "'path' = '../../etc/passwd'" in warnings[1]
    assert "cannot import no_such_plugin_module" in warnings[2]
    assert "\x1b" not in result.stderr and "'evil\\x1b[2J'" in warnings[3]
    result = run("maskdit.build", "default", "--dry-run", "--plugin", "../x.py", tmp_path=tmp_path, extra_path=site)
    one_error(result, "--plugin ../x.py: expected a module name")


def test_load_plugins_reports_broken_entry_points_through_warn_or_a_warning(monkeypatch):
    import importlib.metadata

    from maskdit.config import plugins

    entries = [importlib.metadata.EntryPoint(name=name, value=value, group=plugins.ENTRY_POINT_GROUP)
               for name, value in (("empty", ""), ("path", "/etc/passwd"), ("ok", "json"), ("empty", ""))]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: entries)
    said: list[str] = []
    assert plugins.load_plugins(warn=said.append) == ["json"]
    assert said == ["entry point 'empty' = '': not a module name such as mypkg.plugins; skipped (its plugins "
                    "cannot be named in specs)",
                    "entry point 'path' = '/etc/passwd': not a module name such as mypkg.plugins; skipped (its "
                    "plugins cannot be named in specs)"]
    with pytest.warns(plugins.PluginWarning) as caught:
        assert plugins.load_plugins() == ["json"]
    assert [str(w.message) for w in caught] == said
    with pytest.raises(plugins.PluginLoadError, match="--plugin /etc/passwd: expected a module name"):
        plugins.load_plugins(["/etc/passwd"], warn=said.append)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_spec_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "spec.json"
    os.mkfifo(fifo)
    result = run("maskdit.build", str(fifo), "--dry-run", tmp_path=tmp_path, timeout=60)
    one_error(result, f"{fifo}: not a regular file (a FIFO)")


def test_json_reading_refuses_devices_folders_and_large_files(tmp_path):
    from maskdit.config.json_input import JSONInputError, load_file

    with pytest.raises(JSONInputError, match=r"/dev/null: not a regular file \(a character device\)"):
        load_file("/dev/null", max_bytes=10)
    with pytest.raises(JSONInputError, match=r"not a regular file \(a folder\)"):
        load_file(tmp_path, max_bytes=10)
    (tmp_path / "big.json").write_text(" " * 2048 + "{}")
    with pytest.raises(JSONInputError, match=r"big.json: 2050 bytes, larger than 1 KiB"):
        load_file(tmp_path / "big.json", max_bytes=1024)


# --- terminal safety ---------------------------------------------------------------------------------

def test_printable_and_listed_escape_and_cut():
    from maskdit.config.errors import listed, printable

    assert printable("blocks.0.attn.qkv.weight") == "blocks.0.attn.qkv.weight"
    assert printable("a\nerror: forged") == "'a\\nerror: forged'"
    assert printable("\x1b[31mred\u202e") == "'\\x1b[31mred\\u202e'"
    assert printable("x" * 1000).endswith("... (1000 characters)") and len(printable("x" * 1000)) < 230
    assert listed(["a", "b\n"]) == "a, 'b\\n'"
    assert listed(str(i) for i in range(20_000)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 ... and 19,990 more"


def test_20000_junk_keys_with_escape_codes_print_a_short_escaped_report(tmp_path):
    path = save_native(small_denoiser(), tmp_path / "m")
    state = load_file(str(path))
    junk = {f"junk\x1b[2J{i}\nerror: forged": torch.zeros(0) for i in range(20_000)}
    save_file({**state, **junk}, str(path))
    result = run("maskdit.sample", str(path), "--out", str(tmp_path / "g.png"), tmp_path=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert "\x1b" not in result.stderr and not any(line.startswith("error: forged") for line in lines)
    assert len(lines) <= 12 and lines[-1] == "error:   ... and 19,990 more unexpected keys", lines[-3:]
    assert "unexpected key 'junk\\x1b[2J" in lines[1]


def test_escape_codes_in_a_spec_key_are_escaped(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "t", "\x1b[2Jevil\nerror: forged": 1}))
    result = run("maskdit.build", str(spec), "--dry-run", tmp_path=tmp_path)
    assert result.returncode == 2 and "\x1b" not in result.stderr, result.stderr
    assert not any(line.startswith("error: forged") for line in result.stderr.splitlines())
