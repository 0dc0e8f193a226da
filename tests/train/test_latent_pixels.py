"""The trainer hands a latent batch's clean images (``pixels``) only to the objectives that read
them, only at the steps they read them, and with the same rows as the latents."""

import torch
from torch import nn

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.losses import ObjectiveOutput
from maskdit.train.loop import Trainer

MODEL = {"input_size": 32, "in_channels": 1, "patch_size": 4, "depth": 1, "hidden_size": 8, "num_heads": 1,
         "decoder_depth": 0, "num_classes": 10}


class Latents:
    """16 'latents' [1, 4, 4] whose crop [3, 8, 8] is the latent's first value everywhere; records
    whether each draw was asked for the images."""

    stores_images = True

    def __init__(self):
        self.values = torch.linspace(-1, 1, 16)
        self.asked: list[bool] = []

    def __len__(self):
        return 16

    def draw(self, ids, *, seeds, with_images=False):
        self.asked.append(with_images)
        z = self.values[ids].view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
        labels = ids % 10
        return (z, labels, z[:, :1, :1, :1].expand(-1, 3, 8, 8).clone()) if with_images else (z, labels)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 16)

    def forward(self, x):
        return self.lin(x.flatten(1)).view_as(x)


def loss(model, images, labels, step):
    err = (model(images) - images).pow(2).flatten(1).mean(1)
    return ObjectiveOutput(total=err, parts={"mse": err}, sigma=torch.ones_like(err), mask=None, labels=None)


class Aligned:
    """An objective whose term reads the clean images up to step ``until`` (REPA's until_step)."""

    reads_pixels = True

    def __init__(self, until):
        self.until, self.calls = until, []

    def reads_pixels_at(self, step):
        return step < self.until

    def __call__(self, model, images, labels, *, step, generator, pixels=None):
        self.calls.append((step, pixels is not None))
        if pixels is not None:  # the crops of exactly these rows
            assert torch.equal(pixels[:, 0, 0, 0], images[:, 0, 0, 0])
        return loss(model, images, labels, step)


def plain(model, images, labels, *, step, generator):  # a custom objective that takes no pixels
    return loss(model, images, labels, step)


def test_pixels_only_reach_the_objectives_and_steps_that_read_them(tmp_path):
    phases = [{"name": "aligned", "steps": 4}, {"name": "plain", "steps": 2}]
    spec = ExperimentSpec.model_validate({
        "name": "toy", "seed": 3, "model": MODEL, "masking": {"name": "none"}, "losses": {"terms": [{"name": "dsm"}]},
        "train": {"phases": phases, "batch_size": 4, "grad_accumulation": 2, "lr": 1e-3, "checkpoint_every": 6,
                  "log_every": 1}})
    data, aligned = Latents(), Aligned(until=2)
    Trainer(spec.train, Net(), data, {"aligned": aligned, "plain": plain}, tmp_path / "run", seed=3).fit()
    # two micro-batches a step; the crops are read (and passed) only while the term is on
    assert aligned.calls == [(0, True), (0, True), (1, True), (1, True), (2, False), (2, False), (3, False),
                             (3, False)]
    assert data.asked == [True] * 4 + [False] * 8
