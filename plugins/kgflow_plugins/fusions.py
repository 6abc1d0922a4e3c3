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
                           FusionContext, GraphEncoder, NoParams, Params, Recommender, fold_in,
                           hookimpl, typical_user_norm)

ROLES = {"none": {"graph"}, "content": {"text"}, "feature": {"graph", "text"}}  # encoder roles used


def build_none(params: NoParams, ctx: FusionContext) -> EncoderRecommender:
    encoder = ctx.encoders["graph"]
    if not isinstance(encoder, GraphEncoder):
        raise TypeError(f"fusion 'none' needs a graph encoder under encoders.graph, got "
                        f"{type(encoder).__name__}")
    return EncoderRecommender(encoder)


class ContentRecommender(Recommender):
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


class FeatureFusion(EncoderRecommender):
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
        user0 = self.project(self.text.user)
        item0 = self.project(self.text.item)
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
        raise TypeError("fusion 'feature' needs a graph encoder under encoders.graph")
    warm = torch.zeros(ctx.split.n_items, dtype=torch.bool)
    warm[torch.from_numpy(ctx.split.train.item)] = True
    return FeatureFusion(graph, ctx.encoders["text"], warm, params)


def check_roles(config, registry) -> list[ConfigIssue]:
    """Each fusion needs its encoder roles, and no others."""
    name = registry.get("fusion", config.fusion.name).name  # aliases resolve to the canonical name
    if name not in ROLES:
        return []
    needed = ROLES[name]
    have = set(config.encoders)
    issues = []
    for role in sorted(needed - have):
        issues.append(ConfigIssue(f"fusion {name!r} needs an encoder under the role {role!r}",
                                  path="encoders", hint=f"roles it uses: {', '.join(sorted(needed))}"))
    extra = sorted(have - needed)
    if extra:
        issues.append(ConfigIssue(f"fusion {name!r} does not use the encoders {extra}; remove them "
                                  "or choose a fusion that combines them", path="encoders"))
    return issues


@hookimpl
def kgflow_components() -> list[Component]:
    return [
        Component("fusion", "none", build_none, NoParams,
                  "no fusion: the graph encoder alone (encoders.graph)", aliases=("id-only",)),
        Component("fusion", "content", build_content, NoParams,
                  "text only: cosine between the user's and the item's text embeddings (encoders.text)"),
        Component("fusion", "feature", build_feature, FeatureParams,
                  "LM embeddings as the graph encoder's input features (encoders.graph + encoders.text)"),
    ]


@hookimpl
def kgflow_config_checks() -> list[ConfigCheck]:
    return [ConfigCheck("fusion-roles", check_roles, "each fusion gets exactly the encoder roles it uses")]
