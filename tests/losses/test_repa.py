"""REPA's alignment term: its value and gradient on hand-made features, the tokens it aligns under
each routing (checked against forward hooks on the blocks), grouped masks, the projector head,
HASTE's stop, and the errors."""

import pytest
import torch
from torch import nn

from maskdit.core import build_denoiser
from maskdit.core.taps import TappedTokens
from maskdit.encoders.base import FrozenEncoder
from maskdit.losses import Objective
from maskdit.losses.heads import attach_heads, split_heads
from maskdit.losses.inputs import LossInputs
from maskdit.losses.objective import WeightedTerm
from maskdit.losses.repa import RepaLoss, features_on_grid, repa_projector
from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask

from ..core.helpers import random_mask, randomize_, tiny_spec


class PixelEncoder(FrozenEncoder):
    """A frozen toy encoder: a fixed random 1x1 conv on 2x2-pooled pixels (features [B, 6, H/2, W/2])."""

    def __init__(self, channels: int = 3, width: int = 6) -> None:
        super().__init__()
        self.width = width
        self.proj = nn.Conv2d(channels, width, 1)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=torch.Generator().manual_seed(5)))
            self.proj.bias.zero_()
        self.freeze()

    def encode(self, images):
        return self.proj(nn.functional.avg_pool2d(images, 2))


ROUTINGS = {
    "maskdit": {"decoder_depth": 1, "depth": 3},
    "deferred": {"decoder_depth": 0, "depth": 3, "routing": {"start": 1}},
    "tread": {"decoder_depth": 0, "depth": 4, "routing": {"start": 1, "end": 3}},
    "sprint": {"decoder_depth": 0, "depth": 4, "routing": {"start": 1, "end": 3, "fill": "mask_token",
                                                            "fuse": "concat"}},
}


class SpyRepa(RepaLoss):
    """RepaLoss that keeps the inputs of its last call."""

    def __call__(self, inputs):
        self.last_inputs = inputs
        return super().__call__(inputs)


def _objective(depth, **options):
    term = SpyRepa(PixelEncoder(), depth=depth, projector_dim=16, **options)
    return Objective([WeightedTerm("repa", 0.5, term)], noise=lambda b, generator=None, device=None, dtype=None:
                     torch.full((b,), 0.7, device=device, dtype=dtype)), term


def test_identical_features_give_minus_one():
    features = torch.randn(2, 4, 5)  # [B, L, D]
    term = RepaLoss(PixelEncoder(width=5), depth=1)
    term.target_features = lambda images, grid: features  # the encoder's features, hand-made
    piece = TappedTokens(tokens=features * 3.0, positions=None, rows=None, grid=(2, 2))  # same direction
    y = torch.zeros(2, 3, 4, 4)
    inputs = LossInputs(y=y, noisy=y, sigma=torch.ones(2), denoised=y, hidden={0: (piece,)},
                        heads={"repa": nn.Identity()})
    torch.testing.assert_close(term(inputs), torch.full((2,), -1.0))
    opposite = TappedTokens(tokens=-features, positions=None, rows=None, grid=(2, 2))
    inputs = LossInputs(y=y, noisy=y, sigma=torch.ones(2), denoised=y, hidden={0: (opposite,)},
                        heads={"repa": nn.Identity()})
    torch.testing.assert_close(term(inputs), torch.full((2,), 1.0))


def test_kept_positions_pick_their_own_features():
    features = torch.randn(1, 4, 3)
    term = RepaLoss(PixelEncoder(width=3), depth=1)
    term.target_features = lambda images, grid: features
    positions = torch.tensor([[3, 1]])
    piece = TappedTokens(tokens=features[:, [3, 1]], positions=positions, rows=None, grid=(2, 2))
    y = torch.zeros(1, 3, 4, 4)
    inputs = LossInputs(y=y, noisy=y, sigma=torch.ones(1), denoised=y, hidden={0: (piece,)},
                        heads={"repa": nn.Identity()})
    torch.testing.assert_close(term(inputs), torch.tensor([-1.0]))
    wrong = TappedTokens(tokens=features[:, [3, 1]], positions=torch.tensor([[0, 2]]), rows=None, grid=(2, 2))
    inputs = LossInputs(y=y, noisy=y, sigma=torch.ones(1), denoised=y, hidden={0: (wrong,)},
                        heads={"repa": nn.Identity()})
    assert float(term(inputs)) > -0.99


@pytest.mark.parametrize("method", ROUTINGS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_aligns_exactly_the_tokens_present_at_the_block(method, depth):
    spec = tiny_spec(**ROUTINGS[method])
    denoiser = randomize_(build_denoiser(spec, seed=0), seed=1)
    objective, term = _objective(depth)
    attach_heads(denoiser, objective, generator=torch.Generator().manual_seed(3))
    seen = []
    hook = denoiser.net.blocks[depth - 1].register_forward_hook(lambda module, args, out: seen.append(out))
    mask = random_mask(spec, 3, 0.5, seed=4)
    y = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    out = objective(denoiser, y, torch.tensor([0, 1, 2]), mask=mask, generator=torch.Generator().manual_seed(7))
    hook.remove()
    (piece,) = term.last_inputs.hidden[depth - 1]
    assert len(seen) == 1 and piece.tokens is seen[0]
    routing = spec.routing
    end = routing.end if routing.end is not None else spec.depth
    if routing.start <= depth - 1 < end:  # inside the sparse span: the kept tokens, at their positions
        assert piece.tokens.shape[1] == mask.num_kept
        assert torch.equal(piece.positions, mask.ids_keep)
    else:
        assert piece.tokens.shape[1] == spec.num_tokens and piece.positions is None
    # the value equals the term computed by hand from the hooked tokens
    features = features_on_grid(term.encoder(y), (spec.grid_size, spec.grid_size))
    if piece.positions is not None:
        features = features.gather(1, mask.ids_keep.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
    expected = -nn.functional.cosine_similarity(denoiser.heads["repa"](seen[0]), features, dim=-1).mean(1)
    torch.testing.assert_close(out.parts["repa"], expected)


def test_gradient_reaches_the_projector_and_early_blocks_not_the_encoder():
    spec = tiny_spec(**ROUTINGS["sprint"])
    denoiser = randomize_(build_denoiser(spec, seed=0), seed=1)
    objective, term = _objective(2)
    attach_heads(denoiser, objective, generator=torch.Generator().manual_seed(3))
    y = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    out = objective(denoiser, y, torch.tensor([0, 1]), mask=random_mask(spec, 2, 0.5),
                    generator=torch.Generator().manual_seed(7))
    out.total.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in denoiser.heads["repa"].parameters())
    assert denoiser.net.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in denoiser.net.blocks[2].parameters())  # after the aligned block: no grad
    assert all(p.grad is None and not p.requires_grad for p in term.encoder.parameters())
    term.encoder.train()
    assert not term.encoder.training


def test_grouped_masks_give_each_sample_its_own_alignment():
    spec = tiny_spec(**ROUTINGS["tread"])
    denoiser = randomize_(build_denoiser(spec, seed=0), seed=1)
    objective, _ = _objective(2)
    attach_heads(denoiser, objective, generator=torch.Generator().manual_seed(3))
    big, small = random_mask(spec, 2, 0.25, seed=1), random_mask(spec, 2, 0.75, seed=2)
    grouped = GroupedMask.combine([big, small], [torch.tensor([0, 3]), torch.tensor([1, 2])])
    y = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    labels = torch.tensor([0, 1, 2, 3])
    noise = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    together = objective(denoiser, y, labels, noise=noise, mask=grouped).parts["repa"]
    for group, rows in zip((big, small), ([0, 3], [1, 2])):
        alone = objective(denoiser, y[rows], labels[rows], noise=noise[rows], mask=group).parts["repa"]
        torch.testing.assert_close(together[rows], alone)


def test_stops_after_until_step_and_needs_its_head():
    spec = tiny_spec(**ROUTINGS["maskdit"])
    denoiser = randomize_(build_denoiser(spec, seed=0), seed=1)
    objective, _ = _objective(1, until_step=5)
    y = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="attach_heads"):
        objective(denoiser, y, torch.tensor([0, 1]))
    attach_heads(denoiser, objective)
    assert float(objective(denoiser, y, torch.tensor([0, 1]), step=4).parts["repa"].abs().sum()) > 0
    assert torch.equal(objective(denoiser, y, torch.tensor([0, 1]), step=5).parts["repa"], torch.zeros(2))


def test_heads_stay_out_of_the_backbone():
    spec = tiny_spec()
    denoiser = build_denoiser(spec, seed=0)
    objective, _ = _objective(1)
    attach_heads(denoiser, objective)
    assert not any(k.startswith("heads") for k in denoiser.net.state_dict())
    model, heads = split_heads(denoiser.state_dict())
    assert set(heads) == {f"heads.repa.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    assert all(k.startswith("net.") for k in model)


def test_projector_layout_and_init_are_seeded():
    a = repa_projector(8, 16, 4, generator=torch.Generator().manual_seed(0))
    b = repa_projector(8, 16, 4, generator=torch.Generator().manual_seed(0))
    assert [type(m).__name__ for m in a] == ["Linear", "SiLU", "Linear", "SiLU", "Linear"]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert float(a[0].weight.abs().max()) <= 8 ** -0.5


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="depth"):
        RepaLoss(PixelEncoder(), depth=0)
    trainable = PixelEncoder()
    trainable.proj.weight.requires_grad_(True)
    with pytest.raises(ValueError, match="frozen"):
        RepaLoss(trainable, depth=1)
    spec = tiny_spec()
    denoiser = build_denoiser(spec, seed=0)
    with pytest.raises(ValueError, match="deeper"):
        attach_heads(denoiser, [RepaLoss(PixelEncoder(), depth=5)])
    term = RepaLoss(PixelEncoder(), depth=1)
    with pytest.raises(ValueError, match="channels"):
        term.target_features(torch.zeros(1, 4, 8, 8), (4, 4))


def test_a_path_dropped_sample_has_nothing_to_align():
    spec = tiny_spec(**ROUTINGS["sprint"])
    denoiser = randomize_(build_denoiser(spec, seed=0), seed=1)
    objective, _ = _objective(2)  # block 1: inside the sparse span
    attach_heads(denoiser, objective, generator=torch.Generator().manual_seed(3))
    kept = random_mask(spec, 2, 0.5, seed=1)
    grouped = GroupedMask.combine([kept, Mask.keep_none(1, spec.num_tokens)], [torch.tensor([0, 2]), torch.tensor([1])])
    y = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    out = objective(denoiser, y, torch.tensor([0, 1, 2]), noise=torch.randn_like(y), mask=grouped)
    repa = out.parts["repa"]
    assert bool(torch.isfinite(repa).all()) and float(repa[1]) == 0.0 and float(repa[[0, 2]].abs().min()) > 0


def test_cached_features_are_each_images_own_and_encoded_once():
    term = RepaLoss(PixelEncoder(), depth=1, cache_features=True)
    plain = RepaLoss(PixelEncoder(), depth=1)
    images = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    first = term.target_features(images, (4, 4))
    assert term.encoded_images == 3
    again = term.target_features(images[[2, 0]], (4, 4))  # another batch of the same images
    assert term.encoded_images == 3
    assert torch.equal(again, first[[2, 0]])
    torch.testing.assert_close(first, plain.target_features(images, (4, 4)))
    changed = images.clone()
    changed[1, 0, 0, 0] += 1e-3  # a different image is encoded, not looked up
    term.target_features(changed, (4, 4))
    assert term.encoded_images == 4


def test_a_repa_specs_cost_counts_the_tokens_present_at_its_block():
    from maskdit.core import ModelSpec
    from maskdit.losses.specs import RepaSpec

    spec = RepaSpec(encoder={"name": "digits_ssl", "weights": "random"}, depth=2, projector_dim=16)
    model = ModelSpec(input_size=32, in_channels=1, patch_size=4, depth=4, hidden_size=32, num_heads=2,
                      decoder_depth=0, num_classes=10, routing={"start": 1, "end": 3})
    dense, routed = spec.training_macs(model), spec.training_macs(model, 0.75)
    assert (dense.present, routed.present, dense.encoder_width) == (64, 16, 128)  # block 2 is in the routed span
    assert dense.projector_macs == 3 * 64 * (32 * 16 + 16 * 16 + 16 * 128)  # forward and backward
    assert routed.projector_macs * 4 == dense.projector_macs
    assert dense.encoder_macs == routed.encoder_macs > 0  # the encoder sees the whole clean image
    outside = spec.model_copy(update={"depth": 1}).training_macs(model, 0.75)
    assert outside.present == 64  # block 1 runs before the route: every token is there


def test_on_latents_the_encoder_reads_the_batchs_pixels_not_y():
    """A latent batch brings its clean images as ``pixels``: the target features are theirs (an
    8x8 latent of 4 channels, 16x16 crops), and without them the term names the fix."""
    spec = tiny_spec(in_channels=4, decoder_depth=0, depth=2)
    denoiser = randomize_(build_denoiser(spec, seed=0), seed=1)
    term = SpyRepa(PixelEncoder(), depth=1, projector_dim=16)
    objective = Objective([WeightedTerm("repa", 0.5, term)], noise=lambda b, generator=None, device=None,
                          dtype=None: torch.full((b,), 0.7, device=device, dtype=dtype))
    assert objective.reads_pixels
    attach_heads(denoiser, objective, generator=torch.Generator().manual_seed(3))
    seen = []
    hook = denoiser.net.blocks[0].register_forward_hook(lambda module, args, out: seen.append(out))
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    pixels = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(8)) * 2 - 1
    out = objective(denoiser, z, torch.tensor([0, 1]), pixels=pixels, generator=torch.Generator().manual_seed(7))
    hook.remove()
    assert term.last_inputs.clean_images is pixels
    features = features_on_grid(term.encoder(pixels), (spec.grid_size, spec.grid_size))  # 8x8 -> 4x4 cells
    expected = -nn.functional.cosine_similarity(denoiser.heads["repa"](seen[0]), features, dim=-1).mean(1)
    torch.testing.assert_close(out.parts["repa"], expected)
    with pytest.raises(ValueError, match="4 channels .*--keep-images"):
        objective(denoiser, z, torch.tensor([0, 1]), generator=torch.Generator().manual_seed(7))
    with pytest.raises(ValueError, match=r"pixels must be a floating tensor \[B=2"):
        objective(denoiser, z, torch.tensor([0, 1]), pixels=pixels[:1], generator=torch.Generator().manual_seed(7))


def test_the_objective_reads_pixels_only_while_repa_is_on():
    """After ``until_step`` the term reads nothing, so a trainer need not fetch a latent batch's crops."""
    term = RepaLoss(PixelEncoder(), depth=1, projector_dim=16, until_step=3)
    noise = lambda b, generator=None, device=None, dtype=None: torch.full((b,), 0.7)  # noqa: E731
    objective = Objective([WeightedTerm("repa", 0.5, term)], noise=noise)
    assert [objective.reads_pixels_at(step) for step in (0, 2, 3, 9)] == [True, True, False, False]
    assert not Objective([WeightedTerm("other", 1.0, lambda inputs: inputs.y.sum((1, 2, 3)))],
                         noise=noise).reads_pixels_at(0)


def test_pixels_that_are_not_images_are_named_as_the_pixels():
    """Pixels of the wrong channel count are the caller's pixels, not a latent batch that forgot them."""
    spec = tiny_spec(in_channels=4, decoder_depth=0, depth=2)
    denoiser = randomize_(build_denoiser(spec, seed=0), seed=1)
    objective = Objective([WeightedTerm("repa", 0.5, RepaLoss(PixelEncoder(), depth=1, projector_dim=16))],
                          noise=lambda b, generator=None, device=None, dtype=None: torch.full((b,), 0.7))
    attach_heads(denoiser, objective, generator=torch.Generator().manual_seed(3))
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    with pytest.raises(ValueError, match=r"the objective's pixels have 4 channels"):
        objective(denoiser, z, torch.tensor([0, 1]), pixels=torch.zeros(2, 4, 16, 16),
                  generator=torch.Generator().manual_seed(7))
