"""The data a run was trained on, saved inside its run directory (``data/``), so that serving,
export and evaluation rebuild the model from the run alone: no dataset plugin, no raw files, no
re-splitting. Parquet, NumPy (no object arrays) and JSON only: nothing that can run code.

    data/split.parquet     part (0 train, 1 valid, 2 test, 3.. auxiliary behaviours), user, item
                           (dense ids), rating, timestamp, weight (NaN: unweighted)
    data/ids.parquet       ``kind`` (user / item) and ``id``: the dense -> original id maps
    data/cold_items.npy    a cold-start split's held-out items (dense ids)
    data/users.parquet, items.parquet, kg.parquet, item_links.parquet   whatever the dataset had
    data/data.json         name, split method, RecBole name, row counts, the split's fingerprint
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kgflow.data.recdata import Interactions, RecData, Split
from kgflow.errors import RunDirError

FOLDER = "data"
_TABLES = ("users", "items", "kg", "item_links")
_INDEXED = ("users", "items")  # attribute tables indexed by raw id


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    try:
        frame.to_parquet(path, index=False)
    except Exception:  # mixed-type object columns: keep them as text
        frame.astype({c: str for c in frame.columns if frame[c].dtype == object}).to_parquet(path, index=False)


def save_snapshot(run_path: Path, data: RecData, split: Split) -> Path:
    """Write ``data/`` into the run directory (into a temporary folder first, then renamed)."""
    folder = run_path / FOLDER
    tmp = run_path / f".{FOLDER}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    behaviours = sorted(split.auxiliary)
    parts = [split.train, split.valid, split.test] + [split.auxiliary[b] for b in behaviours]
    frame = pd.DataFrame({
        "part": np.concatenate([np.full(len(p), i, dtype=np.int16) for i, p in enumerate(parts)]),
        "user": np.concatenate([p.user for p in parts]).astype(np.int64),
        "item": np.concatenate([p.item for p in parts]).astype(np.int64),
        "rating": np.concatenate([p.rating for p in parts]).astype(np.float64),
        "timestamp": np.concatenate([p.timestamp for p in parts]).astype(np.float64),
        "weight": np.concatenate([np.full(len(p), np.nan) if p.weight is None else p.weight
                                  for p in parts]).astype(np.float64)})
    frame.to_parquet(tmp / "split.parquet", index=False)
    pd.DataFrame({"kind": ["user"] * split.n_users + ["item"] * split.n_items,
                  "id": np.concatenate([split.user_ids, split.item_ids]).astype(str)}).to_parquet(
        tmp / "ids.parquet", index=False)
    np.save(tmp / "cold_items.npy", np.asarray(split.cold_items, dtype=np.int64), allow_pickle=False)
    for name in _TABLES:
        table = getattr(data, name)
        if table is None:
            continue
        if name in _INDEXED:
            table = table.reset_index(names="__id__")
        _write_table(table, tmp / f"{name}.parquet")
    meta = {"name": data.name, "method": split.method, "atomic_name": data.atomic_name,
            "source": {k: str(v) for k, v in data.source.items()},
            "fingerprint": split.fingerprint(), "stats": split.stats(),
            "auxiliary": behaviours, "weighted": split.train.weight is not None}
    (tmp / "data.json").write_text(json.dumps(meta, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def has_snapshot(run_path: Path) -> bool:
    return (run_path / FOLDER / "data.json").is_file()


def load_snapshot(run_path: Path) -> tuple[RecData, Split]:
    """The run's data and split as saved; a missing or damaged file is an error naming it."""
    folder = run_path / FOLDER
    current = folder / "data.json"
    try:
        meta: dict[str, Any] = json.loads(current.read_text())
        current = folder / "ids.parquet"
        ids = pd.read_parquet(current)
        user_ids = ids.loc[ids["kind"] == "user", "id"].to_numpy(dtype=object)
        item_ids = ids.loc[ids["kind"] == "item", "id"].to_numpy(dtype=object)
        current = folder / "split.parquet"
        frame = pd.read_parquet(current)
        current = folder / "cold_items.npy"
        cold = np.load(current, allow_pickle=False)
        tables: dict[str, pd.DataFrame | None] = {}
        for name in _TABLES:
            current = folder / f"{name}.parquet"
            table = pd.read_parquet(current) if current.is_file() else None
            if table is not None and name in _INDEXED:
                table = table.set_index("__id__")
                table.index.name = name.removesuffix("s")
            tables[name] = table
    except (OSError, ValueError, KeyError) as exc:
        raise RunDirError(f"{current}: the run's saved data cannot be read ({type(exc).__name__}: "
                          f"{exc}); rerun the pipeline to write it again") from None

    weighted = bool(meta.get("weighted")) and "weight" in frame.columns

    def part(i: int) -> Interactions:
        rows = frame[frame["part"] == i]
        weight = rows["weight"].to_numpy(np.float64, copy=True) if "weight" in rows else None
        if weight is not None and not (weighted if i < 3 else len(weight) and not np.isnan(weight).any()):
            weight = None  # unweighted target parts; auxiliary parts without auxiliary_weights
        return Interactions(*(rows[c].to_numpy(dtype, copy=True) for c, dtype in
                              (("user", np.int64), ("item", np.int64), ("rating", np.float64),
                               ("timestamp", np.float64))), user_ids, item_ids, weight)

    auxiliary = {name: part(3 + i) for i, name in enumerate(meta.get("auxiliary", []))}
    split = Split(part(0), part(1), part(2), meta["method"], cold.astype(np.int64), auxiliary)
    # Everything after the split reads interactions from it; the raw table is not rebuilt.
    interactions = pd.DataFrame({"user": pd.Series(dtype=str), "item": pd.Series(dtype=str)})
    data = RecData(meta["name"], interactions, tables["users"], tables["items"], tables["kg"],
                   tables["item_links"], {k: Path(v) for k, v in meta.get("source", {}).items()},
                   meta.get("atomic_name"))
    return data, split
