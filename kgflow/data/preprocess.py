"""From raw data to the interactions a model learns from: implicit feedback, de-duplication,
k-core filtering and dense ids."""
from __future__ import annotations

import numpy as np
import pandas as pd

from kgflow.config.schema import Preprocess
from kgflow.data.recdata import Interactions, RecData
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


def prepare_interactions(data: RecData, config: Preprocess) -> Interactions:
    """Apply the preprocessing block and map ids to ``0..n-1`` (sorted by raw id, so a given
    dataset always gets the same dense ids)."""
    frame = data.interactions
    n_raw = len(frame)
    if config.rating_threshold is not None:
        if frame["rating"].isna().all():
            raise DataError(f"dataset {data.name!r} has no ratings, but preprocess.rating_threshold is "
                            f"{config.rating_threshold:g}; set it to null for implicit data")
        frame = frame[frame["rating"] >= config.rating_threshold]
    if config.dedupe:
        frame = frame.sort_values(["timestamp"], kind="stable", na_position="first")
        frame = frame.drop_duplicates(["user", "item"], keep="last")
    if config.kg_linked_only:
        from kgflow.data.kg import linked_items

        frame = frame[frame["item"].isin(linked_items(data))]
    frame = kcore_filter(frame, config.kcore.user, config.kcore.item)
    if frame.empty:
        raise DataError(f"dataset {data.name!r} is empty after preprocessing ({n_raw} interactions "
                        f"before; rating_threshold={config.rating_threshold}, "
                        f"kcore user={config.kcore.user} item={config.kcore.item}, "
                        f"kg_linked_only={config.kg_linked_only})")
    user_ids, user = np.unique(frame["user"].to_numpy(dtype=str), return_inverse=True)
    item_ids, item = np.unique(frame["item"].to_numpy(dtype=str), return_inverse=True)
    return Interactions(user=user.astype(np.int64), item=item.astype(np.int64),
                        rating=frame["rating"].to_numpy(dtype=float),
                        timestamp=frame["timestamp"].to_numpy(dtype=float),
                        user_ids=user_ids.astype(object), item_ids=item_ids.astype(object))
