"""Turning a pipeline file into a validated :class:`PipelineConfig`, reporting every problem at once.

Errors carry the file and line, the YAML path, the bad value and a "did you mean" (or the list of
valid names with the package that provides each).
"""
from __future__ import annotations

import difflib
import inspect
import os
import typing
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from kgflow.config.compose import apply_overrides, load_with_extends
from kgflow.config.schema import ComponentRef, PipelineConfig
from kgflow.config.yaml_loader import Located, YamlPath, format_path
from kgflow.errors import ConfigError, ConfigIssue, PluginError
from kgflow.registry import Registry, get_registry
from kgflow.registry.component import _DataPathMarker

#: Trainer arguments kgflow sets itself, and where the user sets them instead.
RESERVED_TRAINER_KEYS = {
    "max_epochs": "train.epochs",
    "callbacks": "train.early_stopping (kgflow adds its own callbacks)",
    "logger": "tracking: [{name: tensorboard}, {name: mlflow}, {name: wandb}] (kgflow keeps its CSV log too)",
    "default_root_dir": "--out on the command line",
    "check_val_every_n_epoch": "train.eval_every",
    "enable_checkpointing": "the run directory's checkpoints (always on)",
}


@dataclass
class LoadedPipeline:
    """A validated pipeline and where it came from."""

    config: PipelineConfig
    located: Located
    source: str
    overrides: tuple[str, ...] = ()
    #: the pipelines of ``needs:``, loaded and validated with this one (with its seed), by name
    needs: dict[str, "LoadedPipeline"] = dataclass_field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name or Path(self.source).stem


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    return annotation


def _fields_at(model: type[BaseModel], loc: YamlPath) -> list[str] | None:
    """The valid keys of the mapping at ``loc`` inside ``model``, when the schema fixes them."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if current is ComponentRef and part == "params":
                return None
            field = current.model_fields.get(part)  # type: ignore[arg-type]
            if field is None:
                return None
            current = field.annotation
        elif origin in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(str(word), list(choices), n=2, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return None


def issues_from_validation(exc: ValidationError, located: Located, prefix: YamlPath,
                           model: type[BaseModel]) -> list[ConfigIssue]:
    """Translate pydantic's errors into located :class:`ConfigIssue` objects."""
    issues = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
        path = prefix + loc
        file, line = located.where(path)
        kind = err["type"]
        if kind == "extra_forbidden":
            key = loc[-1] if loc else "?"
            valid = _fields_at(model, loc[:-1]) or []
            hint = _did_you_mean(str(key), valid)
            if not hint and valid:
                hint = "valid keys here: " + ", ".join(valid)
            issues.append(ConfigIssue(f"unknown key {key!r}", path=format_path(path), file=file,
                                      line=line, hint=hint))
        elif kind == "missing":
            hint = "add `kgflow: 1` as the first line of the pipeline" if path == ("kgflow",) else None
            issues.append(ConfigIssue("required key is missing", path=format_path(path),
                                      file=file, line=line, hint=hint))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            issues.append(ConfigIssue(msg, path=format_path(path), file=file, line=line,
                                      value=err.get("input"), has_value=True))
    return issues


def _trainer_issues(trainer: dict[str, Any], located: Located) -> list[ConfigIssue]:
    if not trainer:
        return []
    import lightning

    allowed = [p for p in inspect.signature(lightning.Trainer.__init__).parameters if p != "self"]
    issues = []
    for key in trainer:
        path = ("trainer", key)
        file, line = located.where(path)
        if key in RESERVED_TRAINER_KEYS:
            issues.append(ConfigIssue(f"{key!r} is set by kgflow", path=format_path(path), file=file,
                                      line=line, hint=f"use {RESERVED_TRAINER_KEYS[key]} instead"))
        elif key not in allowed:
            hint = _did_you_mean(key, allowed) or "see lightning.Trainer's arguments"
            issues.append(ConfigIssue(f"unknown lightning.Trainer argument {key!r}",
                                      path=format_path(path), file=file, line=line, hint=hint))
    return issues + _distributed_issues(trainer, located)


def _tracking_issues(config: PipelineConfig, located: Located) -> list[ConfigIssue]:
    """Unknown trackers, their parameters' mistakes, and trackers whose package is missing."""
    import importlib.util

    from kgflow.config.tracking import TRACKERS

    issues: list[ConfigIssue] = []
    names = [ref.name for ref in config.tracking]
    for n, ref in enumerate(config.tracking):
        path: YamlPath = ("tracking", n)
        file, line = located.where(path + ("name",))
        if ref.name not in TRACKERS:
            hint = _did_you_mean(ref.name, TRACKERS) or "trackers: " + ", ".join(TRACKERS)
            issues.append(ConfigIssue(f"unknown tracker {ref.name!r}", path=format_path(path + ("name",)),
                                      file=file, line=line, hint=hint))
            continue
        if names.index(ref.name) != n:
            issues.append(ConfigIssue(f"tracker {ref.name!r} is listed twice", path=format_path(path),
                                      file=file, line=line))
        params, package, extra = TRACKERS[ref.name]
        try:
            ref._parsed = params.model_validate(ref.params)
        except ValidationError as exc:
            issues += issues_from_validation(exc, located, path + ("params",), params)
        if importlib.util.find_spec(package) is None:
            issues.append(ConfigIssue(f"tracker {ref.name!r} needs the {package} package, which is not "
                                      "installed", path=format_path(path), file=file, line=line,
                                      hint=f'pip install "kgflow[{extra}]"'))
    return issues


def _distributed_issues(trainer: dict[str, Any], located: Located) -> list[ConfigIssue]:
    """Device counts and strategies kgflow cannot run correctly, refused with the reason."""
    from kgflow.training.distributed import DDP_STRATEGIES, REFUSED_STRATEGIES, is_distributed

    issues = []

    def issue(key: str, message: str, hint: str | None = None) -> None:
        file, line = located.where(("trainer", key))
        issues.append(ConfigIssue(message, path=f"trainer.{key}", file=file, line=line,
                                  value=trainer[key], has_value=True, hint=hint))

    devices = trainer.get("devices", 1)
    if "devices" in trainer:
        ok = (devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool)
                                    and (devices >= 1 or devices == -1))
              or (isinstance(devices, str) and devices.isdigit() and int(devices) >= 1)
              or (isinstance(devices, list) and devices and all(isinstance(d, int) for d in devices)))
        if not ok:
            issue("devices", "devices must be a positive count, -1 or 'auto' (every device), or a "
                  "list of device indices", "e.g. devices: 2")
            return issues
    nodes = trainer.get("num_nodes", 1)
    if "num_nodes" in trainer and (not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1):
        issue("num_nodes", "num_nodes must be a positive count of machines")
        return issues
    strategy = trainer.get("strategy", "auto")
    if not isinstance(strategy, str):
        return issues
    if strategy in REFUSED_STRATEGIES:
        issue("strategy", f"kgflow does not run strategy {strategy!r}: {REFUSED_STRATEGIES[strategy]}")
    elif is_distributed(trainer) and strategy not in ("auto", *DDP_STRATEGIES):
        issue("strategy", f"several processes need a DDP strategy, not {strategy!r}",
              "strategy: ddp (one process per device; Lightning, torchrun or SLURM start them)")
    return issues


def check_requirements(requires: list[str], located: Located) -> list[ConfigIssue]:
    """Each ``requires:`` entry must be an installed distribution satisfying its specifier."""
    import importlib.metadata as md

    from packaging.requirements import InvalidRequirement, Requirement

    issues = []
    for i, text in enumerate(requires):
        file, line = located.where(("requires", i))
        path = format_path(("requires", i))
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            issues.append(ConfigIssue(f"not a package requirement: {exc}", path=path, file=file,
                                      line=line, value=text, has_value=True))
            continue
        try:
            installed = md.version(req.name)
        except md.PackageNotFoundError:
            installed = None
        if installed is None or (req.specifier and not req.specifier.contains(installed, prereleases=True)):
            have = f"version {installed} is installed" if installed else "it is not installed"
            issues.append(ConfigIssue(f"this pipeline requires {text}, but {have}", path=path,
                                      file=file, line=line, hint=f"run: pip install '{text}'"))
    return issues


def resolve_components(config: PipelineConfig, located: Located,
                       registry: Registry) -> list[ConfigIssue]:
    """Look up every named component and validate its ``params`` against its own model."""
    issues: list[ConfigIssue] = []
    for path, kind, ref in config.component_slots():
        issues += component_issues(path, kind, ref, located, registry)
    issues += _capability_issues(config, located, registry)
    issues += _sampling_issues(config, located, registry)
    issues += _optimizer_issues(config, located)
    issues += _interaction_feature_issues(config, located)
    issues += _role_issues(config, located, registry)
    for i, metric in enumerate(config.eval.metrics):
        issues += _metric_issues(metric, ("eval", "metrics", i), located, registry)
    issues += _metric_params_issues(config, located, registry)
    stop = config.train.early_stopping
    if stop is not None:
        whole = [m for m in config.eval.metrics if _whole_ranking(registry, m)]
        valid = [f"{m}@{k}" for m in config.eval.metrics if m not in whole
                 for k in config.eval.ks] + whole
        if stop.metric not in valid:
            path = ("train", "early_stopping", "metric")
            file, line = located.where(path)
            issues.append(ConfigIssue(
                "early stopping watches a metric the evaluation does not compute",
                path=format_path(path), file=file, line=line, value=stop.metric, has_value=True,
                hint=_did_you_mean(stop.metric, valid) or "choose one of " + ", ".join(valid)))
    return issues


def component_issues(path: YamlPath, kind: str, ref: ComponentRef, located: Located,
                     registry: Registry) -> list[ConfigIssue]:
    """One pluggable block: its name must be registered and its ``params`` fit that component's
    own model (parsed into ``ref``, data paths made absolute)."""
    try:
        comp = registry.get(kind, ref.name)
    except PluginError as exc:
        name_path = path + ("name",) if (path + ("name",)) in located.positions else path
        file, line = located.where(name_path)
        return [ConfigIssue(str(exc), path=format_path(path + ("name",)), file=file, line=line)]
    try:
        ref._parsed = comp.params.model_validate(ref.params)
    except ValidationError as exc:
        return issues_from_validation(exc, located, path + ("params",), comp.params)
    resolve_data_paths(ref._parsed, ref.params, located, path + ("params",))
    return []


def _raw_component_slots(data: dict[str, Any]) -> list[tuple[YamlPath, str, Any]]:
    """Every pluggable block of an unvalidated pipeline mapping, as (YAML path, kind, raw value)."""
    slots: list[tuple[YamlPath, str, Any]] = [
        (("dataset",), "dataset", data.get("dataset")), (("graph",), "builder", data.get("graph")),
        (("fusion",), "fusion", data.get("fusion"))]
    objective = data.get("objective")
    if isinstance(objective, dict):
        slots.append((("objective", "loss"), "loss", objective.get("loss")))
        auxiliary = objective.get("auxiliary")
        if isinstance(auxiliary, list):
            slots += [(("objective", "auxiliary", i), "objective", a) for i, a in enumerate(auxiliary)]
    encoders = data.get("encoders")
    if isinstance(encoders, dict):
        slots += [(("encoders", role), "encoder", ref) for role, ref in encoders.items()]
    return [slot for slot in slots if slot[2] is not None]


def issues_beside_schema_errors(data: dict[str, Any], located: Located,
                                registry: Registry) -> list[ConfigIssue]:
    """What can still be checked in a pipeline whose schema has errors elsewhere, so that all its
    independent mistakes are reported at once: every pluggable block that is itself well formed
    (its name and params), the trainer's arguments and the metric names. A block that is not well
    formed was reported by the schema already."""
    requires = data.get("requires")
    if isinstance(requires, list) and all(isinstance(r, str) for r in requires):
        missing = check_requirements(requires, located)
        if missing:  # a missing plugin explains every unknown name after it
            return missing
    issues: list[ConfigIssue] = []
    for path, kind, raw in _raw_component_slots(data):
        try:
            ref = ComponentRef.model_validate(raw)
        except ValidationError:
            continue
        issues += component_issues(path, kind, ref, located, registry)
    trainer = data.get("trainer")
    if isinstance(trainer, dict):
        issues += _trainer_issues(trainer, located)
    metrics = (data.get("eval") or {}).get("metrics") if isinstance(data.get("eval"), dict) else None
    if isinstance(metrics, list):
        for i, metric in enumerate(metrics):
            if isinstance(metric, str):
                issues += _metric_issues(metric, ("eval", "metrics", i), located, registry)
    return issues


def _metric_params_issues(config: PipelineConfig, located: Located, registry: Registry) -> list[ConfigIssue]:
    """``eval.metric_params`` names metrics the evaluation computes, with settings their own
    parameter models accept; a metric with required settings has them."""
    issues: list[ConfigIssue] = []
    given = config.eval.metric_params
    for name, values in given.items():
        path: YamlPath = ("eval", "metric_params", name)
        file, line = located.where(path)
        if name not in config.eval.metrics:
            issues.append(ConfigIssue(f"settings for metric {name!r}, which eval.metrics does not name",
                                      path=format_path(path), file=file, line=line,
                                      hint=_did_you_mean(name, config.eval.metrics)
                                      or f"add {name} to eval.metrics, or drop these settings"))
            continue
        try:
            comp = registry.get("metric", name)
        except PluginError:
            continue  # reported at eval.metrics
        try:
            comp.params.model_validate(values)
        except ValidationError as exc:
            issues += issues_from_validation(exc, located, path, comp.params)
    for i, name in enumerate(config.eval.metrics):
        if name in given:
            continue
        try:
            comp = registry.get("metric", name)
        except PluginError:
            continue
        required = [key for key, f in comp.params.model_fields.items() if f.is_required()]
        if required:
            file, line = located.where(("eval", "metrics", i))
            issues.append(ConfigIssue(f"metric {name!r} needs settings: {', '.join(required)}",
                                      path=format_path(("eval", "metrics", i)), file=file, line=line,
                                      hint=f"eval: {{metric_params: {{{name}: {{{required[0]}: ...}}}}}}"))
    return issues


def _metric_issues(metric: str, path: YamlPath, located: Located, registry: Registry) -> list[ConfigIssue]:
    try:
        registry.get("metric", metric)
    except PluginError as exc:
        file, line = located.where(path)
        return [ConfigIssue(str(exc), path=format_path(path), file=file, line=line)]
    return []


def resolve_data_path(value: str, file: str | None) -> str:
    """``value`` made absolute: relative to the folder of the pipeline ``file`` that wrote it, or to
    the current directory when it came from ``--set`` (or from no file)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    base = Path.cwd() if not file or file.startswith(("--set", "<")) else Path(file).parent
    return os.path.abspath(base / path)


def _is_data_path(annotation: Any) -> bool:
    if any(isinstance(meta, _DataPathMarker) for meta in getattr(annotation, "__metadata__", ())):
        return True
    return any(_is_data_path(arg) for arg in typing.get_args(annotation))


def _data_path_fields(model: BaseModel, raw: Any, at: YamlPath):
    """(model, field name, value, YAML path, raw mapping) of every DataPath parameter inside
    ``model``, nested models included."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        where = at + (name,)
        if isinstance(value, BaseModel):
            yield from _data_path_fields(value, raw.get(name) if isinstance(raw, dict) else None, where)
        elif isinstance(value, str) and (_is_data_path(field.annotation)
                                         or any(isinstance(m, _DataPathMarker) for m in field.metadata)):
            yield model, name, value, where, raw


def resolve_data_paths(model: BaseModel, raw: Any, located: Located, at: YamlPath) -> None:
    """Make every :data:`~kgflow.plugin.DataPath` parameter of ``model`` (and of models inside it)
    absolute, in the model and in the ``raw`` mapping it came from (so ``resolved.yaml`` records
    where the data was read from, wherever the run is used later)."""
    for owner, name, value, where, mapping in list(_data_path_fields(model, raw, at)):
        absolute = resolve_data_path(value, located.where(where)[0])
        setattr(owner, name, absolute)
        if isinstance(mapping, dict) and name in mapping:
            mapping[name] = absolute


def data_paths(config: PipelineConfig) -> list[Path]:
    """Every data file or folder a validated pipeline reads (absolute)."""
    paths = [Path(config.split.path)] if config.split.path else []
    for _, _, ref in config.component_slots():
        if ref._parsed is not None:
            paths += [Path(value) for _, _, value, _, _ in _data_path_fields(ref._parsed, None, ())]
    return paths


def _capability_issues(config: PipelineConfig, located: Located,
                       registry: Registry) -> list[ConfigIssue]:
    """Components that need something of the graph (``requires``) against what the chosen builder
    ``provides`` -- e.g. a relational encoder on a graph of interactions only."""
    try:
        builder = registry.get("builder", config.graph.name)
    except PluginError:
        return []  # already reported
    issues = []
    slots = [(("encoders", role), "encoder", ref) for role, ref in config.encoders.items()]
    slots += [(("objective", "auxiliary", i), "objective", ref)
              for i, ref in enumerate(config.objective.auxiliary)]
    for path, kind, ref in slots:
        try:
            comp = registry.get(kind, ref.name)
        except PluginError:
            continue
        missing = [need for need in comp.requires if need not in builder.provides]
        if missing:
            offer = [b.name for b in registry.components("builder") if set(missing) <= set(b.provides)]
            name_path = path + ("name",) if (path + ("name",)) in located.positions else path
            file, line = located.where(name_path)
            issues.append(ConfigIssue(
                f"{kind} {comp.name!r} needs a graph with {' and '.join(missing)}, but builder "
                f"{builder.name!r} provides {', '.join(builder.provides) or 'none'}",
                path=format_path(path), file=file, line=line,
                hint=f"builders that provide it: {', '.join(offer)}" if offer else None))
    return issues


SAMPLING = "neighbor_sampling"


def _sampling_issues(config: PipelineConfig, located: Located, registry: Registry) -> list[ConfigIssue]:
    """``train.sampling: neighbor`` needs a fusion and encoders that train on sampled subgraphs
    (they register ``provides=("neighbor_sampling",)``), one fan-out per encoder layer."""
    sampling = config.train.sampling
    if sampling.method != "neighbor":
        return []
    issues = []
    if sampling.backend == "pyg":
        from kgflow.training.neighbors import compiled_backend

        bpath = ("train", "sampling", "backend")
        bfile, bline = located.where(bpath)
        if compiled_backend() is None:
            issues.append(ConfigIssue(
                "sampling backend pyg needs pyg-lib or torch-sparse, and neither is installed",
                path=format_path(bpath), file=bfile, line=bline, value="pyg", has_value=True,
                hint="use backend torch (kgflow's own sampler) or auto, or install one of them"))
        elif not sampling.fanouts:
            issues.append(ConfigIssue(
                "sampling backend pyg needs at least one hop (fanouts: [] reads only the batch's rows)",
                path=format_path(bpath), file=bfile, line=bline, value="pyg", has_value=True,
                hint="use backend torch or auto"))
    path = ("train", "sampling", "method")
    file, line = located.where(path)
    slots = [(("fusion",), "fusion", config.fusion)]
    slots += [(("encoders", role), "encoder", ref) for role, ref in config.encoders.items()]
    for slot, kind, ref in slots:
        try:
            comp = registry.get(kind, ref.name)
        except PluginError:
            continue  # reported on its own
        if SAMPLING not in comp.provides:
            able = [c.name for c in registry.components(kind) if SAMPLING in c.provides]
            issues.append(ConfigIssue(
                f"{kind} {comp.name!r} ({format_path(slot)}) cannot train on sampled subgraphs",
                path=format_path(path), file=file, line=line, value="neighbor", has_value=True,
                hint=f"use sampling method full, or a {kind} that can: {', '.join(able) or 'none installed'}"))
            continue
        depth = _layers(ref)
        if kind == "encoder" and depth is not None and len(sampling.fanouts or []) != depth:
            fpath = ("train", "sampling", "fanouts")
            ffile, fline = located.where(fpath)
            issues.append(ConfigIssue(
                f"{len(sampling.fanouts or [])} fan-out(s) for encoder {comp.name!r} with {depth} "
                "layer(s): give one fan-out per layer", path=format_path(fpath), file=ffile,
                line=fline, value=sampling.fanouts, has_value=True))
    return issues


_VALIDATING: list[str] = []  # the chain of pipelines being validated through needs:, for cycles


def _need_issues(config: PipelineConfig, located: Located, registry: Registry, source: str,
                 loaded: dict[str, "LoadedPipeline"]) -> list[ConfigIssue]:
    """Each ``needs:`` entry is a valid pipeline (checked as it will run: with this seed and its
    ``set``; the valid ones go into ``loaded``), no pipeline needs itself through others, and under
    DDP its run is already finished (every process would otherwise train it into one folder)."""
    from kgflow.runs.rundir import RunDir
    from kgflow.training.distributed import is_distributed

    issues = []
    for name, need in config.needs.items():
        path = ("needs", name, "pipeline")
        file, line = located.where(path)
        target = Path(need.pipeline)
        if not target.is_file():
            issues.append(ConfigIssue(f"needed pipeline {need.pipeline} not found", path=format_path(path),
                                      file=file, line=line))
            continue
        chain = [*_VALIDATING, os.path.abspath(source)]
        if str(target.resolve()) in {os.path.abspath(p) for p in chain}:
            issues.append(ConfigIssue("pipelines need each other in a cycle: " + " -> ".join(
                [*chain, str(target)]), path=format_path(path), file=file, line=line))
            continue
        _VALIDATING.append(os.path.abspath(source))
        try:
            needed = load_pipeline(target, [f"seed={config.seed}", *need.set], registry)
        except ConfigError as exc:
            issues.append(ConfigIssue(f"the needed pipeline {need.pipeline} has problems:\n      "
                                      + str(exc).replace("\n", "\n      "), path=format_path(path),
                                      file=file, line=line))
            continue
        finally:
            _VALIDATING.pop()
        loaded[name] = needed
        out = need_run_dir(need, needed, config.seed)
        if is_distributed(config.trainer) and RunDir(out).status().get("state") != "finished":
            issues.append(ConfigIssue(
                f"needs.{name} is not trained yet, and a multi-process run cannot train it (every "
                "process would write one folder)", path=format_path(path), file=file, line=line,
                hint=f"train it first: kgflow run {need.pipeline} --set seed={config.seed} --out {out}"))
    return issues


def need_run_dir(need: Any, needed: "LoadedPipeline", seed: int) -> Path:
    """Where a needed pipeline's run goes: its ``out``, or ``runs/<its name>-<seed>``."""
    return Path(need.out) if need.out else Path("runs") / f"{needed.name}-{seed}"


def _role_issues(config: PipelineConfig, located: Located, registry: Registry) -> list[ConfigIssue]:
    """A fusion that declares its encoder roles (``Component.roles``) gets exactly those."""
    try:
        comp = registry.get("fusion", config.fusion.name)
    except PluginError:
        return []  # reported on its own
    if not comp.roles:
        return []
    needed, have = set(comp.roles), set(config.encoders)
    issues = []
    file, line = located.where(("encoders",))
    for role in sorted(needed - have):
        issues.append(ConfigIssue(f"fusion {comp.name!r} needs an encoder under the role {role!r}",
                                  path="encoders", file=file, line=line,
                                  hint=f"roles it uses: {', '.join(sorted(needed))}"))
    extra = sorted(have - needed)
    if extra:
        issues.append(ConfigIssue(f"fusion {comp.name!r} does not use the encoders {extra}; remove them "
                                  "or choose a fusion that combines them", path="encoders", file=file,
                                  line=line))
    return issues


def _interaction_feature_issues(config: PipelineConfig, located: Located) -> list[ConfigIssue]:
    """Weights and behaviours are made while kgflow splits the data: a predefined split's files
    are taken as they are, so these options would do nothing there."""
    if config.split.method != "predefined":
        return []
    pre = config.preprocess
    issues = []
    for key, value in (("weight", pre.weight), ("behaviors", pre.behaviors),
                       ("below_threshold_as", pre.below_threshold_as)):
        if value is None:
            continue
        path = ("preprocess", key)
        file, line = located.where(path)
        issues.append(ConfigIssue(f"preprocess.{key} applies to a split kgflow makes, but split.method "
                                  "predefined reads its parts as they are", path=format_path(path),
                                  file=file, line=line,
                                  hint="remove it, or let kgflow split the data (split.method random, ...)"))
    return issues


def _optimizer_issues(config: PipelineConfig, located: Located) -> list[ConfigIssue]:
    """``sparse_adam``'s sparse gradients are not reduced across DDP processes by kgflow."""
    from kgflow.training.distributed import is_distributed

    if config.train.optimizer != "sparse_adam" or not is_distributed(config.trainer):
        return []
    path = ("train", "optimizer")
    file, line = located.where(path)
    return [ConfigIssue("optimizer sparse_adam runs in one process only: its sparse embedding "
                        "gradients cannot be all-reduced by every DDP backend (NCCL cannot)",
                        path=format_path(path), file=file, line=line, value="sparse_adam",
                        has_value=True, hint="use optimizer: adam with several devices")]


def _layers(ref: ComponentRef) -> int | None:
    """An encoder's depth from its ``layers`` parameter (a count, or one size per layer), or from
    ``hops`` (KGIN-style relational paths)."""
    parsed = ref._parsed
    layers = getattr(parsed, "layers", getattr(parsed, "hops", None)) if parsed is not None else None
    if isinstance(layers, int):
        return layers
    if isinstance(layers, (list, tuple)):
        return len(layers)
    return None


def _whole_ranking(registry: Registry, name: str) -> bool:
    """Whether a metric is computed once over the whole ranking (auc) rather than at each k."""
    from kgflow.registry.contexts import MetricContext

    try:
        comp = registry.get("metric", name)
        return bool(getattr(comp.factory(comp.params(), MetricContext()), "whole_ranking", False))
    except Exception:  # unknown metrics are reported on their own
        return False


def validate_located(located: Located, source: str, registry: Registry | None = None,
                     overrides: tuple[str, ...] = ()) -> LoadedPipeline:
    """Validate already-loaded data; raise :class:`ConfigError` listing every problem."""
    registry = registry or get_registry()
    if not isinstance(located.data, dict):
        raise ConfigError([ConfigIssue("a pipeline must be a YAML mapping at the top level",
                                       file=source, line=1,
                                       value=type(located.data).__name__, has_value=True)], source)
    try:
        config = PipelineConfig.model_validate(located.data)
    except ValidationError as exc:
        issues = issues_from_validation(exc, located, (), PipelineConfig)
        issues += issues_beside_schema_errors(located.data, located, registry)
        raise ConfigError(issues, source) from None
    if config.split.path:  # a predefined split's folder is data, like a dataset's files
        config.split.path = resolve_data_path(config.split.path, located.where(("split", "path"))[0])
    for name, need in config.needs.items():  # a needed pipeline's file is relative to this one's
        need.pipeline = resolve_data_path(need.pipeline, located.where(("needs", name, "pipeline"))[0])
    requirement_issues = check_requirements(config.requires, located)
    if requirement_issues:  # a missing plugin explains every unknown name after it: stop here
        raise ConfigError(requirement_issues, source)
    issues = resolve_components(config, located, registry)
    issues += _trainer_issues(config.trainer, located)
    issues += _tracking_issues(config, located)
    needs: dict[str, LoadedPipeline] = {}
    issues += _need_issues(config, located, registry, source, needs)
    # Plugins' cross-cutting checks run too, so that a file's independent mistakes are all
    # reported at once; a check that cannot work on a file with earlier problems (a component
    # that did not resolve) is skipped rather than reporting a consequence of them.
    earlier = bool(issues)
    for check in registry.checks:
        try:
            found = list(check.check(config, registry) or [])
        except Exception:
            if earlier:
                continue
            raise
        for issue in found:
            if issue.file is None and issue.path:  # point at the line the dotted path names
                keys = tuple(int(k) if k.isdigit() else k for k in issue.path.split("."))
                issue.file, issue.line = located.where(keys)
                issue.file = issue.file or source
            issues.append(issue)
    if issues:
        raise ConfigError(issues, source)
    return LoadedPipeline(config, located, source, tuple(overrides), needs)


def load_pipeline(path: str | Path, overrides: Iterable[str] = (),
                  registry: Registry | None = None) -> LoadedPipeline:
    """Load ``path`` (following ``extends``), apply ``--set`` overrides, and validate it all."""
    overrides = tuple(overrides)
    located = load_with_extends(path)
    if overrides:
        located = apply_overrides(located, list(overrides))
    return validate_located(located, str(path), registry, overrides)
