#!/usr/bin/env python3
"""Does the knowledge graph help? KG models with the real KG, the KG removed and the KG shuffled,
next to LightGCN, on identical KG-linked MovieLens-100K splits -- and RecBole's KGAT and KGIN on
the same exported splits.

    python benchmarks/kg_ablation.py kgflow    --work W --seeds 2020 2021 2022
    python benchmarks/kg_ablation.py recbole   --work W --seeds 2020 2021 2022 \
        --recbole-python $PEERS/venv/bin/python --run-recbole shared/reference/recbole/run_recbole.py
    python benchmarks/kg_ablation.py summarize --work W
    python benchmarks/kg_ablation.py kgflow --work W --models kgat --controls none \
        --split-seed 2022 --seeds 1 2      # training-seed spread on one split (recbole: the same)

Every kgflow run is ``kgflow run PIPELINE --set seed=S --set graph.params.kg_control=C``; the
protocol (``pipelines/protocols/movielens-kg.yaml``) keeps the items linked to the KG, exactly the
data RecBole's knowledge-aware models use, so one exported split serves both systems. RecBole runs
with the split's seed (a copy of run_recbole.py whose seed is variable, see compare_recbole.py).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_recbole  # noqa: E402
from compare_recbole import (REPO, _recbole_fields, kgflow_cmd, recbole_stopping_step,  # noqa: E402
                             seeded_copy, stat)

PATIENCE, EPOCHS = 11, 300  # as in pipelines/protocols/movielens-kg.yaml
KG_PROTOCOL = ["--set", "preprocess.kg_linked_only=true", "--set", f"train.epochs={EPOCHS}",
               "--set", f"train.early_stopping.patience={PATIENCE}"]
#: kgflow model -> (pipeline, extra --set options, RecBole counterpart)
MODELS = {
    "lightgcn": ("movielens-lightgcn.yaml", KG_PROTOCOL, "LightGCN"),
    "mf": ("movielens-mf.yaml", KG_PROTOCOL, "BPR"),
    "kgat": ("movielens-kgat.yaml", [], "KGAT"),
    "kgin": ("movielens-kgin.yaml", [], "KGIN"),
    "kg-gat": ("movielens-kg-gat.yaml", [], None),
}
CONTROLS = ("none", "remove", "shuffle")


def append(work: Path, record: dict) -> None:
    compare_recbole.append(work, record, "kg-results.jsonl")


def run_kgflow(args: argparse.Namespace) -> None:
    for control in args.controls:
        for seed in args.seeds:
            for model in args.models:
                pipeline, extra, _ = MODELS[model]
                if control != "none" and model in ("lightgcn", "mf"):
                    continue  # no KG to control
                tag = f"-{args.tag}" if args.tag else ""
                on = f"-split{args.split_seed}" if args.split_seed is not None else ""
                out = args.work / f"kgflow-{model}{tag}-{control}-{seed}{on}"
                sets = ["--set", f"seed={seed}"] + extra + args.set
                if args.split_seed is not None:
                    sets += ["--set", f"split.seed={args.split_seed}"]
                if model not in ("lightgcn", "mf"):
                    sets += ["--set", f"graph.params.kg_control={control}"]
                subprocess.run(kgflow_cmd() + ["run", str(REPO / "pipelines" / pipeline), *sets,
                                               "--out", str(out), "--overwrite", "--no-progress"],
                               check=True)
                m = json.loads((out / "metrics.json").read_text())
                append(args.work, {"system": "kgflow", "model": model, "control": control,
                                   "seed": seed, "split_seed": seed if args.split_seed is None else args.split_seed,
                                   "tag": args.tag, "test": m["test"]["all"],
                                   "valid": m["valid"]["all"], "epochs": m["timing"]["epochs"],
                                   "best_epoch": m["best_epoch"],
                                   "s_epoch": m["timing"]["seconds_per_epoch"],
                                   "peak_mb": m["timing"]["peak_rss_mb"],
                                   "fingerprint": m["data_fingerprint"]})


def run_recbole(args: argparse.Namespace) -> None:
    env = dict(os.environ, PEERS=str(args.peers))
    tool = seeded_copy(args.run_recbole, args.work)
    for seed in args.seeds:
        split_seed = args.split_seed if args.split_seed is not None else seed
        folder = compare_recbole.split_dir(args.work, split_seed, "movielens-kgat.yaml")
        for model in args.models:
            theirs = MODELS[model][2]
            if theirs is None:
                continue
            on = f"-split{args.split_seed}" if args.split_seed is not None else ""
            raw = args.work / f"recbole-{theirs}-{seed}{on}.jsonl"
            raw.unlink(missing_ok=True)
            subprocess.run([args.recbole_python, tool, theirs, "--split-dir", str(folder),
                            "--stopping-step", str(recbole_stopping_step(PATIENCE)), "--epochs", str(EPOCHS),
                            "--out", str(raw)], check=True, cwd=args.peers / "run",
                           env=dict(env, RB_SEED=str(seed)))
            record = json.loads(raw.read_text().splitlines()[-1])
            append(args.work, {"system": "recbole", "model": model, "control": "none",
                               "seed": seed, "split_seed": split_seed, "raw": record})


def summarize(args: argparse.Namespace) -> None:
    latest: dict[tuple, dict] = {}
    for line in (args.work / "kg-results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["system"] == "recbole":
            r = {**r, **_recbole_fields(r["raw"])}
        label = r["model"] + (f" ({r['tag']})" if r.get("tag") else "")
        split_seed = r.get("split_seed", r["seed"])
        if split_seed != r["seed"]:  # another training seed on a benchmark split
            label += f" (split {split_seed})"
        latest[(label, r["system"], r["control"], r["seed"])] = r
    rows: dict[tuple, list[dict]] = {}
    for (model, system, control, _), r in sorted(latest.items()):
        rows.setdefault((model, system, control), []).append(r)

    print("| model | system | KG | removed | shuffled | s/epoch | peak MB | epochs (best), KG |")
    print("|---|---|---|---|---|---|---|---|")
    for model, system in sorted({(m, s) for m, s, _ in rows}):
        cells = [stat([r["test"]["ndcg@10"] for r in rows.get((model, system, c), [])],
                      empty="—", count=True) for c in CONTROLS]
        kg = rows.get((model, system, "none"), [])
        speed = f"{statistics.mean(r['s_epoch'] for r in kg):.2f}" if kg else "—"
        peak = f"{max(r['peak_mb'] for r in kg):.0f}" if kg else "—"
        epochs = ", ".join(f"{r['epochs']} ({r['best_epoch']})" for r in kg)
        print(f"| {model} | {system} | " + " | ".join(cells) + f" | {speed} | {peak} | {epochs} |")
    print()
    for model, system, control in sorted(rows):
        per_seed = ", ".join(f"{r['seed']}: {r['test']['ndcg@10']:.4f}"
                             for r in rows[(model, system, control)])
        print(f"- {model} / {system} / {control}: {per_seed}")
    print()
    paired_over_splits(list(latest.values()))


def paired_over_splits(records: list[dict]) -> None:
    """kgflow against RecBole per model, every training seed counted: each split's mean over its
    runs, then the mean difference over the splits both systems ran, with its standard error.
    One run per split is about as noisy as the gap being measured, hence runs with more seeds."""
    runs: dict[tuple, dict[str, list[float]]] = {}  # (model, split seed) -> system -> test NDCG@10
    for r in records:
        if r["control"] == "none" and not r.get("tag"):
            cell = runs.setdefault((r["model"], r.get("split_seed", r["seed"])), {})
            cell.setdefault(r["system"], []).append(r["test"]["ndcg@10"])
    for model in sorted({m for m, _ in runs}):
        both = [(split, cell) for (m, split), cell in sorted(runs.items())
                if m == model and {"kgflow", "recbole"} <= cell.keys()]
        if not both:
            continue
        diffs = [statistics.mean(cell["kgflow"]) - statistics.mean(cell["recbole"]) for _, cell in both]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        counts = ", ".join(f"{split}: {len(cell['kgflow'])} vs {len(cell['recbole'])}" for split, cell in both)
        print(f"- {model}, kgflow minus RecBole over {len(both)} splits (runs per split {counts}): "
              f"{statistics.mean(diffs):+.4f} ± {se:.4f} (standard error)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["kgflow", "recbole", "summarize"])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022],
                    help="run seeds; each is also the split's seed unless --split-seed is given")
    ap.add_argument("--split-seed", type=int, default=None,
                    help="train every --seeds run on this one split (training-seed spread on a split)")
    ap.add_argument("--models", nargs="+", default=["lightgcn", "kgat", "kgin"], choices=list(MODELS))
    ap.add_argument("--controls", nargs="+", default=list(CONTROLS), choices=list(CONTROLS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra --set for every kgflow run (a tuning variant; give it a --tag)")
    ap.add_argument("--tag", default=None, help="label stored with kgflow results (and in their "
                    "run folders); summarize shows each tag as its own row")
    ap.add_argument("--peers", type=Path, default=Path(os.environ.get("PEERS", "peers")))
    ap.add_argument("--recbole-python", default=None)
    ap.add_argument("--run-recbole", default=None)
    args = ap.parse_args()
    args.set = [part for value in args.set for part in ("--set", value)]
    args.work.mkdir(parents=True, exist_ok=True)
    {"kgflow": run_kgflow, "recbole": run_recbole, "summarize": summarize}[args.what](args)


if __name__ == "__main__":
    main()
