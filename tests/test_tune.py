"""kgflow tune: Optuna studies over pipelines, as a user runs them."""
from __future__ import annotations

import csv
import json

import pytest

from kgflow.config import load_pipeline
from kgflow.errors import ConfigError, KgflowError

optuna = pytest.importorskip("optuna")

SPACE = """metric: ndcg@10
trials: {trials}
sampler: tpe
seed: 3
pruning: false
params:
  train.lr: {{float: [0.001, 0.05], log: true}}
  encoders.graph.params.dim: {{choice: [4, 8]}}
"""


def _rows(out):
    with open(out / "trials.csv") as fh:
        return list(csv.DictReader(fh))


def _tune(invoke, pipeline, space, out, *extra):
    result = invoke("tune", str(pipeline), "--space", str(space), "--out", str(out), *extra)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_study_runs_trials_writes_the_best_pipeline_and_continues(invoke, tiny_pipeline, write, tmp_path):
    out = tmp_path / "study"
    output = _tune(invoke, tiny_pipeline, write("space.yaml", SPACE.format(trials=3)), out)
    rows = _rows(out)
    assert [r["state"] for r in rows] == ["complete"] * 3
    best = json.loads((out / "best.json").read_text())
    assert best["valid"] == pytest.approx(max(float(r["valid"]) for r in rows), abs=1e-6)
    assert f"best trial {best['trial']} of 3" in output and "its test:" in output
    # the best pipeline is a pipeline with the best trial's values, its run a normal run
    chosen = load_pipeline(out / "best.yaml")
    assert chosen.config.train.lr == pytest.approx(best["params"]["train.lr"])
    assert chosen.config.encoders["graph"].parsed.dim == best["params"]["encoders.graph.params.dim"]
    run = json.loads((out / "trials" / f"{best['trial']:04d}" / "run.json").read_text())
    assert run["state"] == "finished" and (out / "study.svg").read_text().startswith("<svg")
    # the test figures of the chosen trial are reported, no other trial's
    metrics = json.loads((out / "trials" / f"{best['trial']:04d}" / "metrics.json").read_text())
    assert best["test"] == metrics["test"]["all"]
    # the same command with more trials continues the study: three kept, one added
    _tune(invoke, tiny_pipeline, write("space.yaml", SPACE.format(trials=4)), out)
    again = _rows(out)
    assert len(again) == 4 and again[:3] == rows


def test_the_same_seed_proposes_the_same_trials(invoke, tiny_pipeline, write, tmp_path):
    space = write("space.yaml", SPACE.format(trials=3))
    for name in ("a", "b"):
        _tune(invoke, tiny_pipeline, space, tmp_path / name)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "run"} for r in rows]  # noqa: E731
    assert strip(_rows(tmp_path / "a")) == strip(_rows(tmp_path / "b"))
    assert (json.loads((tmp_path / "a" / "best.json").read_text())["trial"]
            == json.loads((tmp_path / "b" / "best.json").read_text())["trial"])


def test_a_killed_studys_running_trial_is_failed_and_the_study_completes(invoke, tiny_pipeline, write,
                                                                          tmp_path):
    from kgflow.tuning.study import STUDY

    out = tmp_path / "study"
    space = write("space.yaml", SPACE.format(trials=2))
    _tune(invoke, tiny_pipeline, space, out)
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}")
    study.ask()  # a trial that was running when its process was killed
    _tune(invoke, tiny_pipeline, write("space.yaml", SPACE.format(trials=3)), out)
    states = [r["state"] for r in _rows(out)]
    assert states == ["complete", "complete", "fail", "complete"]


def test_a_second_worker_proposes_other_values_than_the_first(invoke, tiny_pipeline, write, tmp_path):
    # what two workers starting together do, in turn: each loads the study with a fresh sampler;
    # seeded alike, the second would repeat the first's proposal
    out = tmp_path / "study"
    space = SPACE.replace("sampler: tpe", "sampler: random")
    _tune(invoke, tiny_pipeline, write("space.yaml", space.format(trials=1)), out, "--worker-index", "1")
    _tune(invoke, tiny_pipeline, write("space.yaml", space.format(trials=2)), out)
    first, second = _rows(out)
    assert first["state"] == second["state"] == "complete" and first["train.lr"] != second["train.lr"]


def test_parallel_workers_complete_the_study(invoke, tiny_pipeline, write, tmp_path):
    out = tmp_path / "study"
    output = _tune(invoke, tiny_pipeline, write("space.yaml", SPACE.format(trials=4)), out, "--workers", "2")
    done = [r for r in _rows(out) if r["state"] == "complete"]
    assert len(done) >= 4 and "best trial" in output


def test_a_continued_study_does_not_repeat_its_first_trials(invoke, tiny_pipeline, write, tmp_path):
    out = tmp_path / "study"
    space = SPACE.replace("sampler: tpe", "sampler: random")
    _tune(invoke, tiny_pipeline, write("space.yaml", space.format(trials=1)), out)
    _tune(invoke, tiny_pipeline, write("space.yaml", space.format(trials=2)), out)
    first, second = _rows(out)
    assert first["train.lr"] != second["train.lr"]


def test_only_a_fresh_studys_first_process_keeps_the_study_seed():
    from kgflow.tuning.study import sampler_seed

    assert sampler_seed(3) == 3
    seeds = {sampler_seed(3, k, n) for k in range(4) for n in range(4)}
    assert len(seeds) == 16 and sampler_seed(3, 1) == sampler_seed(3, 1) != sampler_seed(4, 1)


def test_a_folder_of_another_study_is_refused(invoke, tiny_pipeline, write, tmp_path):
    out = tmp_path / "study"
    _tune(invoke, tiny_pipeline, write("space.yaml", SPACE.format(trials=1)), out)
    result = invoke("tune", str(tiny_pipeline), "--space", str(write("space.yaml", SPACE.format(trials=1))),
                    "--out", str(out), "--set", "train.epochs=2")
    assert result.exit_code == 2 and "holds a study of another pipeline" in result.output


def _space_errors(tiny_pipeline, space) -> list[str]:
    from kgflow.tuning.space import load_space

    with pytest.raises(ConfigError) as info:
        load_space(space, load_pipeline(tiny_pipeline))
    return [issue.render() for issue in info.value.issues]


def test_a_malformed_space_is_reported_with_its_line(tiny_pipeline, write):
    space = write("bad.yaml", "params:\n  train.epochs: {int: [5, 2]}\n  train.lr: {floot: [1, 2]}\n")
    joined = "\n".join(_space_errors(tiny_pipeline, space))
    assert f"{space}:2 params.train.epochs" in joined and "empty range [5, 2]" in joined
    assert f"{space}:3 params.train.lr.floot: unknown key" in joined


def test_a_space_the_pipeline_cannot_take_gets_every_problem_at_once(tiny_pipeline, write):
    space = write("bad.yaml", """metric: ndcg@7
sampler: grid
params:
  train.lrr: {choice: [0.001, 0.01]}
  train.lr: {float: [0.001, 0.01]}
  encoders.graph.params.dim: {choice: [eight]}
""")
    messages = _space_errors(tiny_pipeline, space)
    joined = "\n".join(messages)
    assert len(messages) == 4, joined
    assert f"{space}:4 params.train.lrr: the pipeline does not take 0.001 for train.lrr" in joined
    assert f"{space}:5 params.train.lr: grid search needs choice or int ranges" in joined
    assert f"{space}:6 params.encoders.graph.params.dim: the pipeline does not take 'eight'" in joined
    assert f"{space}:1 metric: the pipeline's validation does not compute 'ndcg@7'" in joined


def test_a_trial_judged_worse_than_the_median_is_stopped_by_its_validation_report():
    from kgflow.tuning.study import ReportToTrial

    class Trial:
        def __init__(self):
            self.reports = []

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return len(self.reports) >= 2

    class State:
        class fn:
            value = "fit"

    class Trainer:
        sanity_checking = False
        state = State
        callback_metrics = {"valid/ndcg@10": 0.25}

    trial = Trial()
    callback = ReportToTrial(trial, "ndcg@10")
    callback.on_validation_end(Trainer, None)
    with pytest.raises(optuna.TrialPruned, match="pruned after 2 validations"):
        callback.on_validation_end(Trainer, None)
    assert trial.reports == [(0, 0.25), (1, 0.25)]


def test_optuna_missing_is_a_clear_message(monkeypatch):
    import builtins

    from kgflow.tuning import study

    real = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    with pytest.raises(KgflowError, match="pip install 'kgflow\\[tune\\]'"):
        study._optuna()
