"""Loading plugins and resolving component names.

Plugins are loaded from the ``kgflow`` entry-point group, each inside its own ``try``: a plugin
that fails to import or to register is recorded as broken (and shown by ``kgflow plugins``)
instead of taking the whole command line down with it.
"""
from __future__ import annotations

import difflib
import importlib.metadata as md
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from kgflow.errors import PluginError
from kgflow.registry import hookspecs
from kgflow.registry.component import Component, ConfigCheck, normalize_name

CORE_DISTRIBUTION = "kgflow"
ENV_ALLOWLIST = "KGFLOW_LOAD_PLUGINS"
ENV_NO_AUTOLOAD = "KGFLOW_DISABLE_PLUGIN_AUTOLOAD"
ENV_TRACE = "KGFLOW_TRACE_PLUGINS"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no")


def trace(message: str) -> None:
    """With KGFLOW_TRACE_PLUGINS=1 (or ``kgflow --trace-plugins``), say which plugin did what."""
    if _truthy(os.environ.get(ENV_TRACE)):
        print(f"[kgflow plugins] {message}", file=sys.stderr)


@dataclass
class PluginInfo:
    """A loaded plugin: its entry-point name, distribution and version."""

    name: str
    package: str
    version: str
    hooks: list[str] = field(default_factory=list)


@dataclass
class BrokenPlugin:
    """A plugin that could not be loaded or whose hook raised."""

    name: str
    package: str
    version: str
    error: str
    detail: str = ""


@dataclass
class Conflict:
    kind: str
    name: str
    providers: list[Component]

    def message(self) -> str:
        who = " and ".join(f"{c.package or c.plugin} ({c.plugin})" for c in self.providers)
        return f"{self.kind} {self.name!r} is registered twice: by {who}"


class Registry:
    """All components, checks and plugins known after loading."""

    def __init__(self, pm: pluggy.PluginManager, components: list[Component],
                 checks: list[ConfigCheck], plugins: list[PluginInfo],
                 broken: list[BrokenPlugin]) -> None:
        self.plugin_manager = pm
        self.plugins = plugins
        self.broken = broken
        self.checks = checks
        self.conflicts: list[Conflict] = []
        self._by_key: dict[tuple[str, str], Component] = {}
        self._components: list[Component] = []
        grouped: dict[tuple[str, str], list[Component]] = {}
        for comp in components:
            for alias in (comp.name, *comp.aliases):
                grouped.setdefault((comp.kind, normalize_name(alias)), []).append(comp)
        for (kind, key), comps in grouped.items():
            distinct = {id(c) for c in comps}
            if len(distinct) > 1:
                self.conflicts.append(Conflict(kind, key, comps))
            else:
                self._by_key[(kind, key)] = comps[0]
        seen: set[int] = set()
        for comp in components:
            if id(comp) not in seen:
                seen.add(id(comp))
                self._components.append(comp)

    # -- lookup ---------------------------------------------------------------------------
    def components(self, kind: str | None = None) -> list[Component]:
        comps = [c for c in self._components if kind is None or c.kind == kind]
        return sorted(comps, key=lambda c: (c.kind, c.name))

    def names(self, kind: str) -> list[str]:
        return [c.name for c in self.components(kind)]

    def find(self, kind: str, name: str) -> Component | None:
        return self._by_key.get((kind, normalize_name(name)))

    def conflict_for(self, kind: str, name: str) -> Conflict | None:
        key = normalize_name(name)
        return next((c for c in self.conflicts if c.kind == kind and c.name == key), None)

    def suggest(self, kind: str, name: str) -> list[str]:
        names = {normalize_name(a): c.name for c in self.components(kind) for a in (c.name, *c.aliases)}
        close = difflib.get_close_matches(normalize_name(name), list(names), n=3, cutoff=0.6)
        return list(dict.fromkeys(names[n] for n in close))

    def describe_choices(self, kind: str) -> str:
        """``lightgcn (kgflow), mf (kgflow)`` — the valid names with their providing package."""
        return ", ".join(f"{c.name} ({c.package or c.plugin})" for c in self.components(kind)) or "none"

    def get(self, kind: str, name: str) -> Component:
        """The component called ``name``; a :class:`PluginError` names the choices otherwise."""
        conflict = self.conflict_for(kind, name)
        if conflict:
            raise PluginError(conflict.message())
        comp = self.find(kind, name)
        if comp is not None:
            trace(f"{kind} {name!r} -> {comp.name} from {comp.package} {comp.version} ({comp.plugin})")
        if comp is None:
            hint = self.suggest(kind, name)
            did = f"did you mean {' or '.join(repr(h) for h in hint)}? " if hint else ""
            stale = ("" if hint else
                     " (plugins register through their package's entry points: a plugin added to a "
                     "package installed with `pip install -e` appears only after reinstalling it; "
                     "`kgflow plugins` lists what is installed)")
            raise PluginError(f"unknown {kind} {name!r}; {did}valid {kind}s: "
                              f"{self.describe_choices(kind)}{stale}")
        return comp


def _entry_points() -> list[md.EntryPoint]:
    eps = md.entry_points(group=hookspecs.PROJECT)
    unique: dict[tuple[str, str], md.EntryPoint] = {}
    for ep in eps:
        dist = ep.dist.name if ep.dist else ""
        unique.setdefault((dist, ep.name), ep)
    return list(unique.values())


def _is_entry_point(target: Any) -> bool:
    return all(hasattr(target, attr) for attr in ("load", "group", "value"))


def _allowed(dist_name: str) -> bool:
    """Plugin controls: kgflow's own components always load; others obey the allowlist and the
    autoload switch."""
    if normalize_name(dist_name) == CORE_DISTRIBUTION:
        return True
    if _truthy(os.environ.get(ENV_NO_AUTOLOAD)):
        allow = os.environ.get(ENV_ALLOWLIST, "")
        return bool(allow) and normalize_name(dist_name) in {normalize_name(a) for a in allow.split(",")}
    allow = os.environ.get(ENV_ALLOWLIST, "").strip()
    if allow:
        return normalize_name(dist_name) in {normalize_name(a) for a in allow.split(",") if a.strip()}
    return True


def _short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def build_registry(extra_plugins: Iterable[tuple[str, Any]] = (), *,
                   entry_points: bool = True) -> Registry:
    """Load every plugin, then collect components and checks from all of them.

    ``extra_plugins`` are ``(name, module_or_object)`` pairs registered in addition to the entry
    points (used by tests and by :mod:`kgflow.testing`).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    plugins: list[PluginInfo] = []
    broken: list[BrokenPlugin] = []
    origin: dict[str, tuple[str, str]] = {}

    candidates: list[tuple[str, str, str, Any]] = []
    if entry_points:
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            if not _allowed(dist):
                trace(f"skipped {dist}:{ep.name} (allowlist / autoload switch)")
                continue
            candidates.append((f"{dist}:{ep.name}", dist, version, ep))
    for name, obj in extra_plugins:
        candidates.append((name, getattr(obj, "__kgflow_package__", name), "local", obj))

    for name, dist, version, target in candidates:
        try:
            # duck-typed: packages that import the importlib_metadata backport (MLflow does) make
            # importlib.metadata hand out the backport's EntryPoint class instead of its own
            obj = target.load() if _is_entry_point(target) else target
            if pm.is_registered(obj):  # e.g. a test registers a module its entry point loaded
                continue
            pm.register(obj, name=name)
        except Exception as exc:  # a broken plugin must never break the CLI
            broken.append(BrokenPlugin(name, dist, version, _short_error(exc), traceback.format_exc()))
            trace(f"BROKEN {name} ({dist} {version}): {_short_error(exc)}")
            continue
        hooks = [h.name for h in pm.get_hookcallers(obj) or []]
        plugins.append(PluginInfo(name, dist, version, sorted(hooks)))
        origin[name] = (dist, version)

    components: list[Component] = []
    for impl in pm.hook.kgflow_components.get_hookimpls():
        dist, version = origin.get(impl.plugin_name, (impl.plugin_name, "?"))
        try:
            result = list(impl.function() or [])
            for comp in result:
                if not isinstance(comp, Component):
                    raise TypeError(f"kgflow_components returned {type(comp).__name__}, not Component")
        except Exception as exc:
            broken.append(BrokenPlugin(impl.plugin_name, dist, version, _short_error(exc),
                                       traceback.format_exc()))
            continue
        components.extend(c.with_origin(dist, version, impl.plugin_name) for c in result)
        trace(f"{impl.plugin_name} ({dist} {version}) registered "
              + ", ".join(f"{c.kind} {c.name}" for c in result))

    checks: list[ConfigCheck] = []
    for impl in pm.hook.kgflow_config_checks.get_hookimpls():
        dist, _ = origin.get(impl.plugin_name, (impl.plugin_name, "?"))
        try:
            checks.extend(ConfigCheck(c.name, c.check, c.description, dist)
                          for c in (impl.function() or []))
        except Exception as exc:
            broken.append(BrokenPlugin(impl.plugin_name, dist, "?", _short_error(exc),
                                       traceback.format_exc()))
    return Registry(pm, components, checks, plugins, broken)


_default: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use (after all plugins can be imported)."""
    global _default
    if _default is None or refresh:
        _default = build_registry()
    return _default


def set_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (tests and :mod:`kgflow.testing` use this)."""
    global _default
    _default = registry
