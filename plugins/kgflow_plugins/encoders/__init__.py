"""Encoders (YAML ``encoders:``), one module a family:

- ``id_based``: mf, lightgcn, and the text encoder's registration (its machinery is in
  :mod:`kgflow_plugins.text`);
- ``contrastive``: simgcl, xsimgcl;
- ``relational``: kgat, kgin (on the collaborative KG), with ``sparse`` their segment-wise kernels;
- ``message_passing``: gcn, sage, gat (torch-geometric layers);
- ``ease``: the closed-form item-item model.
"""
from __future__ import annotations

from kgflow.plugin import Component, hookimpl

from kgflow_plugins.encoders import contrastive, ease, id_based, message_passing, relational


@hookimpl
def kgflow_components() -> list[Component]:
    return [*id_based.components(), *contrastive.components(), *relational.components(),
            *message_passing.components(), *ease.components()]
