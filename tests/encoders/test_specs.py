"""Encoder specs: bounds and cross-field checks, the registry's errors, building from JSON."""

import pytest
from pydantic import ValidationError

from maskdit.config.errors import InputError
from maskdit.config.registry import KINDS, RegistryError
from maskdit.encoders import ENCODERS, DigitsSSLSpec, DINOv2Spec, FrozenEncoder, build_encoder


def test_encoder_is_a_plugin_kind_with_both_builtins():
    assert KINDS["encoder"] == "representation encoder"
    assert ENCODERS.names() == ["digits_ssl", "dinov2"]


@pytest.mark.parametrize("fields,problem", [
    ({"image_size": 230, "weights": "random"}, "multiple of the patch size 14"),
    ({"image_size": 0, "weights": "random"}, "greater than or equal to 14"),
    ({"image_size": 1050, "weights": "random"}, "less than or equal to 1036"),
    ({"size": "huge", "weights": "random"}, "'small', 'base', 'large' or 'giant'"),
    ({"weights": "imagenet"}, "'pretrained' or 'random'"),
    ({"weights": "random", "seed": -1}, "greater than or equal to 0"),
    ({"weights": "random", "seed": 2**32}, "less than or equal to 4294967295"),
    ({"weights": "random", "path": "w.safetensors"}, "weights='random' reads no weights"),
    ({"weights": "random", "source": "hub"}, "weights='random' reads no weights"),
    ({}, "need 'path'"),
    ({"source": "hub", "path": "w.safetensors"}, "source='hub' downloads the weights"),
    ({"path": ""}, "at least 1 character"),
    ({"path": "w.safetensors", "layers": 3}, "Extra inputs are not permitted"),
])
def test_dinov2_spec_refuses(fields, problem):
    with pytest.raises(ValidationError, match=problem):
        DINOv2Spec(**fields)


def test_dinov2_spec_accepts_what_repa_uses():
    spec = DINOv2Spec(size="base", path="vit_base_patch14_dinov2.lvd142m.safetensors")
    assert (spec.image_size, spec.weights, spec.source, spec.registers) == (224, "pretrained", "file", False)
    assert DINOv2Spec(source="hub").path is None
    assert DINOv2Spec.model_validate_json(spec.model_dump_json()) == spec


def test_digits_ssl_spec_refuses_a_path_with_random_weights_and_bad_seeds():
    with pytest.raises(ValidationError, match="weights='random' reads no weights"):
        DigitsSSLSpec(weights="random", path="w.safetensors")
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        DigitsSSLSpec(weights="random", seed=-3)
    assert DigitsSSLSpec().weights == "pretrained" and DigitsSSLSpec().path is None


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(RegistryError, match="unknown representation encoder 'dinov3'; valid names: digits_ssl, dinov2"):
        build_encoder("dinov3")
    with pytest.raises(InputError, match=r"encoder: unknown name 'dinov3'; valid names: 'dinov2', 'digits_ssl'"):
        build_encoder({"name": "dinov3"})


def test_a_bad_json_object_names_the_field():
    with pytest.raises(InputError) as caught:
        build_encoder({"name": "digits_ssl", "seed": "seven", "weights": "random"})
    assert caught.value.lines == ["encoder.seed: Input should be a valid integer, unable to parse string as an "
                                  "integer (got 'seven')"]
    with pytest.raises(InputError, match="encoder: needs a 'name' field"):
        build_encoder({"weights": "random"})


def test_build_encoder_takes_a_spec_its_json_object_or_a_name():
    by_dict = build_encoder({"name": "digits_ssl", "weights": "random", "seed": 3})
    by_spec = build_encoder(DigitsSSLSpec(weights="random", seed=3))
    assert isinstance(by_dict, FrozenEncoder) and type(by_dict) is type(by_spec)
    assert all(a.equal(b) for a, b in zip(by_dict.state_dict().values(), by_spec.state_dict().values()))
    assert isinstance(build_encoder("digits_ssl"), FrozenEncoder)  # the packaged weights
