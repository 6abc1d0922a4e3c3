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
from kgflow.data.atomic import read_atomic_text, write_inter
from kgflow.data.recdata import Interactions, RecData, Split, id_text
from kgflow.data.rows import BadRowPolicy, clean_interactions
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


def _time_order(inter: Interactions, source: str | Path | None = None) -> np.ndarray:
    if np.isnan(inter.timestamp).any():
        where = f"{source}: " if source else ""
        raise DataError(f"{where}this split orders interactions by time, but the data has no "
                        "timestamps; map a timestamp column in the dataset, or use split method random")
    return np.lexsort((inter.timestamp, inter.user))


def _random_order(inter: Interactions, rng: np.random.Generator) -> np.ndarray:
    perm = rng.permutation(len(inter))
    return perm[np.argsort(inter.user[perm], kind="stable")]


def split_interactions(inter: Interactions, config: SplitConfig, seed: int,
                       source: str | Path | None = None) -> Split:
    """Split by ``config.method`` (everything but ``predefined``, see :func:`read_predefined`).
    An empty training, validation or test part is an error (``source``, the data file, names where
    the interactions came from)."""
    rng = np.random.default_rng(config.seed if config.seed is not None else seed)
    cold = np.zeros(0, dtype=np.int64)
    if config.method == "random":
        part = _assign_by_rank(inter.user, _random_order(inter, rng), config.ratios)
    elif config.method == "temporal":
        part = _assign_by_rank(inter.user, _time_order(inter, source), config.ratios)
    elif config.method == "leave_one_out":
        rank, n = _group_ranks(inter.user, _time_order(inter, source))
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
    where = f"{source}: " if source else ""
    for name, size in (("training", len(split.train)), ("validation", len(split.valid)),
                       ("test", len(split.test))):
        if size == 0:
            raise DataError(f"{where}split method {config.method!r} leaves the {name} set empty: "
                            + _too_small(inter, config))
    return split


def _too_small(inter: Interactions, config: SplitConfig) -> str:
    """Why a split came out empty, in counts a user can act on."""
    per_user = np.bincount(inter.user, minlength=inter.n_users)
    counts = (f"{len(inter):,} interactions of {inter.n_users:,} users on {inter.n_items:,} items "
              f"after preprocessing; {int((per_user == 1).sum()):,} users have one interaction, "
              f"{int((per_user == 2).sum()):,} have two")
    if config.method in ("random", "temporal"):
        why = (f"with ratios {config.ratios}, a user gives a test interaction from two interactions "
               "on and a validation one from three on")
    elif config.method == "leave_one_out":
        why = "leave_one_out takes a user's last interaction for test from two on, and the one " \
              "before it for validation from three on"
    else:
        why = f"cold_items holds {config.cold_item_share:g} of the items out of training"
    return (f"{counts}; {why}. Every part is needed (validation selects the best epoch, test "
            "reports): use more data per user (a lower preprocess.rating_threshold or kcore keeps "
            "more), or other split ratios")


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


def read_predefined(folder: str | Path, on_bad_rows: BadRowPolicy = "error") -> Split:
    """Read a split written as RecBole benchmark files; the files are taken as they are, each row
    checked like any dataset's (:mod:`kgflow.data.rows`), and each part must hold interactions."""
    files = _find_benchmark_files(Path(folder))
    frames = {}
    for part, path in files.items():
        f, lines, _, _ = read_atomic_text(path)
        u = next((c for c in ("user_id", "user") if c in f.columns), None)
        i = next((c for c in ("item_id", "item") if c in f.columns), None)
        if u is None or i is None:
            raise DataError(f"{path}:1: needs user_id and item_id fields, has {list(f.columns)}")
        raw = pd.DataFrame({"user": id_text(f[u]), "item": id_text(f[i]),
                            "rating": f["rating"] if "rating" in f else np.nan,
                            "timestamp": f["timestamp"] if "timestamp" in f else np.nan})
        frames[part], _ = clean_interactions(raw, policy=on_bad_rows, source=str(path), lines=lines)
        if frames[part].empty:
            raise DataError(f"{path}: every row was a bad row; the {part} part of the split is empty")
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
