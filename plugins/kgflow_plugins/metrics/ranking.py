"""Ranking metrics, each computed per user from ``hits`` ``[B, k]`` (1 where the item at that rank is
relevant) and ``n_pos`` ``[B]`` (the user's number of relevant items). Definitions follow RecBole."""
from __future__ import annotations

import torch

from kgflow.plugin import Component, MetricContext, NoParams


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


def auc(scores: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve per user: the share of (relevant, irrelevant) candidate pairs the
    scores order correctly. Whole ranking: ``scores`` [B, n_items] (-inf: not a candidate),
    ``truth`` [B, n_items] bool; ties count as half."""
    candidate = torch.isfinite(scores)
    pos = truth & candidate
    neg = ~truth & candidate
    s = scores.double().masked_fill(~candidate, float("-inf"))
    # average ranks (1 = lowest) among candidates, ties sharing their mean rank
    order = s.argsort(dim=1, stable=True)
    ranked = s.gather(1, order)
    position = torch.arange(1, s.shape[1] + 1, dtype=torch.float64).expand_as(s)
    first = torch.ones_like(ranked, dtype=torch.bool)
    first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    group = first.long().cumsum(1)
    sums = torch.zeros_like(ranked).scatter_add_(1, group - 1, position)
    counts = torch.zeros_like(ranked).scatter_add_(1, group - 1, torch.ones_like(ranked))
    mean_rank = (sums / counts.clamp(min=1)).gather(1, group - 1)
    ranks = torch.empty_like(mean_rank).scatter_(1, order, mean_rank)
    excluded = (~candidate).sum(1, keepdim=True).double()  # they occupy the lowest ranks
    n_pos, n_neg = pos.sum(1).double(), neg.sum(1).double()
    pos_rank_sum = ((ranks - excluded) * pos).sum(1)
    value = (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg).clamp(min=1)
    return value.float()


auc.whole_ranking = True  # type: ignore[attr-defined]


def _factory(fn):
    def build(params: NoParams, ctx: MetricContext):
        return fn
    return build


def components() -> list[Component]:
    entries = [("recall", recall), ("precision", precision), ("hit", hit), ("mrr", mrr),
               ("ndcg", ndcg), ("map", average_precision)]
    entries.append(("auc", auc))
    return [Component("metric", name, _factory(fn), NoParams, (fn.__doc__ or "").strip().split("\n")[0])
            for name, fn in entries]
