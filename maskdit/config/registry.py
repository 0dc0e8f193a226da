"""One registration mechanism for every plugin kind: the spec is the plugin.

A plugin is a spec class (a :class:`maskdit.config.spec_model.SpecModel` with a ``name: Literal["..."]``
field and a ``build(self, **context)`` method) declared once with ``@register(kind)``::

    @register("masking")
    class CentreMaskingSpec(SpecModel):
        name: Literal["centre"] = "centre"
        ratio: float = 0.5

        def build(self, **context):
            return CentreMasking(self.ratio)

Everything else is derived from the registrations: the registry of a kind, the discriminated
union a spec section validates against (:func:`one_of`), the JSON Schema, and the "unknown
name; valid names: ..." errors. A registration made after import (a user's module loaded with
``--plugin``) is visible to the next validation: the spec models that refer to the kind are
rebuilt when it gains a member. Registering a name twice raises.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Annotated, Any, Union

from pydantic import Discriminator, Field, Tag
from pydantic_core import PydanticCustomError, core_schema

#: the plugin kinds and how errors call them
KINDS = {
    "masking": "masking strategy",
    "ratio": "mask-ratio schedule",
    "loss": "loss term",
    "noise": "noise distribution",
    "sampler": "sampler",
    "sigma_schedule": "sigma schedule",
    "dataset": "dataset",
    "block": "block",
    "label_embedder": "label embedder",
    "features": "feature extractor",
    "process": "noising process",
    "encoder": "representation encoder",
}


class RegistryError(KeyError):
    """An unknown plugin name or kind, a name registered twice, or a class that is no plugin."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable
        return str(self.args[0]) if self.args else ""


class Registry:
    """The plugins of one kind: name -> spec class, in registration order."""

    def __init__(self, kind: str, title: str, *, on_change: Any = None) -> None:
        self.kind = kind
        self.title = title
        self._entries: dict[str, type] = {}
        self._on_change = on_change

    def add(self, spec_class: type) -> type:
        """Register a spec class under the default of its ``name`` field; returns it unchanged."""
        name = plugin_name(spec_class)
        if not callable(getattr(spec_class, "build", None)):
            raise RegistryError(f"{self.title} {name!r}: {spec_class.__name__} needs a build(self, **context) method")
        if name in self._entries:
            raise RegistryError(f"{self.title} {name!r} is already registered "
                                f"(by {self._entries[name].__module__}.{self._entries[name].__qualname__})")
        self._entries[name] = spec_class
        if self._on_change is not None:
            self._on_change(self.kind)
        return spec_class

    def remove(self, name: str) -> type:
        """Take a plugin out again (tests, interactive sessions); returns its spec class."""
        spec_class = self.get(name)
        del self._entries[name]
        if self._on_change is not None:
            self._on_change(self.kind)
        return spec_class

    def get(self, name: str) -> type:
        """The spec class registered as ``name``."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise RegistryError(
                f"unknown {self.title} {name!r}; valid names: {', '.join(self.names()) or '(none)'}"
            ) from None

    def build(self, spec: Any, **context: Any) -> Any:
        """Build the plugin a validated spec describes (a plain name: its spec with defaults)."""
        if isinstance(spec, str):
            spec = self.get(spec)()
        else:
            self.get(spec.name)
        return spec.build(**context)

    def members(self) -> tuple[type, ...]:
        return tuple(self._entries.values())

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"


def plugin_name(spec_class: type) -> str:
    """The ``Literal`` default of a spec class's ``name`` field."""
    fields = getattr(spec_class, "model_fields", None)
    field = fields.get("name") if isinstance(fields, dict) else None
    if field is None or typing.get_origin(field.annotation) is not typing.Literal:
        raise RegistryError(f"{getattr(spec_class, '__name__', spec_class)!r} is not a plugin spec: it needs a "
                            "pydantic field name: Literal['...'] = '...'")
    choices = typing.get_args(field.annotation)
    if len(choices) != 1 or field.default != choices[0] or not isinstance(choices[0], str) or not choices[0]:
        raise RegistryError(f"{spec_class.__name__}.name must be one non-empty Literal string with that default")
    return choices[0]


class Plugins:
    """Every kind's registry, and the spec models whose schemas are derived from them."""

    def __init__(self, kinds: dict[str, str]) -> None:
        self._registries = {kind: Registry(kind, title, on_change=self._rebuild) for kind, title in kinds.items()}
        self._dependents: list[type] = []  # spec models that refer to a kind, in definition order

    def __getitem__(self, kind: str) -> Registry:
        try:
            return self._registries[kind]
        except KeyError:
            raise RegistryError(f"unknown plugin kind {kind!r}; valid kinds: {', '.join(self._registries)}") from None

    def kinds(self) -> list[str]:
        return list(self._registries)

    def register(self, kind: str):
        """Class decorator: ``@register("masking")`` on a plugin spec class."""
        registry = self[kind]
        return registry.add

    def track(self, model: type) -> None:
        """Remember a spec model whose schema refers to a kind (directly or through a nested spec)."""
        if any(True for _ in _references(model)):
            model.__maskdit_tracked__ = True
            self._dependents.append(model)

    def _kinds_of(self, model: type, seen: set[type]) -> set[str]:
        if model in seen:
            return set()
        seen.add(model)
        kinds: set[str] = set()
        for ref in _references(model):
            if isinstance(ref, _PluginRef):
                kinds.add(ref.kind)
                for member in self[ref.kind].members():
                    kinds |= self._kinds_of(member, seen)
            else:
                kinds |= self._kinds_of(ref, seen)
        return kinds

    def _rebuild(self, kind: str) -> None:
        for model in list(self._dependents):
            if kind in self._kinds_of(model, set()):
                model.model_rebuild(force=True)


def _references(model: type) -> Iterator[Any]:
    """The plugin references and tracked nested spec models in a model's field annotations."""
    for field in getattr(model, "model_fields", {}).values():
        yield from _walk(field.annotation)
        for item in field.metadata:
            if isinstance(item, _PluginRef):
                yield item


def _walk(annotation: Any) -> Iterator[Any]:
    if isinstance(annotation, _PluginRef):
        yield annotation
        return
    if isinstance(annotation, type) and getattr(annotation, "__maskdit_tracked__", False):
        yield annotation
        return
    if typing.get_origin(annotation) is Annotated:
        for item in annotation.__metadata__:
            if isinstance(item, _PluginRef):
                yield item
    for arg in typing.get_args(annotation):
        yield from _walk(arg)


class _PluginRef:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind!r})"


class _OneOf(_PluginRef):
    """Annotation marker: the discriminated union of a kind's registered spec classes."""

    def __init__(self, kind: str, number: Any = None) -> None:
        super().__init__(kind)
        self.number = number

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        members = PLUGINS[self.kind].members()
        if self.number is not None:
            tagged = [Annotated[self.number, Tag("number")]] + [Annotated[m, Tag(plugin_name(m))] for m in members]
            return handler.generate_schema(Annotated[Union[tuple(tagged)], Discriminator(_number_or_name)])
        if not members:
            return core_schema.no_info_plain_validator_function(self._none_registered)
        if len(members) == 1:
            return handler.generate_schema(members[0])
        return handler.generate_schema(Annotated[Union[members], Field(discriminator="name")])

    def _none_registered(self, value: Any) -> Any:
        raise PydanticCustomError("no_plugin", f"no {PLUGINS[self.kind].title} is registered")


class _NameOf(_PluginRef):
    """Annotation marker: the name of a registered plugin of a kind (a plain string in JSON)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        names = [plugin_name(m) for m in PLUGINS[self.kind].members()]
        if not names:
            return core_schema.no_info_plain_validator_function(_OneOf(self.kind)._none_registered)
        return core_schema.literal_schema(names)


def _number_or_name(value: Any) -> str | None:
    """'number' for a plain number, else the plugin's name (so errors name one alternative only)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "number"
    if isinstance(value, dict):
        return value.get("name")
    return getattr(value, "name", None)


def one_of(kind: str, *, number: Any = None) -> Any:
    """The type of a spec field holding one plugin of ``kind`` (a JSON object with its ``name``);
    ``number``: also accept a plain number of that type (tagged 'number')."""
    PLUGINS[kind]  # an unknown kind fails here, where the field is declared
    return Annotated[Any, _OneOf(kind, number)]


def name_of(kind: str) -> Any:
    """The type of a spec field naming a registered plugin of ``kind`` (a JSON string)."""
    PLUGINS[kind]
    return Annotated[str, _NameOf(kind)]


def plugin_modules(spec: Any) -> list[str]:
    """The modules outside maskdit whose registered plugins a validated spec names, sorted: what
    a command reading the spec back must load with ``--plugin``."""
    found: set[str] = set()
    _collect_modules(spec, found)
    return sorted(module for module in found if module.split(".")[0] != "maskdit")


def _collect_modules(value: Any, found: set[str]) -> None:
    if isinstance(value, (tuple, list)):
        for item in value:
            _collect_modules(item, found)
        return
    fields = getattr(type(value), "model_fields", None)
    if not isinstance(fields, dict):
        return
    found.add(type(value).__module__)  # a plugin's spec class, or a section's (inside maskdit)
    for name, field in fields.items():
        item = getattr(value, name)
        named = next((ref for ref in field.metadata if isinstance(ref, _NameOf)), None)
        if named is not None and isinstance(item, str) and item in PLUGINS[named.kind]:
            found.add(PLUGINS[named.kind].get(item).__module__)  # a plugin named by a plain string
        else:
            _collect_modules(item, found)


#: the registries of every kind (the one deliberate piece of process-wide state)
PLUGINS = Plugins(KINDS)


def register(kind: str):
    """Class decorator registering a plugin spec class under ``kind`` (see the module docstring)."""
    return PLUGINS.register(kind)


def registry(kind: str) -> Registry:
    """The registry of one plugin kind."""
    return PLUGINS[kind]
