"""What training minimises: ranking losses (YAML ``objective.loss``: bpr, bce, softmax, directau;
``losses``) and auxiliary objectives (``objective.auxiliary``: the KG embedding losses transe and
transr; ``kg``)."""
from __future__ import annotations

from kgflow.plugin import Component, hookimpl

from kgflow_plugins.objectives import kg, losses


@hookimpl
def kgflow_components() -> list[Component]:
    return [*losses.components(), *kg.components()]
