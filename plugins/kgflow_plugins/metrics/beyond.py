"""Beyond-accuracy metrics: how popular, novel, diverse and spread over the catalogue the top-k
lists are, whatever their accuracy. A model can win NDCG@10 by recommending the same hundred
blockbusters to everyone; these say whether it does.

Popularity is the training data's (what the model could see): ``item_popularity[i]`` the training
interactions of item ``i``. Per-user metrics are averaged over the evaluated users like the
accuracy metrics; catalog metrics (coverage, Gini) are computed once from all the lists together.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Literal

import torch
from pydantic import Field

from kgflow.plugin import Component, KgflowError, MetricContext, NoParams, Params
from kgflow_plugins.metrics.ranking import _factory


def coverage(counts: torch.Tensor) -> torch.Tensor:
    """Share of the catalogue that appears in at least one user's top k."""
    return (counts > 0).double().mean() if len(counts) else torch.tensor(0.0)


def gini(counts: torch.Tensor) -> torch.Tensor:
    """Gini index of how often each catalogue item is recommended: 0 when every item appears
    equally often, towards 1 when a few items take every slot."""
    n = len(counts)
    total = counts.sum()
    if n == 0 or total == 0:
        return torch.tensor(0.0)
    ordered = torch.sort(counts.double()).values
    rank = torch.arange(1, n + 1, dtype=torch.float64)
    return ((2 * rank - n - 1) * ordered).sum() / (n * total)


coverage.catalog = True  # type: ignore[attr-defined]
gini.catalog = True  # type: ignore[attr-defined]


class TailParams(Params):
    head_share: float = Field(0.2, gt=0, lt=1, description="share of the catalogue, most popular "
                              "first, that is the head; every other item is the tail")


class IldParams(Params):
    field: str = Field(description="item table column the item vectors come from, e.g. genre")
    kind: Literal["tokens", "numbers"] = Field(
        "tokens", description="tokens: the column's tokens (split on spaces, commas or |) as a "
        "multi-hot vector; numbers: the column holds a vector of numbers (e.g. text embeddings)")


def _unready(name: str) -> Callable[..., torch.Tensor]:
    def not_built(*args: object) -> torch.Tensor:
        raise KgflowError(f"metric {name} was built without the training data it reads")
    return not_built


def _items_metric(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    fn.needs_items = True  # type: ignore[attr-defined]
    return fn


def build_avg_popularity(params: NoParams, ctx: MetricContext) -> Callable[..., torch.Tensor]:
    popularity = ctx.item_popularity

    def avg_popularity(top: torch.Tensor, hits: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
        """Mean training popularity (interactions) of the recommended items."""
        return popularity[top].float().mean(1)  # type: ignore[index]

    return _items_metric(avg_popularity if ctx.ready else _unready("avg_popularity"))


def build_novelty(params: NoParams, ctx: MetricContext) -> Callable[..., torch.Tensor]:
    """Self-information of a recommended item, ``-log2(popularity / users)`` (an item no training
    user took counts as taken once), averaged over the list: higher is less obvious."""
    if not ctx.ready:
        return _items_metric(_unready("novelty"))
    information = -torch.log2(ctx.item_popularity.double().clamp(min=1) / max(ctx.n_users, 1))  # type: ignore[union-attr]

    def novelty(top: torch.Tensor, hits: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
        return information[top].mean(1).float()

    return _items_metric(novelty)


def build_tail_share(params: TailParams, ctx: MetricContext) -> Callable[..., torch.Tensor]:
    """Share of the list that is long-tail: outside the ``head_share`` most popular items (ties
    in popularity broken by item order)."""
    if not ctx.ready:
        return _items_metric(_unready("tail_share"))
    popularity = ctx.item_popularity
    n = len(popularity)  # type: ignore[arg-type]
    head = torch.argsort(-popularity.double(), stable=True)[:math.ceil(params.head_share * n)]  # type: ignore[union-attr]
    in_tail = torch.ones(n, dtype=torch.bool)
    in_tail[head] = False

    def tail_share(top: torch.Tensor, hits: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
        return in_tail[top].float().mean(1)

    return _items_metric(tail_share)


def item_vectors(ctx: MetricContext, params: IldParams) -> torch.Tensor:
    """One row per item, unit length (zero for an item with nothing in ``params.field``)."""
    items = ctx.items
    if items is None or params.field not in items.columns:
        have = ", ".join(map(str, items.columns)) if items is not None else "no item table"
        raise KgflowError(f"eval.metric_params.ild.field: the item table has no column "
                          f"{params.field!r} ({have})")
    values = items[params.field].fillna("").astype(str)
    if params.kind == "tokens":
        rows = [[t for t in re.split(r"[\s,|]+", v.strip()) if t] for v in values]
        vocab = {t: j for j, t in enumerate(sorted({t for r in rows for t in r}))}
        vectors = torch.zeros(len(rows), max(len(vocab), 1))
        for i, row in enumerate(rows):
            vectors[i, [vocab[t] for t in row]] = 1.0
    else:
        try:
            rows_f = [[float(x) for x in v.split()] for v in values]
        except ValueError as exc:
            raise KgflowError(f"eval.metric_params.ild: column {params.field!r} is not a vector of "
                              f"numbers ({exc})") from None
        width = max((len(r) for r in rows_f), default=1)
        vectors = torch.zeros(len(rows_f), width)
        for i, row in enumerate(rows_f):
            if row and len(row) != width:
                raise KgflowError(f"eval.metric_params.ild: column {params.field!r} holds vectors of "
                                  f"different lengths ({len(row)} and {width})")
            vectors[i, :len(row)] = torch.tensor(row)
    return torch.nn.functional.normalize(vectors, dim=1)


def build_ild(params: IldParams, ctx: MetricContext) -> Callable[..., torch.Tensor]:
    """Intra-list diversity: mean cosine distance ``1 - cos`` over the pairs of recommended items
    (pairs with an item that has no vector are left out; a list without a pair scores 0)."""
    if not ctx.ready:
        return _items_metric(_unready("ild"))
    vectors = item_vectors(ctx, params)
    has = vectors.norm(dim=1) > 0

    def ild(top: torch.Tensor, hits: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
        v = vectors[top]  # [B, k, d]
        valid = has[top].float()
        pairs = valid.unsqueeze(2) * valid.unsqueeze(1)
        pairs = pairs * (1 - torch.eye(top.shape[1]))
        distance = (1 - v @ v.transpose(1, 2)) * pairs
        return distance.sum((1, 2)) / pairs.sum((1, 2)).clamp(min=1)

    return _items_metric(ild)


#: name -> (factory, parameter model, one-line description for `kgflow plugins`)
METRICS: dict[str, tuple[Callable[..., Callable[..., torch.Tensor]], type[Params], str]] = {
    "coverage": (_factory(coverage), NoParams,
                 "item coverage@k: share of the catalogue in at least one top-k list"),
    "gini": (_factory(gini), NoParams,
             "Gini index@k of how often each item is recommended (0: evenly spread)"),
    "avg_popularity": (build_avg_popularity, NoParams,
                       "average training popularity (interactions) of the recommended items"),
    "novelty": (build_novelty, NoParams,
                "mean self-information -log2(popularity / users) of the recommended items"),
    "tail_share": (build_tail_share, TailParams,
                   "share of the recommended items outside the most popular head_share of the catalogue"),
    "ild": (build_ild, IldParams, "intra-list diversity: mean cosine distance between recommended "
            "items' vectors (item table column `field`)"),
}


def components() -> list[Component]:
    return [Component("metric", name, factory, params, doc) for name, (factory, params, doc) in METRICS.items()]
