"""PEFT adapters, freezing strategies and the joint fusion, with the tiny random BERT."""
from __future__ import annotations

import json

import pytest
from conftest import assert_reported_metrics_reproduce

from kgflow.errors import ConfigError, KgflowError
from kgflow.testing import run_fast


def joint(model, adapter: dict | None = None, **params) -> dict:
    text = {"model": str(model), "item_template": "{title}. {genre}", **params}
    if adapter is not None:
        text["adapter"] = adapter
    return {"encoders": {"graph": {"name": "lightgcn", "params": {"dim": 16}},
                         "text": {"name": "text", "params": text}},
            "fusion": {"name": "joint", "params": {"grad_items": 16}}, "train": {"epochs": 2}}


LORA = {"method": "lora", "r": 2, "lora_alpha": 4, "target_modules": ["query", "value"]}


def test_joint_lora_trains_only_adapter_and_graph(tiny_bert, tmp_path, invoke):
    from transformers import AutoModel

    out = tmp_path / "joint"
    metrics = run_fast(joint(tiny_bert, LORA), out)
    parts = metrics["parameters"]["trainable_by_part"]
    lm = AutoModel.from_pretrained(tiny_bert)
    assert metrics["parameters"]["total"] > sum(p.numel() for p in lm.parameters())
    # LoRA on query and value of 2 layers, width 32, rank 2: 2 layers * 2 modules * (32*2 + 2*32)
    assert parts["text"] == 2 * 2 * (32 * 2 + 2 * 32)
    assert set(parts) == {"text", "encoder", "project"}
    adapter = out / "artifacts" / "adapter"
    assert (adapter / "adapter_config.json").is_file() and metrics["artifacts"] == ["artifacts/adapter"]
    assert "trainable of" in (out / "report.md").read_text()
    # the run serves from its directory alone, adapter included, with the evaluated embeddings
    import torch

    from kgflow.inference import TrainedRun

    served = TrainedRun.load(out)
    assert len(served.recommend([str(served.split.user_ids[0])], k=3)) == 3
    saved = torch.load(out / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert torch.equal(served.model.text.item, saved["model.text.item"])
    lora = [k for k in saved if "lora_B" in k]
    assert lora and any(saved[k].abs().sum() > 0 for k in lora)  # the adapter did train
    # the merged export is a plain transformers model
    result = invoke("export", str(out), "--what", "text-model", "--out", str(tmp_path / "merged"))
    assert result.exit_code == 0, result.output
    merged = AutoModel.from_pretrained(tmp_path / "merged")
    assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in lm.parameters())
    # the merged fine-tune has the base model's architecture and file sizes, never its cached vectors
    from kgflow_plugins.text.encoding import TextParams, cached_encode

    texts = ["scifi war", "romance comedy"]
    base = cached_encode(texts, TextParams(model=str(tiny_bert)), tmp_path / "home")
    tuned = cached_encode(texts, TextParams(model=str(tmp_path / "merged")), tmp_path / "home")
    assert not torch.allclose(base, tuned)
    # a later run starts from the saved adapter (whose embeddings differ from the frozen model's)
    again = run_fast(joint(tiny_bert, LORA, adapter_path=str(adapter)), tmp_path / "again")
    assert again["parameters"]["trainable_by_part"]["text"] == parts["text"]
    assert_reported_metrics_reproduce(tmp_path / "again", beats_random=False)  # 1 epoch: a smoke run


@pytest.mark.parametrize("adapter", [
    {"method": "ia3", "target_modules": ["query", "value", "output.dense"],
     "feedforward_modules": ["output.dense"]},
    {"method": "loha", "r": 2, "target_modules": ["query", "value"]},
    {"method": "lokr", "r": 2, "target_modules": ["query", "value"]},
    {"method": "adalora", "init_r": 4, "target_r": 2, "total_step": 20, "tinit": 1, "tfinal": 1,
     "target_modules": ["query", "value"]},
], ids=lambda a: a["method"])
def test_other_peft_methods_train(tiny_bert, tmp_path, adapter):
    metrics = run_fast(joint(tiny_bert, adapter), tmp_path / adapter["method"])
    assert metrics["parameters"]["trainable_by_part"]["text"] > 0
    assert (tmp_path / adapter["method"] / "artifacts" / "adapter" / "adapter_config.json").is_file()


def test_freezing_strategies(tiny_bert, tmp_path):
    top = run_fast(joint(tiny_bert, freeze="top_layers", top_layers=1), tmp_path / "top")
    full = run_fast(joint(tiny_bert, freeze="full"), tmp_path / "full")
    text_top = top["parameters"]["trainable_by_part"]["text"]
    text_full = full["parameters"]["trainable_by_part"]["text"]
    assert 0 < text_top < text_full / 2  # one of two blocks, and no embeddings
    assert (tmp_path / "full" / "artifacts" / "text-model" / "config.json").is_file()
    with pytest.raises(Exception, match="top_layers: 5 but the model has 2 transformer blocks"):
        run_fast(joint(tiny_bert, freeze="top_layers", top_layers=5), tmp_path / "bad")


def _errors(tiny_bert, tmp_path, overrides) -> str:
    with pytest.raises(ConfigError) as info:
        run_fast(overrides, tmp_path / "r")
    return str(info.value)


def test_bad_adapters_are_config_errors(tiny_bert, tmp_path):
    text = _errors(tiny_bert, tmp_path, joint(tiny_bert, {"method": "lorax"}))
    assert "unknown adapter method 'lorax'" in text and "lora" in text and "ia3" in text
    text = _errors(tiny_bert, tmp_path, joint(tiny_bert, {"method": "lora", "rank": 4}))
    assert "lora has no option(s) ['rank']" in text and "lora_alpha" in text
    text = _errors(tiny_bert, tmp_path, joint(tiny_bert, {"method": "lora", "target_modules": ["q_proj"]}))
    assert "target_modules ['q_proj'] are not modules of" in text
    assert "its modules:" in text and "query" in text and "encoders.text.params.adapter.target_modules" in text
    text = _errors(tiny_bert, tmp_path, joint(tiny_bert))  # joint with a frozen encoder
    assert "fusion 'joint' trains the language model, but encoders.text is frozen" in text
    feature = joint(tiny_bert, LORA)
    feature["fusion"] = "feature"
    text = _errors(tiny_bert, tmp_path, feature)
    assert "uses frozen embeddings" in text and "fusion: joint" in text


def test_adapter_on_a_missing_model_is_a_config_error(tmp_path):
    text = _errors(None, tmp_path, joint(tmp_path / "nowhere", LORA))
    assert "cannot read the text model" in text and "encoders.text.params.model" in text


def test_validate_checks_target_modules_without_training(tiny_bert, write, invoke):
    path = write("p.yaml", json.dumps({"kgflow": 1, "dataset": "synthetic", **joint(
        tiny_bert, {"method": "lora", "target_modules": ["nope"]})}))
    result = invoke("validate", str(path))
    assert result.exit_code == 2 and "target_modules ['nope']" in result.output
    assert "p.yaml:" in result.output  # located in the file


def _feature_run(tiny_bert, out):
    run_fast({"encoders": {"graph": {"name": "lightgcn", "params": {"dim": 16}},
                           "text": {"name": "text", "params": {"model": str(tiny_bert),
                                                               "item_template": "{title}. {genre}"}}},
              "fusion": "feature", "train": {"epochs": 3}}, out)
    return out


def test_joint_warm_starts_from_a_feature_run(tiny_bert, tmp_path, capsys):
    from kgflow.errors import RunDirError
    from kgflow.runs.runner import run_pipeline
    from kgflow.config.validate import validate_located
    from kgflow.testing import pipeline

    feature = _feature_run(tiny_bert, tmp_path / "feature")
    overrides = joint(tiny_bert, LORA)
    overrides["train"]["init_from"] = str(feature)
    lines = []
    loaded = validate_located(pipeline(overrides), "<test>")
    run_pipeline(loaded, tmp_path / "warm", overwrite=True, progress=False, echo=lines.append)
    note = next(line for line in lines if line.startswith("init_from"))
    # LoRA A and B of query and value in 2 layers are the only new tensors
    assert note.endswith("tensors copied, 8 trainable tensors start fresh"), note
    other = tmp_path / "other"
    run_fast({"seed": 7, "train": {"epochs": 1}}, other)
    overrides["train"]["init_from"] = str(other)
    with pytest.raises(RunDirError, match="was trained on split"):
        run_fast(overrides, tmp_path / "warm2")


def test_distill_student_serves_without_the_teacher(tiny_bert, tmp_path, invoke):
    from kgflow.inference import TrainedRun

    teacher = _feature_run(tiny_bert, tmp_path / "teacher")
    student = {"encoders": {"graph": {"name": "mf", "params": {"dim": 8}}},
               "fusion": {"name": "distill", "params": {"teacher": str(teacher), "top_n": 5}},
               "train": {"epochs": 3}}
    metrics = run_fast(student, tmp_path / "student")
    expected = json.loads((teacher / "metrics.json").read_text())["test"]
    assert metrics["teacher"]["test"] == expected
    assert metrics["teacher"]["language_model"] == str(tiny_bert)
    assert metrics["student"]["language_model"] is None
    assert metrics["student"]["serving_seconds"] > 0 and metrics["teacher"]["serving_seconds"] > 0
    # serving needs neither the teacher nor a language model
    import shutil

    shutil.rmtree(teacher)
    run = TrainedRun.load(tmp_path / "student")
    assert len(run.recommend([str(run.split.user_ids[0])], k=3)) == 3
    assert not any("text" in name for name, _ in run.model.named_modules())
    # a missing teacher, and one trained on another split
    with pytest.raises(Exception, match="not a finished kgflow run"):
        run_fast(student, tmp_path / "again")
    other = tmp_path / "other"
    run_fast({"seed": 7, "train": {"epochs": 1}}, other)
    student["fusion"]["params"]["teacher"] = str(other)
    with pytest.raises(Exception, match="must see the same split"):
        run_fast(student, tmp_path / "again")
    del student["fusion"]["params"]["teacher"]
    text = _errors(None, tmp_path, student)
    assert "teacher" in text and "fusion.params" in text


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_lm_only_classifier_is_ranked_like_any_model(tiny_bert, tmp_path, precision):
    from kgflow.inference import TrainedRun
    from kgflow.testing import TINY_PIPELINE

    base = json.loads(json.dumps(TINY_PIPELINE))
    base.pop("encoders")
    text = {"model": str(tiny_bert), "item_template": "{title}. {genre}", "adapter": LORA}
    overrides = {"encoders": {"text": {"name": "text", "params": text}},
                 "fusion": {"name": "lm_only", "params": {"history": 3, "pointwise_pairs": 40}},
                 "objective": {"loss": "bce"},
                 "train": {"epochs": 2, "batch_size": 64,
                           "early_stopping": {"metric": "auc", "patience": 5}},
                 "eval": {"metrics": ["auc", "ndcg"], "max_users": 6},
                 "trainer": {"limit_train_batches": 2, "precision": precision}}
    out = tmp_path / "lm"
    metrics = run_fast(overrides, out, base=base)
    test = metrics["test"]["all"]
    assert "ndcg@10" in test and test["users"] == 6
    # the reported AUC is the mean of the six evaluated users' own AUCs
    import pandas as pd

    per_user = pd.read_csv(out / "test_per_user.csv")
    assert len(per_user) == 6 and test["auc"] == pytest.approx(per_user["auc"].mean(), abs=1e-6)
    assert set(metrics["parameters"]["trainable_by_part"]) == {"text", "head"}
    pointwise = metrics["pointwise"]
    assert pointwise["pairs"] == 2 * 40
    # accuracy over 80 pairs comes in steps of 1/80
    assert pointwise["accuracy"] * 80 == pytest.approx(round(pointwise["accuracy"] * 80), abs=1e-3)
    assert (out / "artifacts" / "adapter" / "adapter_config.json").is_file()
    run = TrainedRun.load(out)
    assert len(run.recommend([str(run.split.user_ids[0])], k=4)) == 4


def test_distill_with_a_teacher_pipeline_under_needs(tmp_path, write):
    """The runner trains the needed teacher first (with the student's seed, so both see one
    split), then the student; a second student reuses the finished teacher."""
    from kgflow.testing import TINY_PIPELINE

    teacher = write("teacher.yaml", json.dumps({**TINY_PIPELINE, "name": "t", "seed": 1,
                                                  "train": {"epochs": 2}}))
    student = {"seed": 5, "encoders": {"graph": {"name": "mf", "params": {"dim": 8}}},
               "needs": {"teacher": {"pipeline": str(teacher), "out": str(tmp_path / "t")}},
               "fusion": {"name": "distill", "params": {"teacher": "teacher"}},
               "train": {"epochs": 2}}
    metrics = run_fast(student, tmp_path / "student")
    teacher_metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert teacher_metrics["data_fingerprint"] == metrics["data_fingerprint"]  # seed 5, not 1
    assert metrics["teacher"]["test"] == teacher_metrics["test"]
    stamp = (tmp_path / "t" / "metrics.json").stat().st_mtime
    run_fast(student, tmp_path / "student2")  # the finished teacher is reused
    assert (tmp_path / "t" / "metrics.json").stat().st_mtime == stamp
    # a run of other settings in the teacher's folder is never replaced
    other = {**student, "needs": {"teacher": {"pipeline": str(teacher), "out": str(tmp_path / "t"),
                                              "set": ["train.epochs=3"]}}}
    with pytest.raises(KgflowError, match="holds a run of another pipeline"):
        run_fast(other, tmp_path / "student3")
    assert (tmp_path / "t" / "metrics.json").stat().st_mtime == stamp


def test_teacher_references_are_checked_at_validate(tmp_path, write):
    from kgflow.testing import TINY_PIPELINE, pipeline

    from kgflow.config.validate import validate_located

    teacher = write("teacher.yaml", json.dumps({**TINY_PIPELINE, "name": "t"}))
    base = {"encoders": {"graph": {"name": "mf", "params": {"dim": 8}}}}
    cases = [({"fusion": {"name": "distill", "params": {"teacher": str(teacher)}}},
              "a teacher pipeline goes under needs:"),
             ({"fusion": {"name": "distill", "params": {"teacher": "techer"}},
               "needs": {"teacher": {"pipeline": str(teacher)}}},
              r"teacher .techer. is neither an entry of needs: \(teacher\) nor a run directory"),
             ({"needs": {"teacher": {"pipeline": str(tmp_path / "missing.yaml")}}},
              "needed pipeline"),
             ({"needs": {"teacher": {"pipeline": str(teacher), "set": ["train.epocs=3"]}}},
              "the needed pipeline")]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            validate_located(pipeline({**base, **overrides}), "<test>")


def test_pipelines_that_need_each_other_are_a_cycle(write):
    from kgflow.config import load_pipeline

    write("a.yaml", "kgflow: 1\ndataset: {name: synthetic}\nencoders: {graph: {name: mf}}\n"
                    "needs: {b: {pipeline: b.yaml}}\n")
    b = write("b.yaml", "kgflow: 1\ndataset: {name: synthetic}\nencoders: {graph: {name: mf}}\n"
                        "needs: {a: {pipeline: a.yaml}}\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_pipeline(b)
