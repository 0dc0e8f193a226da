"""The configuration kernel: plugin registries, the spec base class, plugin loading, input errors
and strict JSON reading. What a plugin author imports: ``from maskdit.config import register,
registry, SpecModel``."""

from maskdit.config.errors import InputError
from maskdit.config.plugins import ENTRY_POINT_GROUP, PluginLoadError, load_plugins
from maskdit.config.registry import Registry, RegistryError, register, registry
from maskdit.config.spec_model import FloatOrInfinity, SpecModel

__all__ = ["ENTRY_POINT_GROUP", "FloatOrInfinity", "InputError", "PluginLoadError", "Registry", "RegistryError", "SpecModel",
           "load_plugins", "register", "registry"]
