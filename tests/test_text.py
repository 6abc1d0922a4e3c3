"""Text encoders and the text fusions, with a tiny random BERT built from a config (no download)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_reported_metrics_reproduce
import torch

from kgflow.errors import ConfigError, KgflowError
from kgflow.testing import run_fast


def text_encoder(model: Path, **params) -> dict:
    return {"name": "text", "params": {"model": str(model), "item_template": "{title}. {genre}",
                                       **params}}


def test_content_baseline_scores_without_training(tiny_bert, tmp_path):
    metrics = run_fast({"encoders": {"text": text_encoder(tiny_bert)},
                        "fusion": "content"}, tmp_path / "r",
                       base=_without_graph())
    assert metrics["timing"]["epochs"] == 0 and metrics["parameters"]["trainable"] == 0
    assert metrics["test"]["all"]["recall@10"] > 0


def test_new_users_from_text_models(tiny_bert, tmp_path, invoke):
    import torch

    from kgflow.inference import TrainedRun

    run_fast({"encoders": {"text": text_encoder(tiny_bert)}, "fusion": "content"}, tmp_path / "c",
             base=_without_graph())
    run = TrainedRun.load(tmp_path / "c")
    split = run.split
    liked = split.item_ids[split.train.item[split.train.user == 0]].astype(str).tolist()
    # the content model's trained user *is* the mean of their training items' texts
    own = run.scores(torch.tensor([0]), exclude="train")[0]
    new = run.new_user_scores(liked)
    finite = torch.isfinite(new)
    assert torch.allclose(new[finite], own[finite], atol=1e-5)
    result = invoke("recommend", str(tmp_path / "c"), "--profile", "space robots. scifi", "-k", "3",
                    "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 3
    run_fast({"encoders": {"text": text_encoder(tiny_bert)}, "fusion": {"name": "feature"}},
             tmp_path / "f")
    feature = TrainedRun.load(tmp_path / "f")
    both = feature.recommend_new(liked[:2], "space robots. scifi", k=5)
    assert len(both) == 5 and not set(liked[:2]) & set(both["item"].astype(str))
    assert len(feature.recommend_new(text="a romance", k=5)) == 5


def test_checkpoints_carry_no_frozen_text_vectors(tiny_bert, tmp_path):
    """Frozen text vectors are recomputed (or read from the text cache) when a run is rebuilt,
    so checkpoints hold only what training learned; the rebuilt run serves the same lists."""

    from kgflow.inference import TrainedRun, model_state

    metrics = run_fast({"encoders": {"text": text_encoder(tiny_bert)}, "fusion": {"name": "feature"}},
                       tmp_path / "f")
    state = model_state(tmp_path / "f" / "checkpoints" / "best.ckpt")
    assert not [key for key in state if key.startswith("text.")]
    assert [key for key in state if key.startswith("encoder.")]  # the graph encoder's weights are
    run = TrainedRun.load(tmp_path / "f")
    assert run.model.text.item.shape[0] == run.split.n_items  # recomputed on load
    from kgflow.inference import evaluate_scores

    top = run.topk_all(20)
    again, _ = evaluate_scores(top[["user", "item", "score"]], run, stage="valid")
    # the recomputed vectors are the ones the run was evaluated with
    assert again["all"]["ndcg@10"] == pytest.approx(metrics["valid"]["all"]["ndcg@10"], abs=1e-5)


def _without_graph() -> dict:
    from kgflow.testing import TINY_PIPELINE

    base = json.loads(json.dumps(TINY_PIPELINE))
    base.pop("encoders")
    return base


def test_feature_fusion_trains_and_scores_cold_items(tiny_bert, tmp_path):
    metrics = run_fast({"encoders": {"text": text_encoder(tiny_bert)}, "fusion": {"name": "feature"},
                        "split": {"method": "cold_items", "cold_item_share": 0.2}}, tmp_path / "r")
    assert set(metrics["test"]) == {"all", "cold_items", "warm_items"}
    assert metrics["parameters"]["trainable"] > 0
    assert metrics["test"]["cold_items"]["users"] > 0


def test_embeddings_are_cached_and_reused(tiny_bert, tmp_path, monkeypatch):
    import kgflow_plugins.text.encoding as text

    run_fast({"encoders": {"text": text_encoder(tiny_bert)}, "fusion": "feature"}, tmp_path / "a")
    monkeypatch.setattr(text, "encode", lambda *a, **k: pytest.fail("cache not used"))
    run_fast({"encoders": {"text": text_encoder(tiny_bert)}, "fusion": "feature"}, tmp_path / "b")


def test_missing_template_field_lists_available_fields(tiny_bert, tmp_path):
    with pytest.raises(KgflowError, match=r"\['plot'\].*available fields: title, genre, year"):
        run_fast({"encoders": {"text": text_encoder(tiny_bert, item_template="{plot}")},
                  "fusion": "feature"}, tmp_path / "r")


def test_bad_model_paths(tmp_path):
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(KgflowError, match="no config.json"):
        run_fast({"encoders": {"text": text_encoder(tmp_path / "not-a-model")}, "fusion": "feature"},
                 tmp_path / "r")
    with pytest.raises(KgflowError, match="cannot load the text model"):
        run_fast({"encoders": {"text": text_encoder(tmp_path / "nope" / "model")},
                  "fusion": "feature"}, tmp_path / "r2")


def test_fusion_roles_are_checked(tiny_bert, tmp_path):
    with pytest.raises(ConfigError, match="fusion 'feature' needs an encoder under the role 'text'"):
        run_fast({"fusion": "feature"}, tmp_path / "r")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["movielens-content", "movielens-lm-feature", "movielens-coldstart",
                                  "movielens-coldstart-id", "movielens-alpharec", "movielens-xsimgcl-lm"])
def test_movielens_text_pipelines_with_minilm(invoke, tmp_path, name):
    from conftest import REPO

    result = invoke("run", str(REPO / "pipelines" / f"{name}.yaml"), "--out", str(tmp_path / name),
                    "--no-progress", "--set", "train.epochs=2", "--set", "train.lr=0.01")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / name / "metrics.json").read_text())
    assert metrics["test"]["all"]["ndcg@10"] > 0.012  # above random ranking (~0.005)
    if "coldstart" in name:
        assert {"cold_items", "warm_items"} <= set(metrics["test"])


@pytest.mark.slow
def test_movielens_strategy_pipelines_with_minilm(invoke, tmp_path):
    """The shipped joint, distill and classifier pipelines on ML-100K with MiniLM, briefly:
    a feature run is the distillation teacher and the joint run's warm start."""
    from conftest import REPO

    def run(name: str, *sets: str) -> dict:
        args = [item for value in sets for item in ("--set", value)]
        result = invoke("run", str(REPO / "pipelines" / f"{name}.yaml"), "--out", str(tmp_path / name),
                        "--no-progress", *args)
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / name / "metrics.json").read_text())

    feature = tmp_path / "movielens-lm-feature"
    run("movielens-lm-feature", "train.epochs=2", "train.lr=0.01")
    # the needed teacher is the feature run just made (same pipeline and settings): reused
    distill = run("movielens-lm-distill", "needs.teacher={pipeline: "
                  f"{REPO / 'pipelines' / 'movielens-lm-feature.yaml'}, out: {feature}, "
                  "set: [train.epochs=2, train.lr=0.01]}", "train.epochs=2", "train.lr=0.01")
    assert distill["teacher"]["language_model"] == "minilm" and distill["test"]["all"]["ndcg@10"] > 0.012
    joint = run("movielens-lm-joint", f"train.init_from={feature}", "train.epochs=1",
                "trainer.limit_train_batches=2")
    assert joint["artifacts"] == ["artifacts/adapter"]
    assert joint["test"]["all"]["ndcg@10"] > 0.012  # warm-started from the feature run
    lm = run("movielens-lm-classifier", "train.epochs=1", "trainer.limit_train_batches=1",
             "eval.max_users=3", "fusion.params.pointwise_pairs=200")
    assert lm["test"]["all"]["users"] == 3 and lm["pointwise"]["pairs"] == 2 * 200
    import pandas as pd  # the reported AUC is the mean of the three users' own

    per_user = pd.read_csv(tmp_path / "movielens-lm-classifier" / "test_per_user.csv")
    assert lm["test"]["all"]["auc"] == pytest.approx(per_user["auc"].mean(), abs=1e-6)


@pytest.mark.parametrize("encoder", ["kgin", "kgat"])
def test_feature_fusion_over_a_knowledge_graph(tiny_bert, tmp_path, encoder):
    """KG + LM in one model: text features as the layer-0 input of a relational encoder."""
    metrics = run_fast({"graph": "collaborative_kg",
                        "encoders": {"graph": {"name": encoder, "params": {"dim": 8}},
                                     "text": text_encoder(tiny_bert)},
                        "fusion": {"name": "feature", "params": {"use_id": True}},
                        "train": {"epochs": 2}}, tmp_path / "r")
    assert metrics["parameters"]["trainable"] > 0
    assert_reported_metrics_reproduce(tmp_path / "r", beats_random=False)  # 2 epochs: a smoke run


def test_empty_text_fields_are_counted_reported_and_handled(tiny_bert, tmp_path, monkeypatch, caplog):
    import kgflow_plugins.datasets.synthetic as synthetic

    original = synthetic.load

    def with_blanks(params, ctx):
        data = original(params, ctx)
        items = data.items.copy()
        items.loc[items.index[:5], "title"] = ""       # five items lose their title
        items.loc[items.index[:2], "genre"] = None     # two of them their genre too
        data.items = items
        return data

    from kgflow.registry import get_registry

    with monkeypatch.context() as patch:
        patch.setattr(synthetic, "load", with_blanks)
        get_registry(refresh=True)
        try:
            metrics = run_fast({"encoders": {"text": text_encoder(tiny_bert)}, "fusion": "feature"},
                               tmp_path / "r")
        finally:
            patch.undo()
            get_registry(refresh=True)
    assert metrics["text"]["empty_fields"] == {"title": 5, "genre": 2, "all": 2}
    warned = [r.getMessage() for r in caplog.records if r.name == "kgflow.text"]
    assert any("2 of" in m for m in warned), warned
    assert_reported_metrics_reproduce(tmp_path / "r", beats_random=False)  # still trains and ranks


def test_user_template_history_field_uses_training_items_only(tiny_bert):

    from kgflow.testing import tiny_data
    from kgflow.data.split import split_interactions
    from kgflow.data.preprocess import prepare_interactions
    from kgflow.config.schema import Preprocess, SplitConfig
    from kgflow_plugins.text.encoding import TextParams, render, user_table

    data = tiny_data()
    split = split_interactions(prepare_interactions(data, Preprocess()), SplitConfig(), 0)
    items = render(data.items, split.item_ids, "{title}", "item")
    params = TextParams(model=str(tiny_bert), user_template="{gender}. Liked: {history}",
                        history_items=3)
    texts = render(user_table(data.users, split, items, params), split.user_ids,
                   params.user_template, "user")
    own = split.train.item[split.train.user == 0]
    assert texts[0].endswith("; ".join(items[i] for i in own[-3:]))
    held_out = set(split.test.item[split.test.user == 0]) - set(own)
    assert not any(items[i] in texts[0] for i in held_out)
    assert texts[0].startswith(str(data.users.loc[str(split.user_ids[0]), "gender"]))


def test_two_models_of_one_architecture_never_share_cached_vectors(tiny_bert, tmp_path):
    """The cache key hashes the weights: a fine-tune with the same config and file sizes (here:
    the same tiny BERT re-initialised) gets its own vectors, not the first model's."""
    import shutil

    from kgflow_plugins.text.encoding import TextParams, cached_encode
    from transformers import BertModel

    other = tmp_path / "other-bert"
    shutil.copytree(tiny_bert, other)
    torch.manual_seed(123)
    BertModel(BertModel.from_pretrained(tiny_bert).config).save_pretrained(other)
    sizes = lambda folder: sorted((p.name, p.stat().st_size) for p in folder.iterdir())  # noqa: E731
    assert sizes(other) == sizes(tiny_bert)  # what the old key looked at is identical
    home = tmp_path / "home"
    texts = ["scifi war", "romance comedy"]
    first = cached_encode(texts, TextParams(model=str(tiny_bert)), home)
    second = cached_encode(texts, TextParams(model=str(other)), home)
    assert not torch.allclose(first, second)
    assert len(list((home / "cache" / "text").glob("*.safetensors"))) == 2
    # and the cache still serves each model its own vectors
    torch.testing.assert_close(cached_encode(texts, TextParams(model=str(other)), home), second)
