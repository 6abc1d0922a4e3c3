"""Using finished runs: recommend, export, evaluate external scores."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from kgflow.errors import KgflowError, RunDirError
from kgflow.inference import TrainedRun, evaluate_scores, read_scores
from kgflow.testing import run_fast


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "kg"
    run_fast({"graph": "collaborative_kg",
              "encoders": {"graph": {"name": "kgin", "params": {"dim": 8}}}, "train": {"epochs": 3}}, out)
    return out


def test_recommend_skips_known_items_and_uses_original_ids(finished_run):
    run = TrainedRun.load(finished_run)
    user = str(run.split.user_ids[0])
    table = run.recommend([user], k=5)
    assert table["rank"].tolist() == [1, 2, 3, 4, 5]
    seen = set()
    for part in (run.split.train, run.split.valid, run.split.test):
        seen |= {str(run.split.item_ids[i]) for u, i in zip(part.user, part.item) if u == 0}
    assert not seen & set(table["item"])
    assert table["score"].is_monotonic_decreasing


def test_exported_topk_reproduces_the_test_metrics(finished_run, invoke, tmp_path):
    out = tmp_path / "topk.csv"
    result = invoke("export", str(finished_run), "--what", "topk", "--k", "30", "--format", "csv",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    frame = read_scores(out)
    metrics, notes = evaluate_scores(frame, TrainedRun.load(finished_run))
    expected = json.loads((finished_run / "metrics.json").read_text())["test"]["all"]
    for key in ("ndcg@10", "recall@10", "hit@5"):
        assert metrics["all"][key] == pytest.approx(expected[key], abs=1e-6)
    assert notes == []
    again = invoke("export", str(finished_run), "--what", "topk", "--format", "csv", "--out", str(out))
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_embeddings_export(finished_run, invoke, tmp_path):
    result = invoke("export", str(finished_run), "--what", "embeddings", "--format", "parquet",
                    "--out", str(tmp_path / "emb.parquet"))
    assert result.exit_code == 0, result.output
    users = pd.read_parquet(tmp_path / "emb-users.parquet")
    assert "user" in users.columns and users.shape[1] == 1 + 8  # KGIN sums its hops: d columns


def test_bad_score_files_are_counted_not_fatal(finished_run):
    run = TrainedRun.load(finished_run)
    u, i = str(run.split.user_ids[0]), str(run.split.item_ids[0])
    frame = pd.DataFrame({"user": [u, u, u, "ghost"], "item": [i, i, "nope", i],
                          "score": [1.0, 2.0, float("nan"), 3.0]})
    _, notes = evaluate_scores(frame, run)
    text = " | ".join(notes)
    assert "1 rows with a missing or non-numeric score" in text
    assert "1 duplicate (user, item) rows" in text
    assert "1 rows name users or items this split does not have" in text
    assert "evaluated users have no scores" in text


def test_unknown_user_and_unfinished_runs_get_messages(finished_run, tmp_path, invoke):
    result = invoke("recommend", str(finished_run), "--user", "no-such-user")
    assert result.exit_code == 2 and "unknown user id 'no-such-user'" in result.output
    with pytest.raises(RunDirError, match="not a kgflow run directory"):
        TrainedRun.load(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text(json.dumps({"format": 1, "state": "running", "pipeline": "p.yaml"}))
    with pytest.raises(RunDirError, match="the run is running, not finished.*--resume"):
        TrainedRun.load(broken)
    (broken / "run.json").write_text(json.dumps({"format": 99, "kgflow": "9.0", "state": "finished"}))
    with pytest.raises(RunDirError, match="run format 99 was written by kgflow 9.0"):
        TrainedRun.load(broken)
    with pytest.raises(KgflowError, match="score file not found"):
        read_scores(tmp_path / "none.csv")


def test_fold_in_ranks_the_liked_items_first_at_a_typical_length():
    import torch

    from kgflow.models import Embeddings, fold_in

    generator = torch.Generator().manual_seed(0)
    items = torch.randn(60, 16, generator=generator)
    users = torch.randn(5, 16, generator=generator)
    users = 2.0 * users / users.norm(dim=1, keepdim=True)
    liked = torch.tensor([3, 41])
    vector = fold_in(Embeddings(users, items), liked)
    assert vector.norm().item() == pytest.approx(2.0, rel=1e-5)
    top = torch.topk(items @ vector, 3).indices.tolist()
    assert {3, 41} <= set(top)
    assert torch.equal(vector, fold_in(Embeddings(users, items), liked))  # deterministic


def test_new_users_from_liked_items(finished_run, invoke):
    run = TrainedRun.load(finished_run)
    liked = [str(i) for i in run.split.item_ids[:3]]
    table = run.recommend_new(liked, k=5)
    assert table["rank"].tolist() == [1, 2, 3, 4, 5] and not set(liked) & set(table["item"].astype(str))
    args = ["recommend", str(finished_run), "-k", "4", "--json"] + sum((["--liked", i] for i in liked), [])
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["item"] for r in records] == table["item"].tolist()[:4] and records[0]["user"] == "new"
    result = invoke("recommend", str(finished_run), "--liked", "no-such-item")
    assert result.exit_code == 2 and "unknown item id 'no-such-item'" in result.output
    result = invoke("recommend", str(finished_run), "--profile", "likes westerns")
    assert result.exit_code == 2 and "does not read text" in result.output
    result = invoke("recommend", str(finished_run))
    assert result.exit_code == 2 and "--liked/--profile" in result.output
    result = invoke("recommend", str(finished_run), "--user", "1", "--liked", liked[0])
    assert result.exit_code == 2 and "not both" in result.output


def test_explanations_follow_kg_paths_and_are_checked(tmp_path, invoke):
    out = tmp_path / "kgat"
    run_fast({"graph": "collaborative_kg", "encoders": {"graph": {"name": "kgat", "params": {"dim": 8}}},
              "objective": {"auxiliary": ["transr"]}, "train": {"epochs": 3}}, out)
    from kgflow.explain import Explainer

    run = TrainedRun.load(out)
    # the synthetic KG's few genres are each shared by half the items: allow them as path middles
    records = Explainer(run, max_item_share=1.0).explain([str(run.split.user_ids[0])], k=5)
    with_paths = [r for r in records if r["paths"]]
    assert with_paths, "the synthetic KG links items through shared entities"
    path = with_paths[0]["paths"][0]
    history = {str(run.split.item_ids[i]) for u, i in zip(run.split.train.user, run.split.train.item) if u == 0}
    assert path["history_item"] in history and path["strength"] > 0
    assert "you liked" in path["sentence"] and path["entity"] in run.graph.extra_names
    result = invoke("recommend", str(out), "--user", str(run.split.user_ids[0]), "--explain", "-k", "3",
                    "--hub-share", "1")
    assert result.exit_code == 0 and "you liked" in result.output
    check = invoke("explain-check", str(out), "--sample", "5", "-k", "3", "--hub-share", "1")
    assert check.exit_code == 0, check.output
    saved = json.loads((out / "exports" / "faithfulness.json").read_text())
    assert saved["recommendations"] == 15 and saved["checked"] <= saved["with_path"]


def test_compare_marks_significance_and_refuses_other_splits(finished_run, tmp_path, invoke):
    other = tmp_path / "mf"
    run_fast({"encoders": {"graph": {"name": "mf", "params": {"dim": 8}}}, "train": {"epochs": 1}}, other)
    assert (other / "test_per_user.csv").is_file()
    result = invoke("compare", str(finished_run), str(other))
    assert result.exit_code == 0, result.output
    assert "| kg |" in result.output and "baseline" in result.output and "paired t-test" in result.output
    moved = tmp_path / "other-split"
    run_fast({"encoders": {"graph": {"name": "mf", "params": {"dim": 8}}}, "train": {"epochs": 1},
              "seed": 99}, moved)
    refused = invoke("compare", str(finished_run), str(moved))
    assert refused.exit_code == 2 and "different splits" in refused.output


def test_paired_test_against_hand_values():
    from kgflow.compare import paired_test

    a = pd.Series([0.1, 0.2, 0.3, 0.4], index=list("abcd"))
    b = pd.Series([0.2, 0.2, 0.5, 0.4, 9.0], index=list("abcde"))
    diff, p, n = paired_test(a, b)
    assert n == 4 and diff == pytest.approx(0.075)
    # differences 0.1, 0, 0.2, 0: sd = 0.0957, z = 0.075 / (0.0957 / 2) = 1.567 -> p = 0.117
    assert p == pytest.approx(0.117, abs=0.002)


def test_report_draws_pictures_for_one_and_several_runs(finished_run, tmp_path, invoke):
    result = invoke("report", str(finished_run), "--out", str(tmp_path / "one"))
    assert result.exit_code == 0, result.output
    pictures = sorted(p.name for p in (tmp_path / "one").glob("*.png"))
    assert any("training" in p for p in pictures) and any("groups" in p for p in pictures)
    page = (tmp_path / "one" / "index.html").read_text()
    assert "<img src=" in page and "ndcg@10" in page
    other = tmp_path / "mf"
    run_fast({"encoders": {"graph": {"name": "mf", "params": {"dim": 8}}}, "train": {"epochs": 1}}, other)
    result = invoke("report", str(finished_run), str(other), "--out", str(tmp_path / "two"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "two" / "comparison.png").stat().st_size > 1000
    assert "Comparison" in (tmp_path / "two" / "index.html").read_text()


def test_a_run_serves_from_its_directory_alone(invoke, tmp_path, monkeypatch):
    """A pipeline's relative data paths are relative to the pipeline file; once trained, the run
    serves, exports and evaluates with the raw files gone and from another working directory."""
    import shutil

    from conftest import REPO

    project = tmp_path / "project"
    shutil.copytree(REPO / "examples" / "csv-data", project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the pipeline's paths do not depend on where kgflow runs
    run_dir = tmp_path / "run"
    result = invoke("run", str(project / "pipeline.yaml"), "--out", str(run_dir), "--no-progress",
                    "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output
    resolved = (run_dir / "resolved.yaml").read_text()
    assert str(project / "ratings.csv") in resolved  # recorded as read
    before = TrainedRun.load(run_dir).recommend([str(TrainedRun.load(run_dir).split.user_ids[0])], k=5)
    for raw in project.glob("*.csv"):
        raw.unlink()
    monkeypatch.chdir(tmp_path)
    run = TrainedRun.load(run_dir)
    pd.testing.assert_frame_equal(run.recommend([str(run.split.user_ids[0])], k=5), before)
    out = tmp_path / "topk.parquet"
    assert invoke("export", str(run_dir), "--what", "topk", "--k", "20", "--out", str(out)).exit_code == 0
    metrics, _ = evaluate_scores(read_scores(out), run)
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]["all"]
    assert metrics["all"]["ndcg@10"] == pytest.approx(saved["ndcg@10"], abs=1e-5)


def test_a_damaged_saved_split_is_a_clear_error(finished_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    (copy / "data" / "split.parquet").write_bytes(b"not parquet")
    with pytest.raises(RunDirError, match=r"split\.parquet: the run's saved data cannot be read"):
        TrainedRun.load(copy)


def test_data_paths_from_set_are_relative_to_the_current_directory(runner, tmp_path, monkeypatch):
    from conftest import REPO
    from kgflow.config import load_pipeline

    monkeypatch.chdir(REPO)
    loaded = load_pipeline(REPO / "examples" / "csv-data" / "pipeline.yaml",
                           ["dataset.params.items.path=examples/csv-data/books.csv"])
    params = loaded.config.dataset.parsed
    assert params.interactions.path == str(REPO / "examples" / "csv-data" / "ratings.csv")
    assert params.items.path == str(REPO / "examples" / "csv-data" / "books.csv")


def test_a_run_that_never_validated_during_training_still_serves(tmp_path):
    """eval_every beyond the epochs: no best epoch was chosen, so the final weights are the
    run's model; they are saved, serve, and reproduce the reported test metrics."""
    from conftest import assert_reported_metrics_reproduce

    out = tmp_path / "once"
    run_fast({"train": {"epochs": 2, "eval_every": 5, "early_stopping": None}}, out)
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert_reported_metrics_reproduce(out, beats_random=False)
    assert len(TrainedRun.load(out).recommend([str(TrainedRun.load(out).split.user_ids[0])], k=3)) == 3
