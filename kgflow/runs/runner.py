"""Assembling and running a pipeline: data -> split -> graph -> model -> train -> evaluate -> run dir.

Each step takes the typed result of the previous one; no step reaches back into the YAML.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from kgflow.config.validate import LoadedPipeline
from kgflow.data.recdata import RecData, Split
from kgflow.data.store import kgflow_home
from kgflow.errors import KgflowError
from kgflow.evaluation.context import context_of
from kgflow.evaluation.groups import check_user_groups, report_lines, user_group_metrics
from kgflow.evaluation.ranking import metric_functions
from kgflow.graph import GraphBundle
from kgflow.models import AuxiliaryObjective, Recommender
from kgflow.registry.contexts import LossContext, ObjectiveContext
from kgflow.registry import Registry, get_registry
from kgflow.runs import environment
from kgflow.runs.assembly import (Prepared, build_graph, build_recommender, count_parameters,  # noqa: F401
                                  load_data, prepare)
from kgflow.runs.checkpoint import read_checkpoint
from kgflow.runs.history import keep_before_resume, restore_after_resume
from kgflow.runs.interrupt import RunInterrupted, StopOnSignal, resume_hint
from kgflow.runs.rundir import RunDir, atomic_write_json, atomic_write_text
from kgflow.runs.snapshot import save_snapshot
from kgflow.runs.tracking import build_trackers, finish_trackers, start_trackers
from kgflow.training.distributed import devices_per_node, is_distributed, launch_rank


LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")

#: Where a run reports its progress; the CLI renders it on the console, a Python caller decides.
log = logging.getLogger("kgflow.run")


def _quiet_lightning() -> None:
    """Lightning's routine notices, silenced for the run only (see :func:`caller_state_kept`)."""
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*predict_dataloader.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")
    warnings.filterwarnings("ignore", message=".*isinstance.*treespec.*")
    # kgflow reduces its evaluation sums over DDP processes itself before logging them.
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed.*")


@contextmanager
def caller_state_kept() -> Iterator[None]:
    """Run a pipeline without changing the calling process: its warning filters, logger levels,
    torch thread count, random states (Python, NumPy, torch) and ``PL_GLOBAL_SEED`` are as they
    were afterwards, whether the run finished or failed."""
    import torch

    from kgflow.training import rng

    levels = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    threads = torch.get_num_threads()
    states = rng.capture()
    seed_env = os.environ.get("PL_GLOBAL_SEED")
    try:
        with warnings.catch_warnings():
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        torch.set_num_threads(threads)
        rng.restore(states)
        if seed_env is None:
            os.environ.pop("PL_GLOBAL_SEED", None)
        else:
            os.environ["PL_GLOBAL_SEED"] = seed_env


def resolved_yaml(loaded: LoadedPipeline) -> str:
    data = loaded.config.model_dump(mode="json")
    header = (f"# resolved from {loaded.source}"
              + (f" with --set {' --set '.join(loaded.overrides)}" if loaded.overrides else "") + "\n")
    return header + yaml.safe_dump(data, sort_keys=False)


def pipeline_body(loaded: LoadedPipeline) -> str:
    """``resolved_yaml`` without its header line: what two runs of one pipeline share, whatever
    file and ``--set`` options they came from."""
    return resolved_yaml(loaded).split("\n", 1)[1]


def made_from(path: Path, loaded: LoadedPipeline) -> bool:
    """Whether the run directory ``path`` was started from this pipeline (same resolved settings)."""
    recorded = path / "resolved.yaml"
    return recorded.is_file() and recorded.read_text().split("\n", 1)[-1] == pipeline_body(loaded)


def default_out(loaded: LoadedPipeline) -> Path:
    return Path("runs") / loaded.name


def run_pipeline(loaded: LoadedPipeline, out: str | Path | None = None, *, overwrite: bool = False,
                 resume: bool = False, registry: Registry | None = None,
                 progress: bool | None = None, echo: Callable[[str], Any] | None = None,
                 callbacks: list[Any] = ()) -> dict[str, Any]:
    """Run a validated pipeline end to end and return its metrics (also in ``metrics.json``).

    Progress messages go to the ``kgflow.run`` logger (or to ``echo`` when given). The calling
    process's warning filters, logger levels, thread count and random states are left as they
    were (:func:`caller_state_kept`). ``callbacks``: extra Lightning callbacks (``kgflow tune``
    reports each validation to its study through one)."""
    needs = train_needs(loaded, registry, echo or log.info)
    stopper = StopOnSignal()
    with caller_state_kept():
        stopper.install()
        try:
            return _run_pipeline(loaded, out, overwrite=overwrite, resume=resume, registry=registry,
                                 progress=progress, echo=echo or log.info, stopper=stopper,
                                 needs=needs, callbacks=list(callbacks))
        finally:
            stopper.uninstall()


def train_needs(loaded: LoadedPipeline, registry: Registry | None,
                echo: Callable[[str], Any]) -> dict[str, Path]:
    """Run the pipelines ``loaded`` needs (``needs:``) before it, each with its seed: a finished
    run of the same pipeline is reused, an interrupted one resumed. Returns their run folders."""
    from kgflow.config.validate import need_run_dir

    folders = {}
    cfg = loaded.config
    for name, need in cfg.needs.items():
        needed = loaded.needs[name]  # validated (and loaded) with the pipeline
        target = need_run_dir(need, needed, cfg.seed)
        existing = RunDir(target)
        if existing.is_run():
            if not made_from(target, needed):  # never replace a run that was not made for this need
                raise KgflowError(f"needs.{name}: {target} holds a run of another pipeline (or other "
                                  f"settings) than {need.pipeline} with seed {cfg.seed}; remove it, or "
                                  "give needs.{name}.out another folder")
            if existing.status().get("state") == "finished":
                echo(f"needs.{name}: reusing the finished run {target}")
                folders[name] = target
                continue
            resume = (target / "checkpoints" / "last.ckpt").is_file()
        else:
            resume = False
        echo(f"needs.{name}: {'resuming' if resume else 'training'} {need.pipeline} -> {target}")
        run_pipeline(needed, target, overwrite=existing.is_run() and not resume, resume=resume,
                     registry=registry, progress=False, echo=echo)
        folders[name] = target
    return folders


def _run_pipeline(loaded: LoadedPipeline, out: str | Path | None, *, overwrite: bool, resume: bool,
                  registry: Registry | None, progress: bool | None, echo: Callable[[str], Any],
                  stopper: StopOnSignal, needs: dict[str, Path], callbacks: list[Any]) -> dict[str, Any]:
    import lightning as L

    registry = registry or get_registry()
    cfg = loaded.config
    run = RunDir(out or default_out(loaded))
    # Under DDP every process runs this function; only global rank 0 checks, replaces and writes
    # the run directory (the others find it there when they need a checkpoint).
    writer = is_writer(cfg.trainer)
    if not writer:
        echo = _silent
    if writer:
        run.refuse_protected(protected_paths(loaded))
        run.check(overwrite=overwrite, resume=resume)
        run.acquire()
    # Everything that can fail on the data or the model's construction (missing files, nothing
    # left after filtering, a component refusing its inputs) happens before the run directory is
    # created or an old run is replaced: such a failure leaves nothing behind.
    started = False
    trackers: list[Any] = []
    t_start = time.perf_counter()
    try:
        prepared = prepare(loaded, registry)
        prepare_seconds = time.perf_counter() - t_start
        _quiet_lightning()
        L.seed_everything(cfg.seed, verbose=False)
        split = prepared.split
        fingerprint = split.fingerprint()
        echo(f"data: {prepared.data.name}, split {split.method}: " + ", ".join(
            f"{k} {v:,}" for k, v in split.stats().items()) + f" (fingerprint {fingerprint})")
        skipped = prepared.data.skipped_rows
        if skipped.count:
            echo(f"data: {skipped.summary()} (preprocess.on_bad_rows: skip); first: "
                 + "; ".join(skipped.examples[:3]))
        for name, lost in prepared.auxiliary_dropped.items():
            echo(f"data: auxiliary behaviour {name}: {len(split.auxiliary[name]):,} training pairs; "
                 f"{lost:,} left out (held-out targets, cold items, or later than the user's "
                 "held-out targets on a split by time)")
        if split.train.weight is not None:
            w = split.train.weight
            echo(f"data: interaction weights ({cfg.preprocess.weight.column}): min {w.min():.3g}, "  # type: ignore[union-attr]
                 f"mean {w.mean():.3g}, max {w.max():.3g}")
        graph = build_graph(loaded, prepared, registry)
        echo("graph: " + "; ".join(graph.report.lines()))
        model = build_recommender(loaded, prepared, graph, registry, needs=needs)
        carried = None
        if cfg.train.init_from and not resume and cfg.train.init_match == "ids":
            from kgflow.runs.carry import carry_by_ids

            carried = carry_by_ids(model, split, graph, cfg.train.init_from)
            echo(f"init_from {cfg.train.init_from} (by id): {carried.line()}")
        elif cfg.train.init_from and not resume:
            from kgflow.runs.checkpoint import warm_start

            copied, fresh = warm_start(model, cfg.train.init_from, fingerprint)
            echo(f"init_from {cfg.train.init_from}: {copied} tensors copied, {fresh} trainable "
                 "tensors start fresh")
        check_user_groups(cfg.eval.user_groups, prepared.data.users)
        trainer, module, datamodule, checkpoint = build_training(loaded, split, model, run,
                                                                 registry, progress, graph,
                                                                 [stopper, *callbacks], prepared.data)
        if writer:
            start_run_dir(run, loaded, overwrite=overwrite, resume=resume)
            started = True
            save_snapshot(run.path, prepared.data, split)  # serving reads it, not the raw data
            # trackers join once the run directory exists (they write into it by default)
            trackers = build_trackers(cfg, run.path, resume)
            trainer.loggers = [*trainer.loggers, *trackers]
            start_trackers(trackers, cfg, run.path, fingerprint)
            atomic_write_json(run.path / "graph.json", graph.report.as_dict())
            plugins = [{"name": p.name, "package": p.package, "version": p.version}
                       for p in registry.plugins]
            atomic_write_json(run.path / "environment.json",
                              environment.describe(cfg.seed, fingerprint, plugins))
        environment.release_memory()
        ckpt = str(run.checkpoints / "last.ckpt") if resume else None
        if ckpt:
            read_checkpoint(ckpt)  # data only: refuse a crafted or damaged file before Lightning reads it
        if writer and resume:
            keep_before_resume(run.path / "logs")  # Lightning's CSV logger would delete them
            # so its notice that they will be deleted, and that the checkpoint folder is not
            # empty, are wrong or expected here: a resumed run reopens both on purpose
            warnings.filterwarnings(
                "ignore", message=r"(?s).*(Experiment logs|Checkpoint) directory .* exists and is not empty")
        t_fit = time.perf_counter()
        stopper.armed = True  # from here a signal stops the run at the end of a batch
        parameters = count_parameters(model)
        if parameters["trainable"]:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        else:  # nothing to learn (a content or popularity baseline): evaluate as built
            echo("the model has no trainable parameters: evaluating without training")
        fit_seconds = time.perf_counter() - t_fit
        best = checkpoint.best_model_path or None
        if best is None and parameters["trainable"]:
            # no validation ran during training (eval_every beyond the epochs): the final weights
            # are the run's model, saved where serving and warm starts look for it
            best = str(run.checkpoints / "best.ckpt")
            trainer.save_checkpoint(best, weights_only=True)
        train_epochs = list(module.timing["train_epoch"])
        if best:
            read_checkpoint(best)
        trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
        trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
        stopper.armed = False
        stopper.check()
        artifacts = ([str(p.relative_to(run.path)) for p in model.save_artifacts(run.path / "artifacts")]
                     if writer else [])
        for artifact in artifacts:
            echo(f"saved {run.path / artifact}")
        evals = module.timing["eval"]
        result = {
            "valid": module.results.get("valid", {}),
            "test": module.results.get("test", {}),
            "best_epoch": checkpoint.best_epoch,
            "timing": {
                "epochs": trainer.current_epoch,
                "prepare_seconds": prepare_seconds,
                "seconds_per_epoch": sum(train_epochs) / max(len(train_epochs), 1),
                "eval_seconds": sum(evals) / max(len(evals), 1),
                "fit_seconds": fit_seconds,
                "total_seconds": time.perf_counter() - t_start,
                "peak_rss_mb": environment.peak_rss_mb(),
                "peak_gpu_mb": environment.peak_gpu_mb(),
            },
            "parameters": parameters,
            "artifacts": artifacts,
            "split": split.stats(),
            "data": {"skipped_rows": skipped.as_dict()},
            "data_fingerprint": fingerprint,
            "accelerator": str(trainer.accelerator.__class__.__name__).replace("Accelerator", "").lower(),
            "processes": trainer.world_size,
        }
        if carried is not None:
            result["warm_start"] = carried.as_dict()
        neighbors = datamodule.train_batches.neighbors
        if neighbors is not None:
            from kgflow.training.neighbors import backend_name

            result["sampler"] = backend_name(neighbors)
        if cfg.eval.user_groups:
            result["user_groups"] = {"test": user_group_metrics(
                module.test_per_user, split.user_ids, prepared.data.users, cfg.eval.user_groups)}
        result.update(model.extra_metrics())
        if writer:
            atomic_write_json(run.path / "metrics.json", result)
            write_per_user(run.path / "test_per_user.csv", module.test_per_user, split)
            atomic_write_text(run.path / "report.md", render_report(loaded, result, graph))
            restore_after_resume(run.path / "logs")
            run.finish()
            finish_trackers(trackers, "success")
        return result
    except BaseException as exc:
        if writer and started and isinstance(exc, RunInterrupted):
            command = f"kgflow run {loaded.source} --out {run.path}" + "".join(
                f" --set '{o}'" for o in loaded.overrides)
            hint = resume_hint(command, (run.checkpoints / "last.ckpt").is_file())
            run.fail(str(exc), state="interrupted", hint=hint)
            finish_trackers(trackers, "failed")
            raise RunInterrupted(exc.signum, f"{exc}; {hint}") from None
        if writer and started:
            run.fail(f"{type(exc).__name__}: {exc}")
            finish_trackers(trackers, "failed")
        elif writer:
            run.release()  # nothing was started: the next attempt may take the directory
        raise


def protected_paths(loaded: LoadedPipeline) -> dict[str, Path]:
    """Folders no run directory may be, or contain: what ``--overwrite`` must never replace."""
    from kgflow.config.validate import data_paths

    paths = {"the current directory": Path.cwd(),
             "the pipeline's folder": Path(str(loaded.source)).parent,
             "the kgflow data home (KGFLOW_HOME)": kgflow_home()}
    for path in data_paths(loaded.config):
        paths[f"data the pipeline reads ({path})"] = path if path.is_dir() else path.parent
    return paths


def _silent(*args: Any, **kwargs: Any) -> None:
    """The ``echo`` of processes other than rank 0: one process speaks for the run."""


def is_writer(trainer: dict[str, Any]) -> bool:
    """Whether this process writes the run directory: the one of global rank 0."""
    return launch_rank(devices_per_node(trainer)) == 0


def start_run_dir(run: RunDir, loaded: LoadedPipeline, *, overwrite: bool, resume: bool) -> None:
    """Create (or reopen, to resume) the run directory and record the pipeline in it."""
    run.prepare(overwrite=overwrite, resume=resume)
    if resume:
        if not made_from(run.path, loaded):
            raise KgflowError(f"{run.path}: the pipeline differs from the one this run started with; "
                              "resume needs the same pipeline and --set options")
    else:
        atomic_write_text(run.path / "resolved.yaml", resolved_yaml(loaded))
    run.set_state("running", pipeline=str(loaded.source), pid=os.getpid())


def build_objectives(loaded: LoadedPipeline, split: Split, model: Recommender, graph: GraphBundle,
                     registry: Registry) -> list[AuxiliaryObjective]:
    """The pipeline's ``objective.auxiliary`` entries, built against the model they train."""
    cfg = loaded.config
    objectives = []
    for ref in cfg.objective.auxiliary:
        comp = registry.get("objective", ref.name)
        objective = comp.factory(ref.parsed, ObjectiveContext(model, graph, split, cfg.train.batch_size,
                                                              cfg.seed))
        if not isinstance(objective, AuxiliaryObjective):
            raise KgflowError(f"objective {comp.name!r} ({comp.package}) returned "
                              f"{type(objective).__name__}, not a kgflow AuxiliaryObjective")
        objectives.append(objective)
    return objectives


def build_training(loaded: LoadedPipeline, split: Split, model: Recommender, run: RunDir,
                   registry: Registry, progress: bool | None,
                   graph: GraphBundle | None = None, extra_callbacks: list[Any] = (),
                   data: RecData | None = None) -> tuple[Any, Any, Any, Any]:
    """The Lightning trainer, module and data module for a model, with kgflow's callbacks and its
    CSV log (the pipeline's trackers join once the run directory exists)."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from kgflow.training.datamodule import RecDataModule
    from kgflow.training.module import RecModule, check_weighted_loss
    from kgflow.training.neighbors import backend_name
    from kgflow.training.selection import BestCheckpoint

    cfg = loaded.config
    loss_comp = registry.get("loss", cfg.objective.loss.name)
    loss = loss_comp.factory(cfg.objective.loss.parsed, LossContext(cfg.objective.negatives))
    metrics = metric_functions(cfg.eval.metrics, registry, context_of(split, data), cfg.eval.metric_params)
    loss_weights = cfg.preprocess.weight is not None and cfg.preprocess.weight.loss
    if loss_weights:
        check_weighted_loss(loss, cfg.objective.loss.name)
    datamodule = RecDataModule(split, cfg.train.batch_size, cfg.objective.negatives,
                               cfg.eval.batch_users, cfg.seed, cfg.eval.max_users,
                               cfg.objective.negative_sampling, loss_weights=loss_weights)
    sampling = cfg.train.sampling
    if sampling.method == "neighbor" and graph is not None:
        edges = model.message_edges()
        edge_index, edge_id = edges if edges is not None else (graph.edge_index, None)
        datamodule.sample_neighbourhoods(edge_index, graph.num_nodes, sampling.fanouts or [],
                                         graph.node_offsets.get("user", 0), graph.node_offsets["item"],
                                         edge_id, sampling.backend)
        log.info("sampled subgraphs: fan-outs %s, sampler %s", sampling.fanouts,
                 backend_name(datamodule.train_batches.neighbors))
    objectives = build_objectives(loaded, split, model, graph, registry) if graph is not None else []
    datamodule.train_batches.alternating = [(i, o) for i, o in enumerate(objectives)
                                            if o.schedule == "alternate"]
    hard = cfg.objective.negative_sampling
    module = RecModule(model, loss, cfg.objective.l2, cfg.train, datamodule.tasks, cfg.eval.ks, metrics,
                       objectives, hard_candidates=hard.candidates if hard.method == "dns" else 0)
    stop = cfg.train.early_stopping
    checkpoint = BestCheckpoint(run.checkpoints, f"valid/{stop.metric if stop else 'ndcg@10'}",
                                patience=stop.patience if stop else None,
                                decimals=stop.decimals if stop else None,
                                ties_later=(stop.ties == "later") if stop else False,
                                min_epochs=stop.min_epochs if stop else 0)
    # last.ckpt after every evaluation (after BestCheckpoint has updated its state), so that an
    # interrupted run resumes from its latest epoch; Lightning's save_last alone writes nothing
    # when no other checkpoint is saved by the same callback.
    last = ModelCheckpoint(dirpath=run.checkpoints, filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)
    show = sys.stderr.isatty() if progress is None else progress
    trainer_args: dict[str, Any] = {
        "accelerator": "auto", "devices": 1, "enable_progress_bar": show,
        "enable_model_summary": False, "num_sanity_val_steps": 0, "log_every_n_steps": 1,
    }
    trainer_args.update(cfg.trainer)
    if is_distributed(cfg.trainer):
        trainer_args["strategy"] = ddp_strategy(trainer_args.get("strategy", "auto"),
                                                unused_parameters=bool(objectives))
        # Buffers (graphs, sparse adjacency, cached text vectors) are built alike in every process:
        # DDP neither broadcasts them at start (it cannot broadcast sparse ones) nor on each step.
        module._ddp_params_and_buffers_to_ignore = [name for name, _ in module.named_buffers()]
        if not torch.cuda.is_available() or trainer_args.get("accelerator") == "cpu":
            # Processes on one machine's CPUs share its cores instead of each taking all of them.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices_per_node(cfg.trainer)))
    try:
        trainer = L.Trainer(max_epochs=cfg.train.epochs, callbacks=[checkpoint, last, *extra_callbacks],
                            check_val_every_n_epoch=cfg.train.eval_every,
                            logger=CSVLogger(str(run.path), name="logs", version=""),
                            default_root_dir=str(run.path), **trainer_args)
    except Exception as exc:  # e.g. accelerator: gpu on a machine without one
        file, line = loaded.located.where(("trainer",))
        where = f"{file}:{line} " if file else ""
        raise KgflowError(f"{where}trainer: lightning.Trainer refused these settings: {exc}") from None
    return trainer, module, datamodule, checkpoint


def ddp_strategy(name: Any, unused_parameters: bool) -> Any:
    """Lightning's DDP for a validated multi-process run.

    Buffers are not broadcast: kgflow's buffers (graphs, cached text vectors) are built alike in
    every process or recomputed from the synchronised weights, and a per-step broadcast of them
    would cost more than the step. Alternating objectives leave some parameters without a
    gradient in a step, so their presence turns on DDP's search for unused parameters."""
    from lightning.pytorch.strategies import DDPStrategy

    if not isinstance(name, str):  # a Strategy object from Python: the caller's choice
        return name
    find_unused = {"ddp_find_unused_parameters_true": True,
                   "ddp_find_unused_parameters_false": False}.get(name, unused_parameters)
    return DDPStrategy(find_unused_parameters=find_unused, broadcast_buffers=False)


def write_per_user(path: Path, values: dict[str, Any], split: Split) -> None:
    """Per-user test metrics (original user ids), for paired comparisons between runs."""
    if not values:
        return
    import pandas as pd

    frame = pd.DataFrame({key: value.numpy() for key, value in values.items()})
    frame["user"] = split.user_ids[frame["user"].to_numpy()]
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.6g"))


def render_report(loaded: LoadedPipeline, result: dict[str, Any], graph: GraphBundle) -> str:
    lines = [f"# {loaded.name}", "", f"Pipeline: `{loaded.source}`", ""]
    for stage in ("valid", "test"):
        groups = result.get(stage, {})
        if not groups:
            continue
        keys = [k for k in next(iter(groups.values())) if k != "users"]
        lines += [f"## {stage}", "", "| group | users | " + " | ".join(keys) + " |",
                  "|---|---|" + "---|" * len(keys)]
        for group, values in groups.items():
            lines.append(f"| {group} | {values.get('users', '')} | "
                         + " | ".join(f"{values.get(k, float('nan')):.4f}" for k in keys) + " |")
        lines.append("")
    for stage, user_groups in result.get("user_groups", {}).items():
        if user_groups:
            keys = [k for k in result.get(stage, {}).get("all", {}) if k != "users"
                    and any(k in g for e in user_groups.values() for g in e["groups"].values())]
            lines += [f"## {stage} by user group", ""] + report_lines(user_groups, keys)
    t = result["timing"]
    lines += ["## cost", "", f"- epochs: {t['epochs']} (best epoch {result['best_epoch']})",
              f"- seconds per training epoch: {t['seconds_per_epoch']:.3f}",
              f"- seconds per full-ranking evaluation: {t['eval_seconds']:.3f}",
              f"- peak memory: {t['peak_rss_mb']:.0f} MB",
              f"- parameters: {result['parameters']['trainable']:,} trainable of "
              f"{result['parameters']['total']:,} ("
              + ", ".join(f"{k} {v:,}" for k, v in result["parameters"].get("trainable_by_part", {}).items())
              + ")", "",
              "## graph", ""] + [f"- {line}" for line in graph.report.lines()]
    skipped = result.get("data", {}).get("skipped_rows", {})
    if skipped.get("count"):
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in skipped["by_reason"].items())
        lines += ["", "## data", "",
                  f"- {skipped['count']:,} bad interaction row(s) skipped "
                  f"(preprocess.on_bad_rows: skip): {reasons}"]
        lines += [f"- {example}" for example in skipped["examples"]]
    carried = result.get("warm_start")
    if carried:
        u, i, n = carried["users"], carried["items"], carried["new_rows"]
        lines += ["", "## warm start (by id)", "", f"- from {carried['from']}",
                  f"- users: {u['carried']:,} carried, {u['new']:,} new, {u['vanished']:,} vanished",
                  f"- items: {i['carried']:,} carried, {i['new']:,} new, {i['vanished']:,} vanished",
                  f"- new rows: {n['folded_in']:,} folded in from their interactions, "
                  f"{n['initialised']:,} at the model's initialisation",
                  f"- tensors: {carried['tensors']['by_id']} by id, {carried['tensors']['copied']} "
                  f"copied, {carried['tensors']['fresh']} fresh"]
    return "\n".join(lines) + "\n"
