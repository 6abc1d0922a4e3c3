"""The training log (``logs/metrics.csv``) across a resume.

Lightning's CSV logger deletes ``metrics.csv`` when it opens a log folder that is not empty, so a
resumed run would lose every row written before the interruption. Before a resume the rows are
moved to ``logs/earlier.csv``; when the run finishes they are put back in front of the resumed
rows and the side file is removed. Rows of an epoch that the resumed run repeats (the epoch the
interruption cut short) are dropped from the earlier ones.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from kgflow.runs.rundir import atomic_write_text

EARLIER = "earlier.csv"


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        return [], []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _first_epoch(rows: list[dict[str, str]]) -> float:
    epochs = [float(r["epoch"]) for r in rows if r.get("epoch") not in (None, "")]
    return min(epochs) if epochs else float("inf")


def _joined(old: tuple[list[str], list[dict[str, str]]], new: tuple[list[str], list[dict[str, str]]]) -> str:
    """``old``'s rows of epochs before ``new``'s first, then ``new``'s rows, under both headers."""
    (old_fields, old_rows), (new_fields, new_rows) = old, new
    first = _first_epoch(new_rows)
    kept = [r for r in old_rows if r.get("epoch") in (None, "") or float(r["epoch"]) < first]
    fields = new_fields + [f for f in old_fields if f not in new_fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept + new_rows)
    return buffer.getvalue()


def keep_before_resume(logs: Path) -> None:
    """Move the rows of ``logs/metrics.csv`` (added to any kept before) to ``logs/earlier.csv``."""
    current = logs / "metrics.csv"
    if not current.is_file():
        return
    atomic_write_text(logs / EARLIER, _joined(_rows(logs / EARLIER), _rows(current)))
    current.unlink()


def restore_after_resume(logs: Path) -> None:
    """Put the kept rows back in front of the resumed run's rows in ``logs/metrics.csv``."""
    earlier = logs / EARLIER
    if not earlier.is_file():
        return
    atomic_write_text(logs / "metrics.csv", _joined(_rows(earlier), _rows(logs / "metrics.csv")))
    earlier.unlink()
