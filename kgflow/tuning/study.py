"""``kgflow tune``: an Optuna study over a pipeline, every trial a normal run directory.

Trials are chosen by their validation metric only (the best epoch's, as the run selects it); the
test figures of the chosen trial are reported alone, after the search. The study lives in SQLite
(``OUT/study.db``): running the same command again continues it up to ``trials``, and several
worker processes can share it (``--workers``). With one worker, run without interruption, and the
same ``seed`` the same trials are proposed, so the same best trial comes out.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import lightning as L

from kgflow.config import load_pipeline
from kgflow.errors import KgflowError
from kgflow.runs.interrupt import RunInterrupted
from kgflow.runs.rundir import atomic_write_text
from kgflow.tuning.space import ParamSpec, Space, load_space, override_text

log = logging.getLogger("kgflow.tune")
STUDY = "kgflow"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise KgflowError("kgflow tune needs Optuna: pip install 'kgflow[tune]' (or optuna)") from None
    return optuna


class ReportToTrial(L.Callback):
    """Reports each validation during training to the trial, and stops the run when the pruner
    judges it worse than the median of earlier trials at the same point."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric, self.evaluations = trial, metric, 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn.value != "fit":
            return
        value = trainer.callback_metrics.get(f"valid/{self.metric}")
        if value is None:
            return
        self.trial.report(float(value), self.evaluations)
        self.evaluations += 1
        if self.trial.should_prune():
            raise _optuna().TrialPruned(f"pruned after {self.evaluations} validations "
                                        f"({self.metric} {float(value):.4f})")


def suggest(trial: Any, key: str, spec: ParamSpec) -> Any:
    if spec.choice is not None:
        return trial.suggest_categorical(key, spec.choice)
    if spec.int_ is not None:
        return trial.suggest_int(key, spec.int_[0], spec.int_[1], step=int(spec.step or 1), log=spec.log)
    assert spec.float_ is not None
    return trial.suggest_float(key, spec.float_[0], spec.float_[1], step=spec.step, log=spec.log)


def sampler_seed(seed: int, worker_index: int = 0, trials_before: int = 0) -> int:
    """The seed of one process's sampler. A sampler's proposals follow from its seed alone, so
    a process seeded like another proposes the same values: parallel workers would run the same
    trials at once, and a continued (or resumed) study would repeat its first trials. Every worker
    and every continuation therefore derives its own seed; a fresh study's first process keeps
    the study's seed, so an uninterrupted one-worker study proposes what it always did."""
    if worker_index == 0 and trials_before == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, worker_index, trials_before]).generate_state(1)[0])


def _sampler(space: Space, seed: int):
    optuna = _optuna()
    cfg = space.config
    if cfg.sampler == "grid":
        return optuna.samplers.GridSampler({k: s.grid() for k, s in cfg.params.items()}, seed=seed)
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(space: Space):
    optuna = _optuna()
    pruning = space.config.pruning
    if pruning is False:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=pruning.startup_trials,
                                       n_warmup_steps=pruning.warmup_evals)


def _identity(pipeline_text: str, space: Space) -> str:
    """What a study was made for: its pipeline (resolved) and its search space (not the trial
    count: raising it continues the study)."""
    space_text = space.config.model_dump_json(exclude={"trials"})
    return hashlib.sha256((pipeline_text + space_text).encode()).hexdigest()[:16]


def tune(pipeline: str | Path, space_file: str | Path, out: str | Path | None = None,
         overrides: tuple[str, ...] = (), workers: int = 1, worker_index: int = 0,
         echo: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Run (or continue) the study; returns the best trial's summary (see module doc).
    ``worker_index`` > 0 marks a worker process started by the first one (``--workers``)."""
    echo = echo or log.info
    optuna = _optuna()
    loaded = load_pipeline(pipeline, overrides)
    space = load_space(space_file, loaded)
    out = Path(out) if out else Path("runs") / f"{loaded.name}-tune"
    out.mkdir(parents=True, exist_ok=True)
    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    optuna_logger.setLevel(logging.WARNING)  # kgflow reports each trial itself; restored below
    try:
        return _study(optuna, loaded, space, out, pipeline, space_file, overrides, workers, worker_index,
                      echo)
    finally:
        optuna_logger.setLevel(level)


def _study(optuna: Any, loaded: Any, space: Space, out: Path, pipeline: str | Path, space_file: str | Path,
           overrides: tuple[str, ...], workers: int, worker_index: int,
           echo: Callable[[str], Any]) -> dict[str, Any]:
    from kgflow.runs.runner import pipeline_body, run_pipeline

    cfg = space.config
    worker = worker_index > 0
    identity = _identity(pipeline_body(loaded), space)
    study = optuna.create_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}",
                                sampler=_sampler(space, cfg.seed), pruner=_pruner(space), direction="maximize",
                                load_if_exists=True)
    study.sampler = _sampler(space, sampler_seed(cfg.seed, worker_index, len(study.trials)))
    known = study.user_attrs.get("identity")
    if known is None:
        study.set_user_attr("identity", identity)
    elif known != identity:
        raise KgflowError(f"{out} holds a study of another pipeline or search space; give --out "
                          "another folder (or delete that one to start over)")
    states = optuna.trial.TrialState
    if not worker:
        fail_stale_trials(study)

    def objective(trial: Any) -> float:
        values = {key: suggest(trial, key, spec) for key, spec in cfg.params.items()}
        sets = [*overrides, *(override_text(k, v) for k, v in values.items())]
        folder = out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run", str(folder))
        try:
            trial_pipeline = load_pipeline(pipeline, sets)
            metrics = run_pipeline(trial_pipeline, folder, overwrite=True, progress=False,
                                   echo=lambda *a, **k: None, callbacks=[ReportToTrial(trial, cfg.metric)])
        except RunInterrupted:
            raise KeyboardInterrupt from None  # Optuna records the trial as failed and stops
        value = float(metrics["valid"]["all"][cfg.metric])
        echo(f"trial {trial.number}: valid {cfg.metric} {value:.4f} with "
             + ", ".join(f"{k}={v}" for k, v in values.items()))
        return value

    def finished() -> int:
        return len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED)))

    children = []
    if workers > 1 and not worker:
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
        command = [sys.executable, "-m", "kgflow", "tune", str(pipeline), "--space", str(space_file),
                   "--out", str(out), *[part for o in overrides for part in ("--set", o)]]
        children = [subprocess.Popen([*command, "--worker-index", str(k)], env=env) for k in range(1, workers)]
    try:
        remaining = cfg.trials - finished()
        if remaining > 0:
            echo(f"study {out / 'study.db'}: {finished()} of {cfg.trials} trials done, "
                 f"{'a worker joins' if worker else f'running {remaining}'}")
            study.optimize(objective, n_trials=remaining, catch=(KgflowError,),
                           callbacks=[optuna.study.MaxTrialsCallback(cfg.trials,
                                                                     states=(states.COMPLETE, states.PRUNED))])
    finally:
        for child in children:
            child.wait()
    if worker:
        return {}
    return summarize(study, out, cfg.metric, echo)


def fail_stale_trials(study: Any) -> None:
    """Mark the trials a killed study left running as failed: they will never finish, and a
    continued study must run others in their place."""
    states = _optuna().trial.TrialState
    for stale in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        study._storage.set_trial_state_values(stale._trial_id, state=states.FAIL)


def summarize(study: Any, out: Path, metric: str, echo: Callable[[str], Any]) -> dict[str, Any]:
    """Write best.yaml, trials.csv and study.svg; report the chosen trial's validation and test."""
    optuna = _optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise KgflowError(f"{out}: no trial finished (see trials.csv and each trial's run.json)")
    _write_trials(study, out)
    _write_plot(study, out / "study.svg", metric)
    best = study.best_trial
    run = Path(best.user_attrs["run"])
    metrics = json.loads((run / "metrics.json").read_text())
    header = (f"# the best of {len(complete)} finished trials of {out / 'study.db'}: trial {best.number}, "
              f"valid {metric} {best.value:.4f}\n# its run: {run}\n")
    atomic_write_text(out / "best.yaml", header + (run / "resolved.yaml").read_text().split("\n", 1)[-1])
    result = {"trial": best.number, "params": best.params, "valid": best.value, "run": str(run),
              "test": metrics["test"]["all"], "trials": len(study.trials)}
    atomic_write_text(out / "best.json", json.dumps(result, indent=2, default=str) + "\n")
    echo(f"best trial {best.number} of {len(study.trials)}: valid {metric} {best.value:.4f} with "
         + ", ".join(f"{k}={v}" for k, v in best.params.items()))
    echo("its test: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics["test"]["all"].items()
                                    if k != "users"))
    echo(f"best pipeline: {out / 'best.yaml'}; every trial: {out / 'trials.csv'}; plot: {out / 'study.svg'}")
    return result


def _write_trials(study: Any, out: Path) -> None:
    keys = sorted({k for t in study.trials for k in t.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "state", "valid", *keys, "run"])
    for t in study.trials:
        writer.writerow([t.number, t.state.name.lower(), "" if t.value is None else f"{t.value:.6f}",
                         *[t.params.get(k, "") for k in keys], t.user_attrs.get("run", "")])
    atomic_write_text(out / "trials.csv", buffer.getvalue())


def _write_plot(study: Any, path: Path, metric: str) -> None:
    """The study's history as a small SVG: each finished trial's validation value, pruned trials at
    their last report, and the best value so far."""
    points = []
    for t in study.trials:
        value = t.value if t.value is not None else (t.intermediate_values[max(t.intermediate_values)]
                                                     if t.intermediate_values else None)
        if value is not None:
            points.append((t.number, float(value), t.state.name == "COMPLETE"))
    if not points:
        return
    w, h, pad = 640, 360, 48
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(max(ys), min(ys) + 1e-9)
    sx = lambda x: pad + (x - x0) / (x1 - x0) * (w - 2 * pad)  # noqa: E731
    sy = lambda y: h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             'font-size="12">', f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
             f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">trial</text>',
             f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">'
             f'valid {metric}</text>',
             f'<text x="{pad - 4}" y="{h - pad}" text-anchor="end">{y0:.4f}</text>',
             f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end">{y1:.4f}</text>']
    best, line = float("-inf"), []
    for x, y, complete in sorted(points):
        colour = "#1f77b4" if complete else "#aaaaaa"
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{colour}"/>')
        if complete:
            best = max(best, y)
            line.append(f"{sx(x):.1f},{sy(best):.1f}")
    if line:
        parts.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="#d62728"/>')
    parts.append("</svg>\n")
    atomic_write_text(path, "\n".join(parts))
