"""Full-ranking evaluation: every item is scored for every user, known items are masked, and the
metrics are computed from the top-k hits, chunked over users so memory stays bounded."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import torch

from kgflow.data.recdata import Interactions, Split, csr_of
from kgflow.training.sampling import in_sorted

if TYPE_CHECKING:
    from kgflow.registry.contexts import MetricContext
    from kgflow.registry.registry import Registry

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Sums a tensor over every process (DDP), or returns it as it is.
Reducer = Callable[[torch.Tensor], torch.Tensor]
#: Concatenates every process's rows of a tensor (DDP).
Gatherer = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CSR:
    """Per-user item lists: ``indices[indptr[u]:indptr[u+1]]``."""

    indptr: torch.Tensor
    indices: torch.Tensor

    @classmethod
    def of(cls, parts: list[Interactions], n_users: int, n_items: int) -> "CSR":
        if not parts:
            return cls(torch.zeros(n_users + 1, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        merged = parts[0] if len(parts) == 1 else Interactions(
            np.concatenate([p.user for p in parts]), np.concatenate([p.item for p in parts]),
            np.concatenate([p.rating for p in parts]), np.concatenate([p.timestamp for p in parts]),
            parts[0].user_ids, parts[0].item_ids)
        return cls(*csr_of(merged, n_users, n_items))

    def lengths(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]

    def positions(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row position in ``users``, position in ``indices``) of every entry of the given users,
        so that values stored alongside ``indices`` can be read too."""
        starts = self.indptr[users]
        lens = self.indptr[users + 1] - starts
        row = torch.repeat_interleave(torch.arange(len(users)), lens)
        first = torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens)
        offset = torch.arange(int(lens.sum())) - first
        return row, torch.repeat_interleave(starts, lens) + offset

    def rows(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row position in ``users``, item) pairs for the given users."""
        row, at = self.positions(users)
        return row, self.indices[at]


def mask_known(scores: torch.Tensor, users: torch.Tensor, known: CSR | None) -> torch.Tensor:
    """``scores`` (rows = ``users``) with each user's known items at ``-inf``, in place."""
    if known is not None:
        row, col = known.rows(users.cpu())
        scores[row.to(scores.device), col.to(scores.device)] = -torch.inf
    return scores



def metric_functions(names: Iterable[str], registry: "Registry | None" = None,
                     context: "MetricContext | None" = None,
                     params: dict[str, dict[str, Any]] | None = None) -> dict[str, MetricFn]:
    """The registered metrics called ``names``, built with ``params`` (``eval.metric_params``: a
    name's own settings, the defaults otherwise) and ``context`` (the training data that
    beyond-accuracy metrics read): what a run, the external-score evaluation and the benchmark
    scripts all rank with."""
    from kgflow.registry.contexts import MetricContext
    from kgflow.registry import get_registry

    registry = registry or get_registry()
    context = context or MetricContext()
    params = params or {}
    out: dict[str, MetricFn] = {}
    for name in names:
        component = registry.get("metric", name)
        out[name] = component.factory(component.params(**params.get(name, {})), context)
    return out


def metric_kind(fn: MetricFn) -> str:
    """``whole`` (one value per user over the whole ranking: auc), ``catalog`` (one value per
    evaluation from how often each item is recommended: coverage), ``items`` (per user, from the
    recommended item ids: novelty) or ``hits`` (per user, from the top-k hits: ndcg)."""
    for kind, attribute in (("whole", "whole_ranking"), ("catalog", "catalog"), ("items", "needs_items")):
        if getattr(fn, attribute, False):
            return kind
    return "hits"

@dataclass
class EvalTask:
    """Which interactions are the truth and which are masked, for one evaluation stage.

    Each group other than ``all`` is an item subset, and is ranked on its own: for ``cold_items``
    only the held-out items are candidates (the usual strict cold-start protocol: which of the new
    items does the user take?), for ``warm_items`` only the others. ``all`` ranks every item."""

    truth: CSR
    mask: CSR
    groups: dict[str, torch.Tensor | None]  # group name -> bool item mask (None = all items)
    users: torch.Tensor  # users with at least one truth item
    n_items: int = 0  # the catalogue's size (0: taken from the first scores seen)

    @classmethod
    def for_stage(cls, split: Split, stage: str) -> "EvalTask":
        n_u, n_i = split.n_users, split.n_items
        if stage == "valid":
            truth, masked = [split.valid], [split.train]
        elif stage == "test":
            truth, masked = [split.test], [split.train, split.valid]
        else:
            raise ValueError(f"unknown evaluation stage {stage!r}")
        truth_csr = CSR.of(truth, n_u, n_i)
        groups: dict[str, torch.Tensor | None] = {"all": None}
        if len(split.cold_items):
            cold = torch.zeros(n_i, dtype=torch.bool)
            cold[torch.from_numpy(split.cold_items)] = True
            groups["cold_items"] = cold
            groups["warm_items"] = ~cold
        users = torch.nonzero(truth_csr.lengths() > 0).flatten()
        return cls(truth_csr, CSR.of(masked, n_u, n_i), groups, users, n_i)


@dataclass
class RankingEvaluator:
    """Accumulates per-user metric values over chunks of users."""

    task: EvalTask
    ks: list[int]
    metrics: dict[str, MetricFn]
    _values: dict[str, dict[str, list[torch.Tensor]]] = field(default_factory=dict)
    _users: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    #: group -> catalog metric key -> how often each item was recommended (float64 counts)
    _counts: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def reset(self) -> None:
        self._values, self._users, self._counts = {}, {}, {}

    def add(self, users: torch.Tensor, scores: torch.Tensor) -> None:
        """Rank ``scores`` ([B, n_items]) for ``users`` and record every metric at every k.

        ``scores`` is a fresh block (what ``Recommender.full_scores`` returns): known items are
        masked in it in place. Hits are looked up for the top-k items only (binary search in the
        chunk's sorted truth keys), so no second B x items block is made unless a whole-ranking
        metric (AUC) asks for one."""
        users = users.cpu()
        scores = scores.detach().float()
        n_items = scores.shape[1]
        mask_known(scores, users, self.task.mask)
        max_k = min(max(self.ks), n_items)
        t_row, t_col = self.task.truth.rows(users)
        kinds = {name: metric_kind(fn) for name, fn in self.metrics.items()}
        whole = {name for name, kind in kinds.items() if kind == "whole"}
        if not self.task.n_items:
            self.task.n_items = n_items
        truth = None
        if whole:
            truth = torch.zeros(scores.shape, dtype=torch.bool)
            truth[t_row, t_col] = True
        rows = torch.arange(len(users)).unsqueeze(1)
        for group, item_mask in self.task.groups.items():
            in_group = torch.ones_like(t_col, dtype=torch.bool) if item_mask is None else item_mask[t_col]
            n_pos = torch.bincount(t_row[in_group], minlength=len(users))
            keep = n_pos > 0
            if not keep.any():
                continue
            if item_mask is None:
                g_scores = scores
            else:  # rank the group's own items only
                g_scores = scores.masked_fill(~item_mask.to(scores.device), -torch.inf)
            top = torch.topk(g_scores, max_k, dim=1).indices.cpu()
            truth_keys = torch.sort(t_row[in_group] * n_items + t_col[in_group]).values
            hits = in_sorted(truth_keys, rows * n_items + top)[keep].float()
            n_pos = n_pos[keep].float()
            bucket = self._values.setdefault(group, {})
            kept_top = top[keep]
            for name, fn in self.metrics.items():
                if kinds[name] == "whole":  # e.g. AUC: all scores, not a top k
                    g_truth = truth if item_mask is None else truth & item_mask  # type: ignore[operator]
                    bucket.setdefault(name, []).append(fn(g_scores[keep.to(g_scores.device)].cpu(),
                                                          g_truth[keep]))
                    continue
                for k in self.ks:
                    if kinds[name] == "catalog":
                        self._count(group, f"{name}@{k}", kept_top[:, :k])
                    elif kinds[name] == "items":
                        bucket.setdefault(f"{name}@{k}", []).append(fn(kept_top[:, :k], hits[:, :k], n_pos))
                    else:
                        bucket.setdefault(f"{name}@{k}", []).append(fn(hits[:, :k], n_pos))
            self._users.setdefault(group, []).append(users[keep])

    def _count(self, group: str, key: str, top: torch.Tensor) -> None:
        counts = self._counts.setdefault(group, {}).setdefault(
            key, torch.zeros(self.task.n_items, dtype=torch.float64))
        counts += torch.bincount(top.flatten(), minlength=self.task.n_items).double()

    def keys(self, per_user: bool = False) -> list[str]:
        """Every metric key this evaluator reports, in a fixed order (``ndcg@10``, ..., ``auc``);
        with ``per_user``, only those that have a value per user (catalog metrics such as
        coverage describe all the lists together)."""
        out = []
        for name, fn in self.metrics.items():
            kind = metric_kind(fn)
            if kind == "catalog" and per_user:
                continue
            out += [name] if kind == "whole" else [f"{name}@{k}" for k in self.ks]
        return out

    def _catalog_keys(self) -> list[tuple[str, MetricFn]]:
        return [(f"{name}@{k}", fn) for name, fn in self.metrics.items() if metric_kind(fn) == "catalog"
                for k in self.ks]

    def per_user(self, group: str = "all", gather: Gatherer | None = None) -> dict[str, torch.Tensor]:
        """Every metric's value per evaluated user of ``group`` (``"user"``: dense user ids).
        ``gather`` collects every process's rows under DDP (it is a collective call: every rank
        must make it)."""
        local = {"user": torch.cat(self._users[group]) if group in self._users
                 else torch.zeros(0, dtype=torch.long)}
        bucket = self._values.get(group, {})
        local.update({key: torch.cat(bucket[key]) if key in bucket else torch.zeros(0)
                      for key in self.keys(per_user=True)})
        if gather is not None:
            local = {key: gather(value) for key, value in local.items()}
        return local if len(local["user"]) else {}

    def result(self, reduce: Reducer | None = None) -> dict[str, dict[str, float]]:
        """Mean of each metric over the users that have truth items in each group.

        Sums are kept in float64 and, under DDP, summed over every process by ``reduce`` (a
        collective call) before dividing, so several processes report the numbers one would."""
        keys, groups = self.keys(per_user=True), list(self.task.groups)
        sums = torch.zeros(len(groups), len(keys) + 1, dtype=torch.float64)
        for g, group in enumerate(groups):
            bucket = self._values.get(group, {})
            for j, key in enumerate(keys):
                if key in bucket:
                    sums[g, j] = torch.cat(bucket[key]).double().sum()
            sums[g, -1] = sum(len(u) for u in self._users.get(group, []))
        catalog = self._catalog_keys()
        counts = torch.zeros(len(groups), len(catalog), self.task.n_items if catalog else 0,
                             dtype=torch.float64)
        for g, group in enumerate(groups):
            for j, (key, _) in enumerate(catalog):
                if key in self._counts.get(group, {}):
                    counts[g, j] = self._counts[group][key]
        if reduce is not None:
            sums = reduce(sums)
            if catalog:  # every process's lists together, before any value is computed
                counts = reduce(counts)
        out: dict[str, dict[str, float]] = {}
        for g, group in enumerate(groups):
            users = int(sums[g, -1])
            if users:
                out[group] = {key: float(sums[g, j] / users) for j, key in enumerate(keys)}
                item_mask = self.task.groups[group]
                for j, (key, fn) in enumerate(catalog):  # over the group's own candidate items
                    out[group][key] = float(fn(counts[g, j] if item_mask is None else counts[g, j][item_mask]))
                out[group] = {key: out[group][key] for key in self.keys()}  # the fixed order
                out[group]["users"] = users
        return out
