"""Bad interaction rows: found, located and refused -- or skipped and counted, when asked.

A dataset plugin hands the core its interactions as read: ids as text (missing ones empty),
ratings and timestamps as numbers or as the text of the file. :func:`clean_interactions` checks
every row once, for every dataset (first-party readers and third-party plugins alike), and applies
the pipeline's ``preprocess.on_bad_rows``:

- ``error`` (the default): the first bad row is reported with its file and line, with a count of
  the others, and nothing is trained;
- ``skip``: bad rows are left out, and their count by reason goes into the run report.

A row is bad when its user or item id is empty, when the dataset has ratings (or timestamps) and
the row's is empty, not a number or not finite, or when its timestamp overflows a 64-bit integer.
Nothing is dropped without a word.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np
import pandas as pd

from kgflow.errors import DataError

BadRowPolicy = Literal["error", "skip"]

#: timestamps beyond a signed 64-bit integer (seconds, milliseconds, even nanoseconds since 1970
#: fit) are a corrupted value, not a time
TIMESTAMP_LIMIT = float(2 ** 63)
_EXAMPLES = 5


@dataclass
class SkippedRows:
    """What ``on_bad_rows: skip`` left out: a count per reason and the first few places."""

    count: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"count": self.count, "by_reason": dict(self.by_reason), "examples": list(self.examples)}

    def summary(self) -> str:
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in self.by_reason.items())
        return f"{self.count:,} bad interaction row(s) skipped ({reasons})"


def _empty_text(values: pd.Series) -> np.ndarray:
    return values.isna().to_numpy() | values.astype(str).str.strip().eq("").to_numpy()


def _numbers(values: pd.Series, name: str, reasons: dict[str, np.ndarray],
             limit: Optional[float] = None) -> pd.Series:
    """``values`` as floats; marks rows that are empty, not numbers, not finite or beyond
    ``limit`` -- unless the column is empty throughout (the dataset has no such field)."""
    if pd.api.types.is_numeric_dtype(values):  # numbers already: only missing or infinite ones
        numeric = values.astype(float)
        empty = numeric.isna().to_numpy()
        if empty.all():
            return numeric
        unparsed = np.zeros(len(values), dtype=bool)
    else:  # the file's text: parse it, telling an empty field from one that is no number
        numeric = pd.to_numeric(values, errors="coerce").astype(float)
        empty = _empty_text(values)
        if empty.all():
            return numeric
        spelled_nan = values.astype(str).str.strip().str.lower().isin(["nan", "+nan", "-nan"]).to_numpy()
        unparsed = numeric.isna().to_numpy() & ~empty & ~spelled_nan
    finite = np.isfinite(numeric.to_numpy())
    reasons[f"empty {name}"] = empty
    reasons[f"{name} not a number"] = unparsed
    reasons[f"{name} not finite"] = ~finite & ~empty & ~unparsed
    if limit is not None:
        reasons[f"{name} overflows a 64-bit integer"] = finite & (np.abs(numeric.to_numpy()) >= limit)
    return numeric


def _place(source: Optional[str], lines: Optional[np.ndarray], row: int) -> str:
    if lines is not None and source:
        return f"{source}:{int(lines[row])}"
    where = f"interaction row {row + 1}"
    return f"{source}: {where}" if source else where


def _describe(frame: pd.DataFrame, row: int, reasons: list[str]) -> str:
    shown = {c: frame[c].iloc[row] for c in ("user", "item", "rating", "timestamp", "value", "behavior")
             if c in frame}
    values = ", ".join(f"{c}={'' if pd.isna(v) else v!s}" if not isinstance(v, str) else f"{c}={v!r}"
                       for c, v in shown.items())
    return f"{' and '.join(reasons)} ({values})"


def clean_interactions(frame: pd.DataFrame, *, policy: BadRowPolicy = "error",
                       source: Optional[str] = None, lines: Optional[np.ndarray] = None,
                       ) -> tuple[pd.DataFrame, SkippedRows]:
    """The interactions with float ``rating`` and ``timestamp``, bad rows refused or skipped.

    ``source`` names the file the rows came from and ``lines`` each row's line in it (both for
    messages only). Raises :class:`DataError` under ``policy="error"`` when any row is bad."""
    reasons: dict[str, np.ndarray] = {
        "empty user id": _empty_text(frame["user"]),
        "empty item id": _empty_text(frame["item"]),
    }
    rating = _numbers(frame["rating"], "rating", reasons)
    timestamp = _numbers(frame["timestamp"], "timestamp", reasons, TIMESTAMP_LIMIT)
    value = _numbers(frame["value"], "value", reasons) if "value" in frame else None
    if "behavior" in frame:
        reasons["empty behavior"] = _empty_text(frame["behavior"])
    bad = np.zeros(len(frame), dtype=bool)
    for mask in reasons.values():
        bad |= mask
    clean = pd.DataFrame({"user": frame["user"].astype(str), "item": frame["item"].astype(str),
                          "rating": rating.to_numpy(), "timestamp": timestamp.to_numpy()})
    if value is not None:
        clean["value"] = value.to_numpy()
    if "behavior" in frame:
        clean["behavior"] = frame["behavior"].astype(str).str.strip().to_numpy()
    skipped = SkippedRows()
    if not bad.any():
        return clean, skipped
    rows = np.flatnonzero(bad)
    if lines is not None and len(lines) != len(frame):
        lines = None  # the reader's line numbers do not match its rows: report row numbers
    first = int(rows[0])
    first_reasons = [reason for reason, mask in reasons.items() if mask[first]]
    if policy == "error":
        more = ""
        if len(rows) > 1:
            numbers = lines[rows[1:1 + _EXAMPLES]] if lines is not None else rows[1:1 + _EXAMPLES] + 1
            places = ", ".join(str(int(n)) for n in numbers)
            label = "lines" if lines is not None else "rows"
            more = (f"; {len(rows) - 1:,} more bad row(s) ({label} {places}"
                    f"{', ...' if len(rows) > 1 + _EXAMPLES else ''})")
        raise DataError(f"{_place(source, lines, first)}: bad interaction row: "
                        f"{_describe(frame, first, first_reasons)}{more}\n    fix the data, or set "
                        "preprocess.on_bad_rows: skip to leave such rows out (they are counted in "
                        "the run report)")
    skipped.count = int(len(rows))
    for reason, mask in reasons.items():
        if mask.any():
            skipped.by_reason[reason] = int(mask.sum())
    for r in rows[:_EXAMPLES]:
        skipped.examples.append(f"{_place(source, lines, int(r))}: "
                                + " and ".join(reason for reason, mask in reasons.items() if mask[r]))
    return clean[~bad].reset_index(drop=True), skipped
