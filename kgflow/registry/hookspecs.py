"""The hooks a kgflow plugin can implement.

A plugin is any module (or object) with functions marked ``@kgflow.plugin.hookimpl`` whose names
match the specifications below, published under the ``kgflow`` entry-point group. kgflow's own
components use exactly these hooks.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from kgflow.registry.component import Component, ConfigCheck

PROJECT = "kgflow"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def kgflow_components() -> "list[Component]":
    """Return the components this plugin provides (datasets, builders, encoders, fusions, losses,
    metrics, ...). Called once, after every plugin is loaded, so names are never captured early."""


@hookspec
def kgflow_config_checks() -> "list[ConfigCheck]":
    """Return cross-component checks that ``kgflow validate`` runs on a resolved pipeline before
    any training (for example: dimensions agree, a distillation names a teacher)."""


@hookspec
def kgflow_cli_commands(cli: "click.Group") -> Any:
    """Add commands to the ``kgflow`` command-line group (``cli.add_command(...)``)."""
