"""Beyond-accuracy metrics and per-user-group results, against hand-computed values and end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from kgflow.config.schema import UserGroups
from kgflow.config.schema import Preprocess, SplitConfig
from kgflow.data.preprocess import prepare_interactions
from kgflow.data.split import split_interactions
from kgflow.errors import KgflowError
from kgflow.evaluation.context import metric_context
from kgflow.evaluation.groups import band_labels, user_group_metrics
from kgflow.evaluation.ranking import CSR, EvalTask, RankingEvaluator, metric_functions
from kgflow.registry.contexts import MetricContext
from kgflow.testing import tiny_data
from kgflow_plugins.metrics import beyond as B

NO = torch.zeros(2, 2)  # hits and n_pos: the beyond-accuracy metrics ignore them
NPOS = torch.ones(2)


def ctx(popularity: list[float], n_users: int = 8, items: pd.DataFrame | None = None) -> MetricContext:
    return MetricContext(item_popularity=torch.tensor(popularity, dtype=torch.float64), n_users=n_users,
                         items=items)


def test_catalog_metrics_by_hand():
    assert B.coverage(torch.tensor([2.0, 0, 1, 0])).item() == pytest.approx(0.5)
    # sorted counts 0,0,0,4: sum((2i - n - 1) c_i) / (n sum c) = (3 * 4) / (4 * 4)
    assert B.gini(torch.tensor([0.0, 4, 0, 0])).item() == pytest.approx(0.75)
    assert B.gini(torch.tensor([1.0, 1, 1, 1])).item() == pytest.approx(0.0)
    assert B.gini(torch.zeros(3)).item() == 0.0


def test_list_metrics_by_hand():
    top = torch.tensor([[0, 1], [2, 3]])
    pop = ctx([8, 4, 2, 0])
    avg = B.build_avg_popularity(B.NoParams(), pop)
    assert avg(top, NO, NPOS).tolist() == pytest.approx([6.0, 1.0])
    # -log2(p / 8): item 0 -> 0, 1 -> 1, 2 -> 2, 3 (never taken, counted once) -> 3
    novelty = B.build_novelty(B.NoParams(), pop)
    assert novelty(top, NO, NPOS).tolist() == pytest.approx([0.5, 2.5])
    tail_ctx = ctx([10, 5, 1, 0, 3])
    # head 20% of 5 items: item 0 only; 40%: items 0 and 1
    assert B.build_tail_share(B.TailParams(), tail_ctx)(torch.tensor([[0, 1], [3, 4]]), NO, NPOS).tolist() \
        == pytest.approx([0.5, 1.0])
    assert B.build_tail_share(B.TailParams(head_share=0.4), tail_ctx)(
        torch.tensor([[0, 1], [3, 4]]), NO, NPOS).tolist() == pytest.approx([0.0, 1.0])


def test_intra_list_diversity_by_hand():
    items = pd.DataFrame({"genre": ["A B", "A", "B", ""]})
    ild = B.build_ild(B.IldParams(field="genre"), ctx([1, 1, 1, 1], items=items))
    # cos(AB, A) = cos(AB, B) = 1/sqrt(2), cos(A, B) = 0; the empty item makes no pair
    expected = (2 * (1 - 1 / math.sqrt(2)) + 1) / 3
    assert ild(torch.tensor([[0, 1, 2]]), NO, NPOS).item() == pytest.approx(expected, abs=1e-6)
    assert ild(torch.tensor([[1, 3]]), NO, NPOS).item() == 0.0
    numbers = pd.DataFrame({"vec": ["1 0", "0 1", "1 1"]})
    ild_n = B.build_ild(B.IldParams(field="vec", kind="numbers"), ctx([1, 1, 1], items=numbers))
    assert ild_n(torch.tensor([[0, 1]]), NO, NPOS).item() == pytest.approx(1.0)
    with pytest.raises(KgflowError, match="no column 'missing'"):
        B.build_ild(B.IldParams(field="missing"), ctx([1], items=items))


def test_evaluator_counts_catalog_metrics_over_all_lists_and_per_item_group():
    # 2 users x 4 items; nothing masked; user 0 likes item 0, user 1 item 3
    truth = CSR(torch.tensor([0, 1, 2]), torch.tensor([0, 3]))
    empty = CSR(torch.zeros(3, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    cold = torch.tensor([False, False, True, True])
    task = EvalTask(truth, empty, {"all": None, "cold_items": cold}, torch.tensor([0, 1]), 4)
    context = metric_context_for(4)
    ev = RankingEvaluator(task, [1, 2], metric_functions(["ndcg", "coverage", "gini", "avg_popularity"],
                                                         context=context))
    scores = torch.tensor([[4.0, 3, 2, 1], [4.0, 3, 1, 2]])  # both rank items 0, 1 first
    ev.add(torch.tensor([0, 1]), scores.clone())
    out = ev.result()
    assert out["all"]["coverage@1"] == pytest.approx(1 / 4)  # item 0 only
    assert out["all"]["coverage@2"] == pytest.approx(2 / 4)
    assert out["all"]["gini@1"] == pytest.approx((3 * 2) / (4 * 2))
    assert out["all"]["avg_popularity@2"] == pytest.approx((10 + 5) / 2)
    # the cold group holds user 1 only (item 3), ranking items 2 and 3: its top 1 is item 3
    assert out["cold_items"]["coverage@1"] == pytest.approx(1 / 2)
    assert list(out["all"]) == ["ndcg@1", "ndcg@2", "coverage@1", "coverage@2", "gini@1", "gini@2",
                                "avg_popularity@1", "avg_popularity@2", "users"]
    per_user = ev.per_user()
    assert "coverage@1" not in per_user and per_user["avg_popularity@1"].tolist() == [10.0, 10.0]


def metric_context_for(n_items: int) -> MetricContext:
    return ctx([10, 5, 1, 0][:n_items], n_users=2)


def test_context_takes_popularity_from_training_interactions_only():
    data = tiny_data()
    split = split_interactions(prepare_interactions(data, Preprocess()), SplitConfig(), seed=1)
    context = metric_context(split, data.items)
    expected = np.bincount(split.train.item, minlength=split.n_items)
    assert context.item_popularity.tolist() == expected.tolist()
    assert context.n_users == split.n_users
    # the item table comes in dense item order
    assert context.items["title"].tolist() == data.items.loc[list(split.item_ids), "title"].tolist()


def test_user_group_means_and_gap_by_hand():
    per_user = {"user": torch.tensor([0, 1, 2, 3]), "ndcg@10": torch.tensor([0.1, 0.3, 0.5, 0.7])}
    user_ids = np.array(["a", "b", "c", "d"], dtype=object)
    users = pd.DataFrame({"gender": ["F", "M", "F", None], "age": ["17", "30", "61", "40"]},
                         index=pd.Index(["a", "b", "c", "d"]))
    out = user_group_metrics(per_user, user_ids, users, ["gender", UserGroups(field="age", bins=[18, 50])])
    g = out["gender"]
    assert g["groups"]["F"] == {"ndcg@10": pytest.approx(0.3), "users": 2}
    assert g["groups"]["unknown"]["users"] == 1
    assert g["gap"]["ndcg@10"] == pytest.approx(0.0, abs=1e-6) and set(g["groups"]) == {"F", "M", "unknown"}
    a = out["age"]
    assert list(a["groups"]) == band_labels([18, 50]) == ["< 18", "18-50", ">= 50"]
    assert a["groups"]["18-50"]["ndcg@10"] == pytest.approx(0.5)
    assert a["gap"]["ndcg@10"] == pytest.approx(0.4) and a["lowest"]["ndcg@10"] == "< 18"


BEYOND = """
kgflow: 1
extends: tiny.yaml
name: beyond
eval:
  ks: [5, 10]
  metrics: [ndcg, coverage, gini, novelty, tail_share, ild]
  metric_params: {ild: {field: genre}, tail_share: {head_share: 0.1}}
  user_groups: [gender, {field: age, bins: [30, 50]}]
"""


def test_pipeline_reports_beyond_accuracy_and_user_groups(tiny_pipeline, write, invoke, tmp_path):
    pipe = write("beyond.yaml", BEYOND)
    out = tmp_path / "run"
    result = invoke("run", str(pipe), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]["all"]
    for key in ("coverage@5", "gini@5", "novelty@5", "tail_share@5", "ild@5"):
        assert key in test
    assert 0 < test["coverage@5"] <= 1 and 0 <= test["gini@5"] < 1 and 0 <= test["ild@5"] <= 1
    per_user = pd.read_csv(out / "test_per_user.csv", dtype={"user": str})
    assert "coverage@5" not in per_user  # a catalog metric has no per-user value
    assert per_user["novelty@5"].mean() == pytest.approx(test["novelty@5"], rel=1e-4)
    groups = metrics["user_groups"]["test"]
    assert set(groups) == {"gender", "age"}
    assert sum(g["users"] for g in groups["gender"]["groups"].values()) == len(per_user)
    assert list(groups["age"]["groups"])[:1] == ["< 30"]
    assert "by user group" in (out / "report.md").read_text()


@pytest.mark.parametrize("edit, message, path", [
    ("  metrics: [ndcg, ild]\n", "needs settings: field", "eval.metrics[1]"),
    ("  metrics: [ndcg]\n  metric_params: {ild: {field: genre}}\n", "eval.metrics does not name", "eval.metric_params.ild"),
    ("  metrics: [ndcg, tail_share]\n  metric_params: {tail_share: {head_share: 2}}\n", "less than 1",
     "eval.metric_params.tail_share.head_share"),
])
def test_metric_settings_are_checked_with_their_yaml_path(write, invoke, tiny_pipeline, edit, message, path):
    pipe = write("bad.yaml", "kgflow: 1\nextends: tiny.yaml\neval:\n" + edit)
    result = invoke("validate", str(pipe))
    assert result.exit_code != 0
    assert message in result.output and path in result.output


def test_unknown_user_column_is_refused_before_the_run_starts(write, invoke, tiny_pipeline, tmp_path):
    pipe = write("bad.yaml", "kgflow: 1\nextends: tiny.yaml\neval:\n  user_groups: [income]\n")
    out = tmp_path / "run"
    result = invoke("run", str(pipe), "--out", str(out), "--no-progress")
    assert result.exit_code != 0
    assert "eval.user_groups[0]" in result.output and "no column 'income'" in result.output
    assert not (out / "metrics.json").exists()


def test_bins_must_ascend():
    with pytest.raises(ValueError):
        UserGroups(field="age", bins=[30, 18])


def test_compare_shows_beyond_accuracy_columns_and_group_gaps(tiny_pipeline, write, invoke, tmp_path):
    pipe = write("beyond.yaml", BEYOND)
    runs = []
    for seed in (3, 3):
        out = tmp_path / f"run{len(runs)}"
        assert invoke("run", str(pipe), "--out", str(out), "--no-progress", "--set",
                      f"seed={seed}").exit_code == 0
        runs.append(str(out))
    result = invoke("compare", *runs, "--show", "coverage@5", "--show", "nothing@5")
    assert result.exit_code == 0, result.output
    header, _, first = result.output.splitlines()[:3]
    assert "coverage@5" in header and "ndcg@10 gap by age" in header and "ndcg@10 gap by gender" in header
    gap = json.loads((tmp_path / "run0" / "metrics.json").read_text())["user_groups"]["test"]["gender"]["gap"]
    cells = [c.strip() for c in first.strip("|").split("|")]
    assert f"{gap['ndcg@10']:.4f}" in cells and "—" in cells  # an unknown key shows as missing


def test_catalog_counts_are_reduced_over_processes_like_one_process():
    """Under DDP each process ranks a share of the users: coverage and Gini must come from every
    process's lists together (their counts summed), not from one process's share."""
    n_users, n_items = 30, 12
    rng = np.random.default_rng(4)
    truth = CSR(torch.arange(n_users + 1), torch.from_numpy(rng.integers(0, n_items, n_users)))
    empty = CSR(torch.zeros(n_users + 1, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    task = EvalTask(truth, empty, {"all": None}, torch.arange(n_users), n_items)
    fns = metric_functions(["ndcg", "coverage", "gini"], context=ctx([1.0] * n_items, n_users))
    scores = torch.from_numpy(rng.normal(size=(n_users, n_items))).float()
    whole = RankingEvaluator(task, [3], fns)
    whole.add(torch.arange(n_users), scores.clone())
    parts = [RankingEvaluator(task, [3], fns) for _ in range(2)]
    for rank, part in enumerate(parts):
        mine = torch.arange(n_users)[rank::2]
        part.add(mine, scores[mine].clone())
    calls: list[list[torch.Tensor]] = [[], []]
    for rank, part in enumerate(parts):  # what each rank contributes to each collective call
        part.result(reduce=lambda t, rank=rank: calls[rank].append(t) or t)
    step = iter(range(len(calls[0])))
    reduced = parts[0].result(reduce=lambda t: (lambda i: calls[0][i] + calls[1][i])(next(step)))
    for key, value in whole.result()["all"].items():
        assert reduced["all"][key] == pytest.approx(value, abs=1e-12), key
