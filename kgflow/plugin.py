"""The public plugin API: everything a plugin package imports from kgflow.

A plugin module implements hooks (see :mod:`kgflow.registry.hookspecs`) and publishes itself under
the ``kgflow`` entry-point group::

    from kgflow.plugin import Component, Params, hookimpl

    class MyParams(Params):
        dim: int = 64

    def build(params: MyParams, ctx: EncoderContext): ...

    @hookimpl
    def kgflow_components():
        return [Component("encoder", "my-encoder", build, MyParams, "what it does")]

Each kind's factory is called as ``factory(params, ctx)`` with the context class below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from kgflow.data.atomic import load_atomic_dataset
from kgflow.data.kg import prepare_kg
from kgflow.data.recdata import Interactions, RecData, Split
from kgflow.data.store import download_wheel, exclusive, extract_members, verify_checksum
from kgflow.data.textfile import check_encoding, parse_rows, read_bytes, read_text, row_lines
from kgflow.errors import ConfigError, ConfigIssue, DataError, KgflowError, NotSupportedError
from kgflow.graph import INTERACT, INVERSE_SUFFIX, EdgeBlock, GraphBundle, GraphReport, assemble_graph
from kgflow.models import (AuxiliaryObjective, Embeddings, EncoderRecommender, GraphEncoder,
                           KgEmbeddings, PairVectors, Recommender, VectorLoss, fold_in,
                           typical_user_norm)
from kgflow.registry import Component, ConfigCheck, NoParams, Params, hookimpl
from kgflow.registry.component import DataPath
from kgflow.training.distributed import is_distributed
from kgflow.training.sampling import in_sorted

if TYPE_CHECKING:  # imported on first use, see __getattr__ below
    from kgflow.inference import TrainedRun


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
    """For ``metric`` factories: return ``metric(hits [B, K] float, n_pos [B]) -> [B]`` per user,
    where ``hits[:, j]`` is 1 if the item at rank ``j`` is relevant and ``K`` is the cutoff."""


__all__ = ["Component", "ConfigCheck", "NoParams", "Params", "hookimpl", "DatasetContext",
           "BuilderContext", "EncoderContext", "FusionContext", "LossContext", "MetricContext",
           "ObjectiveContext", "AuxiliaryObjective", "KgEmbeddings", "INTERACT", "INVERSE_SUFFIX",
           "RecData", "Split", "Interactions", "GraphBundle", "GraphReport", "GraphEncoder",
           "Recommender", "Embeddings", "PairVectors", "VectorLoss", "EncoderRecommender", "fold_in", "typical_user_norm",
           "ConfigIssue", "ConfigError", "DataError", "KgflowError", "NotSupportedError",
           "EdgeBlock", "assemble_graph", "prepare_kg", "load_atomic_dataset", "download_wheel",
           "exclusive", "extract_members", "verify_checksum", "TrainedRun", "in_sorted", "is_distributed", "DataPath",
           "check_encoding", "parse_rows", "read_bytes", "read_text", "row_lines"]


def __getattr__(name: str) -> Any:
    """``TrainedRun`` (a finished run, loaded to serve or to teach) is imported on first use: the
    serving module builds on the plugin API itself."""
    if name == "TrainedRun":
        from kgflow.inference import TrainedRun

        return TrainedRun
    raise AttributeError(f"module 'kgflow.plugin' has no attribute {name!r}")
