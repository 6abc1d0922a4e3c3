"""The plugin registry: hook specifications, component registrations and name resolution."""
from kgflow.registry.component import KINDS, Component, ConfigCheck, NoParams, Params, normalize_name
from kgflow.registry.hookspecs import hookimpl, hookspec
from kgflow.registry.registry import (BrokenPlugin, PluginInfo, Registry, build_registry,
                                      get_registry, set_registry)

__all__ = ["KINDS", "Component", "ConfigCheck", "NoParams", "Params", "normalize_name", "hookimpl",
           "hookspec", "BrokenPlugin", "PluginInfo", "Registry", "build_registry", "get_registry",
           "set_registry"]
