import importlib

import pytest

import maskdit.eval


@pytest.mark.parametrize("name", [n for n in maskdit.eval.__all__ if n != "specs"])
def test_every_export_resolves_to_its_object_not_a_submodule(name):
    value = getattr(maskdit.eval, name)
    assert not isinstance(value, type(importlib)), f"maskdit.eval.{name} is shadowed by a submodule"


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        maskdit.eval.nope  # noqa: B018
