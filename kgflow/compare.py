"""Comparing finished runs: one table of quality, time, memory and size, with paired tests.

Runs are comparable only on the same split (equal data fingerprints). Differences to the first run
are tested per user (a paired t-test on the users both runs evaluated; with hundreds of users the
normal approximation of the t distribution is exact enough) and marked when p < 0.05.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kgflow.errors import KgflowError, RunDirError


@dataclass
class RunSummary:
    path: Path
    name: str
    metrics: dict
    per_user: pd.DataFrame | None


def load_summary(path: str | Path) -> RunSummary:
    path = Path(path)
    file = path / "metrics.json"
    if not file.is_file():
        raise RunDirError(f"{path}: no metrics.json; not a finished kgflow run")
    per_user = path / "test_per_user.csv"
    frame = pd.read_csv(per_user, dtype={"user": str}) if per_user.is_file() else None
    return RunSummary(path, path.name, json.loads(file.read_text()), frame)


def paired_test(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    """Mean difference b - a over the users both have, and its two-sided p-value."""
    joined = pd.concat([a, b], axis=1, join="inner").dropna()
    diff = joined.iloc[:, 1] - joined.iloc[:, 0]
    n = len(diff)
    if n < 2:
        return float("nan"), float("nan"), n
    sd = float(diff.std(ddof=1))
    mean = float(diff.mean())
    if sd == 0:
        return mean, (1.0 if mean == 0 else 0.0), n
    z = mean / (sd / math.sqrt(n))
    return mean, math.erfc(abs(z) / math.sqrt(2)), n


def ms_per_user(metrics: dict) -> str:
    """Inference cost: seconds of one full-ranking evaluation over the users it ranked, in ms."""
    seconds = metrics.get("timing", {}).get("eval_seconds")
    users = metrics.get("valid", {}).get("all", {}).get("users")
    if not seconds or not users:
        return "—"
    return f"{1000 * seconds / users:.3f}"


def group_gaps(metrics: dict, metric: str) -> dict[str, float]:
    """The run's gap in ``metric`` between its highest and lowest test user group, per grouping
    (``eval.user_groups``)."""
    groups = metrics.get("user_groups", {}).get("test", {})
    return {field: entry["gap"][metric] for field, entry in groups.items()
            if metric in entry.get("gap", {})}


def compare(paths: list[str | Path], metric: str = "ndcg@10", allow_different_splits: bool = False,
            show: list[str] | None = None) -> tuple[list[str], list[list[str]], list[str]]:
    """The comparison table (header, rows) and notes. ``show`` adds columns of further test
    metrics (group ``all``), e.g. beyond-accuracy ones such as ``coverage@10``; runs with user
    groups get a column per grouping with ``metric``'s gap between the highest and lowest group."""
    show = show or []
    runs = [load_summary(p) for p in paths]
    prints = {r.name: r.metrics.get("data_fingerprint") for r in runs}
    if len(set(prints.values())) > 1 and not allow_different_splits:
        listing = ", ".join(f"{name}: {fp}" for name, fp in prints.items())
        raise KgflowError(f"these runs were trained on different splits ({listing}); their metrics are "
                          "not comparable. Rerun them on one split (same dataset, preprocess, split "
                          "and seed), or pass --allow-different-splits to see them anyway")
    groups = sorted({g for r in runs for g in r.metrics.get("test", {})}, key=lambda g: (g != "all", g))
    fields = sorted({f for r in runs for f in group_gaps(r.metrics, metric)})
    header = ["run"] + [f"{metric} {g}" for g in groups] + [
        f"Δ vs {runs[0].name} (p)"] + show + [f"{metric} gap by {f}" for f in fields] + [
        "s/epoch", "peak MB", "params", "ms/user", "best epoch"]
    rows, notes = [], []
    base = runs[0].per_user.set_index("user")[metric] if runs[0].per_user is not None else None
    for i, run in enumerate(runs):
        test = run.metrics.get("test", {})
        cells = [run.name] + [f"{test[g][metric]:.4f}" if g in test and metric in test[g] else "—"
                              for g in groups]
        if i == 0:
            cells.append("baseline")
        elif base is None or run.per_user is None or metric not in run.per_user:
            cells.append("n/a (no per-user file)")
        else:
            diff, p, n = paired_test(base, run.per_user.set_index("user")[metric])
            mark = " *" if p < 0.05 else ""
            cells.append(f"{diff:+.4f} ({p:.3f}){mark}")
        overall = test.get("all", {})
        cells += [f"{overall[key]:.4f}" if key in overall else "—" for key in show]
        gaps = group_gaps(run.metrics, metric)
        cells += [f"{gaps[f]:.4f}" if f in gaps else "—" for f in fields]
        timing = run.metrics.get("timing", {})
        cells += [f"{timing.get('seconds_per_epoch', float('nan')):.3f}",
                  f"{timing.get('peak_rss_mb', float('nan')):.0f}",
                  f"{run.metrics.get('parameters', {}).get('trainable', 0):,}",
                  ms_per_user(run.metrics), str(run.metrics.get("best_epoch"))]
        rows.append(cells)
    notes.append(f"* p < 0.05, paired t-test over test users on {metric} (group all); ms/user: "
                 "inference, the full-ranking evaluation's time per evaluated user (every item scored)")
    if fields:
        notes.append(f"gap by F: {metric} of the highest minus the lowest test user group by F "
                     "(eval.user_groups)")
    return header, rows, notes
