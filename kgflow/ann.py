"""Approximate nearest-neighbour export: a finished run's item vectors in a FAISS HNSW index.

    kgflow export RUN_DIR --what index          # RUN_DIR/exports/index/

A recommender that scores by dot product serves a user by a maximum-inner-product search over the
item vectors; an HNSW graph answers that search in well under a millisecond for catalogues far too
large to score exhaustively per request. The export holds the index (``items.faiss``), the item ids
in index order (``items.parquet``), the user vectors (``users.parquet``, to look a known user up)
and ``index.json``: the index's settings, its build time and its **measured** recall@k against the
exact ranking of the run's own model, on a seeded sample of users. The index knows nothing of
users' histories: a client filters already-seen items itself (ask for more than k).

Needs ``faiss-cpu`` (``pip install "kgflow[ann]"``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kgflow.errors import KgflowError


def _faiss():
    try:
        import faiss
    except ImportError:
        raise KgflowError('the ANN index needs FAISS: pip install "kgflow[ann]" (faiss-cpu)') from None
    return faiss


def build_index(items: np.ndarray, m: int = 32, ef_construction: int = 200, ef_search: int = 128):
    """An HNSW index over ``items`` (float32 rows) for inner-product search."""
    faiss = _faiss()
    index = faiss.IndexHNSWFlat(items.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.hnsw.efSearch = ef_search
    index.add(np.ascontiguousarray(items, dtype=np.float32))
    return index


def dot_product_vectors(run, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The run's user and item vectors, after checking on ``sample`` users that the model's own
    scores are their dot products (an index of vectors means nothing for any other model)."""
    with torch.no_grad():
        emb = run.model()
        users, items = emb.user.detach().float(), emb.item.detach().float()
        index = torch.as_tensor(sample, dtype=torch.long)
        model_scores = run.model.full_scores(emb, index).float()
    if not getattr(run.model, "has_vectors", True) or users.shape[1] != items.shape[1] or not torch.allclose(
            model_scores, users[index] @ items.T, rtol=1e-4, atol=1e-4 * float(model_scores.abs().max() + 1)):
        raise KgflowError(f"{run.path}: this model does not score by the dot product of its user and item "
                          "vectors, so an inner-product index cannot serve it; use kgflow serve or "
                          "--what topk instead")
    return users.numpy(), items.numpy()


def measure_recall(index, users: np.ndarray, items: np.ndarray, ks: list[int]) -> dict:
    """recall@k of the index against the exact inner-product ranking, averaged over ``users``
    (rows), with query time per user."""
    exact = torch.topk(torch.from_numpy(users) @ torch.from_numpy(items).T, max(ks), dim=1).indices.numpy()
    t = time.perf_counter()
    _, found = index.search(np.ascontiguousarray(users, dtype=np.float32), max(ks))
    per_query_ms = (time.perf_counter() - t) * 1000 / len(users)
    recall = {}
    for k in ks:
        hits = [len(set(a[:k]) & set(b[:k])) / k for a, b in zip(found, exact)]
        recall[f"recall@{k}"] = float(np.mean(hits))
    return recall | {"query_ms_per_user": per_query_ms, "users_measured": len(users)}


def export_index(run, folder: Path, ks: list[int], sample: int = 2000, seed: int = 0,
                 m: int = 32, ef_construction: int = 200, ef_search: int = 128) -> dict:
    """Write the index folder (see the module docstring); returns what ``index.json`` says."""
    faiss = _faiss()
    rng = np.random.default_rng(seed)
    n_users = run.split.n_users
    chosen = np.sort(rng.choice(n_users, min(sample, n_users), replace=False))
    users, items = dot_product_vectors(run, chosen[:256])
    t = time.perf_counter()
    index = build_index(items, m, ef_construction, ef_search)
    build_s = time.perf_counter() - t
    ks = sorted({k for k in ks if 1 <= k <= len(items)})
    if not ks:
        raise KgflowError(f"--k must be between 1 and the number of items ({len(items)})")
    quality = measure_recall(index, users[chosen], items, ks)
    folder.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(folder / "items.faiss"))
    pd.DataFrame({"item": run.split.item_ids.astype(str)}).to_parquet(folder / "items.parquet", index=False)
    frame = pd.DataFrame(users, columns=[f"e{i}" for i in range(users.shape[1])])
    frame.insert(0, "user", run.split.user_ids.astype(str))
    frame.to_parquet(folder / "users.parquet", index=False)
    info = {"kind": "faiss.IndexHNSWFlat", "metric": "inner_product", "dim": int(items.shape[1]),
            "items": int(len(items)), "users": int(n_users), "hnsw_m": m,
            "ef_construction": ef_construction, "ef_search": ef_search, "build_seconds": build_s,
            "measured_against": "exact inner-product top-k of the run's model (no items excluded)",
            **quality, "sample_seed": seed, "run": str(run.path)}
    (folder / "index.json").write_text(json.dumps(info, indent=1))
    return info


class ItemIndex:
    """A written index folder, loaded for queries: ``ItemIndex(folder).search(vectors, k)``
    gives item ids and scores; ``user_vector(user)`` looks a known user's vector up."""

    def __init__(self, folder: str | Path, ef_search: int | None = None) -> None:
        """``ef_search``: candidates per query, overriding the exported setting (higher: better
        recall, slower queries)."""
        faiss = _faiss()
        folder = Path(folder)
        self.index = faiss.read_index(str(folder / "items.faiss"))
        if ef_search is not None:
            self.index.hnsw.efSearch = ef_search
        self.item_ids = pd.read_parquet(folder / "items.parquet")["item"].to_numpy()
        self._users = pd.read_parquet(folder / "users.parquet").set_index("user")
        self.info = json.loads((folder / "index.json").read_text())

    def user_vector(self, user: str) -> np.ndarray:
        if str(user) not in self._users.index:
            raise KgflowError(f"unknown user id {user!r}")
        return self._users.loc[str(user)].to_numpy(dtype=np.float32)

    def search(self, vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Item ids ``[n, k]`` and inner products for query vectors ``[n, dim]`` (or one)."""
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        scores, found = self.index.search(vectors, k)
        return self.item_ids[found], scores
