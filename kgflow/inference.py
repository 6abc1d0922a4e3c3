"""Using a finished run: load it from its directory alone, recommend, export.

    from kgflow.inference import TrainedRun

    run = TrainedRun.load("runs/movielens-kgat")
    run.recommend(["196", "22"], k=10)          # a DataFrame: user, rank, item, score
    run.recommend_new(liked=["50", "172"], k=10)  # someone the model never saw (rank, item, score)
    run.recommend_new(text="likes noir and westerns")  # models with a text encoder
    users, items = run.embeddings()             # DataFrames indexed by the original ids

The run directory holds everything needed: ``resolved.yaml`` (the pipeline after ``extends`` and
``--set``), the best checkpoint, and the data fingerprint the rebuilt split must match.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from kgflow.errors import KgflowError, NotSupportedError, RunDirError
from kgflow.evaluation.ranking import CSR, mask_known
from kgflow.evaluation.topk import chunked_topk, known_items, topk_frame
from kgflow.runs.checkpoint import load_weights, model_state, warm_start  # noqa: F401 (public here too)

Exclude = Literal["seen", "train", "none"]


@dataclass
class TrainedRun:
    """A finished run's model, rebuilt on its own split, with the best checkpoint loaded."""

    path: Path
    loaded: object
    prepared: object
    graph: object
    model: torch.nn.Module
    metrics: dict
    #: The model's embeddings and the known-item indices, computed once and reused by every call.
    cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> "TrainedRun":
        from kgflow.config import load_pipeline
        from kgflow.registry import get_registry
        from kgflow.runs.assembly import Prepared, build_graph, build_recommender, prepare
        from kgflow.runs.snapshot import has_snapshot, load_snapshot

        path = Path(path)
        metrics = check_finished(path)
        checkpoint = path / "checkpoints" / "best.ckpt"
        # serving needs none of the pipelines the run depended on (a teacher): not even their files
        loaded = load_pipeline(path / "resolved.yaml", ["needs={}"])
        registry = get_registry()
        if has_snapshot(path):  # the run's own copy of its data: no raw files, no re-splitting
            prepared = Prepared(*load_snapshot(path))
            changed = "the run's saved data (data/) was altered; rerun the pipeline"
        else:  # runs written before kgflow saved their data
            prepared = prepare(loaded, registry)
            changed = "the dataset files have changed"
        fingerprint = prepared.split.fingerprint()
        if fingerprint != metrics.get("data_fingerprint"):
            raise RunDirError(f"{path}: the data now gives split {fingerprint}, the run was trained on "
                              f"{metrics.get('data_fingerprint')}; {changed}")
        graph = build_graph(loaded, prepared, registry)
        model = build_recommender(loaded, prepared, graph, registry, training=False)
        if checkpoint.is_file():  # check_finished refused a trained run without one
            load_weights(model, model_state(checkpoint), checkpoint)
        model.eval()
        return cls(path, loaded, prepared, graph, model, metrics)

    # -- ids ---------------------------------------------------------------------------------
    @property
    def split(self):
        return self.prepared.split  # type: ignore[attr-defined]

    def user_index(self, users: list[str]) -> np.ndarray:
        """Dense indices of original user ids; an unknown id is an error naming close ones."""
        return _positions(self.split.user_ids, users, "user")

    def item_index(self, items: list[str]) -> np.ndarray:
        """Dense indices of original item ids; an unknown id is an error naming close ones."""
        return _positions(self.split.item_ids, items, "item")

    def _known(self, exclude: Exclude) -> CSR | None:
        """Each user's items to skip, as a CSR index built once per ``exclude``."""
        if exclude == "none":
            return None
        key = ("known", exclude)
        if key not in self.cache:
            parts = {"seen": [self.split.train, self.split.valid, self.split.test],
                     "train": [self.split.train]}[exclude]
            self.cache[key] = known_items(parts, self.split.n_users, self.split.n_items)
        return self.cache[key]

    @torch.no_grad()
    def _embeddings(self):
        if "emb" not in self.cache:
            self.cache["emb"] = self.model()
        return self.cache["emb"]

    # -- scores ------------------------------------------------------------------------------
    @torch.no_grad()
    def scores(self, users: np.ndarray, exclude: Exclude = "seen") -> torch.Tensor:
        """Scores of every item for dense user indices, known items at ``-inf``."""
        index = torch.as_tensor(users, dtype=torch.long)
        scores = self.model.full_scores(self._embeddings(), index).float()
        return mask_known(scores, index, self._known(exclude))

    def recommend(self, users: list[str], k: int = 10, exclude: Exclude = "seen") -> pd.DataFrame:
        """Top-``k`` items for each user (original ids), skipping items the user already has."""
        index = self.user_index(users)
        return self._topk(index, k, exclude)

    @torch.no_grad()
    def new_user_scores(self, liked: list[str] = (), text: str | None = None) -> torch.Tensor:
        """Scores of every item for someone the model was not trained on, described by a few
        liked items (original ids) and/or a profile text; the liked items are at ``-inf``."""
        liked = list(liked)
        if not liked and not (text and text.strip()):
            raise KgflowError("a new user needs at least one liked item (--liked) or a profile "
                              "text (--profile)")
        index = torch.as_tensor(self.item_index(liked), dtype=torch.long)
        emb = self._embeddings()
        try:
            vector = self.model.new_user(emb, index, text if text and text.strip() else None)
        except NotSupportedError as exc:
            raise KgflowError(f"{self.path}: {exc}") from None
        from kgflow.models import Embeddings

        scores = self.model.full_scores(Embeddings(vector.reshape(1, -1), emb.item),
                                        torch.zeros(1, dtype=torch.long))[0].float()
        scores[index] = -torch.inf
        return scores

    def recommend_new(self, liked: list[str] = (), text: str | None = None, k: int = 10) -> pd.DataFrame:
        """Top-``k`` for a new user (see :meth:`new_user_scores`): columns rank, item, score."""
        scores = self.new_user_scores(liked, text)
        top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum())))
        return pd.DataFrame({"rank": np.arange(1, len(top.indices) + 1),
                             "item": self.split.item_ids[top.indices.numpy()],
                             "score": top.values.numpy()})

    @torch.no_grad()
    def _topk(self, index: np.ndarray, k: int, exclude: Exclude, chunk: int | None = None) -> pd.DataFrame:
        emb = self._embeddings()
        chunk = chunk or self.loaded.config.eval.batch_users  # type: ignore[attr-defined]
        top, values = chunked_topk(lambda users: self.model.full_scores(emb, users),
                                   torch.as_tensor(index, dtype=torch.long), k, self._known(exclude),
                                   chunk)
        return topk_frame(self.split.user_ids, self.split.item_ids, index, top, values)

    @torch.no_grad()
    def top_items(self, k: int, exclude: Exclude = "train", chunk: int | None = None) -> torch.Tensor:
        """Dense indices of every user's ``k`` best items (``[n_users, k]``), ``chunk`` users at a
        time: what a distillation teacher hands its student."""
        emb = self._embeddings()
        top, _ = chunked_topk(lambda users: self.model.full_scores(emb, users),
                              torch.arange(self.split.n_users), k, self._known(exclude),
                              chunk or self.loaded.config.eval.batch_users)  # type: ignore[attr-defined]
        return top

    def topk_all(self, k: int = 50, exclude: Exclude = "train", chunk: int | None = None) -> pd.DataFrame:
        """Top-``k`` for every user (by default skipping only training items, as the evaluation
        does, so the lists can be scored on the validation and test parts), ``chunk`` users at a
        time (default: the pipeline's ``eval.batch_users``)."""
        return self._topk(np.arange(self.split.n_users), k, exclude, chunk)

    @torch.no_grad()
    def embeddings(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Final user and item representations, indexed by the original ids."""
        emb = self.model()
        users = pd.DataFrame(emb.user.float().numpy(), index=pd.Index(self.split.user_ids, name="user"))
        items = pd.DataFrame(emb.item.float().numpy(), index=pd.Index(self.split.item_ids, name="item"))
        users.columns = items.columns = [f"e{i}" for i in range(users.shape[1])]
        return users, items


def check_finished(path: Path) -> dict:
    """The metrics of a finished run directory, after the cheap checks (a run directory, of a
    format this kgflow reads, finished); a :class:`RunDirError` says what is wrong otherwise."""
    from kgflow.runs.rundir import RUN_FORMAT

    status_file, metrics_file = path / "run.json", path / "metrics.json"
    if not status_file.is_file():
        raise RunDirError(f"{path}: not a kgflow run directory (no run.json)")
    status = json.loads(status_file.read_text())
    if status.get("format") != RUN_FORMAT:
        raise RunDirError(f"{path}: run format {status.get('format')} was written by kgflow "
                          f"{status.get('kgflow', '?')}; this kgflow reads format {RUN_FORMAT}")
    if status.get("state") != "finished" or not metrics_file.is_file():
        raise RunDirError(f"{path}: the run is {status.get('state', 'incomplete')}, not finished; "
                          f"finish it with: kgflow run {status.get('pipeline', 'PIPELINE')} "
                          f"--out {path} --resume")
    metrics = json.loads(metrics_file.read_text())
    if metrics.get("parameters", {}).get("trainable") and not (path / "checkpoints" / "best.ckpt").is_file():
        raise RunDirError(f"{path}: checkpoints/best.ckpt is missing")
    return metrics


def item_titles(run: TrainedRun) -> dict[str, str]:
    """Item titles by original id, from the dataset's item table when it has a title (or name)
    column; empty otherwise."""
    table = run.prepared.data.items  # type: ignore[attr-defined]
    if table is None:
        return {}
    for column in table.columns:
        if "title" in str(column).lower() or "name" in str(column).lower():
            return table[column].astype(str).to_dict()
    return {}


def _positions(known: np.ndarray, wanted: list[str], what: str) -> np.ndarray:
    ids = pd.Index(known.astype(str))
    position = ids.get_indexer([str(w) for w in wanted])
    unknown = [w for w, p in zip(wanted, position) if p < 0]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(ids[:5000]), n=3)
        raise KgflowError(f"unknown {what} id {unknown[0]!r} (this run knows {len(ids):,} {what}s"
                          + (f"; close: {', '.join(close)}" if close else "") + ")")
    return position


def read_scores(path: str | Path) -> pd.DataFrame:
    """A ``user, item, score`` table from Parquet or CSV/TSV; ids are read as strings."""
    path = Path(path)
    if not path.is_file():
        raise KgflowError(f"{path}: score file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix.lower() in (".tsv", ".tab") else ",",
                                dtype={"user": str, "item": str})
    except Exception as exc:  # pandas raises many types for unreadable files
        raise KgflowError(f"{path}: cannot read the score file: {exc}") from None
    missing = [c for c in ("user", "item", "score") if c not in frame.columns]
    if missing:
        raise KgflowError(f"{path}: missing column(s) {missing}; a score file has columns user, "
                          f"item, score (it has {', '.join(map(str, frame.columns))})")
    frame = frame[["user", "item", "score"]].astype({"user": str, "item": str})
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    return frame


def evaluate_scores(frame: pd.DataFrame, run: "TrainedRun | None" = None, *, split=None,
                    stage: str = "test", ks: list[int] | None = None,
                    metrics: list[str] | None = None, chunk: int | None = None) -> tuple[dict, list[str]]:
    """Score external ``user, item, score`` rows on a split with kgflow's own full-ranking
    evaluation: items without a score rank below every scored one, known items are masked as in
    training runs. Returns the metrics per group and the problems found in the file (NaN scores,
    duplicate rows, unknown ids, users without scores), which are counted, not fatal."""
    from kgflow.evaluation.context import context_of
    from kgflow.evaluation.ranking import EvalTask, RankingEvaluator, metric_functions

    split = split if split is not None else run.split  # type: ignore[union-attr]
    cfg = run.loaded.config if run is not None else None  # type: ignore[union-attr]
    ks = ks or (cfg.eval.ks if cfg else [10, 20])
    chunk = chunk or (cfg.eval.batch_users if cfg else 1024)
    names = metrics or (cfg.eval.metrics if cfg else ["recall", "ndcg", "hit", "mrr", "precision", "map"])
    notes = []
    nan = frame["score"].isna()
    if nan.any():
        notes.append(f"{int(nan.sum()):,} rows with a missing or non-numeric score were left out")
    frame = frame[~nan]
    dup = frame.duplicated(["user", "item"], keep="last")
    if dup.any():
        notes.append(f"{int(dup.sum()):,} duplicate (user, item) rows: the last one counts")
    frame = frame[~dup]
    users = pd.Index(split.user_ids.astype(str)).get_indexer(frame["user"])
    items = pd.Index(split.item_ids.astype(str)).get_indexer(frame["item"])
    unknown = (users < 0) | (items < 0)
    if unknown.any():
        notes.append(f"{int(unknown.sum()):,} rows name users or items this split does not have "
                     "and were left out")
    users, items, values = users[~unknown], items[~unknown], frame["score"].to_numpy()[~unknown]
    task = EvalTask.for_stage(split, stage)
    missing = np.setdiff1d(task.users.numpy(), users)
    if len(missing):
        notes.append(f"{len(missing):,} of {len(task.users):,} evaluated users have no scores "
                     "(they count, with every item tied last)")
    data = run.prepared.data if run is not None else None  # type: ignore[attr-defined]
    evaluator = RankingEvaluator(task, ks, metric_functions(
        names, context=context_of(split, data), params=cfg.eval.metric_params if cfg else None))
    # The scored rows grouped by user (a CSR index); each chunk of users gets a dense block of its
    # own, so memory is chunk x items however many users the file scores.
    order = np.argsort(users, kind="stable")
    users, items, values = users[order], items[order], values[order]
    indptr = torch.from_numpy(np.searchsorted(users, np.arange(split.n_users + 1)))
    scored = CSR(indptr, torch.as_tensor(items, dtype=torch.long))
    value_of = torch.as_tensor(values, dtype=torch.float64)
    for start in range(0, len(task.users), chunk):
        part = task.users[start:start + chunk]
        row, at = scored.positions(part)
        block = torch.full((len(part), split.n_items), -1e30, dtype=torch.float64)
        block[row, scored.indices[at]] = value_of[at]
        evaluator.add(part, block.float())
    return evaluator.result(), notes
