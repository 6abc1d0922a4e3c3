"""Multiple behaviours: the target behaviour is what a pipeline recommends (it is split, trained on
as positives and evaluated); auxiliary behaviours (clicks and carts next to purchases, or the
low-rated "watched" movies next to the liked ones) become extra user-item relations of the graph,
in training only.

Two sources, which combine:

- ``preprocess.behaviors``: a ``behavior`` column of the data names each row's behaviour;
- ``preprocess.below_threshold_as``: the rows below ``rating_threshold`` (dropped otherwise) are
  kept as one auxiliary behaviour.

An auxiliary pair is dropped when the same (user, item) is a held-out target (validation or test)
or a held-out cold item: a click on the very item the user bought in the test period would hand
the model the answer. On a split by time (temporal, leave_one_out) the events from a user's first
held-out target on are dropped too: they lie in the future of training.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from kgflow.config.schema import Preprocess
from kgflow.data.recdata import Interactions, RecData, Split
from kgflow.errors import DataError


def behaviour_names(frame: pd.DataFrame) -> list[str]:
    return sorted(pd.unique(frame["behavior"]).astype(str)) if "behavior" in frame else []


def target_rows(data: RecData, config: Preprocess, where: str) -> pd.DataFrame:
    """The interactions of the target behaviour(s) (all of them without ``behaviors``); unknown
    behaviour names are an error that lists the data's."""
    frame = data.interactions
    if config.behaviors is None:
        return frame
    if "behavior" not in frame.columns:
        raise DataError(f"{where}preprocess.behaviors is set, but the data has no behavior column; "
                        "map one with `behavior:` (table datasets) or `behavior_field` (atomic "
                        "datasets)")
    present = behaviour_names(frame)
    wanted = list(config.behaviors.target) + list(config.behaviors.auxiliary or [])
    unknown = [b for b in wanted if b not in present]
    if unknown:
        raise DataError(f"{where}preprocess.behaviors names {unknown}, which the data does not have; "
                        f"its behaviours are {present}")
    return frame[frame["behavior"].isin(config.behaviors.target)]


def auxiliary_rows(data: RecData, config: Preprocess) -> dict[str, pd.DataFrame]:
    """The raw rows of every auxiliary behaviour, by name."""
    frame = data.interactions
    out: dict[str, list[pd.DataFrame]] = {}
    if config.behaviors is not None:
        names = config.behaviors.auxiliary
        if names is None:
            names = [b for b in behaviour_names(frame) if b not in config.behaviors.target]
        for name in names:
            out.setdefault(name, []).append(frame[frame["behavior"] == name])
    if config.below_threshold_as is not None:
        base = frame if config.behaviors is None else frame[frame["behavior"].isin(config.behaviors.target)]
        out.setdefault(config.below_threshold_as, []).append(
            base[base["rating"] < config.rating_threshold])  # type: ignore[operator]
    return {name: pd.concat(parts) for name, parts in out.items()}


def auxiliary_interactions(data: RecData, config: Preprocess, target: Interactions
                           ) -> dict[str, Interactions]:
    """Auxiliary behaviours on the target's dense ids: one row per (user, item) and behaviour;
    rows of users or items the target does not have are left out (they have no node to join).
    A behaviour named in ``preprocess.auxiliary_weights`` carries that weight on every row."""
    user_ids = target.user_ids.astype(str)
    item_ids = target.item_ids.astype(str)
    out = {}
    for name, rows in auxiliary_rows(data, config).items():
        user = _positions(user_ids, rows["user"].to_numpy(dtype=str))
        item = _positions(item_ids, rows["item"].to_numpy(dtype=str))
        known = (user >= 0) & (item >= 0)
        width = max(len(item_ids), 1)
        # one row per pair, at its first occurrence (when the behaviour became known)
        first = (pd.DataFrame({"key": user[known] * width + item[known],
                               "t": rows["timestamp"].to_numpy(dtype=float)[known]})
                 .groupby("key", sort=True)["t"].min())
        key = first.index.to_numpy(dtype=np.int64)
        n = len(key)
        weight = config.auxiliary_weights.get(name)
        out[name] = Interactions(user=key // width, item=key % width,
                                 rating=np.full(n, np.nan), timestamp=first.to_numpy(dtype=float),
                                 user_ids=target.user_ids, item_ids=target.item_ids,
                                 weight=None if weight is None else np.full(n, float(weight)))
    unknown = sorted(set(config.auxiliary_weights) - set(out))
    if unknown:
        raise DataError(f"preprocess.auxiliary_weights names {unknown}, which the data has no "
                        f"auxiliary rows of (its auxiliary behaviours are {sorted(out)})")
    return out


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Dense id of each of ``ids`` in ``sorted_ids`` (ascending), -1 where it is absent."""
    if not len(sorted_ids):
        return np.full(len(ids), -1, dtype=np.int64)
    at = np.searchsorted(sorted_ids, ids).clip(max=len(sorted_ids) - 1)
    return np.where(sorted_ids[at] == ids, at, -1).astype(np.int64)


#: splits that hold out each user's later interactions: auxiliary events from then on are future
TIME_ORDERED_SPLITS = ("temporal", "leave_one_out")


def held_out_from(split: Split) -> np.ndarray:
    """Per user, the time of their first held-out (validation or test) target; +inf for none."""
    start = np.full(split.n_users, np.inf)
    for part in (split.valid, split.test):
        np.minimum.at(start, part.user, np.where(np.isnan(part.timestamp), np.inf, part.timestamp))
    return start


def attach_auxiliary(split: Split, auxiliary: dict[str, Interactions]) -> tuple[Split, dict[str, int]]:
    """The split with its auxiliary behaviours, less every pair held out as a validation or test
    target, every held-out cold item, and -- on a split by time -- every event from the user's
    first held-out target on (what the user did later is not known at training time). Returns the
    split and how many pairs each behaviour lost."""
    if not auxiliary:
        return split, {}
    n_items = max(split.n_items, 1)
    held = np.unique(np.concatenate([split.valid.user * n_items + split.valid.item,
                                     split.test.user * n_items + split.test.item]))
    cold = np.zeros(split.n_items, dtype=bool)
    cold[split.cold_items] = True
    future = held_out_from(split) if split.method in TIME_ORDERED_SPLITS else None
    kept, dropped = {}, {}
    for name, part in auxiliary.items():
        bad = np.isin(part.user * n_items + part.item, held) | cold[part.item]
        if future is not None:
            bad |= part.timestamp >= future[part.user]
        kept[name] = part.subset(~bad)
        dropped[name] = int(bad.sum())
    return replace(split, auxiliary=kept), dropped
