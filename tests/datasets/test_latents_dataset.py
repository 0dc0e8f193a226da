"""The latent dataset: shard checks (truncation, corruption), memory-mapped reads, seeded z draws."""

import json
import shutil

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.data import build_dataset
from maskdit.data.latent_dataset import LatentDataset, sample_latents
from maskdit.data.shards import ShardError, open_shard, read_header
from maskdit.data.specs import LatentsSpec


@pytest.fixture()
def copy_of(encoded_dir, tmp_path):
    out = tmp_path / "lat"
    shutil.copytree(encoded_dir, out)
    return out


def test_build_from_spec(encoded_dir):
    data = build_dataset(LatentsSpec(path=str(encoded_dir), channels=4, resolution=8, num_classes=2, flip=True))
    assert isinstance(data, LatentDataset) and len(data) == 10
    assert (data.channels, data.resolution, data.num_classes, data.scale) == (4, 8, 2, 0.18215)
    assert data.labels.tolist() == [0] * 5 + [1] * 5


def test_spec_disagreeing_with_the_manifest_fails(encoded_dir):
    with pytest.raises(ValueError, match=r"expects .* \(4, 32, 1000\), but .* holds \(4, 8, 2\)"):
        build_dataset(LatentsSpec(path=str(encoded_dir)))


def test_memory_map_reads_what_safetensors_wrote(encoded_dir):
    path = encoded_dir / "shard-00001.safetensors"
    mapped, loaded = open_shard(path), load_file(path)
    assert set(mapped) == set(loaded)
    for name in loaded:
        assert mapped[name].dtype == loaded[name].dtype and torch.equal(mapped[name], loaded[name])


def test_truncated_shard_is_named(copy_of):
    path = copy_of / "shard-00001.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    for verify in ("sha256", "size"):
        with pytest.raises(ShardError, match=r"shard .*shard-00001\.safetensors has \d+ bytes .*truncated"):
            LatentDataset(copy_of, verify=verify)
    with pytest.raises(ShardError, match=r"shard-00001\.safetensors is truncated"):
        read_header(path)
    path.write_bytes(b"\x01")
    with pytest.raises(ShardError, match=r"shard-00001\.safetensors is truncated \(1 bytes, no header\)"):
        read_header(path)


def test_corrupt_shard_fails_its_checksum(copy_of):
    path = copy_of / "shard-00002.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-7] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match=r"shard .*shard-00002\.safetensors fails its SHA-256 check"):
        LatentDataset(copy_of)


def test_missing_shard_and_manifest(copy_of, tmp_path):
    (copy_of / "shard-00000.safetensors").unlink()
    with pytest.raises(ShardError, match=r"shard .*shard-00000\.safetensors listed in .* is missing"):
        LatentDataset(copy_of)
    with pytest.raises(ShardError, match="encode the images first"):
        LatentDataset(tmp_path / "nowhere")
    (copy_of / "manifest.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ShardError, match="not a valid latent manifest"):
        LatentDataset(copy_of)


def test_flip_needs_mirrored_shards(copy_of):
    manifest = json.loads((copy_of / "manifest.json").read_text())
    (copy_of / "manifest.json").write_text(json.dumps({**manifest, "flip": False}))
    with pytest.raises(ValueError, match="holds no mirrored latents"):
        LatentDataset(copy_of, flip=True)
    assert len(LatentDataset(copy_of, flip=False)) == 10


def test_getitem_gives_the_eight_channel_moments(encoded_dir):
    data = LatentDataset(encoded_dir)
    moments, label = data[5]
    shard = load_file(encoded_dir / "shard-00001.safetensors")  # item 5 is the shard's second latent
    assert moments.shape == (8, 8, 8) and label == 1
    assert torch.equal(moments, torch.cat([shard["mean"][1], shard["logvar"][1]]))
    assert torch.equal(data[-1][0], data[9][0])
    with pytest.raises(IndexError):
        data[10]


def test_draw_is_seeded_and_follows_the_documented_order(encoded_dir):
    data = LatentDataset(encoded_dir)
    ids = torch.tensor([9, 0, 4, 4, 7])
    z, labels = data.draw(ids, generator=torch.Generator().manual_seed(5))
    again, _ = data.draw(ids, generator=torch.Generator().manual_seed(5))
    other, _ = data.draw(ids, generator=torch.Generator().manual_seed(6))
    assert z.shape == (5, 4, 8, 8) and z.dtype == torch.float32 and labels.tolist() == [1, 0, 0, 0, 1]
    assert torch.equal(z, again) and not torch.equal(z, other)
    assert not torch.equal(z[2], z[3])  # the same image twice in a batch gets two independent draws
    mean, std, _ = data.posterior(ids)
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(z, 0.18215 * (mean + std * eps))


def test_draw_statistics_match_the_posterior(encoded_dir):
    data = LatentDataset(encoded_dir)
    n = 4000
    z, _ = data.draw(torch.full((n,), 6), generator=torch.Generator().manual_seed(0))  # [n, 4, 8, 8]
    mean, std, _ = data.posterior(torch.tensor([6]))
    mu, sd = 0.18215 * mean[0], 0.18215 * std[0]
    assert float(((z.mean(0) - mu).abs() / (sd / n**0.5)).max()) < 5  # within 5 standard errors everywhere
    assert float((z.std(0) / sd - 1).abs().max()) < 0.08


def test_flip_draws_pick_original_or_mirror(encoded_dir):
    data = LatentDataset(encoded_dir, flip=True)
    ids = torch.arange(10).repeat(4)  # [40]
    g = torch.Generator().manual_seed(1)
    mean, _, _ = data.posterior(ids, generator=g)
    shards = [load_file(encoded_dir / f"shard-0000{k}.safetensors") for k in range(3)]
    plain = torch.cat([s["mean"] for s in shards])[ids]
    mirror = torch.cat([s["mean_flip"] for s in shards])[ids]
    is_plain = (mean == plain).flatten(1).all(1)  # [40, 256] -> [40]
    is_mirror = (mean == mirror).flatten(1).all(1)
    assert bool((is_plain ^ is_mirror).all()) and 5 < int(is_mirror.sum()) < 35
    with pytest.raises(ValueError, match="pass a generator"):
        data.posterior(ids)
    z, _ = data.draw(ids, generator=torch.Generator().manual_seed(1))
    assert torch.equal(z, data.draw(ids, generator=torch.Generator().manual_seed(1))[0])


def test_sample_latents_checks_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        sample_latents(torch.zeros(1, 4, 2, 2), torch.ones(1, 4, 2, 1), scale=1.0, generator=torch.Generator())


def test_out_of_range_ids(encoded_dir):
    with pytest.raises(IndexError, match="0..9"):
        LatentDataset(encoded_dir).draw(torch.tensor([10]), generator=torch.Generator())


def test_experiment_spec_with_latents():
    model = {"preset": "MaskDiT-S/2", "input_size": 32, "in_channels": 4, "num_classes": 1000}
    data = {"name": "latents", "path": "/data/latents", "flip": True}
    spec = ExperimentSpec.model_validate({"model": model, "data": data,
                                          "eval": {"metrics": ["fid"], "features": "inception", "reference": "ref.npz"}})
    assert (spec.data.channels, spec.data.resolution, spec.data.num_classes) == (4, 32, 1000)
    with pytest.raises(ValidationError, match="data has 8 channel"):
        ExperimentSpec.model_validate({"model": model, "data": {**data, "channels": 8}})
    with pytest.raises(ValidationError, match="verify"):
        LatentsSpec(path="x", verify="md5")


def test_imagenet_example_is_the_paper_recipe(capsys):
    from pathlib import Path

    from maskdit.app.experiment_spec import load_spec
    from maskdit.app.commands.build import main

    path = Path(__file__).parents[2] / "examples" / "imagenet256-maskdit-xl2.json"
    spec = load_spec(str(path))
    assert spec.model.preset == "MaskDiT-XL/2" and (spec.model.decoder_depth, spec.model.decoder_hidden_size) == (8, 512)
    assert (spec.data.name, spec.data.channels, spec.data.resolution, spec.data.num_classes) == ("latents", 4, 32, 1000)
    assert (spec.train.batch_size, spec.train.lr, spec.train.optimizer.weight_decay, spec.train.ema.decay) == (
        1024, 1e-4, 0.0, 0.9999)
    pretrain, tune = spec.train.phases
    assert spec.masking.ratio == 0.5 and [(t.name, t.weight) for t in spec.losses.terms] == [("dsm", 1.0), ("mae", 0.1)]
    assert pretrain.steps == 2_000_000 and tune.masking.name == "none" and tune.lr == 5e-5
    assert [t.name for t in tune.loss_terms] == ["dsm"]
    assert (spec.sampler.name, spec.sampler.steps, spec.sampler.cfg_scale) == ("heun", 40, 1.5)
    assert spec.eval.features == "inception" and spec.eval.reference.endswith(".npz") and spec.eval.num_samples == 50_000
    assert main([str(path), "--dry-run"]) == 0
    assert "MaskDiT-XL/2" in capsys.readouterr().out


def test_seeded_rows_do_not_depend_on_the_split_of_the_batch(encoded_dir):
    from maskdit.data.draws import row_seeds

    data = LatentDataset(encoded_dir, flip=True)
    ids = torch.tensor([3, 8, 0, 5, 5, 1])
    seeds = row_seeds(7, 12, torch.arange(6))
    assert len(set(seeds.tolist())) == 6 and not torch.equal(seeds, row_seeds(7, 13, torch.arange(6)))
    whole, labels = data.draw(ids, seeds=seeds)
    for rows in (slice(0, 3), slice(3, 6), slice(1, 6, 2)):  # e.g. two ranks' shares, or a strided one
        part, part_labels = data.draw(ids[rows], seeds=seeds[rows])
        assert torch.equal(part, whole[rows]) and torch.equal(part_labels, labels[rows])
    assert not torch.equal(whole[3], whole[4])  # same image, different rows: independent draws
    with pytest.raises(ValueError, match="exactly one of generator"):
        data.draw(ids)
    with pytest.raises(ValueError, match="5 seeds for 6 rows"):
        data.draw(ids, seeds=seeds[:5])
