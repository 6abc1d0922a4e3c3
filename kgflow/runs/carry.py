"""Warm start across data snapshots: a finished run's parameters carried into a new run by the
original ids of users, items and KG entities (``train.init_match: ids``).

The core knows no model's layout, so it recognises id-indexed tables by their rows: a tensor
whose first dimension is the old run's number of users (items, graph nodes) and the new run's
number of users (items, graph nodes) holds one row per user (item, node). Such rows are carried by
id: a user or item present in both snapshots keeps its trained row; one that vanished is dropped;
a new one starts from a fold-in of its training interactions in the new snapshot (the mean of the
carried rows of the items it interacted with, or of the users who interacted with it), or keeps the
model's own initialisation when it has no carried neighbour, or when the model builds its vectors
from text or the KG (those tables are not id-indexed and are simply copied). Every other tensor of
the same name and shape is copied as it is. When the user and item counts coincide, a table is
attributed by its name (``user``/``item``); an undecidable one keeps its initialisation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kgflow.errors import RunDirError


@dataclass
class Layout:
    """Ids along each kind of id-indexed table."""

    users: np.ndarray
    items: np.ndarray
    nodes: np.ndarray  # users, items, then the graph's other nodes, in graph order (prefixed)

    @classmethod
    def of(cls, split, graph) -> "Layout":
        users = np.asarray(split.user_ids).astype(str)
        items = np.asarray(split.item_ids).astype(str)
        nodes = np.concatenate([np.char.add("u:", users), np.char.add("i:", items),
                                np.char.add("e:", np.asarray(graph.extra_names, dtype=str))]) \
            if graph is not None else np.zeros(0, dtype=str)
        return cls(users, items, nodes)

    def kinds(self) -> dict[str, np.ndarray]:
        return {"user": self.users, "item": self.items, "node": self.nodes}


@dataclass
class CarryReport:
    """What a warm start across snapshots did, for metrics.json and the run report."""

    source: str
    users: dict[str, int] = field(default_factory=dict)  # carried, new, vanished
    items: dict[str, int] = field(default_factory=dict)
    tensors: dict[str, int] = field(default_factory=lambda: {"by_id": 0, "copied": 0, "fresh": 0})
    new_rows: dict[str, int] = field(default_factory=lambda: {"folded_in": 0, "initialised": 0})

    def as_dict(self) -> dict:
        return {"from": self.source, "users": self.users, "items": self.items,
                "tensors": self.tensors, "new_rows": self.new_rows}

    def line(self) -> str:
        u, i = self.users, self.items
        return (f"users {u['carried']:,} carried, {u['new']:,} new, {u['vanished']:,} vanished; "
                f"items {i['carried']:,} carried, {i['new']:,} new, {i['vanished']:,} vanished; "
                f"tensors {self.tensors['by_id']} by id, {self.tensors['copied']} copied, "
                f"{self.tensors['fresh']} fresh; new rows {self.new_rows['folded_in']:,} folded in, "
                f"{self.new_rows['initialised']:,} at their initialisation")


def _kind_of(name: str, rows: int, old: Layout, new: Layout) -> str | None:
    """Which id kind a tensor of ``rows`` rows (old) is indexed by, if any."""
    candidates = [k for k, ids in old.kinds().items() if len(ids) == rows and len(ids)]
    if len(candidates) > 1:
        named = [k for k in candidates if k in name.lower()]
        candidates = named if len(named) == 1 else []
    return candidates[0] if candidates else None


def _interactions(split) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(split.train.user), np.asarray(split.train.item)


def _fold_in(table: torch.Tensor, new_rows: np.ndarray, partner: torch.Tensor | None,
             partner_carried: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> int:
    """Set each new row of ``table`` to the mean of the carried ``partner`` rows it interacted
    with (``pairs``: (this kind's index, partner index)); returns how many rows were set."""
    if partner is None or not len(new_rows):
        return 0
    mine, theirs = pairs
    is_new = np.zeros(table.shape[0], dtype=bool)
    is_new[new_rows] = True
    keep = is_new[mine] & partner_carried[theirs]
    mine, theirs = mine[keep], theirs[keep]
    if not len(mine):
        return 0
    sums = torch.zeros_like(table)
    sums.index_add_(0, torch.from_numpy(mine), partner[torch.from_numpy(theirs)])
    counts = torch.bincount(torch.from_numpy(mine), minlength=table.shape[0])
    has = counts > 0
    table[has] = sums[has] / counts[has].unsqueeze(1).to(table.dtype)
    return int(has.sum())


def carry_by_ids(model: torch.nn.Module, split, graph, run_dir: str | Path) -> CarryReport:
    """Warm-start ``model`` (built on ``split`` and ``graph``) from the finished run ``run_dir``
    on another snapshot of the data; see the module docstring."""
    from kgflow.inference import TrainedRun

    path = Path(run_dir)
    try:
        old = TrainedRun.load(path)
    except RunDirError as exc:
        raise RunDirError(f"train.init_from: {exc}") from None
    old_layout, new_layout = Layout.of(old.split, old.graph), Layout.of(split, graph)
    source = old.model.state_dict()
    own = model.state_dict()
    report = CarryReport(str(path))
    maps = {kind: pd.Index(old_ids).get_indexer(new_layout.kinds()[kind])
            for kind, old_ids in old_layout.kinds().items()}
    for kind, label in (("user", "users"), ("item", "items")):
        position = maps[kind]
        carried = int((position >= 0).sum())
        setattr(report, label, {"carried": carried, "new": int((position < 0).sum()),
                                "vanished": len(old_layout.kinds()[kind]) - carried})
    updates: dict[str, torch.Tensor] = {}
    by_kind: dict[str, list[tuple[str, np.ndarray]]] = {"user": [], "item": [], "node": []}
    for name, mine in own.items():
        theirs = source.get(name)
        if theirs is None or not theirs.dim() or theirs.shape[1:] != mine.shape[1:]:
            continue
        kind = _kind_of(name, theirs.shape[0], old_layout, new_layout)
        if kind is not None and mine.shape[0] == len(new_layout.kinds()[kind]):
            position = maps[kind]
            table = mine.clone()
            hit = position >= 0
            table[torch.from_numpy(np.flatnonzero(hit))] = theirs[torch.from_numpy(position[hit])].to(mine.dtype)
            updates[name] = table
            by_kind[kind].append((name, np.flatnonzero(~hit)))
            report.tensors["by_id"] += 1
        elif theirs.shape == mine.shape:
            updates[name] = theirs.to(mine.dtype)
            report.tensors["copied"] += 1
    # new users and items: fold them in from their interactions in the new snapshot
    users, items = _interactions(split)
    n_users = len(new_layout.users)
    for kind, partner_kind, pairs in (("user", "item", (users, items)), ("item", "user", (items, users))):
        partners = by_kind[partner_kind]
        for name, new_rows in by_kind[kind]:
            table = updates[name]
            match = next(((n, r) for n, r in partners if updates[n].shape[1:] == table.shape[1:]), None)
            partner, carried = None, np.zeros(0, dtype=bool)
            if match is not None:
                partner = updates[match[0]]
                carried = np.ones(partner.shape[0], dtype=bool)
                carried[match[1]] = False
            done = _fold_in(table, new_rows, partner, carried, pairs)
            report.new_rows["folded_in"] += done
            report.new_rows["initialised"] += len(new_rows) - done
    for name, new_rows in by_kind["node"]:  # users and items of one node table fold in from each other
        table = updates[name]
        carried = np.ones(table.shape[0], dtype=bool)
        carried[new_rows] = False
        user_rows = new_rows[new_rows < n_users]
        item_rows = new_rows[(new_rows >= n_users) & (new_rows < n_users + len(new_layout.items))]
        done = _fold_in(table, user_rows, table.clone(), carried, (users, items + n_users))
        done += _fold_in(table, item_rows, table.clone(), carried, (items + n_users, users))
        report.new_rows["folded_in"] += done
        report.new_rows["initialised"] += len(new_rows) - done
    model.load_state_dict(updates, strict=False)
    report.tensors["fresh"] = sum(1 for n, p in model.named_parameters() if p.requires_grad and n not in updates)
    return report
