"""Ranking metrics, each computed per user from ``hits`` ``[B, k]`` (1 where the item at that rank is
relevant) and ``n_pos`` ``[B]`` (the user's number of relevant items). Definitions follow RecBole."""
from __future__ import annotations

import torch

from kgflow.plugin import Component, MetricContext, NoParams, hookimpl


def _positions(k: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(1, k + 1, dtype=like.dtype, device=like.device)


def recall(hits: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
    """Relevant items in the top k over all relevant items."""
    return hits.sum(1) / n_pos


def precision(hits: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
    """Relevant items in the top k over k."""
    return hits.sum(1) / hits.shape[1]


def hit(hits: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
    """1 if any relevant item is in the top k."""
    return (hits.sum(1) > 0).to(hits.dtype)


def mrr(hits: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
    """Reciprocal rank of the first relevant item in the top k (0 if none)."""
    first = torch.where(hits > 0, _positions(hits.shape[1], hits), torch.full_like(hits, torch.inf))
    return 1.0 / first.min(1).values


def ndcg(hits: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
    """Binary-relevance DCG of the top k over the ideal DCG of min(n_pos, k) relevant items."""
    discount = 1.0 / torch.log2(_positions(hits.shape[1], hits) + 1)
    dcg = (hits * discount).sum(1)
    ideal_len = torch.clamp(n_pos, max=hits.shape[1]).long()
    ideal = torch.cumsum(discount, 0)[ideal_len - 1]
    return dcg / ideal


def average_precision(hits: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
    """Sum of precision@i at each relevant rank i <= k, over min(n_pos, k)."""
    prec_at = torch.cumsum(hits, 1) / _positions(hits.shape[1], hits)
    return (prec_at * hits).sum(1) / torch.clamp(n_pos, max=hits.shape[1])


def _factory(fn):
    def build(params: NoParams, ctx: MetricContext):
        return fn
    return build


@hookimpl
def kgflow_components() -> list[Component]:
    entries = [("recall", recall), ("precision", precision), ("hit", hit), ("mrr", mrr),
               ("ndcg", ndcg), ("map", average_precision)]
    return [Component("metric", name, _factory(fn), NoParams, (fn.__doc__ or "").strip().split("\n")[0])
            for name, fn in entries]
