"""Search spaces for ``kgflow tune``: a YAML file of pipeline keys and the values to try.

    metric: ndcg@10          # the validation metric to maximise (default: ndcg@10)
    trials: 20               # how many finished (or pruned) trials the study holds
    sampler: tpe             # tpe | random | grid
    seed: 0                  # the study's seed: the same seed proposes the same trials
    pruning: {startup_trials: 4, warmup_evals: 2}   # or false
    params:
      train.lr: {float: [1.0e-4, 1.0e-2], log: true}
      encoders.graph.params.dim: {int: [32, 128], step: 32}
      encoders.graph.params.layers: {choice: [1, 2, 3]}

Every key is a ``--set`` path of the pipeline; the space is checked against it before any trial
runs (a key the pipeline does not have, an empty range, a value the key does not take), and each
problem is reported with the space file's line, like a pipeline's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kgflow.config.compose import apply_overrides
from kgflow.config.validate import LoadedPipeline, issues_from_validation, validate_located
from kgflow.config.yaml_loader import load_yaml_file
from kgflow.config.yaml_loader import format_path
from kgflow.errors import ConfigError, ConfigIssue


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ParamSpec(_Strict):
    """One key's values: a float or int range, or a list of choices."""

    float_: Optional[tuple[float, float]] = Field(None, alias="float", description="[low, high]")
    int_: Optional[tuple[int, int]] = Field(None, alias="int", description="[low, high], inclusive")
    choice: Optional[list[Any]] = Field(None, description="the values to choose from")
    log: bool = Field(False, description="sample the range on a log scale")
    step: Optional[Union[int, float]] = Field(None, gt=0, description="a range's step")

    @model_validator(mode="after")
    def _one_kind(self) -> "ParamSpec":
        kinds = [k for k, v in (("float", self.float_), ("int", self.int_), ("choice", self.choice))
                 if v is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of float: [low, high], int: [low, high] or choice: [...]"
                             + (f" (got {', '.join(kinds)})" if kinds else ""))
        low_high = self.float_ or self.int_
        if low_high is not None:
            low, high = low_high
            if not low < high:
                raise ValueError(f"empty range [{low}, {high}]: low must be below high")
            if self.log and low <= 0:
                raise ValueError(f"a log range needs low > 0 (got {low})")
            if self.log and self.step is not None:
                raise ValueError("a range is either log-scaled or stepped, not both")
        elif not self.choice:
            raise ValueError("choice needs at least one value")
        return self

    def probe_values(self) -> list[Any]:
        """Values that exercise what the key must accept: both ends of a range, every choice."""
        if self.choice is not None:
            return list(self.choice)
        return list(self.float_ or self.int_)  # type: ignore[arg-type]

    def grid(self) -> list[Any]:
        """Every value of a choice or a stepped int range (what grid search enumerates)."""
        if self.choice is not None:
            return list(self.choice)
        if self.int_ is not None:
            low, high = self.int_
            return list(range(low, high + 1, int(self.step or 1)))
        raise ValueError("grid search needs choice or int ranges")


class Pruning(_Strict):
    startup_trials: int = Field(4, ge=0, description="trials that run to the end before any is pruned")
    warmup_evals: int = Field(2, ge=0, description="validations of a trial before it may be pruned")


class SpaceConfig(_Strict):
    metric: str = Field("ndcg@10", description="validation metric to maximise")
    trials: int = Field(20, ge=1, description="finished or pruned trials the study holds")
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    seed: int = Field(0, description="the study's seed")
    pruning: Union[Pruning, Literal[False]] = Field(default_factory=Pruning,
                                                    description="median pruning, or false")
    params: dict[str, ParamSpec] = Field(description="pipeline key -> values to try")

    @model_validator(mode="after")
    def _params(self) -> "SpaceConfig":
        if not self.params:
            raise ValueError("params is empty: name at least one pipeline key to search")
        return self


@dataclass
class Space:
    """A validated search space, with where it came from."""

    config: SpaceConfig
    source: str


def override_text(key: str, value: Any) -> str:
    """The ``--set`` text that gives ``key`` the value (JSON is YAML)."""
    return f"{key}={json.dumps(value)}"


def load_space(path: str | Path, pipeline: LoadedPipeline) -> Space:
    """Read and check a space against ``pipeline``; every problem at once, located in the space."""
    located = load_yaml_file(path)
    source = str(path)
    if not isinstance(located.data, dict):
        raise ConfigError([ConfigIssue("a search space must be a YAML mapping", file=source, line=1)], source)
    try:
        config = SpaceConfig.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(issues_from_validation(exc, located, (), SpaceConfig), source) from None
    issues = []
    if config.sampler == "grid":
        for key, spec in config.params.items():
            try:
                spec.grid()
            except ValueError as exc:
                file, line = located.where(("params", key))
                issues.append(ConfigIssue(str(exc), path=format_path(("params", key)), file=file, line=line,
                                          hint="use choice: [...] or int: [low, high] with a step"))
    for key, spec in config.params.items():
        for value in spec.probe_values():
            problem = _pipeline_refuses(pipeline, override_text(key, value))
            if problem:
                file, line = located.where(("params", key))
                issues.append(ConfigIssue(f"the pipeline does not take {value!r} for {key}: {problem}",
                                          path=format_path(("params", key)), file=file, line=line))
                break
    metric_issue = _metric_issue(config.metric, pipeline)
    if metric_issue:
        file, line = located.where(("metric",))
        issues.append(ConfigIssue(metric_issue, path="metric", file=file, line=line,
                                  value=config.metric, has_value=True))
    if issues:
        raise ConfigError(issues, source)
    return Space(config, source)


def _pipeline_refuses(pipeline: LoadedPipeline, override: str) -> str | None:
    """Why the pipeline with one more ``--set`` is invalid, or None."""
    try:
        located = apply_overrides(pipeline.located, [override])
        validate_located(located, pipeline.source)
    except ConfigError as exc:
        return "; ".join(issue.message for issue in exc.issues)
    return None


def _metric_issue(metric: str, pipeline: LoadedPipeline) -> str | None:
    cfg = pipeline.config
    valid = [f"{m}@{k}" for m in cfg.eval.metrics for k in cfg.eval.ks] + list(cfg.eval.metrics)
    if metric not in valid:
        return f"the pipeline's validation does not compute {metric!r}; it computes {', '.join(valid)}"
    return None
