#!/usr/bin/env python3
"""RecBole 1.2.1 tuned with the same trial budget as ``kgflow tune``, on kgflow's exported splits.

The issue-15 bar compares kgflow's best pipeline with the best *tuned* RecBole model, so RecBole's
BPR, LightGCN and EASE get what kgflow's models get: an Optuna study with the same sampler, study
seed, trial count and values (``benchmarks/spaces/recbole-*.yaml`` name RecBole's config keys for
the values of ``benchmarks/spaces/{mf,lightgcn,ease}.yaml``), selection by validation NDCG@10 alone, and the
test figures of the chosen trial only. Every trial is one ``run_recbole.py`` run on the split that
``kgflow data split --export`` wrote, with the protocol's patience and epoch cap.

    python benchmarks/tune_recbole.py run --work W --model LightGCN --seeds 2020 2021 2022 \
        --recbole-python $PEERS/venv/bin/python --run-recbole shared/reference/recbole/run_recbole.py
    python benchmarks/tune_recbole.py table --work W [--kgflow-tune DIR]

Studies live in SQLite (``W/recbole-<model>-<seed>/study.db``): running again continues a study
(a trial left running by a killed study is marked failed and run again). ``table`` prints each
study's trials and the chosen trial's test figures, next to ``kgflow tune`` studies found under
``--kgflow-tune`` (folders named ``<pipeline>-<seed>`` holding ``best.json``), with paired
differences over the splits both sides ran.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_recbole import PATIENCE, EPOCHS, recbole_stopping_step, split_dir  # noqa: E402

from kgflow.tuning.space import ParamSpec  # noqa: E402
from kgflow.tuning.study import fail_stale_trials, sampler_seed, suggest  # noqa: E402

SPACES = Path(__file__).resolve().parent / "spaces"


def load_space(model: str) -> dict:
    """A RecBole space: kgflow's space format, with RecBole config keys under ``params`` and the
    values every trial shares under ``fixed``."""
    raw = yaml.safe_load((SPACES / f"recbole-{model.lower()}.yaml").read_text())
    raw["params"] = {k: ParamSpec.model_validate(v) for k, v in raw["params"].items()}
    raw.setdefault("fixed", {})
    return raw


def configurable_copy(tool: str, work: Path) -> str:
    """``run_recbole.py`` with two changes: RecBole's seed from RB_SEED (as compare_recbole's
    ``--vary-seed``) and config overrides from RB_CONFIG (JSON) laid over the protocol's values."""
    text = Path(tool).read_text()
    edits = {'"seed": 2020,': '"seed": int(os.environ.get("RB_SEED", "2020")),',
             "args.stopping_step, args.split_dir))":
             'args.stopping_step, args.split_dir) | json.loads(os.environ.get("RB_CONFIG", "{}")))'}
    for old, new in edits.items():
        if text.count(old) != 1:
            raise SystemExit(f"{tool}: expected {old!r} once; the reference tool changed")
        text = text.replace(old, new)
    copy = work / "run_recbole_configurable.py"
    partial = copy.with_suffix(f".{os.getpid()}.tmp")  # studies of other seeds may be starting it
    partial.write_text(text)
    os.replace(partial, copy)
    return str(copy)


def run(args: argparse.Namespace) -> None:
    import optuna

    space = load_space(args.model)
    tool = configurable_copy(args.run_recbole, args.work)
    states = optuna.trial.TrialState
    for seed in args.seeds:
        folder = split_dir(args.work, seed)
        out = args.work / f"recbole-{args.model}-{seed}"
        out.mkdir(exist_ok=True)
        study = optuna.create_study(study_name="recbole", storage=f"sqlite:///{out / 'study.db'}",
                                    sampler=optuna.samplers.TPESampler(seed=space["seed"]),
                                    direction="maximize", load_if_exists=True)
        # as kgflow tune: a continued study samples with a seed of its own, not the first trials again
        study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(space["seed"], 0, len(study.trials)))
        fail_stale_trials(study)

        def objective(trial: optuna.Trial) -> float:
            values = {k: suggest(trial, k, spec) for k, spec in space["params"].items()}
            record = out / f"trial-{trial.number:02d}.jsonl"
            record.unlink(missing_ok=True)
            log = out / f"trial-{trial.number:02d}.log"
            env = dict(os.environ, PEERS=str(args.peers), RB_SEED=str(seed),
                       RB_CONFIG=json.dumps({**space["fixed"], **values}))
            with log.open("w") as err:  # RecBole logs every epoch to stderr
                subprocess.run([args.recbole_python, tool, args.model, "--split-dir", str(folder),
                                "--stopping-step", str(recbole_stopping_step(PATIENCE)),
                                "--epochs", str(EPOCHS), "--out", str(record)],
                               check=True, cwd=args.peers / "run", env=env, stdout=subprocess.DEVNULL,
                               stderr=err)
            r = json.loads(record.read_text().splitlines()[-1])
            trial.set_user_attr("test", {k.lower(): v for k, v in r["test_result"].items()})
            trial.set_user_attr("best_epoch", r["best_epoch"])
            trial.set_user_attr("epochs", r["epochs_run"])
            print(f"{args.model} split {seed} trial {trial.number}: valid {r['best_valid_ndcg@10']:.4f} "
                  f"with {values} ({r['epochs_run']} epochs)", flush=True)
            return float(r["best_valid_ndcg@10"])

        done = len(study.get_trials(deepcopy=False, states=(states.COMPLETE,)))
        if done < space["trials"]:
            study.optimize(objective, n_trials=space["trials"] - done)


def recbole_studies(work: Path) -> dict[tuple[str, int], dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = {}
    for db in sorted(work.glob("recbole-*-*/study.db")):
        _, model, seed = db.parent.name.split("-")
        study = optuna.load_study(study_name="recbole", storage=f"sqlite:///{db}")
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not done:
            continue
        best = study.best_trial
        found[(f"RecBole {model}", int(seed))] = {
            "valid": best.value, "test": best.user_attrs["test"], "params": best.params,
            "trials": [t.value for t in done]}
    return found


def kgflow_studies(folder: Path) -> dict[tuple[str, int], dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = {}
    for best_json in sorted(folder.glob("*-*/best.json")):
        name, seed = best_json.parent.name.rsplit("-", 1)
        best = json.loads(best_json.read_text())
        study = optuna.load_study(study_name=None, storage=f"sqlite:///{best_json.parent / 'study.db'}")
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        found[(f"kgflow {name}", int(seed))] = {
            "valid": best["valid"], "test": best["test"], "params": best["params"],
            "trials": [t.value for t in done]}
    return found


def table(args: argparse.Namespace) -> None:
    found = recbole_studies(args.work)
    for folder in args.kgflow_tune:
        found |= kgflow_studies(folder)
    print("| model | split | trials (valid NDCG@10) | chosen | test NDCG@10 | test Recall@20 |")
    print("|---|---|---|---|---|---|")
    for (model, seed), s in sorted(found.items()):
        chosen = ", ".join(f"{k.rsplit('.', 1)[-1]} {v:.3g}" if isinstance(v, float) else
                           f"{k.rsplit('.', 1)[-1]} {v}" for k, v in s["params"].items())
        trials = ", ".join(f"{v:.4f}" for v in s["trials"])
        print(f"| {model} | {seed} | {trials} | {chosen} | {s['test']['ndcg@10']:.4f} | "
              f"{s['test']['recall@20']:.4f} |")
    print()
    by_model: dict[str, dict[int, float]] = {}
    for (model, seed), s in found.items():
        if len(s["trials"]) >= args.min_trials:  # a study still running is not compared yet
            by_model.setdefault(model, {})[seed] = s["test"]["ndcg@10"]
    print("| model | splits | mean test NDCG@10 |")
    print("|---|---|---|")
    for model, seeds in sorted(by_model.items()):
        print(f"| {model} | {', '.join(map(str, sorted(seeds)))} | {statistics.mean(seeds.values()):.4f} |")
    if args.against:
        print()
        base = by_model.get(args.against, {})
        for model, seeds in sorted(by_model.items()):
            common = sorted(set(seeds) & set(base))
            if model == args.against or len(common) < 2:
                continue
            diffs = [seeds[s] - base[s] for s in common]
            ratios = [seeds[s] / base[s] for s in common]
            se = statistics.stdev(diffs) / len(diffs) ** 0.5
            print(f"- {model} vs {args.against} ({len(common)} splits): {statistics.mean(diffs):+.4f} "
                  f"± {se:.4f} (s.e.), ratio of means {statistics.mean(seeds[s] for s in common) / statistics.mean(base[s] for s in common):.3f}, "
                  f"per split " + ", ".join(f"{r:.3f}" for r in ratios))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["run", "table"])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--model", choices=["BPR", "LightGCN", "EASE"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    ap.add_argument("--peers", type=Path, default=Path(os.environ.get("PEERS", "peers")))
    ap.add_argument("--recbole-python")
    ap.add_argument("--run-recbole")
    ap.add_argument("--kgflow-tune", type=Path, nargs="*", default=[],
                    help="folders holding kgflow tune studies named <pipeline>-<seed>")
    ap.add_argument("--min-trials", type=int, default=4,
                    help="studies with fewer finished trials are listed but left out of the means")
    ap.add_argument("--against", help="a model of the table to pair every other with, e.g. 'RecBole LightGCN'")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.what == "run" and not (args.model and args.recbole_python and args.run_recbole):
        ap.error("run needs --model, --recbole-python and --run-recbole")
    {"run": run, "table": table}[args.what](args)


if __name__ == "__main__":
    main()
