"""Parameter counts of the presets equal the reference's (DiT, Peebles & Xie 2023, Table 1; MaskDiT, Zheng et al. 2024), checked on the meta device."""

import pytest

from maskdit.core import MODEL_PRESETS, ModelSpec, build_model, count_parameters


@pytest.mark.parametrize(
    "preset, overrides, millions, digits",
    [
        ("MaskDiT-S/2", {}, 68.35, 2),
        ("MaskDiT-S/2", {"decoder_depth": 0}, 32.96, 2),
        ("MaskDiT-B/2", {}, 175.9, 1),
        ("MaskDiT-B/2", {"decoder_depth": 0}, 130.5, 1),
        ("MaskDiT-L/2", {}, 510.2, 1),
        ("MaskDiT-L/2", {"decoder_depth": 0}, 458.1, 1),
        ("MaskDiT-XL/2", {}, 730.5, 1),
        ("MaskDiT-XL/2", {"decoder_depth": 0}, 675.1, 1),
        ("MaskDiT-XL/2", {"input_size": 64}, 731.8, 1),
        ("DiT-XL/2", {}, 675.1, 1),  # DiT's published 675M
    ],
)
def test_reference_parameter_counts(preset, overrides, millions, digits):
    spec = ModelSpec(preset=preset, **overrides)
    assert round(count_parameters(spec) / 1e6, digits) == millions


def test_counts_frozen_position_embeddings_only_when_asked():
    spec = ModelSpec(preset="MaskDiT-S/2")
    net = build_model(spec, device="meta")
    trainable = count_parameters(net, include_frozen=False)
    assert count_parameters(net) - trainable == 256 * 384 + 256 * 512
    assert trainable == sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert not any(name.endswith("pos_embed") for name, _ in net.named_parameters())


def test_every_preset_builds_on_meta_and_lite_is_lighter():
    for name in MODEL_PRESETS:
        spec = ModelSpec(preset=name)
        assert count_parameters(spec) > 0
    for size in ("S", "B", "L", "XL", "H"):
        lite = count_parameters(ModelSpec(preset=f"MaskDiT-lite-{size}/2"))
        reference = count_parameters(ModelSpec(preset=f"MaskDiT-{size}/2"))
        dit = count_parameters(ModelSpec(preset=f"DiT-{size}/2"))
        assert dit < lite < reference
