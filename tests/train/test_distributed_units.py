"""Distributed pieces that need no process group: batch checks, rank rows, world-size-independent draws."""

from __future__ import annotations

import pytest
import torch

from maskdit.app.commands import build as build_cli
from maskdit.app import cli
from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.train.batches import BatchStream
from maskdit.train.distributed import DistContext, DistributedSetupError, check_batch, context_from_env
from maskdit.train.loop import Trainer

MODEL = {"input_size": 32, "in_channels": 1, "patch_size": 8, "depth": 1, "hidden_size": 32, "num_heads": 2,
         "decoder_depth": 1, "decoder_hidden_size": 16, "decoder_num_heads": 2, "num_classes": 10}


def make_spec(**train) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "name": "units", "seed": 1, "model": MODEL, "masking": {"name": "random", "ratio": 0.5},
        "losses": {"terms": [{"name": "dsm", "weight": 1.0}, {"name": "mae", "weight": 0.1}], "label_dropout": 0.5},
        "train": {"steps": 2, "batch_size": 8, **train}})


def test_check_batch_names_the_numbers():
    assert check_batch(16, 2, 4) == 2
    with pytest.raises(DistributedSetupError, match=r"batch_size 8 must be divisible by .* 3 x 1 = 3.* 6, 9"):
        check_batch(8, 1, 3)
    with pytest.raises(DistributedSetupError, match=r"2 x 4 = 8"):
        check_batch(12, 4, 2)


def test_trainer_refuses_a_batch_that_does_not_split(tmp_path):
    spec = make_spec(batch_size=8, grad_accumulation=2)
    with pytest.raises(DistributedSetupError, match="divisible by world size x grad_accumulation = 3 x 2"):
        Trainer(spec.train, torch.nn.Linear(1, 1), None, lambda phase: None, tmp_path, seed=spec.seed,
                dist=DistContext(0, 3, 0))


def test_cli_reports_a_bad_world_size_before_any_rendezvous(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    code = build_cli.main(["default", "--runs", str(tmp_path), "--set", "train.batch_size=8"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert "error: train.batch_size 8 must be divisible by world size x grad_accumulation = 3 x 1 = 3" in err
    assert not (tmp_path / "default").exists()


def test_context_from_env_and_rows():
    ctx = context_from_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed) == (1, 4, False, True)
    assert ctx.rows(8) == slice(2, 4)
    assert ctx.device("cuda") == torch.device("cuda", 1) and ctx.device("cpu") == torch.device("cpu")
    with pytest.raises(DistributedSetupError, match="names one GPU"):
        ctx.device("cuda:0")
    assert context_from_env({}) == DistContext()
    with pytest.raises(DistributedSetupError, match="bad ranks"):
        context_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_rank_rows_of_a_batch_make_up_the_batch():
    data = torch.utils.data.TensorDataset(torch.arange(40.0).view(40, 1, 1, 1), torch.arange(40))
    stream = BatchStream(data, 8, seed=4)
    for index in (0, 7):  # batch 7 lies in the second epoch
        images, labels = stream.batch(index)
        parts = [stream.batch(index, rows=DistContext(r, 4).rows(8)) for r in range(4)]
        assert torch.equal(torch.cat([p[0] for p in parts]), images)
        assert torch.equal(torch.cat([p[1] for p in parts]), labels)


class Recorder(torch.nn.Module):
    """A denoiser that records what it was given and predicts zeros."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, sigma, *, labels=None, mask=None):
        self.seen.append((x, sigma, labels, mask))
        return torch.zeros_like(x)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_rows_of_a_batch_see_the_single_process_draws(world):
    """Whatever the world size, the ranks' rows together see the noise, sigmas, dropped labels and
    masks the objective draws for the whole batch in one process, and every rank's generator
    ends in the same state."""
    objective = Experiment(make_spec()).objective()
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(8, 1, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (8,), generator=gen)
    whole, after_whole = Recorder(), torch.Generator().manual_seed(9)
    expected = objective(whole, y, labels, generator=after_whole, step=0)
    parts, totals = Recorder(), []
    for rank in range(world):
        rows = DistContext(rank, world).rows(8)
        generator = torch.Generator().manual_seed(9)
        out = objective(parts, y[rows], labels[rows], rows=rows, total=8, generator=generator, step=0)
        totals.append(out.total)
        assert torch.equal(generator.get_state(), after_whole.get_state())
    x, sigma, dropped_labels, mask = whole.seen[0]
    assert torch.equal(torch.cat([s[0] for s in parts.seen]), x)
    assert torch.equal(torch.cat([s[1] for s in parts.seen]), sigma)
    assert torch.equal(torch.cat([s[2] for s in parts.seen]), dropped_labels)
    assert not torch.equal(dropped_labels, labels)  # dropout happened, so the check above means something
    assert torch.equal(torch.cat([s[3].dropped for s in parts.seen]), mask.dropped)
    assert torch.equal(torch.cat([s[3].ids_keep for s in parts.seen]), mask.ids_keep)
    assert torch.equal(torch.cat(totals), expected.total)
    if world > 1:  # each rank's rows get their own noise
        assert not torch.equal(parts.seen[0][0] - y[:8 // world], parts.seen[1][0] - y[8 // world: 16 // world])


class DrawingData:
    """A dataset that draws (like latents): each row's value comes from its own seed."""

    def __init__(self, n=24):
        self.n = n

    def __len__(self):
        return self.n

    def draw(self, ids, *, generator=None, seeds=None):
        noise = torch.stack([torch.randn(1, 2, 2, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        return ids.float().view(-1, 1, 1, 1) + noise, ids.clone()  # [B, 1, 2, 2], [B]


def test_drawing_datasets_draw_the_same_rows_on_any_rank():
    stream = BatchStream(DrawingData(), 8, seed=2)
    images, labels = stream.batch(5)
    parts = [stream.batch(5, rows=DistContext(r, 2).rows(8)) for r in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), images)
    assert torch.equal(torch.cat([p[1] for p in parts]), labels)
    later, later_labels = stream.batch(6)
    noise, later_noise = images - labels.view(-1, 1, 1, 1), later - later_labels.view(-1, 1, 1, 1)
    assert not torch.allclose(noise, later_noise)  # another batch index, other seeds
