"""From raw data to the interactions a model learns from: the target behaviour, implicit feedback,
de-duplication, k-core filtering, dense ids and interaction weights."""
from __future__ import annotations

import numpy as np
import pandas as pd

from kgflow.config.schema import Preprocess
from kgflow.data.behaviors import target_rows
from kgflow.data.recdata import Interactions, RecData
from kgflow.data.weights import COUNT_COLUMN, interaction_weights, pair_counts
from kgflow.errors import DataError


def kcore_filter(frame: pd.DataFrame, user_min: int, item_min: int) -> pd.DataFrame:
    """Drop users and items with too few interactions, repeating until both bounds hold."""
    if user_min <= 1 and item_min <= 1:
        return frame
    while True:
        keep = np.ones(len(frame), dtype=bool)
        if user_min > 1:
            keep &= frame.groupby("user")["user"].transform("size").to_numpy() >= user_min
        if item_min > 1:
            keep &= frame.groupby("item")["item"].transform("size").to_numpy() >= item_min
        if keep.all():
            return frame
        frame = frame[keep]


def dense_ids(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct raw ids sorted as strings, each row's position among them): what
    ``np.unique(..., return_inverse=True)`` gives, from a hash table over the rows and a sort of
    the distinct ids alone (sorting millions of strings is the slow part)."""
    codes, uniques = pd.factorize(column.astype(str))
    names = np.asarray(uniques, dtype=object)
    order = np.argsort(names.astype(str), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return names[order], rank[codes]


def prepare_interactions(data: RecData, config: Preprocess) -> Interactions:
    """Apply the preprocessing block and map ids to ``0..n-1`` (sorted by raw id, so a given
    dataset always gets the same dense ids)."""
    where = f"{data.source['inter']}: " if data.source.get("inter") else f"dataset {data.name!r}: "
    frame = target_rows(data, config, where)
    steps: list[str] = [f"{len(data.interactions):,} interactions read"]
    if config.behaviors is not None:
        steps.append(f"preprocess.behaviors target {config.behaviors.target} keeps {len(frame):,}")
    if config.rating_threshold is not None:
        ratings = frame["rating"]
        if ratings.isna().all():
            raise DataError(f"{where}the data has no ratings, but preprocess.rating_threshold is "
                            f"{config.rating_threshold:g}; set it to null for implicit data")
        frame = frame[ratings >= config.rating_threshold]
        steps.append(f"preprocess.rating_threshold {config.rating_threshold:g} keeps {len(frame):,} "
                     f"(ratings range {ratings.min():g} to {ratings.max():g})")
    if config.weight is not None and config.weight.column == "count":
        frame = frame.assign(**{COUNT_COLUMN: pair_counts(frame)})
    if config.dedupe:
        frame = frame.sort_values(["timestamp"], kind="stable", na_position="first")
        # duplicates found on integer codes: hashing 20M string pairs costs minutes
        users, _ = pd.factorize(frame["user"])
        items, known_items = pd.factorize(frame["item"])
        key = users.astype(np.int64) * max(len(known_items), 1) + items
        frame = frame[~pd.Series(key).duplicated(keep="last").to_numpy()]
    if config.kg_linked_only:
        from kgflow.data.kg import linked_items

        frame = frame[frame["item"].isin(linked_items(data))]
        steps.append(f"preprocess.kg_linked_only keeps {len(frame):,}")
    if config.kcore.user > 1 or config.kcore.item > 1:
        frame = kcore_filter(frame, config.kcore.user, config.kcore.item)
        steps.append(f"preprocess.kcore (user {config.kcore.user}, item {config.kcore.item}) "
                     f"keeps {len(frame):,}")
    if frame.empty:
        raise DataError(f"{where}no interactions are left after preprocessing: " + "; ".join(steps))
    user_ids, user = dense_ids(frame["user"])
    item_ids, item = dense_ids(frame["item"])
    weight = None if config.weight is None else interaction_weights(frame, user, config.weight, where)
    return Interactions(user=user, item=item,
                        rating=frame["rating"].to_numpy(dtype=float),
                        timestamp=frame["timestamp"].to_numpy(dtype=float),
                        user_ids=user_ids.astype(object), item_ids=item_ids.astype(object),
                        weight=weight)
