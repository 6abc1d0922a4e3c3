"""Safe YAML loading that remembers where every value came from.

Only ``yaml.SafeLoader`` constructs values, so a tag such as ``!!python/object`` can never run code.
Alongside the data we keep a map from each YAML path (a tuple of keys and list indices) to the
file and line that defined it, so that validation errors can point at the exact line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kgflow.errors import ConfigError, ConfigIssue

YamlPath = tuple[Any, ...]


@dataclass
class Located:
    """Data loaded from YAML plus the source position of each path in it."""

    data: Any
    positions: dict[YamlPath, tuple[str, int]] = field(default_factory=dict)

    def where(self, path: YamlPath) -> tuple[str | None, int | None]:
        """The file and line of ``path`` or of its nearest ancestor that has a position."""
        path = tuple(path)
        while True:
            if path in self.positions:
                return self.positions[path]
            if not path:
                return None, None
            path = path[:-1]


def _walk(loader: yaml.SafeLoader, node: yaml.Node, path: YamlPath, source: str,
          positions: dict, issues: list[ConfigIssue]) -> None:
    positions[path] = (source, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                issues.append(ConfigIssue(
                    f"duplicate key {key!r} (first defined on line {seen[key]})",
                    path=format_path(path + (key,)), file=source, line=line))
            seen[key] = line
            _walk(loader, value_node, path + (key,), source, positions, issues)
            positions[path + (key,)] = (source, line)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(loader, item, path + (index,), source, positions, issues)


def load_yaml_text(text: str, source: str) -> Located:
    """Parse one YAML document safely; raise :class:`ConfigError` on syntax errors or unsafe tags."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Located(None, {(): (source, 1)})
        data = loader.construct_document(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError([ConfigIssue(
            f"YAML tag not allowed: {exc.problem}. kgflow reads plain YAML only; "
            "tags that construct Python objects are refused",
            file=source, line=mark.line + 1 if mark else None)], source=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(f"invalid YAML: {problem}", file=source,
                                       line=mark.line + 1 if mark else None)], source=source) from None
    finally:
        loader.dispose()
    positions: dict[YamlPath, tuple[str, int]] = {}
    issues: list[ConfigIssue] = []
    _walk(yaml.SafeLoader(""), node, (), source, positions, issues)
    if issues:
        raise ConfigError(issues, source=source)
    return Located(data, positions)


def load_yaml_file(path: str | Path) -> Located:
    """Load a YAML file; a missing or unreadable file is a :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue("file not found", file=str(path))], source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(f"cannot read file: {exc}", file=str(path))],
                          source=str(path)) from None
    return load_yaml_text(text, str(path))


def format_path(path: YamlPath) -> str:
    """Render ``("encoders", "graph", "params", "layers")`` as ``encoders.graph.params.layers``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
