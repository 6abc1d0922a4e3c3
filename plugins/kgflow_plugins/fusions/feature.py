"""Fusion strategies: how encoders combine into one recommender.

- ``none``: the graph encoder alone (``encoders.graph``).
- ``content``: the text encoder alone (``encoders.text``): a user is the mean text embedding of their
  training items (or their profile text), scored by cosine. No training; the baseline a user tries
  first, and one that scores cold-start items.
- ``feature``: language-model embeddings, projected to the graph encoder's size, become its layer-0
  input (added to the ID embeddings, or instead of them); items unseen in training keep only their
  text part, so they can be scored.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import nn

from kgflow.plugin import (Component, ConfigCheck, ConfigIssue, Embeddings, EncoderRecommender,
                           FusionContext, GraphEncoder, NoParams, NotSupportedError, Params,
                           Recommender, fold_in, typical_user_norm)
from kgflow_plugins.text.encoding import ReportsText, SavesLanguageModel, TrainableText

#: what a fusion that trains the language model (joint, lm_only) declares it provides
TRAINS_TEXT = "trains_text"


def build_none(params: NoParams, ctx: FusionContext) -> EncoderRecommender:
    encoder = ctx.encoders["graph"]
    if not isinstance(encoder, GraphEncoder):
        raise NotSupportedError(f"fusion 'none' needs a graph encoder under encoders.graph, got "
                        f"{type(encoder).__name__}")
    return EncoderRecommender(encoder)


class ContentRecommender(ReportsText, Recommender):
    """Cosine between a user's text vector and each item's: nothing to train."""

    def __init__(self, text: nn.Module) -> None:
        super().__init__()
        self.text = text

    def forward(self) -> Embeddings:
        return Embeddings(nn.functional.normalize(self.text.user, dim=-1),
                          nn.functional.normalize(self.text.item, dim=-1))

    def new_user(self, emb: Embeddings, items: torch.Tensor, text: str | None = None) -> torch.Tensor:
        """Exactly how the model sees a trained user: the mean text embedding of the liked
        items, and/or the profile text's embedding (both given: the two directions averaged)."""
        return text_direction(self.text, items, text)


def text_direction(text_features: nn.Module, items: torch.Tensor, text: str | None) -> torch.Tensor:
    """A unit vector in the text space from liked items' texts and/or a profile text."""
    parts = []
    if items.numel():
        parts.append(nn.functional.normalize(text_features.item.index_select(0, items).mean(0), dim=0))
    if text is not None:
        parts.append(nn.functional.normalize(text_features.encode_texts([text])[0], dim=0))
    if not parts:
        raise ValueError("a new user needs liked items or a profile text")
    return nn.functional.normalize(torch.stack(parts).mean(0), dim=0)


def build_content(params: NoParams, ctx: FusionContext) -> ContentRecommender:
    return ContentRecommender(ctx.encoders["text"])


class FeatureParams(Params):
    use_id: bool = Field(True, description="add ID embeddings to the projected text features "
                         "(items unseen in training get none)")
    hidden: Optional[int] = Field(None, ge=1, description="hidden size of a two-layer MLP "
                                  "projection; null: one linear layer")
    score: Literal["dot", "cosine"] = Field("dot", description="cosine divides by temperature")
    temperature: float = Field(0.15, gt=0)


class FeatureFusion(ReportsText, EncoderRecommender):
    """Text features as the graph encoder's input (AlphaRec-style when ``use_id`` is false)."""

    def __init__(self, graph: GraphEncoder, text: nn.Module, warm_items: torch.Tensor,
                 params: FeatureParams) -> None:
        super().__init__(graph)
        self.text = text
        self.params = params
        user0, _ = graph.input_embeddings()
        dim = user0.shape[1]
        self.project = (nn.Linear(text.dim, dim) if params.hidden is None else
                        nn.Sequential(nn.Linear(text.dim, params.hidden), nn.LeakyReLU(),
                                      nn.Linear(params.hidden, dim)))
        self.register_buffer("warm", warm_items.float().unsqueeze(1))

    def forward(self) -> Embeddings:
        return self.fuse(self.text.user, self.text.item)

    def fuse(self, user_text: torch.Tensor, item_text: torch.Tensor) -> Embeddings:
        """The graph encoder run on projected text (plus ID) inputs."""
        user0 = self.project(user_text)
        item0 = self.project(item_text)
        if self.params.use_id:
            id_user, id_item = self.encoder.input_embeddings()
            user0 = user0 + id_user
            item0 = item0 + id_item * self.warm
        emb = self.encoder.propagate(user0, item0)
        if self.params.score == "cosine":
            scale = self.params.temperature ** -0.5
            return Embeddings(nn.functional.normalize(emb.user, dim=-1) * scale,
                              nn.functional.normalize(emb.item, dim=-1) * scale)
        return emb

    def new_user(self, emb: Embeddings, items: torch.Tensor, text: str | None = None) -> torch.Tensor:
        """From a profile text: the projected text as the layer-0 input of a user without
        interactions (for LightGCN, whose isolated nodes keep only layer 0, this is the user's
        exact direction). From liked items: folded in (:func:`fold_in`), starting from the text
        direction when both are given."""
        if text is None:
            return fold_in(emb, items)
        vector = self.project(text_direction(self.text, items[:0], text))
        if self.params.score == "cosine":
            vector = nn.functional.normalize(vector, dim=0) * self.params.temperature ** -0.5
        else:
            vector = nn.functional.normalize(vector, dim=0) * typical_user_norm(emb)
        return fold_in(emb, items, start=vector) if items.numel() else vector

    def regularization(self, users, pos, neg):
        if not self.params.use_id:
            return torch.zeros((), device=users.device)
        return super().regularization(users, pos, neg)


def build_feature(params: FeatureParams, ctx: FusionContext) -> FeatureFusion:
    graph = ctx.encoders["graph"]
    if not isinstance(graph, GraphEncoder):
        raise NotSupportedError("fusion 'feature' needs a graph encoder under encoders.graph")
    return FeatureFusion(graph, ctx.encoders["text"], warm_items(ctx.split), params)


def warm_items(split) -> torch.Tensor:
    """Which items occur in training (the others have no ID embedding worth adding)."""
    warm = torch.zeros(split.n_items, dtype=torch.bool)
    warm[torch.from_numpy(split.train.item)] = True
    return warm


class JointParams(FeatureParams):
    grad_items: int = Field(256, ge=1, description="items of a batch encoded with gradients through "
                            "the language model (a random subset of the batch's items); the rest "
                            "come from the cache")
    refresh_every: int = Field(1, ge=1, description="re-encode every item (the cache) every N "
                               "epochs; evaluation uses the cache as last re-encoded")


class JointFusion(SavesLanguageModel, FeatureFusion):
    """Feature fusion whose language model trains too (adapter, top layers or all of it), end to
    end through the ranking loss.

    Encoding every item with gradients each step is what makes joint training impractical on a
    CPU; here a batch encodes at most ``grad_items`` of its own items with gradients and takes every
    other item from a cache of embeddings, re-encoded without gradients every ``refresh_every``
    epochs. Users who are the mean of their items follow the fresh item vectors through one sparse
    product, so their gradients reach the language model too.
    """

    def __init__(self, graph: GraphEncoder, text: TrainableText, warm_items: torch.Tensor,
                 params: JointParams) -> None:
        super().__init__(graph, text, warm_items, params)
        self.epochs = 0

    def train_forward(self, batch: dict[str, torch.Tensor]) -> Embeddings:
        items = torch.unique(torch.cat([batch["pos"].reshape(-1), batch["neg"].reshape(-1)]))
        if len(items) > self.params.grad_items:
            items = items[torch.randperm(len(items), device=items.device)[:self.params.grad_items]]
        fresh = self.text.embed_items(items).to(self.text.item.dtype)  # autocast may give bf16
        item_text = self.text.item.index_copy(0, items, fresh)
        user_text = self.text.means(item_text) if self.text.mean_users else self.text.user
        return self.fuse(user_text, item_text)

    def after_train_batch(self, step: int) -> None:
        lm = self.text.lm
        if self.text.params.adapter is not None and self.text.params.adapter.method == "adalora":
            lm.base_model.update_and_allocate(step)

    def after_train_epoch(self) -> None:
        self.epochs += 1
        if self.epochs % self.params.refresh_every == 0:
            self.text.refresh()


def build_joint(params: JointParams, ctx: FusionContext) -> JointFusion:
    graph, text = ctx.encoders["graph"], ctx.encoders["text"]
    if not isinstance(graph, GraphEncoder):
        raise NotSupportedError("fusion 'joint' needs a graph encoder under encoders.graph")
    if not isinstance(text, TrainableText):
        raise NotSupportedError("fusion 'joint' trains the language model: give encoders.text an adapter "
                        "(adapter: {method: lora, ...}) or freeze: full | top_layers")
    return JointFusion(graph, text, warm_items(ctx.split), params)


def check_text_training(config, registry) -> list[ConfigIssue]:
    """Only ``joint`` and ``lm_only`` train a language model; an adapter anywhere else would
    silently not train."""
    ref = config.encoders.get("text")
    if ref is None:
        return []
    comp = registry.get("fusion", config.fusion.name)
    fusion, fusion_trains = comp.name, TRAINS_TEXT in comp.provides
    params = ref.parsed
    trains = getattr(params, "trains", False)
    if trains and not fusion_trains:
        return [ConfigIssue(f"the text encoder trains (adapter or freeze: {params.freeze}) but fusion "
                            f"{fusion!r} uses frozen embeddings", path="fusion",
                            hint="use fusion: joint (or lm_only), or remove the adapter / set "
                            "freeze: frozen")]
    if fusion_trains and not trains:
        return [ConfigIssue(f"fusion {fusion!r} trains the language model, but encoders.text is frozen",
                            path="encoders.text.params",
                            hint="add adapter: {method: lora, r: 8, target_modules: [query, value]} "
                            "or freeze: full | top_layers")]
    return []


def check_adapter_targets(config, registry) -> list[ConfigIssue]:
    """``target_modules`` must name modules of the chosen model (read from its config only)."""
    from kgflow_plugins.text.adapters import apply_adapter, missing_targets, module_names, skeleton
    from kgflow_plugins.text.encoding import resolve_model

    issues = []
    for role, ref in config.encoders.items():
        params = ref.parsed
        adapter = getattr(params, "adapter", None)
        if adapter is None:
            continue
        path = f"encoders.{role}.params.adapter"
        try:
            model = skeleton(resolve_model(params.model))
        except Exception as exc:  # not a model transformers can read: reported with the path
            issues.append(ConfigIssue(f"cannot read the text model {params.model!r} to check the "
                                      f"adapter: {str(exc).splitlines()[0]}", path=f"encoders.{role}.params.model"))
            continue
        if adapter.target_modules:
            missing = missing_targets(adapter.target_modules, model)
            if missing:
                issues.append(ConfigIssue(f"target_modules {missing} are not modules of "
                                          f"{params.model!r}", path=path + ".target_modules",
                                          hint=f"its modules: {', '.join(module_names(model))}"))
                continue
        try:
            apply_adapter(model, adapter)
        except (ValueError, TypeError, KeyError) as exc:
            issues.append(ConfigIssue(f"peft cannot apply {adapter.method} to {params.model!r}: "
                                      f"{str(exc).splitlines()[0]}", path=path,
                                      hint=f"its modules: {', '.join(module_names(model))}"))
    return issues


def check_top_layers(config, registry) -> list[ConfigIssue]:
    """``freeze: top_layers`` cannot train more blocks than the model has (read from its config)."""
    from kgflow_plugins.text.adapters import skeleton, transformer_blocks
    from kgflow_plugins.text.encoding import resolve_model

    issues = []
    for role, ref in config.encoders.items():
        params = ref.parsed
        if getattr(params, "freeze", None) != "top_layers" or getattr(params, "adapter", None) is not None:
            continue
        try:
            blocks = transformer_blocks(skeleton(resolve_model(params.model)))
        except Exception:  # an unreadable model is reported when it is loaded, with the reason
            continue
        count = 0 if blocks is None else len(blocks)
        if params.top_layers > count:
            issues.append(ConfigIssue(f"top_layers: {params.top_layers} but the model has {count} "
                                      "transformer blocks", path=f"encoders.{role}.params.top_layers",
                                      hint=f"choose 1..{count}" if count else "use freeze: full"))
    return issues


def components() -> list[Component]:
    return [
        Component("fusion", "none", build_none, NoParams,
                  "no fusion: the graph encoder alone (encoders.graph)", aliases=("id-only",),
                  provides=("neighbor_sampling",), roles=("graph",)),
        Component("fusion", "content", build_content, NoParams,
                  "text only: cosine between the user's and the item's text embeddings (encoders.text)",
                  roles=("text",)),
        Component("fusion", "feature", build_feature, FeatureParams,
                  "LM embeddings as the graph encoder's input features (encoders.graph + encoders.text)",
                  roles=("graph", "text")),
        Component("fusion", "joint", build_joint, JointParams,
                  "feature fusion with the language model (adapter or top layers) trained end to end "
                  "through the ranking loss", roles=("graph", "text"), provides=(TRAINS_TEXT,)),
    ]


def config_checks() -> list[ConfigCheck]:
    return [ConfigCheck("text-training", check_text_training,
                        "a text encoder that trains goes with fusion joint, and joint with one that trains"),
            ConfigCheck("adapter-targets", check_adapter_targets,
                        "an adapter's target_modules exist in the chosen language model"),
            ConfigCheck("text-top-layers", check_top_layers,
                        "freeze: top_layers trains no more blocks than the language model has")]
