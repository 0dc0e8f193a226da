import pytest

from maskdit.registry import Registry, RegistryError


def test_register_get_and_build():
    reg: Registry[str] = Registry("shape")
    reg.register("square", lambda spec, side=1: f"square {spec.name} {side}")

    class Spec:
        name = "square"

    assert reg.build(Spec(), side=3) == "square square 3"
    assert "square" in reg and "circle" not in reg
    assert reg.names() == ["square"] and len(reg) == 1 and list(reg) == ["square"]


def test_decorator_form():
    reg = Registry("shape")

    @reg.register("circle")
    def make_circle(spec):
        return "circle"

    assert reg.get("circle") is make_circle


def test_duplicate_raises():
    reg = Registry("shape")
    reg.register("a", lambda spec: 1)
    with pytest.raises(RegistryError, match="shape 'a' is already registered"):
        reg.register("a", lambda spec: 2)


def test_unknown_name_lists_valid_ones():
    reg = Registry("masking strategy")
    reg.register("random", lambda spec: 1)
    reg.register("block", lambda spec: 2)
    with pytest.raises(RegistryError, match=r"unknown masking strategy 'grod'; valid names: block, random"):
        reg.get("grod")


@pytest.mark.parametrize("bad", ["", None, 3])
def test_bad_names_rejected(bad):
    with pytest.raises(RegistryError):
        Registry("x").register(bad, lambda spec: 1)


def test_non_callable_rejected():
    with pytest.raises(RegistryError, match="must be callable"):
        Registry("x").register("a", 42)
