"""The data contract every dataset plugin produces, and the dense-id views built from it.

A dataset plugin returns a :class:`RecData` with raw string ids. The core filters it
(:mod:`kgflow.data.preprocess`), maps ids to dense integers (:class:`Interactions`) and splits it
(:mod:`kgflow.data.split`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from kgflow.data.rows import BadRowPolicy, SkippedRows, clean_interactions

INTERACTION_COLUMNS = ("user", "item", "rating", "timestamp")
#: columns a dataset may add: ``value`` (a number per interaction: dwell time, play count) for
#: ``preprocess.weight``, ``behavior`` (text: click, cart, buy) for ``preprocess.behaviors``
OPTIONAL_COLUMNS = ("value", "behavior")


def id_text(values: pd.Series) -> pd.Series:
    """Raw ids as text: a missing id becomes empty text (a bad row the core reports, never the
    string 'nan'), and a float column of whole numbers -- what an integer id column with a null
    becomes in pandas -- is written without a '.0', so that it matches the same ids elsewhere."""
    missing = values.isna()
    if pd.api.types.is_float_dtype(values.dtype):
        present = values[~missing]
        if len(present) and (np.isfinite(present) & (present == np.floor(present))).all():
            values = values.astype("Int64")
    text = values.astype(str)
    return text.where(~missing.to_numpy(), "")


@dataclass
class RecData:
    """Raw recommendation data with original (string) ids.

    - ``interactions``: columns ``user``, ``item`` (str) and ``rating``, ``timestamp`` (float, NaN
      when the source has none); optionally ``value`` (float) and ``behavior`` (str).
    - ``users`` / ``items``: attribute tables indexed by raw id (str), or ``None``.
    - ``kg``: triples with columns ``head``, ``relation``, ``tail`` (str), or ``None``.
    - ``item_links``: ``item`` -> ``entity`` (str), linking items to KG entities, or ``None``.
    - ``source``: where the data was read from (for reports and for RecBole exports).
    - ``lines``: optionally, the line of ``source["inter"]`` each interaction row came from, so that
      a bad row is reported where it is (see :mod:`kgflow.data.rows`).

    Readers hand interactions over as read: a missing id as ``None``/NaN or empty text, ratings
    and timestamps as numbers or as the file's text. The core checks every row
    (:meth:`cleaned`), so that no bad row is dropped or kept without a word.
    """

    name: str
    interactions: pd.DataFrame
    users: Optional[pd.DataFrame] = None
    items: Optional[pd.DataFrame] = None
    kg: Optional[pd.DataFrame] = None
    item_links: Optional[pd.DataFrame] = None
    source: dict[str, Path] = field(default_factory=dict)
    atomic_name: Optional[str] = None  # RecBole dataset name, e.g. "ml-100k"
    lines: Optional[np.ndarray] = None
    #: what ``preprocess.on_bad_rows: skip`` left out (set by :meth:`cleaned`)
    skipped_rows: SkippedRows = field(default_factory=SkippedRows)

    def __post_init__(self) -> None:
        inter = self.interactions
        for col in ("rating", "timestamp"):
            if col not in inter.columns:
                inter[col] = np.nan
        inter["user"] = id_text(inter["user"])
        inter["item"] = id_text(inter["item"])
        if "behavior" in inter.columns:
            inter["behavior"] = id_text(inter["behavior"])
        columns = list(INTERACTION_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in inter.columns]
        self.interactions = inter[columns].reset_index(drop=True)

    def cleaned(self, policy: BadRowPolicy = "error") -> "RecData":
        """This data with every interaction row checked (:func:`~kgflow.data.rows.clean_interactions`):
        float ratings and timestamps, bad rows refused (``error``) or left out and counted
        (``skip``)."""
        source = self.source.get("inter")
        frame, skipped = clean_interactions(self.interactions, policy=policy,
                                            source=str(source) if source else None,
                                            lines=None if self.lines is None else np.asarray(self.lines))
        return replace(self, interactions=frame, lines=None, skipped_rows=skipped)

    def summary(self) -> dict[str, int]:
        """Counts a user wants to see first."""
        out = {
            "interactions": len(self.interactions),
            "users": int(self.interactions["user"].nunique()),
            "items": int(self.interactions["item"].nunique()),
        }
        if self.users is not None:
            out["user_table_rows"] = len(self.users)
        if self.items is not None:
            out["item_table_rows"] = len(self.items)
        if self.kg is not None:
            out["kg_triples"] = len(self.kg)
            out["kg_relations"] = int(self.kg["relation"].nunique())
            out["kg_entities"] = int(pd.unique(pd.concat([self.kg["head"], self.kg["tail"]])).size)
        if self.item_links is not None:
            out["linked_items"] = int(self.item_links["item"].nunique())
        return out


@dataclass
class Interactions:
    """Interactions with dense integer ids (``0..n-1``) and the maps back to raw ids."""

    user: np.ndarray  # int64
    item: np.ndarray  # int64
    rating: np.ndarray  # float64 (NaN if unknown)
    timestamp: np.ndarray  # float64 (NaN if unknown)
    user_ids: np.ndarray  # dense -> raw (str objects)
    item_ids: np.ndarray
    #: per-interaction positive weight (``preprocess.weight``); ``None``: every interaction counts 1
    weight: Optional[np.ndarray] = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, mask_or_index: np.ndarray) -> "Interactions":
        return Interactions(self.user[mask_or_index], self.item[mask_or_index],
                            self.rating[mask_or_index], self.timestamp[mask_or_index],
                            self.user_ids, self.item_ids,
                            None if self.weight is None else self.weight[mask_or_index])

    def weights(self) -> np.ndarray:
        """The per-interaction weights, ones when the interactions are unweighted."""
        return np.ones(len(self.user)) if self.weight is None else self.weight

    def to_frame(self, raw_ids: bool = True) -> pd.DataFrame:
        return pd.DataFrame({
            "user": self.user_ids[self.user] if raw_ids else self.user,
            "item": self.item_ids[self.item] if raw_ids else self.item,
            "rating": self.rating, "timestamp": self.timestamp})


@dataclass
class Split:
    """Train/valid/test interactions over one shared id space."""

    train: Interactions
    valid: Interactions
    test: Interactions
    method: str
    cold_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: auxiliary behaviours by name (``preprocess.behaviors``, ``below_threshold_as``): extra
    #: user-item edges for the graph, in training only; never positives, never evaluated
    auxiliary: dict[str, Interactions] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    @property
    def user_ids(self) -> np.ndarray:
        return self.train.user_ids

    @property
    def item_ids(self) -> np.ndarray:
        return self.train.item_ids

    def fingerprint(self) -> str:
        """A short hash of the exact split (ids and assignments): equal splits, equal prints."""
        h = hashlib.sha256()
        users, items = _unicode(self.user_ids), _unicode(self.item_ids)
        for part in (self.train, self.valid, self.test):
            order = np.lexsort((part.item, part.user))
            h.update(_gather_bytes(users, part.user[order]))
            h.update(_gather_bytes(items, part.item[order]))
            h.update(b"|")
        h.update(np.sort(self.item_ids[self.cold_items].astype(str)).astype("U").tobytes())
        return h.hexdigest()[:16]

    def stats(self) -> dict[str, int]:
        out = {"users": self.n_users, "items": self.n_items, "train": len(self.train),
               "valid": len(self.valid), "test": len(self.test),
               "cold_items": int(len(self.cold_items))}
        for name, part in self.auxiliary.items():
            out[f"auxiliary {name}"] = len(part)
        return out


def _unicode(ids: np.ndarray) -> np.ndarray:
    return ids.astype(str).astype("U")


def _gather_bytes(ids: np.ndarray, index: np.ndarray) -> bytes:
    """``ids[index]`` as a fixed-width unicode array's bytes, its width the longest id present
    (exactly what converting the gathered ids would give), gathered from the distinct ids'
    array instead of converting one string per row."""
    if not len(index):
        return np.asarray([], dtype="U1").tobytes()
    width = int(np.char.str_len(ids)[index].max()) if len(ids) else 1
    return ids.astype(f"U{max(width, 1)}")[index].tobytes()


def csr_of(part: Interactions, n_users: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row pointers and sorted item indices of ``part`` per user (a CSR pattern)."""
    order = np.lexsort((part.item, part.user))
    items = torch.from_numpy(part.item[order].astype(np.int64))
    counts = np.bincount(part.user, minlength=n_users)
    indptr = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    return indptr, items
