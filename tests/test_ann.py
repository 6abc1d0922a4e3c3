"""kgflow export --what index: an HNSW index of the item vectors, its recall measured."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")

from kgflow.ann import ItemIndex, build_index, measure_recall  # noqa: E402
from kgflow.errors import KgflowError  # noqa: E402
from kgflow.inference import TrainedRun  # noqa: E402
from kgflow.testing import run_fast  # noqa: E402


def test_recall_is_measured_against_exact_inner_product_ranking():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(3000, 16)).astype(np.float32)
    users = rng.normal(size=(200, 16)).astype(np.float32)
    good = measure_recall(build_index(items, m=32, ef_search=256), users, items, [10])
    poor = measure_recall(build_index(items, m=4, ef_construction=8, ef_search=10), users, items, [10])
    assert good["recall@10"] > 0.95 and good["users_measured"] == 200
    assert poor["recall@10"] < good["recall@10"]  # the measurement sees a worse index


def test_export_index_from_the_cli_and_query_it(tmp_path, invoke):
    out = tmp_path / "mf"
    run_fast({"encoders": {"graph": {"name": "mf", "params": {"dim": 8}}}, "train": {"epochs": 2}}, out)
    result = invoke("export", str(out), "--what", "index", "--k", "20")
    assert result.exit_code == 0, result.output
    assert "recall@10" in result.output and "recall@20" in result.output
    folder = out / "exports" / "index"
    info = json.loads((folder / "index.json").read_text())
    assert info["items"] == 40 and info["metric"] == "inner_product" and info["recall@10"] > 0.9
    index = ItemIndex(folder)
    run = TrainedRun.load(out)
    user = str(run.split.user_ids[0])
    found, scores = index.search(index.user_vector(user), 5)
    exact = run.recommend([user], k=5, exclude="none")
    assert list(found[0]) == [str(i) for i in exact["item"]]
    assert scores[0] == pytest.approx(exact["score"].to_numpy(), rel=1e-4)
    again = invoke("export", str(out), "--what", "index")
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert invoke("export", str(out), "--what", "index", "--overwrite").exit_code == 0


def test_models_not_scored_by_dot_product_are_refused(tmp_path, monkeypatch):
    from kgflow.ann import dot_product_vectors

    out = tmp_path / "mf"
    run_fast({"encoders": {"graph": {"name": "mf", "params": {"dim": 8}}}, "train": {"epochs": 1}}, out)
    run = TrainedRun.load(out)
    plain = run.model.full_scores
    monkeypatch.setattr(run.model, "full_scores", lambda emb, users: torch.sigmoid(plain(emb, users)))
    with pytest.raises(KgflowError, match="does not score by the dot product"):
        dot_product_vectors(run, np.arange(5))
