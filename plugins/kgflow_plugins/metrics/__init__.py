"""Evaluation metrics (YAML ``eval.metrics``): recall, ndcg, hit, mrr, precision, map, auc."""
from __future__ import annotations

from kgflow.plugin import Component, hookimpl

from kgflow_plugins.metrics import ranking


@hookimpl
def kgflow_components() -> list[Component]:
    return ranking.components()
