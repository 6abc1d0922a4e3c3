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

Each kind's factory is called as ``factory(params, ctx)`` with its context class (defined in
:mod:`kgflow.registry.contexts`, re-exported here). This module only re-exports: no core module
imports it, so the public face never sits in an import circle.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kgflow.data.atomic import load_atomic_dataset
from kgflow.data.kg import prepare_kg
from kgflow.data.recdata import Interactions, RecData, Split
from kgflow.data.store import download_wheel, exclusive, extract_members, verify_checksum
from kgflow.data.textfile import check_encoding, parse_rows, read_bytes, read_text, row_lines
from kgflow.errors import ConfigError, ConfigIssue, DataError, KgflowError, NotSupportedError
from kgflow.graph import (BEHAVIOUR_PREFIX, INTERACT, INVERSE_SUFFIX, EdgeBlock, GraphBundle, GraphReport,
                          assemble_graph, is_interaction)
from kgflow.models import (AuxiliaryObjective, Embeddings, EncoderRecommender, GraphEncoder,
                           KgEmbeddings, PairVectors, Recommender, VectorLoss, fold_in,
                           typical_user_norm, weighted_mean)
from kgflow.registry import Component, ConfigCheck, NoParams, Params, hookimpl
from kgflow.registry.component import DataPath
from kgflow.registry.contexts import (BuilderContext, DatasetContext, EncoderContext, FusionContext,
                                      LossContext, MetricContext, ObjectiveContext)
from kgflow.training.distributed import is_distributed
from kgflow.training.sampling import in_sorted

if TYPE_CHECKING:  # imported on first use, see __getattr__ below
    from kgflow.inference import TrainedRun


__all__ = ["Component", "ConfigCheck", "NoParams", "Params", "hookimpl", "DatasetContext",
           "BuilderContext", "EncoderContext", "FusionContext", "LossContext", "MetricContext",
           "ObjectiveContext", "AuxiliaryObjective", "KgEmbeddings", "INTERACT", "INVERSE_SUFFIX",
           "BEHAVIOUR_PREFIX", "is_interaction", "weighted_mean",
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
