"""The pipeline schema: pydantic models for every block of a pipeline YAML.

Every model forbids unknown keys. Pluggable blocks (dataset, graph, encoders, fusion, loss) share
one shape, :class:`ComponentRef` — ``name:`` plus ``params:`` or the short form ``encoder: lightgcn``;
their ``params`` are validated in a second step against the chosen component's own model.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

SCHEMA_VERSION = 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ComponentRef(Strict):
    """A pluggable block: which registered component, and its parameters."""

    name: str = Field(description="registered component name (see `kgflow plugins`)")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="parameters, validated by the component's own model")
    _parsed: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value

    @field_validator("params", mode="before")
    @classmethod
    def _null_params(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def parsed(self) -> Any:
        """The validated parameter object (set once the pipeline has been resolved)."""
        if self._parsed is None:
            raise RuntimeError(f"component {self.name!r} has not been resolved against the registry")
        return self._parsed


class KCore(Strict):
    user: int = Field(0, ge=0, description="drop users with fewer interactions (repeated until stable)")
    item: int = Field(0, ge=0, description="drop items with fewer interactions (repeated until stable)")


class InteractionWeight(Strict):
    """How one interaction's strength (a rating, a click count, a dwell time) becomes a positive
    weight: clipped, transformed, then normalised per user, in that order."""

    column: Literal["rating", "value", "count"] = Field(
        description="rating: the rating column; value: the dataset's value column (dwell time, "
        "play count: `value:` in a table dataset, `value_field` in an atomic one); count: how many "
        "rows the (user, item) pair has before dedupe (repeated clicks)")
    clip: Optional[list[Optional[float]]] = Field(
        None, min_length=2, max_length=2, description="[low, high] bounds applied first (null for "
        "no bound on that side), e.g. [null, 600] caps dwell times at ten minutes")
    transform: Literal["none", "log1p"] = Field(
        "none", description="log1p: ln(1 + x), which tames heavy-tailed counts and times")
    normalize: Literal["none", "user_mean", "user_max"] = Field(
        "none", description="divide by the user's mean (every user's weights then average 1) or "
        "maximum, so that heavy users do not dominate")
    graph: bool = Field(True, description="use the weights as edge weights of the interaction edges "
                        "(in the propagation of lightgcn, simgcl, xsimgcl and gcn)")
    loss: bool = Field(False, description="weight each training positive's ranking loss by its weight "
                       "(a weighted mean over the batch)")

    @model_validator(mode="after")
    def _used_somewhere(self) -> "InteractionWeight":
        if not (self.graph or self.loss):
            raise ValueError("interaction weights with graph: false and loss: false are used nowhere; "
                             "set one of them, or remove preprocess.weight")
        if self.clip and None not in self.clip and self.clip[0] > self.clip[1]:  # type: ignore[operator]
            raise ValueError(f"clip {self.clip}: the low bound is above the high bound")
        return self


class Behaviors(Strict):
    """Interactions typed by behaviour (click, cart, buy): the target behaviour is what splits,
    training positives and evaluation use; the auxiliary ones become extra user-item relations of
    the graph, in training only."""

    target: list[str] = Field(min_length=1, description="the behaviour(s) to recommend, e.g. [buy]")
    auxiliary: Optional[list[str]] = Field(
        None, description="behaviours added to the graph as relations interact:<name> (null: every "
        "other behaviour of the data; []: none, the others are dropped)")


class Preprocess(Strict):
    rating_threshold: Optional[float] = Field(
        4.0, description="implicit feedback: keep interactions with rating >= this; null keeps all")
    kcore: KCore = Field(default_factory=KCore)
    dedupe: bool = Field(True, description="keep one interaction per (user, item): the latest")
    kg_linked_only: bool = Field(False, description="keep only interactions on items linked to an "
                                 "entity of the KG (the data RecBole's knowledge-aware models train on)")
    on_bad_rows: Literal["error", "skip"] = Field(
        "error", description="an interaction row with an empty user or item id, or an empty, "
        "non-numeric or non-finite rating or timestamp (where the data has them): error stops with "
        "its file and line; skip leaves such rows out and counts them in the run report")
    below_threshold_as: Optional[str] = Field(
        None, description="keep the interactions below rating_threshold as this auxiliary behaviour "
        "(e.g. watched next to the liked target): extra graph relation interact:<name>, in training "
        "only, never a positive nor evaluated")
    behaviors: Optional[Behaviors] = Field(
        None, description="split interactions by the dataset's behaviour column into a target and "
        "auxiliary graph relations (`behavior:` in a table dataset, `behavior_field` in an atomic one)")
    weight: Optional[InteractionWeight] = Field(
        None, description="turn a column into per-interaction weights, for graph edges and/or the loss")
    auxiliary_weights: dict[str, float] = Field(
        default_factory=dict, description="edge weight of each auxiliary behaviour's graph edges, by "
        "name (default 1; the target's edges weigh 1 or their preprocess.weight), e.g. {watched: "
        "0.25}: how much a weaker signal counts in propagation")

    @model_validator(mode="after")
    def _threshold_for_below(self) -> "Preprocess":
        if self.below_threshold_as is not None and self.rating_threshold is None:
            raise ValueError("below_threshold_as needs a rating_threshold to be below")
        named = {self.below_threshold_as} if self.below_threshold_as else set()
        if self.behaviors is not None:
            named |= set(self.behaviors.auxiliary or [])
        for name, weight in self.auxiliary_weights.items():
            if not weight > 0 or not math.isfinite(weight):
                raise ValueError(f"auxiliary_weights.{name} is {weight}: an edge weight must be a "
                                 "positive number")
            open_ended = self.behaviors is not None and self.behaviors.auxiliary is None
            if name not in named and not open_ended:
                raise ValueError(f"auxiliary_weights names {name!r}, which is no auxiliary behaviour "
                                 f"of this pipeline (they are {sorted(named) or 'none'})")
        return self


class SplitConfig(Strict):
    method: Literal["random", "temporal", "leave_one_out", "cold_items", "predefined"] = Field(
        "random", description="random: per-user random ratio; temporal: per-user by time; "
        "leave_one_out: last two by time go to valid/test; cold_items: a share of items held out of "
        "training entirely; predefined: read RecBole benchmark files from `path`")
    ratios: list[float] = Field(default_factory=lambda: [0.8, 0.1, 0.1],
                                description="train/valid/test shares; must sum to 1")
    cold_item_share: float = Field(0.1, gt=0, lt=1, description="cold_items: share of items held out")
    path: Optional[str] = Field(None, description="predefined: folder with <name>.{train,valid,test}.inter")
    seed: Optional[int] = Field(None, description="seed for the split; defaults to the pipeline seed")

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, value: list[float]) -> list[float]:
        if len(value) != 3:
            raise ValueError(f"ratios needs three shares (train, valid, test), got {len(value)}")
        if any(r < 0 for r in value) or value[0] <= 0:
            raise ValueError("ratios must be non-negative with a positive train share")
        if not math.isclose(sum(value), 1.0, abs_tol=1e-6):
            raise ValueError(f"ratios must sum to 1, they sum to {sum(value):g}")
        return value

    @model_validator(mode="after")
    def _predefined_needs_path(self) -> "SplitConfig":
        if self.method == "predefined" and not self.path:
            raise ValueError("split method 'predefined' needs `path:` (a folder of .inter files)")
        return self


class NegativeSampling(Strict):
    """How the training negatives are drawn (never one of the user's training positives)."""

    method: Literal["uniform", "popularity", "dns"] = Field(
        "uniform", description="uniform: every item alike; popularity: in proportion to the item's "
        "training interactions to the power alpha; dns: dynamic hard negatives -- draw `candidates` "
        "uniform items per negative and train on the one the current model scores highest")
    alpha: float = Field(1.0, ge=0, description="popularity: the exponent (1 proportional, 0.75 "
                         "word2vec's smoothing, 0 uniform)")
    candidates: int = Field(10, ge=2, description="dns: uniform candidates scored per negative")


class Objective(Strict):
    loss: ComponentRef = Field(default_factory=lambda: ComponentRef(name="bpr"))
    negatives: int = Field(1, ge=1, description="sampled negatives per positive (never a training positive)")
    negative_sampling: NegativeSampling = Field(default_factory=NegativeSampling,
                                                description="how the negatives are drawn")
    l2: float = Field(0.0, ge=0, description="L2 weight on the batch's layer-0 embeddings")
    auxiliary: list[ComponentRef] = Field(
        default_factory=list, description="extra training objectives next to the ranking loss, e.g. "
        "a KG embedding loss ([{name: transr, params: {schedule: alternate}}])")


class EarlyStopping(Strict):
    metric: str = Field("ndcg@10", description="validation metric to select the best epoch")
    patience: int = Field(50, ge=1, description="evaluations without improvement before stopping "
                          "(RecBole's stopping_step s stops after s+1: patience s+1)")
    decimals: Optional[int] = Field(4, ge=0, description="compare validation scores at this many "
                                    "decimals (as RecBole does); null compares exact values")
    ties: Literal["later", "earlier"] = Field("later", description="which checkpoint wins when the "
                                              "score ties the best: later (RecBole's rule) or earlier")
    min_epochs: int = Field(0, ge=0, description="never stop before this many epochs, whatever the "
                            "patience (for models whose validation score dips before it rises, such as "
                            "contrastive ones); the best epoch is still chosen among all of them")


class Sampling(Strict):
    method: Literal["full", "neighbor"] = Field(
        "full", description="full: every step propagates over the whole graph; neighbor: each step "
        "runs the encoder on its batch's sampled neighbourhood (mini-batch training)")
    fanouts: Optional[list[int]] = Field(
        None, description="neighbor: incoming edges kept per node at each hop, one per encoder layer "
        "(-1 keeps all), e.g. [10, 10] for two layers; [] for an encoder without layers (mf): a "
        "step then reads only its batch's rows")
    backend: Literal["auto", "torch", "pyg"] = Field(
        "auto", description="neighbor: who draws the neighbourhoods. torch: kgflow's vectorised "
        "pure-torch sampler (always available); pyg: torch-geometric's compiled sampler (needs pyg-lib "
        "or torch-sparse); auto: pyg when pyg-lib is installed, else torch (torch-sparse alone samples "
        "slower than torch on CPUs). The two draw differently: the same seed gives other batches "
        "with and without pyg-lib")

    @field_validator("fanouts")
    @classmethod
    def _fanouts(cls, value: Optional[list[int]]) -> Optional[list[int]]:
        if value is not None and any(f == 0 or f < -1 for f in value):
            raise ValueError("fanouts must be positive counts (or -1 for all)")
        return value

    @model_validator(mode="after")
    def _needs_fanouts(self) -> "Sampling":
        if self.method == "neighbor" and self.fanouts is None:
            raise ValueError("sampling method neighbor needs fanouts, one per encoder layer, e.g. [10, 10]")
        return self


class TrainConfig(Strict):
    epochs: int = Field(300, ge=1)
    batch_size: int = Field(2048, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "adamw", "sgd", "sparse_adam"] = Field(
        "adam", description="sparse_adam: Adam that updates only the embedding rows a batch used "
        "(lazy Adam), so that a step costs the batch, not the tables; pair it with "
        "sampling: neighbor (docs/scale.md)")
    weight_decay: float = Field(0.0, ge=0)
    eval_every: int = Field(1, ge=1, description="validate every N epochs")
    init_from: Optional[str] = Field(
        None, description="warm start: a finished run directory whose best weights initialise this "
        "run (see init_match)")
    init_match: Literal["split", "ids"] = Field(
        "split", description="split: init_from ran on this very split; every parameter of the same "
        "name and shape is copied. ids: init_from ran on another snapshot of the data (retraining "
        "as data arrives); user, item and entity rows are carried by original id, new ones are "
        "folded in from their interactions, vanished ones dropped (docs/deploy.md)")
    sampling: Sampling = Field(default_factory=Sampling,
                               description="full-graph or sampled-subgraph (mini-batch) training")
    early_stopping: Optional[EarlyStopping] = Field(default_factory=EarlyStopping,
                                                    description="null trains all epochs, keeping the best")


class UserGroups(Strict):
    """A numeric user column cut into bands for the per-group test metrics."""

    field: str = Field(description="user table column, e.g. age")
    bins: list[float] = Field(description="band edges, ascending: [18, 35] makes the bands "
                              "< 18, 18-35 and >= 35")

    @field_validator("bins")
    @classmethod
    def _bins(cls, value: list[float]) -> list[float]:
        if not value or any(later <= earlier for earlier, later in zip(value, value[1:])):
            raise ValueError("bins must be a non-empty list of strictly ascending numbers")
        return value


class EvalConfig(Strict):
    ks: list[int] = Field(default_factory=lambda: [10, 20])
    metrics: list[str] = Field(default_factory=lambda: ["recall", "ndcg", "hit", "mrr", "precision", "map"],
                               description="metric names (`kgflow plugins`); each is computed at every "
                               "k, except whole-ranking ones such as auc")
    metric_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="settings of the metrics that take them, by metric name, "
        "e.g. {ild: {field: genre}, tail_share: {head_share: 0.1}}")
    user_groups: list[str | UserGroups] = Field(
        default_factory=list, description="user table columns to break the test metrics down by "
        "(a column name, or {field, bins} for a number such as age): per group and the gap between "
        "the best and worst group, in metrics.json (user_groups), report.md and kgflow compare")
    batch_users: int = Field(4096, ge=1, description="users scored at once (bounds memory)")
    max_users: Optional[int] = Field(
        None, ge=1, description="evaluate a fixed random sample of this many users (seeded by the "
        "pipeline seed) instead of all: for models whose full ranking is expensive (lm_only)")

    @field_validator("ks")
    @classmethod
    def _ks(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("ks must be a non-empty list of positive integers")
        return sorted(set(value))


class Need(Strict):
    """A pipeline this one depends on (e.g. a distillation teacher), trained before it."""

    pipeline: str = Field(description="its pipeline file, relative to this pipeline's file")
    out: Optional[str] = Field(None, description="its run directory (default: runs/<its name>-<seed>); "
                               "a finished run there is reused, an interrupted one resumed")
    set: list[str] = Field(default_factory=list, description="--set overrides for it, e.g. "
                           "['train.epochs=50']; its seed is always this pipeline's (one split)")


class PipelineConfig(Strict):
    """A whole pipeline. Only ``kgflow``, ``dataset`` and ``encoders`` are required."""

    kgflow: int = Field(description="schema version of this file; currently 1")
    name: Optional[str] = Field(None, description="run name (defaults to the file name)")
    description: Optional[str] = None
    requires: list[str] = Field(default_factory=list,
                                description="plugin packages this pipeline needs, e.g. "
                                "['kgflow-foo>=0.3']; checked before anything else")
    seed: int = Field(2020, description="seed for sampling, initialisation and the split")
    needs: dict[str, Need] = Field(
        default_factory=dict, description="pipelines this one depends on, by name (e.g. teacher): "
        "`kgflow run` trains each first, with this pipeline's seed, unless a finished run of it "
        "exists; components name them (fusion distill's teacher: the entry's name)")
    dataset: ComponentRef
    preprocess: Preprocess = Field(default_factory=Preprocess)
    split: SplitConfig = Field(default_factory=SplitConfig)
    graph: ComponentRef = Field(default_factory=lambda: ComponentRef(name="user_item"))
    encoders: dict[str, ComponentRef] = Field(description="encoders by role, e.g. `graph:`")
    fusion: ComponentRef = Field(default_factory=lambda: ComponentRef(name="none"))
    objective: Objective = Field(default_factory=Objective)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: list[ComponentRef] = Field(
        default_factory=list, description="experiment trackers the run reports to, beside its CSV "
        "log: [{name: tensorboard}, {name: mlflow, params: {tracking_uri: ...}}, {name: wandb, "
        "params: {mode: offline}}] (docs/deploy.md)")
    trainer: dict[str, Any] = Field(default_factory=dict,
                                    description="passed to lightning.Trainer (accelerator, precision, ...)")

    @field_validator("kgflow")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"this kgflow reads pipeline schema version {SCHEMA_VERSION}, not {value}")
        return value

    def component_slots(self) -> list[tuple[tuple[Any, ...], str, ComponentRef]]:
        """Every pluggable block as (YAML path, kind, reference)."""
        slots: list[tuple[tuple[Any, ...], str, ComponentRef]] = [
            (("dataset",), "dataset", self.dataset),
            (("graph",), "builder", self.graph),
            (("fusion",), "fusion", self.fusion),
            (("objective", "loss"), "loss", self.objective.loss),
        ]
        slots += [(("encoders", role), "encoder", ref) for role, ref in self.encoders.items()]
        slots += [(("objective", "auxiliary", i), "objective", ref)
                  for i, ref in enumerate(self.objective.auxiliary)]
        return slots
