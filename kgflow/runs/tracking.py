"""Experiment trackers as Lightning loggers, beside the CSV log every run keeps.

What reaches each tracker: the resolved pipeline as parameters (with the run directory's path and
the data fingerprint), every logged per-epoch value (``train/loss``, ``valid/...`` metrics) and the
final test metrics (``test/...``), which Lightning hands to every logger at once. A resumed run
continues the same tracker run: the MLflow run id and the W&B run id are kept in the run
directory's ``tracking.json``.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from kgflow.config.tracking import MLflowParams, TensorBoardParams, WandbParams
from kgflow.errors import KgflowError

log = logging.getLogger("kgflow.run")

STATE_FILE = "tracking.json"


def _state(run_path: Path) -> dict[str, Any]:
    path = run_path / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def build_trackers(config: Any, run_path: Path, resume: bool) -> list[Any]:
    """One Lightning logger per ``tracking:`` entry (validated already)."""
    trackers: list[Any] = []
    if config.tracking:
        quiet_trackers()
    state = _state(run_path) if resume else {}
    name = config.name or run_path.name
    for n, ref in enumerate(config.tracking):
        params = ref.parsed
        try:
            if isinstance(params, TensorBoardParams):
                from lightning.pytorch.loggers import TensorBoardLogger

                trackers.append(TensorBoardLogger(params.save_dir or str(run_path / "tensorboard"),
                                                  name="", version="", default_hp_metric=False))
            elif isinstance(params, MLflowParams):
                trackers.append(_mlflow_logger()(
                    experiment_name=params.experiment or name, run_name=params.run_name or run_path.name,
                    tracking_uri=params.tracking_uri or f"sqlite:///{(run_path / 'mlflow.db').resolve()}",
                    tags=params.tags or None, run_id=state.get("mlflow")))
            elif isinstance(params, WandbParams):
                from lightning.pytorch.loggers import WandbLogger

                save_dir = params.save_dir or str(run_path)
                Path(save_dir).mkdir(parents=True, exist_ok=True)
                previous = state.get("wandb")
                trackers.append(WandbLogger(
                    project=params.project or name, entity=params.entity, mode=params.mode,
                    save_dir=save_dir, name=params.name or run_path.name, tags=params.tags or None,
                    id=previous, resume="allow" if previous else None))
        except Exception as exc:  # a tracker that cannot start (server down, bad URI)
            raise KgflowError(f"tracking[{n}] {ref.name}: could not start: {exc}") from None
    return trackers


def mlflow_metric_name(name: str) -> str:
    """MLflow refuses ``@`` in metric names: ``test/ndcg@10`` is recorded as ``test/ndcg_at_10``."""
    return name.replace("@", "_at_")


def _mlflow_logger() -> type:
    from lightning.pytorch.loggers import MLFlowLogger

    class KgflowMLFlowLogger(MLFlowLogger):
        """Lightning's MLflow logger, with kgflow's metric names made legal for MLflow."""

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            super().log_metrics({mlflow_metric_name(k): v for k, v in metrics.items()}, step)

    return KgflowMLFlowLogger


def start_trackers(trackers: list[Any], config: Any, run_path: Path, fingerprint: str) -> None:
    """Send the parameters, and remember the tracker run ids for ``--resume``."""
    if not trackers:
        return
    params = {"pipeline": config.model_dump(mode="json", exclude={"tracking"}),
              "run_dir": str(run_path.resolve()), "data_fingerprint": fingerprint}
    ids: dict[str, str] = {}
    for tracker in trackers:
        tracker.log_hyperparams(params)
        kind = type(tracker).__name__
        if kind == "KgflowMLFlowLogger":
            ids["mlflow"] = tracker.run_id
            tracker.experiment.set_tag(tracker.run_id, "kgflow.run_dir", str(run_path.resolve()))
        elif kind == "WandbLogger":
            ids["wandb"] = tracker.experiment.id
    if ids:
        from kgflow.runs.rundir import atomic_write_json

        atomic_write_json(run_path / STATE_FILE, ids)


def finish_trackers(trackers: list[Any], status: str) -> None:
    """Close every tracker run (``success`` or ``failed``); a tracker failing to close is
    reported, never allowed to fail a run that has finished."""
    for tracker in trackers:
        try:
            tracker.finalize(status)
            if type(tracker).__name__ == "WandbLogger":
                tracker.experiment.finish(exit_code=0 if status == "success" else 1)
        except Exception as exc:  # pragma: no cover - depends on a tracker's server
            log.warning("tracker %s did not close cleanly: %s", type(tracker).__name__, exc)


def quiet_trackers() -> None:
    """Trackers print banners and progress of their own; kgflow's log says what matters."""
    os.environ.setdefault("WANDB_SILENT", "true")
    for name in ("mlflow", "alembic", "wandb"):
        logging.getLogger(name).setLevel(logging.WARNING)
