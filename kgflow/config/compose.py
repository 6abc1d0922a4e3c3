"""Combining pipeline files: ``extends:`` inheritance and ``--set a.b=c`` overrides.

Both work on :class:`Located` data so that every value keeps its origin (a file and line, or the
override that set it) for error messages.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from kgflow.config.yaml_loader import Located, YamlPath, format_path, load_yaml_file
from kgflow.errors import ConfigError, ConfigIssue


def deep_merge(base: Located, child: Located) -> Located:
    """Merge ``child`` over ``base``: mappings merge key by key, anything else is replaced."""

    def merge(b: Any, c: Any, top: bool = False) -> Any:
        if isinstance(b, dict) and isinstance(c, dict) and (top or not _switches_component(b, c)):
            out = dict(b)
            for key, value in c.items():
                out[key] = merge(b[key], value) if key in b else copy.deepcopy(value)
            return out
        return copy.deepcopy(c)

    positions = dict(base.positions)
    for path in list(positions):
        # a replaced subtree loses its base positions below the replacement point
        if any(path[:n] in child.positions and _replaced(_get(base.data, path[:n]),  # n >= 1: not the root
                                                         _get(child.data, path[:n]))
               for n in range(1, len(path))):
            del positions[path]
    positions.update({p: pos for p, pos in child.positions.items() if p})
    return Located(merge(base.data, child.data, top=True), positions)


def _switches_component(base: dict, child: dict) -> bool:
    """A component block that names a different component replaces the base block whole: the old
    component's ``params`` would be meaningless (and invalid) for the new one."""
    return "name" in base and "name" in child and base["name"] != child["name"]


def _replaced(base: Any, child: Any) -> bool:
    return not (isinstance(base, dict) and isinstance(child, dict)) or _switches_component(base, child)


def _get(data: Any, path: YamlPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def load_with_extends(path: str | Path, _chain: tuple[Path, ...] = ()) -> Located:
    """Load a pipeline file and, recursively, the files it ``extends`` (relative to itself)."""
    path = Path(path)
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in _chain + (resolved,))
        raise ConfigError([ConfigIssue(f"'extends' forms a cycle: {cycle}", path="extends",
                                       file=str(path))], source=str(path))
    located = load_yaml_file(path)
    if not isinstance(located.data, dict):
        raise ConfigError([ConfigIssue(
            "a pipeline must be a YAML mapping (key: value pairs) at the top level",
            file=str(path), line=1, value=type(located.data).__name__, has_value=True)],
            source=str(path))
    parents = located.data.pop("extends", None)
    located.positions.pop(("extends",), None)
    if parents is None:
        return located
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        file, line = located.where(("extends",))
        raise ConfigError([ConfigIssue("'extends' must be a file name or a list of file names",
                                       path="extends", file=file, line=line, value=parents,
                                       has_value=True)], source=str(path))
    merged: Located | None = None
    for parent in parents:
        parent_path = (path.parent / parent)
        if not parent_path.exists():
            raise ConfigError([ConfigIssue(f"extended file not found: {parent_path}",
                                           path="extends", file=str(path),
                                           line=located.where(("extends",))[1])],
                              source=str(path))
        base = load_with_extends(parent_path, _chain + (resolved,))
        merged = base if merged is None else deep_merge(merged, base)
    assert merged is not None
    return deep_merge(merged, located)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its path and its YAML-parsed value."""
    if "=" not in text:
        raise ConfigError([ConfigIssue(f"--set expects KEY.PATH=VALUE, got {text!r}")],
                          source="--set")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError([ConfigIssue(f"--set has an empty key in {text!r}")], source="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(f"--set value is not valid YAML: {exc}", path=key)],
                          source="--set") from None
    return parts, value


def apply_overrides(located: Located, overrides: list[str]) -> Located:
    """Apply ``--set`` overrides in order. A string shorthand (``encoder: lightgcn``) is expanded
    to ``{name: lightgcn}`` when an override reaches inside it."""
    data = copy.deepcopy(located.data)
    positions = dict(located.positions)
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        path: YamlPath = ()
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            key: Any = int(part) if isinstance(node, list) and part.lstrip("-").isdigit() else part
            if isinstance(node, list):
                if not isinstance(key, int) or not -len(node) <= key < len(node):
                    raise ConfigError([ConfigIssue(f"--set {text}: no list element {part!r}",
                                                   path=format_path(path))], source="--set")
            elif not isinstance(node, dict):
                raise ConfigError([ConfigIssue(
                    f"--set {text}: {format_path(path)} is a value, not a mapping",
                    path=format_path(path))], source="--set")
            if last:
                node[key] = value
            else:
                child = node[key] if (isinstance(node, list) or key in node) else None
                if isinstance(child, str):  # component shorthand -> long form
                    child = {"name": child}
                elif child is None:
                    child = {}
                node[key] = child
                node = child
            path = path + (key,)
        positions = {p: pos for p, pos in positions.items() if p[:len(path)] != path}
        positions[path] = (f"--set {text}", None)  # type: ignore[assignment]
    return Located(data, positions)
