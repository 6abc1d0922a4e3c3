"""train.init_match: ids — a run warm-started from a run on another snapshot of the data."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from kgflow.errors import RunDirError
from kgflow.testing import run_fast


def snapshot(folder, users: range, items: range, seed: int):
    """A CSV of clustered interactions among ``users`` x ``items`` (ids u<n>, i<n>)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in users:
        cluster = u % 2
        pool = [i for i in items if i % 2 == cluster]
        for i in rng.choice(pool, 8, replace=False):
            rows.append((f"u{u}", f"i{i}", int(rng.integers(0, 10**6))))
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["user", "item", "ts"]).to_csv(folder / "inter.csv", index=False)
    return folder / "inter.csv"


def spec(path, **train):
    return {"dataset": {"name": "tabular", "params": {
                "name": "snap", "interactions": {"path": str(path), "user": "user", "item": "item",
                                                 "timestamp": "ts"}}},
            "preprocess": {"rating_threshold": None},
            "encoders": {"graph": {"name": "mf", "params": {"dim": 8}}},
            "train": {"epochs": 3, "lr": 0.01, **train}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("snapshots")
    first = snapshot(root / "a", range(0, 60), range(0, 40), 1)
    second = snapshot(root / "b", range(10, 80), range(0, 50), 2)  # 10 users gone, 20 new; 10 new items
    run_fast(spec(first), root / "run-a")
    return root, second


def test_rows_are_carried_by_id_and_new_ones_folded_in(runs):
    from kgflow.config.validate import validate_located
    from kgflow.inference import TrainedRun
    from kgflow.registry import get_registry
    from kgflow.runs.assembly import build_graph, build_recommender, prepare
    from kgflow.runs.carry import carry_by_ids
    from kgflow.testing import pipeline

    root, second = runs
    old = TrainedRun.load(root / "run-a")
    loaded = validate_located(pipeline(spec(second)), "<test>")
    registry = get_registry()
    prepared = prepare(loaded, registry)
    graph = build_graph(loaded, prepared, registry)
    model = build_recommender(loaded, prepared, graph, registry)
    report = carry_by_ids(model, prepared.split, graph, root / "run-a")
    split = prepared.split
    assert report.users == {"carried": 50, "new": 20, "vanished": 10}
    assert report.items["vanished"] == 0 and report.items["new"] == split.n_items - report.items["carried"]
    assert report.tensors["by_id"] == 2
    with torch.no_grad():
        new, before = model(), old.model()
    old_users = pd.Index(old.split.user_ids.astype(str))
    old_items = pd.Index(old.split.item_ids.astype(str))
    for n, user in enumerate(split.user_ids.astype(str)):
        if user in old_users:  # the trained row, exactly
            assert torch.equal(new.user[n], before.user[old_users.get_loc(user)])
    newcomer = next(n for n, u in enumerate(split.user_ids.astype(str)) if u not in old_users)
    liked = split.train.item[split.train.user == newcomer]
    carried = [old_items.get_loc(str(split.item_ids[i])) for i in liked if str(split.item_ids[i]) in old_items]
    assert carried, "the synthetic newcomer shares items with the old snapshot"
    assert torch.allclose(new.user[newcomer], before.item[carried].mean(0), atol=1e-6)
    assert report.new_rows["folded_in"] == report.users["new"] + report.items["new"]


def test_a_run_on_a_new_snapshot_warm_starts_end_to_end(runs):
    root, second = runs
    out = root / "run-b"
    metrics = run_fast(spec(second, init_from=str(root / "run-a"), init_match="ids"), out)
    assert metrics["warm_start"]["users"] == {"carried": 50, "new": 20, "vanished": 10}
    assert json.loads((out / "metrics.json").read_text())["warm_start"]["from"] == str(root / "run-a")
    assert "## warm start (by id)" in (out / "report.md").read_text()
    with pytest.raises(RunDirError, match="init_match: ids"):  # the same-split mode refuses, and says why
        run_fast(spec(second, init_from=str(root / "run-a")), root / "run-c")
