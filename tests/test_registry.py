"""The one registration mechanism: spec classes registered per kind, unions derived from them."""

from typing import Literal

import pytest
from pydantic import ValidationError

from maskdit.config.registry import PLUGINS, Plugins, RegistryError, one_of, registry
from maskdit.config.spec_model import SpecModel


class _Shape(SpecModel):
    name: Literal["square"] = "square"
    side: int = 1

    def build(self, *, scale: int = 1, **context):
        return f"square {self.side * scale}"


class _Circle(SpecModel):
    name: Literal["circle"] = "circle"

    def build(self, **context):
        return "circle"


def _plugins() -> Plugins:
    return Plugins({"shape": "shape"})


def test_add_get_build_names():
    reg = _plugins()["shape"]
    assert reg.add(_Shape) is _Shape
    assert reg.get("square") is _Shape
    assert reg.build(_Shape(side=2), scale=3) == "square 6"
    assert reg.build("square") == "square 1"  # a plain name: the spec with its defaults
    assert "square" in reg and "circle" not in reg
    assert reg.names() == ["square"] and len(reg) == 1 and list(reg) == ["square"]


def test_duplicate_name_raises():
    reg = _plugins()["shape"]
    reg.add(_Shape)
    with pytest.raises(RegistryError, match="'square' is already registered"):
        reg.add(_Shape)


def test_unknown_name_lists_valid_ones():
    reg = _plugins()["shape"]
    reg.add(_Shape)
    reg.add(_Circle)
    with pytest.raises(RegistryError, match=r"unknown shape 'oval'; valid names: circle, square"):
        reg.get("oval")


def test_unknown_kind_lists_kinds():
    with pytest.raises(RegistryError, match="valid kinds: masking"):
        PLUGINS["maskin"]


def test_not_a_plugin_spec_is_refused():
    class NoName(SpecModel):
        side: int = 1

        def build(self, **context):
            return None

    class NoBuild(SpecModel):
        name: Literal["nobuild"] = "nobuild"

    reg = _plugins()["shape"]
    with pytest.raises(RegistryError, match="needs a pydantic field name"):
        reg.add(NoName)
    with pytest.raises(RegistryError, match="build"):
        reg.add(NoBuild)
    with pytest.raises(RegistryError, match="is not a plugin spec"):
        reg.add(int)


def test_builtin_kinds_have_members():
    assert {"masking", "loss", "sampler", "features"} <= set(PLUGINS.kinds())
    for kind in PLUGINS.kinds():
        assert len(registry(kind)) >= 1, kind


def test_registration_after_definition_reaches_containers():
    """A spec model defined before a plugin registers validates the plugin's name afterwards."""

    class Holder(SpecModel):
        masking: one_of("masking") = None

    with pytest.raises(ValidationError, match="'random', 'block', 'grid', 'none'"):
        Holder.model_validate({"masking": {"name": "t_late"}})

    class LateSpec(SpecModel):
        name: Literal["t_late"] = "t_late"

        def build(self, **context):
            return None

    reg = registry("masking")
    reg.add(LateSpec)
    try:
        assert isinstance(Holder.model_validate({"masking": {"name": "t_late"}}).masking, LateSpec)
        assert "t_late" in str(Holder.model_json_schema())
    finally:
        reg.remove("t_late")  # keep the process-wide registry as the other tests expect
    with pytest.raises(ValidationError, match="does not match any"):
        Holder.model_validate({"masking": {"name": "t_late"}})
