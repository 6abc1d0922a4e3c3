"""What the HTTP server answers, without the HTTP: a finished run loaded once, queried many times.

Every request is checked here, and a bad one raises :class:`RequestError` naming the request field
at fault, so that the server answers 4xx and stays up. Everything a request needs that does not
depend on the request (the model's final embeddings, each user's known items, item vectors for
similarity, id look-up tables) is computed once when the service starts: a request then costs one
row of scores and a top-k.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from kgflow.errors import KgflowError
from kgflow.inference import TrainedRun, item_titles
from kgflow.models import Embeddings

#: the most users one batch request may name, and how many are scored at once
MAX_BATCH_USERS = 1000
SCORE_CHUNK = 256


class RequestError(KgflowError):
    """A request the service cannot answer: ``field`` is the request field at fault (``user``,
    ``liked[2]``, ``k``), ``status`` the HTTP status the server answers with."""

    def __init__(self, field: str, message: str, status: int = 422, got: object = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status, self.got = field, message, status, got


@dataclass(frozen=True)
class Filters:
    """Which items a request may receive: at most ``k``, only ``items`` when given, never
    ``exclude_items``."""

    k: int = 10
    items: Sequence[str] | None = None
    exclude_items: Sequence[str] = ()


class RecommendService:
    """Recommendations, similar items and explanations from one finished run."""

    def __init__(self, run: TrainedRun, max_k: int = 1000) -> None:
        self.run = run
        self.max_k = max_k
        split = run.split
        self.user_ids = split.user_ids.astype(str)
        self.item_ids = split.item_ids.astype(str)
        self._users = pd.Index(self.user_ids)
        self._items = pd.Index(self.item_ids)
        # computed now, not on the first request: TrainedRun caches both for every later call
        self.emb: Embeddings = run._embeddings()
        for exclude in ("seen", "train"):
            run._known(exclude)
        self.unit_items = torch.nn.functional.normalize(self.emb.item.detach().float(), dim=1)
        self.titles = item_titles(run)
        self.has_kg = bool(run.graph.knowledge_edges().any())
        self._explainer = None
        self._explainer_lock = threading.Lock()

    # -- facts ------------------------------------------------------------------------------
    def info(self) -> dict:
        """What the run is: enough for a client to know what it talks to."""
        from kgflow import __version__

        cfg = self.run.loaded.config  # type: ignore[attr-defined]
        metrics = self.run.metrics
        test = metrics.get("test", {}).get("all", {})
        return {
            "run": str(self.run.path), "name": cfg.name, "kgflow": __version__,
            "dataset": cfg.dataset.name, "graph": cfg.graph.name,
            "encoders": {slot: ref.name for slot, ref in cfg.encoders.items()},
            "fusion": cfg.fusion.name,
            "users": len(self.user_ids), "items": len(self.item_ids),
            "data_fingerprint": metrics.get("data_fingerprint"),
            "test_metrics": {k: v for k, v in test.items() if k != "users"},
            "max_k": self.max_k,
            "explanations": self.has_kg,
        }

    # -- ids ---------------------------------------------------------------------------------
    def user_index(self, user: str, field: str = "user") -> int:
        position = self._users.get_indexer([str(user)])[0]
        if position < 0:
            raise RequestError(field, f"unknown user id (this run knows {len(self.user_ids):,} "
                               "users; new users: POST /recommend/new with liked items)", 404, user)
        return int(position)

    def item_indices(self, items: Iterable[str], field: str) -> np.ndarray:
        items = [str(i) for i in items]
        positions = self._items.get_indexer(items) if items else np.zeros(0, dtype=np.int64)
        bad = np.flatnonzero(positions < 0)
        if len(bad):
            raise RequestError(f"{field}[{bad[0]}]", f"unknown item id (this run knows "
                               f"{len(self.item_ids):,} items)", 404, items[bad[0]])
        return positions

    def item_index(self, item: str, field: str = "item") -> int:
        position = self._items.get_indexer([str(item)])[0]
        if position < 0:
            raise RequestError(field, f"unknown item id (this run knows {len(self.item_ids):,} items)",
                               404, item)
        return int(position)

    def _check_k(self, k: int) -> None:
        if not 1 <= k <= self.max_k:
            raise RequestError("k", f"k must be between 1 and {self.max_k}", 422, k)

    # -- ranking -----------------------------------------------------------------------------
    def _restrict(self, scores: torch.Tensor, filters: Filters) -> None:
        """Apply a request's item filters to a block of scores, in place."""
        if filters.items is not None:
            allowed = torch.zeros(scores.shape[1], dtype=torch.bool)
            allowed[torch.from_numpy(self.item_indices(filters.items, "items"))] = True
            scores[:, ~allowed] = -torch.inf
        if filters.exclude_items:
            scores[:, torch.from_numpy(self.item_indices(filters.exclude_items, "exclude_items"))] = -torch.inf

    def _records(self, scores: torch.Tensor, k: int) -> list[list[dict]]:
        """The top ``k`` finite scores of each row, as item records."""
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        finite = torch.isfinite(top.values)
        out = []
        for row in range(scores.shape[0]):
            keep = finite[row]
            items, values = top.indices[row][keep].tolist(), top.values[row][keep].tolist()
            out.append([{"rank": r + 1, "item": self.item_ids[i], "score": v,
                         **({"title": self.titles[self.item_ids[i]]}
                            if self.item_ids[i] in self.titles else {})}
                        for r, (i, v) in enumerate(zip(items, values))])
        return out

    def _user_scores(self, users: np.ndarray, exclude: str, filters: Filters) -> torch.Tensor:
        scores = self.run.scores(users, exclude)  # type: ignore[arg-type]
        self._restrict(scores, filters)
        return scores

    def recommend(self, user: str, filters: Filters = Filters(), exclude: str = "seen") -> dict:
        """Top-k for a user the run was trained on; ``exclude`` skips the user's known items:
        ``seen`` (train, valid and test), ``train``, or ``none``."""
        self._check_k(filters.k)
        index = self.user_index(user)
        return {"user": str(user), "items": self._records(self._user_scores(np.array([index]), exclude,
                                                                            filters), filters.k)[0]}

    def recommend_batch(self, users: Sequence[str], filters: Filters = Filters(),
                        exclude: str = "seen") -> list[dict]:
        """:meth:`recommend` for many users at once, scored ``SCORE_CHUNK`` users at a time."""
        self._check_k(filters.k)
        if not 1 <= len(users) <= MAX_BATCH_USERS:
            raise RequestError("users", f"give between 1 and {MAX_BATCH_USERS} users", 422, len(users))
        index = np.array([self.user_index(u, f"users[{n}]") for n, u in enumerate(users)])
        results = []
        for start in range(0, len(index), SCORE_CHUNK):
            part = index[start:start + SCORE_CHUNK]
            results += self._records(self._user_scores(part, exclude, filters), filters.k)
        return [{"user": str(u), "items": items} for u, items in zip(users, results)]

    @torch.no_grad()
    def similar(self, item: str, filters: Filters = Filters()) -> dict:
        """Items nearest to ``item`` by the cosine of the run's final item representations."""
        self._check_k(filters.k)
        index = self.item_index(item)
        scores = (self.unit_items @ self.unit_items[index]).reshape(1, -1)
        scores[0, index] = -torch.inf
        self._restrict(scores, filters)
        return {"item": str(item), "items": self._records(scores, filters.k)[0]}

    def new_user_scores(self, liked: Sequence[str], profile: str | None) -> torch.Tensor:
        """One row of scores for someone the run never saw (liked items at ``-inf``)."""
        text = profile if profile and profile.strip() else None
        if not liked and text is None:
            raise RequestError("liked", "a new user needs at least one liked item or a profile text",
                               422, list(liked))
        self.item_indices(liked, "liked")  # unknown ids are the client's mistake, named by field
        try:
            return self.run.new_user_scores(list(liked), text).reshape(1, -1)
        except KgflowError as exc:  # the model cannot read text
            raise RequestError("profile", str(exc), 422, profile) from None

    def recommend_new(self, liked: Sequence[str] = (), profile: str | None = None,
                      filters: Filters = Filters()) -> dict:
        """Top-k for a new user from liked items and/or a profile text (fold-in or text encoder)."""
        self._check_k(filters.k)
        scores = self.new_user_scores(liked, profile)
        self._restrict(scores, filters)
        return {"user": None, "items": self._records(scores, filters.k)[0]}

    # -- explanations ------------------------------------------------------------------------
    def explainer(self):
        """The run's KG-path explainer, built on the first explanation request."""
        if not self.has_kg:
            raise RequestError("run", "this run's graph has no KG facts, so there are no KG paths to "
                               "explain with (train with a KG graph builder, e.g. collaborative_kg)", 409)
        with self._explainer_lock:
            if self._explainer is None:
                from kgflow.explain import Explainer

                self._explainer = Explainer(self.run)
            return self._explainer

    def explain(self, user: str | None = None, liked: Sequence[str] = (), profile: str | None = None,
                filters: Filters = Filters(), exclude: str = "seen", paths: int = 3) -> dict:
        """Recommendations with, for each, the strongest KG paths from the user's history (a known
        user) or from the liked items (a new user) to the item."""
        if not 1 <= paths <= 20:
            raise RequestError("paths", "paths must be between 1 and 20", 422, paths)
        if (user is None) == (not liked and not profile):
            raise RequestError("user", "give either user (a user the run knows) or liked/profile "
                               "(a new user), not both" if user is not None else
                               "give user, or liked/profile for a new user", 422)
        explainer = self.explainer()
        if user is not None:
            result = self.recommend(user, filters, exclude)
            dense = self.user_index(user)
            find = lambda item: explainer.paths(dense, item, paths)  # noqa: E731
        else:
            result = self.recommend_new(liked, profile, filters)
            history = self.item_indices(liked, "liked")
            find = lambda item: explainer.paths_from(history, item, paths)  # noqa: E731
        for record in result["items"]:
            found = find(int(self._items.get_loc(record["item"])))
            record["paths"] = [p.__dict__ | {"sentence": p.sentence(self.titles)} for p in found]
        return result
