"""Interaction weights: a rating, a value column (dwell time, play count) or the number of repeated
rows of a pair, clipped, transformed and normalised per user into one positive weight per
interaction (``preprocess.weight``).

The weights ride along with the interactions through the split (:class:`Interactions.weight`), so
that graph builders can put them on the interaction edges and the training loop can weight each
positive's loss; evaluation never sees them (a held-out positive is a positive, however strong).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from kgflow.config.schema import InteractionWeight
from kgflow.errors import DataError

#: the column of the interaction frame each ``preprocess.weight.column`` reads
COUNT_COLUMN = "__count__"


def pair_counts(frame: pd.DataFrame) -> np.ndarray:
    """For every row, how many rows of the frame share its (user, item) pair: what a click log's
    repeated rows say before de-duplication keeps one of them."""
    users, _ = pd.factorize(frame["user"])
    items, known = pd.factorize(frame["item"])
    key = users.astype(np.int64) * max(len(known), 1) + items
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return counts[inverse].astype(float)


def _raw_values(frame: pd.DataFrame, config: InteractionWeight, where: str) -> np.ndarray:
    if config.column == "count":
        return frame[COUNT_COLUMN].to_numpy(dtype=float)
    if config.column not in frame.columns or frame[config.column].isna().all():
        how = ("map a rating column in the dataset" if config.column == "rating" else
               "map one with `value:` (table datasets) or `value_field` (atomic datasets)")
        raise DataError(f"{where}preprocess.weight.column is {config.column!r}, but the data has no "
                        f"{config.column} values; {how}")
    return frame[config.column].to_numpy(dtype=float)


def interaction_weights(frame: pd.DataFrame, user: np.ndarray, config: InteractionWeight,
                        where: str = "") -> np.ndarray:
    """The weight of every row of ``frame`` (``user``: the rows' dense user ids), following
    ``config``: clip, then transform, then normalise per user. A weight that comes out zero,
    negative or not finite is refused: the edge and loss weights must be positive."""
    w = _raw_values(frame, config, where)
    if config.clip is not None:
        low, high = config.clip
        w = np.clip(w, -np.inf if low is None else low, np.inf if high is None else high)
    if config.transform == "log1p":
        if (w <= -1).any():
            first = int(np.flatnonzero(w <= -1)[0])
            raise DataError(f"{where}preprocess.weight.transform log1p needs values above -1; "
                            f"{_row(frame, first)} has {w[first]:g} (clip it: clip: [0, null])")
        w = np.log1p(w)
    if config.normalize != "none":
        n_users = int(user.max()) + 1 if len(user) else 0
        if config.normalize == "user_mean":
            scale = np.bincount(user, weights=w, minlength=n_users) / np.maximum(
                np.bincount(user, minlength=n_users), 1)
        else:
            scale = np.full(n_users, -np.inf)
            np.maximum.at(scale, user, w)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = w / scale[user]
    bad = ~np.isfinite(w) | (w <= 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}preprocess.weight gives {int(bad.sum()):,} interaction(s) a weight that is not "
            f"positive, first {_row(frame, first)}: {w[first]:g} (weights must be > 0; a zero "
            "rating or value needs clip: [low, null] with low > 0, or transform: log1p on counts "
            "of at least 1)")
    return w


def _row(frame: pd.DataFrame, i: int) -> str:
    row = frame.iloc[i]
    return f"user {row['user']!r}, item {row['item']!r}"


def weight_summary(weights: np.ndarray) -> dict[str, float]:
    """Min, mean and max of the training weights, for the run report."""
    if not len(weights):
        return {}
    return {"min": float(weights.min()), "mean": float(weights.mean()), "max": float(weights.max())}
