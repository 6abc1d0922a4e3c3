"""The ``tracking:`` block: which experiment trackers a run reports to, and their settings.

Each entry is ``{name: tensorboard | mlflow | wandb, params: {...}}`` (or just the name); the
parameter models below are what ``params`` may hold. Paths are taken relative to the current
directory, as ``--out`` is; left out, each tracker writes inside the run directory, so a run
directory stays self-contained and ``--overwrite`` replaces its records with it.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorBoardParams(_Params):
    save_dir: Optional[str] = Field(None, description="folder of the event files (default: RUN_DIR/tensorboard)")


class MLflowParams(_Params):
    tracking_uri: Optional[str] = Field(
        None, description="an MLflow tracking URI: a server (http://host:5000) or a database "
        "(sqlite:///mlflow.db); default: sqlite:///RUN_DIR/mlflow.db")
    experiment: Optional[str] = Field(None, description="experiment name (default: the pipeline's name)")
    run_name: Optional[str] = Field(None, description="run name (default: the run directory's name)")
    tags: dict[str, str] = Field(default_factory=dict, description="extra tags for the MLflow run")


class WandbParams(_Params):
    project: Optional[str] = Field(None, description="W&B project (default: the pipeline's name)")
    entity: Optional[str] = Field(None, description="W&B team or user")
    mode: Literal["online", "offline", "disabled"] = Field(
        "online", description="offline writes RUN_DIR/wandb/ for `wandb sync` later")
    save_dir: Optional[str] = Field(None, description="folder W&B writes to (default: RUN_DIR)")
    name: Optional[str] = Field(None, description="run name (default: the run directory's name)")
    tags: list[str] = Field(default_factory=list)


#: tracker name -> (its parameters, the package it needs, the kgflow extra that installs it)
TRACKERS: dict[str, tuple[type[_Params], str, str]] = {
    "tensorboard": (TensorBoardParams, "tensorboard", "tensorboard"),
    "mlflow": (MLflowParams, "mlflow", "mlflow"),
    "wandb": (WandbParams, "wandb", "wandb"),
}
