"""Splitting interactions into train / valid / test, and RecBole benchmark-file export and import.

All splits are vectorised (no Python loop over users) and seeded, so a pipeline with the same seed
always produces the same split — checkable through :meth:`Split.fingerprint`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from kgflow.config.schema import SplitConfig
from kgflow.data.atomic import read_atomic, write_inter
from kgflow.data.recdata import Interactions, RecData, Split
from kgflow.errors import DataError


def _group_ranks(user: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows visited in ``order`` (grouped by user), each row's rank within its user and the
    user's count."""
    sorted_users = user[order]
    counts = np.bincount(user, minlength=int(user.max()) + 1 if len(user) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank_sorted = np.arange(len(order)) - starts[sorted_users]
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = rank_sorted
    return rank, counts[user]


def _ratio_counts(n: np.ndarray, ratios: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-user valid and test counts: floor of each share; a user with more than one training
    interaction left gives a test (then a valid) interaction when the share would round to zero."""
    eps = 1e-9
    valid = np.floor(ratios[1] * n + eps).astype(np.int64)
    test = np.floor(ratios[2] * n + eps).astype(np.int64)
    train = n - valid - test
    bump = (train > 1) & (ratios[2] * n > 0) & (ratios[2] * n < 1)
    test += bump
    train -= bump
    bump = (train > 1) & (ratios[1] * n > 0) & (ratios[1] * n < 1)
    valid += bump
    return valid, test


def _assign_by_rank(user: np.ndarray, order: np.ndarray, ratios: list[float]) -> np.ndarray:
    """0 = train, 1 = valid, 2 = test, taking each user's rows in ``order``."""
    rank, n = _group_ranks(user, order)
    valid, test = _ratio_counts(n, ratios)
    train = n - valid - test
    return np.where(rank < train, 0, np.where(rank < train + valid, 1, 2))


def _time_order(inter: Interactions) -> np.ndarray:
    if np.isnan(inter.timestamp).any():
        raise DataError("this split orders interactions by time, but some have no timestamp")
    return np.lexsort((inter.timestamp, inter.user))


def _random_order(inter: Interactions, rng: np.random.Generator) -> np.ndarray:
    perm = rng.permutation(len(inter))
    return perm[np.argsort(inter.user[perm], kind="stable")]


def split_interactions(inter: Interactions, config: SplitConfig, seed: int) -> Split:
    """Split by ``config.method`` (everything but ``predefined``, see :func:`read_predefined`)."""
    rng = np.random.default_rng(config.seed if config.seed is not None else seed)
    cold = np.zeros(0, dtype=np.int64)
    if config.method == "random":
        part = _assign_by_rank(inter.user, _random_order(inter, rng), config.ratios)
    elif config.method == "temporal":
        part = _assign_by_rank(inter.user, _time_order(inter), config.ratios)
    elif config.method == "leave_one_out":
        rank, n = _group_ranks(inter.user, _time_order(inter))
        from_end = n - 1 - rank
        part = np.where(from_end == 0, 2, np.where((from_end == 1) & (n >= 3), 1, 0))
        part = np.where(n == 1, 0, part)
    elif config.method == "cold_items":
        n_cold = max(1, int(round(config.cold_item_share * inter.n_items)))
        cold = np.sort(rng.choice(inter.n_items, size=n_cold, replace=False))
        is_cold = np.zeros(inter.n_items, dtype=bool)
        is_cold[cold] = True
        # Cold items go whole to valid or test (item-level), so test items are unseen in validation too.
        valid_share = config.ratios[1] / max(config.ratios[1] + config.ratios[2], 1e-12)
        cold_to_valid = rng.random(n_cold) < valid_share
        cold_part = np.full(inter.n_items, 2)
        cold_part[cold[cold_to_valid]] = 1
        warm_rows = np.flatnonzero(~is_cold[inter.item])
        part = cold_part[inter.item].copy()
        sub = inter.subset(warm_rows)
        order = rng.permutation(len(sub))
        order = order[np.argsort(sub.user[order], kind="stable")]
        part[warm_rows] = _assign_by_rank(sub.user, order, config.ratios)
    else:
        raise DataError(f"split method {config.method!r} needs its own reader")
    split = Split(inter.subset(part == 0), inter.subset(part == 1), inter.subset(part == 2),
                  config.method, cold)
    if len(split.train) == 0:
        raise DataError("the split left no training interactions")
    return split


def _find_benchmark_files(folder: Path) -> dict[str, Path]:
    found = {}
    for part in ("train", "valid", "test"):
        matches = sorted(folder.glob(f"*.{part}.inter")) or sorted(folder.glob(f"*/*.{part}.inter"))
        if len(matches) != 1:
            what = "no" if not matches else f"{len(matches)}"
            raise DataError(f"{folder}: found {what} '*.{part}.inter' file(s); a predefined split needs "
                            "exactly one each of <name>.train.inter, .valid.inter, .test.inter")
        found[part] = matches[0]
    return found


def read_predefined(folder: str | Path) -> Split:
    """Read a split written as RecBole benchmark files; the files are taken as they are."""
    files = _find_benchmark_files(Path(folder))
    frames = {}
    for part, path in files.items():
        f = read_atomic(path)
        u = next((c for c in ("user_id", "user") if c in f.columns), None)
        i = next((c for c in ("item_id", "item") if c in f.columns), None)
        if u is None or i is None:
            raise DataError(f"{path}:1: needs user_id and item_id fields, has {list(f.columns)}")
        frames[part] = pd.DataFrame({
            "user": f[u].astype(str), "item": f[i].astype(str),
            "rating": f["rating"].astype(float) if "rating" in f else np.nan,
            "timestamp": f["timestamp"].astype(float) if "timestamp" in f else np.nan})
    every = pd.concat(frames.values())
    user_ids = np.unique(every["user"].to_numpy(dtype=str)).astype(object)
    item_ids = np.unique(every["item"].to_numpy(dtype=str)).astype(object)
    parts = []
    for part in ("train", "valid", "test"):
        f = frames[part]
        parts.append(Interactions(
            user=np.searchsorted(user_ids.astype(str), f["user"].to_numpy(dtype=str)).astype(np.int64),
            item=np.searchsorted(item_ids.astype(str), f["item"].to_numpy(dtype=str)).astype(np.int64),
            rating=f["rating"].to_numpy(dtype=float), timestamp=f["timestamp"].to_numpy(dtype=float),
            user_ids=user_ids, item_ids=item_ids))
    train_items = np.zeros(len(item_ids), dtype=bool)
    train_items[parts[0].item] = True
    cold = np.flatnonzero(~train_items).astype(np.int64)
    return Split(parts[0], parts[1], parts[2], "predefined", cold)


def export_split(split: Split, data: RecData, out: str | Path) -> Path:
    """Write the split as RecBole benchmark files (``<name>.train.inter`` ...) with the dataset's
    other atomic files beside them, so RecBole trains on exactly this split."""
    name = data.atomic_name or data.name
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    for part_name, part in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        write_inter(part.to_frame(), folder / f"{name}.{part_name}.inter")
    for suffix, path in data.source.items():
        if suffix == "link":
            _write_split_links(path, split, folder / f"{name}.link")
        elif suffix != "inter":
            shutil.copyfile(path, folder / f"{name}.{suffix}")
    return folder


def _write_split_links(source: Path, split: Split, target: Path) -> None:
    """Copy the item-entity links of the split's items only: RecBole 1.2.1's KG datasets fail on
    benchmark files whose .link names items that none of the .inter files has (a KeyError in
    ``_merge_item_and_entity``)."""
    items = {str(i) for i in split.item_ids}
    with open(source, encoding="utf-8") as src, open(target, "w", encoding="utf-8") as out:
        out.write(src.readline())
        for line in src:
            if line.split("\t", 1)[0] in items:
                out.write(line)
