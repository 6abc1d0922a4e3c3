"""Graph builders (YAML ``graph:``): user_item, collaborative_kg, attribute_graph."""
from __future__ import annotations

from kgflow.plugin import Component, hookimpl

from kgflow_plugins.builders import graphs


@hookimpl
def kgflow_components() -> list[Component]:
    return graphs.components()
