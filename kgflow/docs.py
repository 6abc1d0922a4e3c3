"""Generating the reference documentation from the schema and the registry.

``python -m kgflow.docs`` rewrites ``docs/reference.md`` and ``docs/kgflow.schema.json`` from
kgflow's own components (third-party plugins are left out so the files do not depend on what a
given machine has installed). A test fails when the committed files drift from the code.
"""
from __future__ import annotations

import json
import os
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from kgflow.config.jsonschema import pipeline_schema
from kgflow.config.schema import PipelineConfig
from kgflow.registry import KINDS, Registry, build_registry
from kgflow.registry.registry import ENV_ALLOWLIST, ENV_NO_AUTOLOAD

DOCS = Path(__file__).resolve().parents[1] / "docs"


def core_registry() -> Registry:
    saved = {k: os.environ.get(k) for k in (ENV_NO_AUTOLOAD, ENV_ALLOWLIST)}
    os.environ[ENV_NO_AUTOLOAD] = "1"
    os.environ.pop(ENV_ALLOWLIST, None)
    try:
        return build_registry()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is None:
        return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "null")
    args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
    name = getattr(origin, "__name__", str(origin)).replace("typing.", "")
    if name in ("Union", "UnionType"):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if name == "Literal":
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    return f"{name}[{args}]"


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        return f"`{json.dumps(field.default)}`"
    if field.default_factory is not None:
        try:
            value = field.default_factory()
            if isinstance(value, BaseModel):
                return f"`{value.name}`" if hasattr(value, "name") else "(see below)"
            return f"`{json.dumps(value)}`"
        except Exception:
            return ""
    return "**required**"


def _model_table(model: type[BaseModel], prefix: str) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    nested = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        rows.append(f"| `{prefix}{name}` | {_type_name(ann).replace('|', '&#124;')} | {_default(field)} | "
                    f"{(field.description or '').replace('|', '&#124;')} |")
        inner = [a for a in (typing.get_args(ann) or (ann,)) if isinstance(a, type)
                 and issubclass(a, BaseModel) and a.__name__ != "ComponentRef"]
        nested += [(f"{prefix}{name}.", a) for a in inner]
    out = rows + [""]
    for sub_prefix, sub in nested:
        out += [f"#### `{sub_prefix.rstrip('.')}`", ""] + _model_table(sub, sub_prefix)
    return out


def render_reference(registry: Registry | None = None) -> str:
    registry = registry or core_registry()
    lines = ["# Pipeline reference", "",
             "Generated from the schema by `python -m kgflow.docs`; do not edit by hand. Every block "
             "rejects unknown keys. Pluggable blocks take `name:` and `params:`, or just the name.", "",
             "## Top level", ""]
    lines += _model_table(PipelineConfig, "")
    lines += ["## Components", "",
              "Kinds: " + "; ".join(f"`{k}` — {v}" for k, v in KINDS.items()) + ".", ""]
    for kind in KINDS:
        for comp in registry.components(kind):
            aliases = f" (also: {', '.join(comp.aliases)})" if comp.aliases else ""
            lines += [f"### {kind} `{comp.name}`{aliases}", "", comp.description + ".", ""]
            if comp.params.model_fields:
                lines += _model_table(comp.params, "params.")
    return "\n".join(lines).rstrip() + "\n"


def render_cli() -> str:
    """Every kgflow command with its usage, help and options (plugins' commands left out)."""
    import click

    from kgflow.cli import BUILTIN_COMMANDS, cli

    lines = ["# Command-line reference", "",
             "Generated from the commands by `python -m kgflow.docs`; do not edit by hand. Every command "
             "exits with code 2 and a message (no traceback) on bad input; `kgflow --debug ...` shows "
             "the traceback.", ""]

    def walk(cmd: click.Command, path: list[str]) -> None:
        ctx = click.Context(cmd, info_name=" ".join(path))
        if path != ["kgflow"]:
            lines.extend([f"## `{' '.join(path)}`", "", "```", cmd.get_usage(ctx).strip(), "```", ""])
            lines.extend([(cmd.help or "").strip(), ""])
        else:
            lines.extend(["## `kgflow`", "", (cmd.help or "").strip(), ""])
        params = [p for p in cmd.get_params(ctx) if isinstance(p, click.Option) and p.help]
        if params:
            lines.extend(["| option | meaning |", "|---|---|"])
            for p in params:
                names = ", ".join(f"`{o}`" for o in p.opts + p.secondary_opts)
                lines.append(f"| {names} | {p.help} |")
            lines.append("")
        if isinstance(cmd, click.Group):
            # plugins add top-level commands only; BUILTIN_COMMANDS are kgflow's own, named before
            # any plugin loads (a plugin package may be called kgflow_something, so no name test)
            names = BUILTIN_COMMANDS if cmd is cli else cmd.commands
            for name in sorted(names):
                walk(cmd.commands[name], path + [name])

    walk(cli, ["kgflow"])
    return "\n".join(lines).rstrip() + "\n"


def render_schema(registry: Registry | None = None) -> str:
    return json.dumps(pipeline_schema(registry or core_registry()), indent=2) + "\n"


def main() -> None:
    registry = core_registry()
    (DOCS / "reference.md").write_text(render_reference(registry))
    (DOCS / "kgflow.schema.json").write_text(render_schema(registry))
    (DOCS / "cli.md").write_text(render_cli())
    print(f"wrote {DOCS / 'reference.md'}, {DOCS / 'cli.md'} and {DOCS / 'kgflow.schema.json'}")


if __name__ == "__main__":
    main()
