#!/usr/bin/env python3
"""kgflow against RecBole 1.2.1 on identical MovieLens-100K splits.

For each seed, kgflow exports its split (``kgflow data split``) and trains its models on it; RecBole
trains its counterparts on the exported files (``run_recbole.py --split-dir``), with the same early
stopping patience and epoch cap. Every result is one JSON line; ``summarize`` prints the table that
``docs/benchmarks.md`` shows.

    python benchmarks/compare_recbole.py kgflow   --work W --seeds 2020 2021 2022
    python benchmarks/compare_recbole.py recbole  --work W --seeds 2020 2021 2022 \
        --recbole-python $PEERS/venv/bin/python --run-recbole shared/reference/recbole/run_recbole.py
    python benchmarks/compare_recbole.py summarize --work W

``recbole`` runs ``run_recbole.py`` as shipped, whose RecBole seed is fixed at 2020 for every split;
``recbole --vary-seed`` runs a copy that takes the split's seed, as kgflow does (``recbole-seeded``):
with one initialisation for all splits, RecBole's spread understates run-to-run noise.

The two halves can run side by side (each single-threaded) for quality; timings for the speed bar
come from a run with the machine otherwise idle (``benchmarks/speed.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAIRS = {"mf": "BPR", "lightgcn": "LightGCN"}  # kgflow pipeline -> RecBole model
PATIENCE, EPOCHS = 100, 1500  # as in pipelines/protocols/movielens.yaml


def recbole_stopping_step(patience: int) -> int:
    """RecBole's ``stopping_step`` for kgflow's ``patience``: RecBole stops after
    ``stopping_step + 1`` evaluations without gain, kgflow after ``patience``."""
    return patience - 1


def kgflow_cmd() -> list[str]:
    return [sys.executable, "-m", "kgflow.cli"]


def split_dir(work: Path, seed: int, pipeline: str = "movielens-mf.yaml") -> Path:
    """The folder of seed's exported split (made by ``kgflow data split`` on first use)."""
    folder = work / f"split-{seed}"
    if not (folder / "ml-100k" / "ml-100k.test.inter").is_file():
        subprocess.run(kgflow_cmd() + ["data", "split", str(REPO / "pipelines" / pipeline),
                                       "--set", f"seed={seed}", "--export", str(folder)], check=True)
    return folder


def append(work: Path, record: dict, name: str = "results.jsonl") -> None:
    with (work / name).open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def run_kgflow(args: argparse.Namespace) -> None:
    for seed in args.seeds:
        split_dir(args.work, seed)
        for model in args.models:
            out = args.work / f"kgflow-{model}-{seed}"
            subprocess.run(kgflow_cmd() + ["run", str(REPO / f"pipelines/movielens-{model}.yaml"),
                                           "--set", f"seed={seed}", "--out", str(out), "--overwrite",
                                           "--no-progress"], check=True)
            m = json.loads((out / "metrics.json").read_text())
            append(args.work, {"system": "kgflow", "model": model, "seed": seed,
                               "test": m["test"]["all"], "valid": m["valid"]["all"],
                               "epochs": m["timing"]["epochs"], "best_epoch": m["best_epoch"],
                               "s_epoch": m["timing"]["seconds_per_epoch"],
                               "s_eval": m["timing"]["eval_seconds"],
                               "peak_mb": m["timing"]["peak_rss_mb"],
                               "fingerprint": m["data_fingerprint"]})


def seeded_copy(tool: str, work: Path) -> str:
    """run_recbole.py fixes RecBole's seed at 2020 for every run; this copy reads it from RB_SEED,
    so that RecBole's initialisation varies across splits as kgflow's does."""
    text = Path(tool).read_text()
    fixed = '"seed": 2020,'
    if fixed not in text:
        raise SystemExit(f"{tool}: cannot find {fixed!r} to make the seed variable")
    copy = work / "run_recbole_seeded.py"
    copy.write_text(text.replace(fixed, '"seed": int(os.environ.get("RB_SEED", "2020")),'))
    return str(copy)


def run_recbole(args: argparse.Namespace) -> None:
    env = dict(os.environ, PEERS=str(args.peers))
    tool = seeded_copy(args.run_recbole, args.work) if args.vary_seed else args.run_recbole
    system = "recbole-seeded" if args.vary_seed else "recbole"
    for seed in args.seeds:
        folder = split_dir(args.work, seed)
        for model in args.models:
            raw = args.work / f"{system}-raw-{model}-{seed}.jsonl"
            raw.unlink(missing_ok=True)
            subprocess.run([args.recbole_python, tool, PAIRS[model], "--split-dir", str(folder),
                            "--stopping-step", str(recbole_stopping_step(PATIENCE)), "--epochs", str(EPOCHS),
                            "--out", str(raw)], check=True, cwd=args.peers / "run",
                           env=dict(env, RB_SEED=str(seed)))
            r = json.loads(raw.read_text().splitlines()[-1])
            append(args.work, {"system": system, "model": model, "seed": seed, "raw": r})


def _recbole_fields(raw: dict) -> dict:
    """Pick the figures out of run_recbole.py's record (its keys are documented there)."""
    test = {k.lower(): v for k, v in raw["test_result"].items()}
    return {"test": test, "s_epoch": raw["mean_train_epoch_s"], "s_eval": raw["mean_eval_s"],
            "peak_mb": raw["peak_rss_mb"], "epochs": raw["epochs_run"], "best_epoch": raw["best_epoch"],
            "split_sizes": raw["split_sizes"]}


def stat(values: list[float | None], empty: str = "n/a", count: bool = False) -> str:
    """``mean ± sd`` of the values given (``(n)`` appended with ``count``)."""
    values = [v for v in values if v is not None]
    if not values:
        return empty
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}" + (f" ({len(values)})" if count else "")


def summarize(args: argparse.Namespace) -> None:
    latest: dict[tuple[str, str, int], dict] = {}  # a rerun of the same seed replaces the earlier one
    for line in (args.work / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["system"].startswith("recbole"):
            r = {**r, **_recbole_fields(r["raw"])}
        latest[(r["model"], r["system"], r["seed"])] = r
    table: dict[tuple[str, str], list[dict]] = {}
    for (model, system, _), r in sorted(latest.items()):
        table.setdefault((model, system), []).append(r)

    print("| model | system | seeds | test NDCG@10 | test Recall@20 | test NDCG@20 | epochs (best) |")
    print("|---|---|---|---|---|---|---|")
    for (model, system), rs in sorted(table.items()):
        seeds = ",".join(str(r["seed"]) for r in rs)
        epochs = ", ".join(f"{r.get('epochs')} ({r.get('best_epoch')})" for r in rs)
        print(f"| {model} | {system} | {seeds} | {stat([r['test'].get('ndcg@10') for r in rs])} | "
              f"{stat([r['test'].get('recall@20') for r in rs])} | "
              f"{stat([r['test'].get('ndcg@20') for r in rs])} | {epochs} |")
    print()
    print("Paired over the seeds both systems ran (kgflow minus RecBole, test NDCG@10):")
    for model in sorted({m for m, _ in table}):
        ours = {r["seed"]: r["test"].get("ndcg@10") for r in table.get((model, "kgflow"), [])}
        for system in ("recbole", "recbole-seeded"):
            theirs = {r["seed"]: r["test"].get("ndcg@10") for r in table.get((model, system), [])}
            common = sorted(set(ours) & set(theirs))
            if len(common) < 2:
                continue
            diffs = [ours[s] - theirs[s] for s in common]
            se = statistics.stdev(diffs) / len(diffs) ** 0.5
            print(f"- {model} vs {system}: {len(common)} seeds, mean difference "
                  f"{statistics.mean(diffs):+.4f} (standard error {se:.4f}, t = "
                  f"{statistics.mean(diffs) / se:+.2f}); per seed "
                  + ", ".join(f"{d:+.4f}" for d in diffs))
    print()
    for (model, system), rs in sorted(table.items()):
        per_seed = ", ".join(f"{r['seed']}: {r['test'].get('ndcg@10', float('nan')):.4f}" for r in rs)
        print(f"- {model} / {system}: {per_seed}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["kgflow", "recbole", "summarize"])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    ap.add_argument("--models", nargs="+", default=list(PAIRS))
    ap.add_argument("--peers", type=Path, default=Path(os.environ.get("PEERS", "peers")))
    ap.add_argument("--recbole-python", default=None)
    ap.add_argument("--run-recbole", default=None)
    ap.add_argument("--vary-seed", action="store_true",
                    help="give RecBole the split's seed instead of its fixed 2020 (system recbole-seeded)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    {"kgflow": run_kgflow, "recbole": run_recbole, "summarize": summarize}[args.what](args)


if __name__ == "__main__":
    main()
