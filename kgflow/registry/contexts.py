"""The context objects handed to component factories: ``factory(params, ctx)``.

They live beside the registry, which the core uses, so that core modules never import the public
face :mod:`kgflow.plugin` (which re-exports them for plugin authors); one direction, no circle.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from kgflow.data.recdata import RecData, Split
from kgflow.graph import GraphBundle
from kgflow.models import Recommender


def _home() -> Path:
    from kgflow.data.store import kgflow_home

    return kgflow_home()


@dataclass
class DatasetContext:
    """For ``dataset`` factories: return a :class:`RecData`."""

    home: Path  # kgflow's data home (KGFLOW_HOME); cache downloads under home / "datasets"
    seed: int


@dataclass
class BuilderContext:
    """For ``builder`` factories: return a :class:`GraphBundle` built from ``split.train`` only."""

    data: RecData
    split: Split
    seed: int
    #: put ``split.train.weight`` on the interaction edges (``preprocess.weight.graph``)
    edge_weights: bool = False


@dataclass
class EncoderContext:
    """For ``encoder`` factories: return an ``nn.Module`` (a :class:`GraphEncoder` for role graph)."""

    role: str
    graph: GraphBundle
    split: Split
    data: RecData
    seed: int
    home: Path = field(default_factory=lambda: _home())  # for caches (e.g. text embeddings)


@dataclass
class FusionContext:
    """For ``fusion`` factories: combine the built encoders into a :class:`Recommender`."""

    encoders: dict[str, nn.Module]
    graph: GraphBundle
    split: Split
    data: RecData
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)
    training: bool = True  # False when a finished run is rebuilt to serve: skip training-only inputs
    #: the finished run directories of the pipelines this one ``needs:`` (trained first), by name;
    #: empty when a finished run is rebuilt to serve
    needs: dict[str, Path] = field(default_factory=dict)


@dataclass
class LossContext:
    """For ``loss`` factories: return a callable ``loss(pos [B], neg [B, N]) -> scalar`` over
    scores, or a :class:`VectorLoss` over the batch's user and item vectors."""

    negatives: int


@dataclass
class ObjectiveContext:
    """For ``objective`` factories: return an :class:`AuxiliaryObjective` for this model."""

    model: Recommender
    graph: GraphBundle
    split: Split
    batch_size: int
    seed: int


@dataclass
class MetricContext:
    """For ``metric`` factories. A metric is one of three shapes, told apart by an attribute the
    returned function carries:

    - accuracy (no attribute): ``metric(hits [B, K] float, n_pos [B]) -> [B]`` per user, where
      ``hits[:, j]`` is 1 if the item at rank ``j`` is relevant and ``K`` is the cutoff;
    - ``metric.needs_items = True``: ``metric(top [B, K] long, hits, n_pos) -> [B]`` per user,
      ``top`` the dense ids of the recommended items (popularity, novelty, diversity);
    - ``metric.catalog = True``: ``metric(counts [n_items]) -> float`` once per evaluation, where
      ``counts[i]`` is how many of the evaluated users' top-K lists hold item ``i`` (coverage, Gini).

    The fields describe the training data, so that popularity is what the model could have seen:
    ``item_popularity`` the training interactions per dense item id, ``n_users`` the users of the
    split, ``items`` the item attribute table with one row per dense item id (or ``None``). While
    a pipeline is only validated the context is empty (``ready`` is False): a factory must still
    return its function then, since validation reads the function's attributes."""

    item_popularity: torch.Tensor | None = None
    n_users: int = 0
    items: pd.DataFrame | None = None

    @property
    def ready(self) -> bool:
        """Whether the context describes real data (False while a pipeline is only validated)."""
        return self.item_popularity is not None
