"""Assembling a pipeline's parts: data -> split -> graph -> model.

Shared by training (:mod:`kgflow.runs.runner`) and serving (:mod:`kgflow.inference`), which
otherwise know nothing of each other. Each step takes the typed result of the previous one; no step
reaches back into the YAML.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgflow.config.validate import LoadedPipeline
from kgflow.data.behaviors import attach_auxiliary, auxiliary_interactions
from kgflow.data.preprocess import prepare_interactions
from kgflow.data.recdata import RecData, Split
from kgflow.data.split import read_predefined, split_interactions
from kgflow.data.store import kgflow_home
from kgflow.errors import KgflowError
from kgflow.graph import GraphBundle
from kgflow.models import Recommender
from kgflow.registry.contexts import BuilderContext, DatasetContext, EncoderContext, FusionContext
from kgflow.registry import Registry, get_registry


@dataclass
class Prepared:
    data: RecData
    split: Split
    #: auxiliary pairs left out per behaviour because they are held-out targets (for the report)
    auxiliary_dropped: dict[str, int] = field(default_factory=dict)


def load_data(loaded: LoadedPipeline, registry: Registry) -> RecData:
    cfg = loaded.config
    comp = registry.get("dataset", cfg.dataset.name)
    data = comp.factory(cfg.dataset.parsed, DatasetContext(home=kgflow_home(), seed=cfg.seed))
    if not isinstance(data, RecData):
        raise KgflowError(f"dataset {comp.name!r} ({comp.package}) returned {type(data).__name__}, "
                          "not RecData")
    return data.cleaned(cfg.preprocess.on_bad_rows)


def prepare(loaded: LoadedPipeline, registry: Registry | None = None) -> Prepared:
    """Load the dataset and split it as the pipeline says."""
    registry = registry or get_registry()
    cfg = loaded.config
    data = load_data(loaded, registry)
    if cfg.split.method == "predefined":
        split = read_predefined(Path(cfg.split.path), cfg.preprocess.on_bad_rows)  # type: ignore[arg-type]
        return Prepared(data, split)
    target = prepare_interactions(data, cfg.preprocess)
    split = split_interactions(target, cfg.split, cfg.seed, data.source.get("inter"))
    split, dropped = attach_auxiliary(split, auxiliary_interactions(data, cfg.preprocess, target))
    return Prepared(data, split, dropped)


def build_graph(loaded: LoadedPipeline, prepared: Prepared, registry: Registry) -> GraphBundle:
    cfg = loaded.config
    comp = registry.get("builder", cfg.graph.name)
    weights = cfg.preprocess.weight is not None and cfg.preprocess.weight.graph
    return comp.factory(cfg.graph.parsed, BuilderContext(prepared.data, prepared.split, cfg.seed,
                                                         edge_weights=weights))


def build_recommender(loaded: LoadedPipeline, prepared: Prepared, graph: GraphBundle,
                      registry: Registry, training: bool = True,
                      needs: dict[str, Path] | None = None) -> Recommender:
    """The pipeline's encoders and fusion; ``training=False`` rebuilds a finished run to serve
    (fusions then skip training-only inputs such as a distillation teacher). ``needs``: the
    finished run directories of the pipelines this one depends on (``needs:``), by name."""
    cfg = loaded.config
    encoders = {}
    for role, ref in cfg.encoders.items():
        comp = registry.get("encoder", ref.name)
        encoders[role] = comp.factory(ref.parsed, EncoderContext(role, graph, prepared.split,
                                                                 prepared.data, cfg.seed))
    fusion = registry.get("fusion", cfg.fusion.name)
    model = fusion.factory(cfg.fusion.parsed, FusionContext(encoders, graph, prepared.split,
                                                            prepared.data, cfg.seed, training=training,
                                                            needs=dict(needs or {})))
    if not isinstance(model, Recommender):
        raise KgflowError(f"fusion {fusion.name!r} ({fusion.package}) returned "
                          f"{type(model).__name__}, not a kgflow Recommender")
    return model


def count_parameters(model: Any) -> dict[str, int]:
    """Total and trainable parameters, and the trainable ones per part of the model (its top-level
    modules: encoder, text, project, ...), so a report shows what actually trains."""
    total, parts = 0, {}
    for name, p in model.named_parameters():
        total += p.numel()
        if p.requires_grad:
            part = name.split(".")[0]
            parts[part] = parts.get(part, 0) + p.numel()
    return {"total": total, "trainable": sum(parts.values()), "trainable_by_part": parts}
