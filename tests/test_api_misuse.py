"""A researcher's first day with the Python API: defaults that disagree with the model are errors
or come from the model, RandomMasking means what its docs say, and the strategy hook is public."""

import pytest
import torch
from pydantic import ValidationError

from maskdit.core import ModelSpec, build_denoiser
from maskdit.losses import maskdit_objective
from maskdit.masking import BlockMasking, GridMasking, Mask, MaskingStrategy, RandomMasking, UniformRatio
from maskdit.samplers import build_sampler

TEN_CLASSES = ModelSpec(input_size=16, in_channels=1, patch_size=4, depth=1, hidden_size=16, num_heads=1,
                        decoder_depth=1, decoder_hidden_size=16, decoder_num_heads=1, num_classes=10)


def batch(n=4):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 16, 16, generator=gen), torch.arange(n) % 10


def test_objective_takes_patch_size_and_classes_from_the_denoiser():
    denoiser = build_denoiser(TEN_CLASSES)
    y, labels = batch()
    objective = maskdit_objective(label_dropout=1.0)  # drop every label: each becomes the null label
    out = objective(denoiser, y, labels, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.labels, torch.full((4,), 10))  # the model's null label, not the paper's 1000
    assert out.mask.num_tokens == 16 and out.mask.num_kept == 8  # the model's patch 4 on 16 px, at r = 0.5


@pytest.mark.parametrize("kwargs,message", [
    ({"num_classes": 5}, "the objective has num_classes=5 but the denoiser's num_classes is 10"),
    ({"patch_size": 2}, "the objective has patch_size=2 but the denoiser's patch_size is 4"),
    ({"sigma_data": 1.0}, "dsm term has sigma_data=1 but the denoiser's sigma_data is 0.5"),
])
def test_an_objective_that_disagrees_with_the_model_names_both(kwargs, message):
    y, labels = batch()
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        maskdit_objective(**kwargs)(build_denoiser(TEN_CLASSES), y, labels, generator=torch.Generator())


def test_random_masking_defaults_to_the_documented_half_and_takes_a_float():
    gen = torch.Generator().manual_seed(0)
    assert RandomMasking()(2, (4, 4), generator=gen).num_kept == 8  # it used to mask nothing
    assert RandomMasking(0.75)(2, (4, 4), generator=gen).num_kept == 4  # it used to fail on the float
    assert repr(RandomMasking()) == "RandomMasking(ratio=0.5)"
    assert repr(BlockMasking(UniformRatio(0.2, 0.7))).startswith("BlockMasking(ratio=UniformRatio(low=0.2, high=0.7)")
    assert repr(GridMasking(0.75, cell=2)) == "GridMasking(ratio=0.75, cell=2)"
    with pytest.raises(TypeError, match="ratio must be a number or a ratio schedule"):
        RandomMasking(True)
    with pytest.raises(TypeError, match="ratio must be a number or a ratio schedule"):
        RandomMasking("0.5")


def test_a_user_strategy_implements_the_public_draw_hook():
    class FirstTokens(MaskingStrategy):
        def draw(self, batch_size, grid_hw, kept, generator, device):
            order = torch.arange(grid_hw[0] * grid_hw[1], device=device).expand(batch_size, -1)
            return Mask.from_order(order.contiguous(), kept)

    mask = FirstTokens(0.25)(3, (2, 4))
    assert mask.num_kept == 6 and mask.ids_keep[0].tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(NotImplementedError, match="must implement draw"):
        MaskingStrategy()(1, (2, 2))


# ---- the denoiser refuses what it cannot mean -----------------------------------------------
DDPM_TEN_CLASSES = TEN_CLASSES.model_copy(update={"precond": "ddpm"})


@pytest.mark.parametrize("spec", [TEN_CLASSES, DDPM_TEN_CLASSES], ids=["edm", "ddpm"])
def test_an_integer_image_is_a_type_error_not_an_all_zero_output(spec):
    denoiser = build_denoiser(spec)
    x = torch.randint(0, 255, (2, 1, 16, 16))  # int64: it used to come back as int64 zeros
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor .* got a torch.int64 tensor"):
        denoiser(x, torch.ones(2), labels=torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("spec", [TEN_CLASSES, DDPM_TEN_CLASSES], ids=["edm", "ddpm"])
@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan"), float("inf"), torch.tensor([1.0, 0.0]),
                                   torch.tensor([float("nan"), 2.0]), torch.tensor(1e-50, dtype=torch.float64)])
def test_a_noise_level_that_is_not_finite_and_positive_is_refused(spec, sigma):
    denoiser = build_denoiser(spec)
    x, labels = torch.randn(2, 1, 16, 16), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="sigma must hold finite noise levels > 0"):  # it used to return NaN
        denoiser(x, sigma, labels=labels)
    assert bool(torch.isfinite(denoiser(x, 1e-3, labels=labels)).all())  # a small one is fine


def test_sigma_of_a_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="sigma must be a number or a real tensor"):
        build_denoiser(TEN_CLASSES)(torch.randn(2, 1, 16, 16), torch.tensor([True, True]),
                                    labels=torch.zeros(2, dtype=torch.long))


def test_a_bool_tensor_as_mask_is_a_type_error_naming_mask():
    denoiser = build_denoiser(TEN_CLASSES)
    dropped = torch.zeros(2, 16, dtype=torch.bool)
    dropped[:, :8] = True
    x, labels = torch.randn(2, 1, 16, 16), torch.zeros(2, dtype=torch.long)
    with pytest.raises(TypeError, match=r"mask must be a maskdit Mask, GroupedMask or None, got Tensor \(.*Mask.from_dropped"):
        denoiser(x, torch.ones(2), labels=labels, mask=dropped)
    assert denoiser(x, torch.ones(2), labels=labels, mask=Mask.from_dropped(dropped)).shape == x.shape


# ---- builders take dicts and say what they take ---------------------------------------------
def test_build_denoiser_takes_a_dict_of_model_fields():
    from_dict = build_denoiser(TEN_CLASSES.model_dump())
    assert from_dict.spec == TEN_CLASSES
    assert all(torch.equal(a, b) for a, b in zip(from_dict.state_dict().values(),
                                                 build_denoiser(TEN_CLASSES).state_dict().values()))
    with pytest.raises(ValidationError, match="hidden_size"):
        build_denoiser({**TEN_CLASSES.model_dump(), "hidden_size": -1})
    with pytest.raises(TypeError, match=r"expected a ModelSpec \(or a dict of its fields\), got str"):
        build_denoiser("MaskDiT-S/2")


def test_build_sampler_takes_a_dict_a_name_or_a_spec():
    assert build_sampler({"name": "heun", "steps": 3}).steps == 3
    assert build_sampler("euler").name == "euler"
    with pytest.raises(ValidationError, match="steps"):
        build_sampler({"name": "heun", "steps": 0})
    with pytest.raises(ValueError, match="a sampler dict needs a 'name' field; valid names: ddim, ddpm"):
        build_sampler({"steps": 3})
    with pytest.raises(TypeError, match=r"expected a sampler spec .* got RandomMasking"):
        build_sampler(RandomMasking())
    with pytest.raises(TypeError, match="expected a sampler spec"):
        build_sampler(TEN_CLASSES)  # a spec, but not a sampler's


# ---- initial weights are seeded explicitly --------------------------------------------------
def _weights(denoiser):
    return torch.cat([p.detach().flatten() for p in denoiser.parameters()])


def test_build_denoiser_is_seeded_by_its_arguments_never_by_the_global_rng():
    torch.manual_seed(123)
    first = _weights(build_denoiser(TEN_CLASSES))
    torch.manual_seed(456)
    assert torch.equal(first, _weights(build_denoiser(TEN_CLASSES)))  # documented: seed 0 unless told
    assert torch.equal(first, _weights(build_denoiser(TEN_CLASSES, seed=0)))
    seeded = _weights(build_denoiser(TEN_CLASSES, seed=7))
    assert not torch.equal(first, seeded)
    assert torch.equal(seeded, _weights(build_denoiser(TEN_CLASSES, generator=torch.Generator().manual_seed(7))))
    with pytest.raises(ValueError, match="pass generator or seed, not both"):
        build_denoiser(TEN_CLASSES, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"seed must be an int in 0..4294967295"):
        build_denoiser(TEN_CLASSES, seed=2**32)  # would fold onto seed 0
