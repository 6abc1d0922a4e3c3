"""Evaluation metrics (YAML ``eval.metrics``): recall, ndcg, hit, mrr, precision, map, auc, and the
beyond-accuracy ones: coverage, gini, avg_popularity, novelty, tail_share, ild."""
from __future__ import annotations

from kgflow.plugin import Component, hookimpl

from kgflow_plugins.metrics import beyond, ranking


@hookimpl
def kgflow_components() -> list[Component]:
    return ranking.components() + beyond.components()
