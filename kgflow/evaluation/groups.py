"""Test metrics broken down by user groups from the user table (``eval.user_groups``).

A model that is good on average may serve some users much worse than others (women, older
users, newcomers). Each group's mean and the gap between the best and the worst group say how
evenly a model serves them; the per-user test values are all it needs, so it works alike for
every model and under DDP (the per-user values are gathered first).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from kgflow.config.schema import UserGroups
from kgflow.errors import KgflowError

GroupSpec = str | UserGroups
UNKNOWN = "unknown"


def spec_field(spec: GroupSpec) -> str:
    return spec if isinstance(spec, str) else spec.field


def check_user_groups(specs: list[GroupSpec], users: pd.DataFrame | None) -> None:
    """Refuse, before anything trains, groups the user table cannot give."""
    for i, spec in enumerate(specs):
        field = spec_field(spec)
        where = f"eval.user_groups[{i}]"
        if users is None:
            raise KgflowError(f"{where}: the dataset has no user table to group users by {field!r}")
        if field not in users.columns:
            raise KgflowError(f"{where}: the user table has no column {field!r} (it has: "
                              f"{', '.join(map(str, users.columns))})")
        if isinstance(spec, UserGroups):
            values = pd.to_numeric(users[field], errors="coerce")
            bad = users[field].notna() & values.isna()
            if bad.any():
                raise KgflowError(f"{where}: bins need numbers, but column {field!r} holds "
                                  f"{users[field][bad].iloc[0]!r} (user {users.index[bad][0]})")


def band_labels(bins: list[float]) -> list[str]:
    """``[18, 35]`` -> ``['< 18', '18-35', '>= 35']``."""
    edges = [f"{b:g}" for b in bins]
    return [f"< {edges[0]}"] + [f"{a}-{b}" for a, b in zip(edges, edges[1:])] + [f">= {edges[-1]}"]


def labels_of(spec: GroupSpec, users: pd.DataFrame, user_ids: np.ndarray) -> np.ndarray:
    """Each user's group (raw ``user_ids`` in the order wanted); ``unknown`` where the table has
    no value."""
    column = users[spec_field(spec)]
    column = column.set_axis(column.index.astype(str)).reindex(pd.Index(user_ids.astype(str)))
    if isinstance(spec, str):
        text = column.astype(str).where(column.notna(), UNKNOWN)
        return text.replace("", UNKNOWN).to_numpy(dtype=object)
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    names = np.array(band_labels(spec.bins), dtype=object)
    out = names[np.digitize(values, spec.bins, right=False)]
    out[np.isnan(values)] = UNKNOWN
    return out


def user_group_metrics(per_user: dict[str, torch.Tensor], user_ids: np.ndarray,
                       users: pd.DataFrame | None, specs: list[GroupSpec]) -> dict[str, Any]:
    """``{field: {"groups": {label: {metric: mean, "users": n}}, "gap": {metric: highest - lowest
    group mean}, "lowest": {metric: label}}}`` from the per-user test values
    (``per_user["user"]``: dense ids; ``user_ids``: dense -> raw). Users without a value form the
    group ``unknown``, which is listed but left out of the gap."""
    if not specs or not per_user or users is None:
        return {}
    dense = per_user["user"].numpy()
    keys = [k for k in per_user if k != "user"]
    frame = pd.DataFrame({k: per_user[k].double().numpy() for k in keys})
    out: dict[str, Any] = {}
    for spec in specs:
        labels = labels_of(spec, users, user_ids[dense])
        means = frame.groupby(labels, sort=True)
        table = means.mean()
        sizes = means.size()
        if isinstance(spec, UserGroups):  # bands in their numeric order, not alphabetically
            table = table.reindex([b for b in band_labels(spec.bins) + [UNKNOWN] if b in table.index])
        groups = {str(label): {**{k: float(table.loc[label, k]) for k in keys}, "users": int(sizes[label])}
                  for label in table.index}
        known = table.drop(index=UNKNOWN, errors="ignore")
        entry: dict[str, Any] = {"groups": groups}
        if len(known) >= 2:
            entry["gap"] = {k: float(known[k].max() - known[k].min()) for k in keys}
            entry["lowest"] = {k: str(known[k].idxmin()) for k in keys}
        out[spec_field(spec)] = entry
    return out


def report_lines(user_groups: dict[str, Any], keys: list[str]) -> list[str]:
    """Markdown tables for report.md: one per grouping, a row per group, then the gap."""
    lines: list[str] = []
    for field, entry in user_groups.items():
        lines += [f"### by {field}", "", "| group | users | " + " | ".join(keys) + " |",
                  "|---|---|" + "---|" * len(keys)]
        for label, values in entry["groups"].items():
            lines.append(f"| {label} | {values['users']} | "
                         + " | ".join(f"{values.get(k, float('nan')):.4f}" for k in keys) + " |")
        if "gap" in entry:
            lines.append("| gap (highest - lowest) | | " + " | ".join(
                f"{entry['gap'].get(k, float('nan')):.4f}" for k in keys) + " |")
        lines.append("")
    return lines
