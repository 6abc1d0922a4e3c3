#!/usr/bin/env python3
"""kgflow against RecBole 1.2.1 on MovieLens-1M, on identical exported splits (issue 26).

Every split is made once by kgflow (``kgflow data split pipelines/ml1m-mf.yaml --set seed=S
--export W/split-S``); kgflow trains ``pipelines/ml1m-<name>.yaml`` with that seed (the same split:
the record keeps the data fingerprint) and RecBole trains on the exported files through a copy of
``shared/reference/recbole/run_recbole.py`` edited for MovieLens-1M (the reference tool is written
for ML-100K: its dataset name, its KG columns and its rating filter are changed; nothing else).
Both sides get the protocol's batch (4096), learning rate (1e-3), embedding size (64), patience
(20 validations; RecBole's ``stopping_step`` 19) and epoch cap (500). Every result is one JSON line
of ``W/results.jsonl``; a rerun of the same (system, model, variant, seed) replaces the earlier one.

    python benchmarks/ml1m.py kgflow  --work W --seeds 2020 2021 2022 --pipelines mf lightgcn ease
    python benchmarks/ml1m.py kgflow  --work W --pipelines ease --variant l2=1000 \
        --set encoders.graph.params.l2=1000
    python benchmarks/ml1m.py recbole --work W --models BPR LightGCN EASE RecVAE \
        --recbole-python $PEERS/venv/bin/python --run-recbole shared/reference/recbole/run_recbole.py
    python benchmarks/ml1m.py recbole --work W --models EASE --variant reg=1000 --config '{"reg_weight": 1000}' ...
    python benchmarks/ml1m.py kgflow  --work W --pipelines mf --variant dns --set objective.negative_sampling.method=dns
    python benchmarks/ml1m.py recbole --work W --models BPR --variant dns --config \
        '{"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "dynamic": true, "candidate_num": 10}}' ...
    python benchmarks/ml1m.py summarize --work W
    python benchmarks/ml1m.py groups --work W --pipelines lm-feature alpharec

Tuning is a grid named by ``--variant``: ``summarize`` keeps, per system, model and split, the
variant with the best *validation* NDCG@10 and reports its test figures, so both systems are tuned
over the same values by the same rule. ``groups`` breaks kgflow's per-user test NDCG@10 down by
gender, age group and training-set activity (users joined with ml-1m.user of the split).
Hard negatives are the same rule on both sides (``dns`` / RecBole's ``dynamic``): each negative is
the best-scored of 10 uniform candidates under the current model.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_recbole import append  # noqa: E402
from tune_recbole import configurable_copy  # noqa: E402

PATIENCE, EPOCHS, BATCH = 20, 500, 4096  # pipelines/protocols/ml1m.yaml
ATOMIC = "ml-1m"


def kgflow_cmd() -> list[str]:
    return [sys.executable, "-m", "kgflow.cli"]


def split_dir(work: Path, seed: int) -> Path:
    """The folder of seed's exported split, made on first use."""
    folder = work / f"split-{seed}"
    if not (folder / ATOMIC / f"{ATOMIC}.test.inter").is_file():
        # exported aside and renamed, so that a second stream of runs never reads a half-written split
        partial = work / f"split-{seed}.{os.getpid()}.tmp"
        subprocess.run(kgflow_cmd() + ["data", "split", str(REPO / "pipelines" / "ml1m-mf.yaml"),
                                       "--set", f"seed={seed}", "--export", str(partial)], check=True)
        try:
            os.rename(partial, folder)
        except OSError:  # another stream got there first with the same (deterministic) split
            shutil.rmtree(partial)
    return folder


def recbole_tool(tool: str, work: Path) -> str:
    """The reference runner (seed from RB_SEED, overrides from RB_CONFIG, as tune_recbole.py makes
    it) with its three ML-100K specifics replaced: the dataset name, the KG columns it loads, and
    its rating >= 4 filter (kgflow's export holds the positives only already)."""
    text = Path(configurable_copy(tool, work)).read_text()
    edits = {'DATASET = "ml-100k"': f'DATASET = "{ATOMIC}"',
             '            "kg": ["head_id", "relation_id", "tail_id"],\n': "",
             '            "link": ["item_id", "entity_id"],\n': "",
             '"val_interval": {"rating": "[4,inf)"},': '"val_interval": None,'}
    for old, new in edits.items():
        if text.count(old) != 1:
            raise SystemExit(f"{tool}: expected {old!r} once; the reference tool changed")
        text = text.replace(old, new)
    copy = work / "run_recbole_ml1m.py"
    partial = copy.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, copy)
    return str(copy)


def run_kgflow(args: argparse.Namespace) -> None:
    for seed in args.seeds:
        split_dir(args.work, seed)
        for name in args.pipelines:
            out = args.work / f"kgflow-{name}-{args.variant}-{seed}"
            sets = [x for s in args.set for x in ("--set", s)]
            subprocess.run(kgflow_cmd() + ["run", str(REPO / f"pipelines/ml1m-{name}.yaml"),
                                           "--set", f"seed={seed}", *sets, "--out", str(out),
                                           "--overwrite", "--no-progress"], check=True)
            m = json.loads((out / "metrics.json").read_text())
            append(args.work, {"system": "kgflow", "model": name, "variant": args.variant, "seed": seed,
                               "valid": m["valid"]["all"], "test": m["test"]["all"],
                               "epochs": m["timing"]["epochs"], "best_epoch": m["best_epoch"],
                               "s_epoch": m["timing"]["seconds_per_epoch"],
                               "s_eval": m["timing"]["eval_seconds"],
                               "total_s": m["timing"]["total_seconds"],
                               "peak_mb": m["timing"]["peak_rss_mb"], "run": str(out),
                               "fingerprint": m["data_fingerprint"]})


def run_recbole(args: argparse.Namespace) -> None:
    tool = recbole_tool(args.run_recbole, args.work)
    overrides = {"train_batch_size": BATCH} | json.loads(args.config)
    for seed in args.seeds:
        folder = split_dir(args.work, seed)
        for model in args.models:
            raw = args.work / f"recbole-{model}-{args.variant}-{seed}.jsonl"
            raw.unlink(missing_ok=True)
            log = raw.with_suffix(".log")
            env = dict(os.environ, PEERS=str(args.peers), RB_SEED=str(seed), RB_CONFIG=json.dumps(overrides))
            with log.open("w") as err:
                subprocess.run([args.recbole_python, tool, model, "--split-dir", str(folder),
                                "--stopping-step", str(PATIENCE - 1), "--epochs", str(args.epochs),
                                "--out", str(raw)], check=True, cwd=args.peers / "run", env=env,
                               stdout=subprocess.DEVNULL, stderr=err)
            r = json.loads(raw.read_text().splitlines()[-1])
            append(args.work, {"system": "recbole", "model": model, "variant": args.variant, "seed": seed,
                               "valid": {"ndcg@10": r["best_valid_ndcg@10"]},
                               "test": {k.lower(): v for k, v in r["test_result"].items()},
                               "epochs": r["epochs_run"], "best_epoch": r["best_epoch"],
                               "s_epoch": r["mean_train_epoch_s"], "s_eval": r["mean_eval_s"],
                               "total_s": r.get("total_wall_s"), "peak_mb": r["peak_rss_mb"],
                               "split_sizes": r["split_sizes"], "config": overrides})


def chosen(work: Path) -> dict[tuple[str, str], dict[int, dict]]:
    """Per (system, model): per seed, the variant with the best validation NDCG@10."""
    latest: dict[tuple[str, str, str, int], dict] = {}
    for line in (work / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        latest[(r["system"], r["model"], r["variant"], r["seed"])] = r
    best: dict[tuple[str, str], dict[int, dict]] = {}
    for (system, model, _, seed), r in latest.items():
        slot = best.setdefault((system, model), {})
        if seed not in slot or r["valid"]["ndcg@10"] > slot[seed]["valid"]["ndcg@10"]:
            slot[seed] = r
    return best


def mean_se(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "n/a"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) / len(values) ** 0.5:.4f}"


def summarize(args: argparse.Namespace) -> None:
    best = chosen(args.work)
    print("| system | model | splits | test NDCG@10 (mean ± s.e.) | test Recall@20 | chosen variant | "
          "epochs (best) | s/epoch | s/eval | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (system, model), seeds in sorted(best.items()):
        rs = [seeds[s] for s in sorted(seeds)]
        print(f"| {system} | {model} | {len(rs)} | {mean_se([r['test']['ndcg@10'] for r in rs])} | "
              f"{mean_se([r['test']['recall@20'] for r in rs])} | "
              f"{', '.join(sorted({r['variant'] for r in rs}))} | "
              f"{', '.join(str(r['epochs']) + ' (' + str(r['best_epoch']) + ')' for r in rs)} | "
              f"{statistics.mean(r['s_epoch'] or 0 for r in rs):.2f} | "
              f"{statistics.mean(r['s_eval'] or 0 for r in rs):.2f} | {max(r['peak_mb'] for r in rs):.0f} |")
    recbole = {k: v for k, v in best.items() if k[0] == "recbole"}
    if not recbole:
        return
    complete = {k: v for k, v in best.items() if len(v) == len(args.seeds)}
    top_rb = max((k for k in complete if k[0] == "recbole"),
                 key=lambda k: statistics.mean(r["test"]["ndcg@10"] for r in complete[k].values()),
                 default=None)
    if top_rb is None:
        return
    print(f"\nPaired against the best RecBole model ({top_rb[1]}), test NDCG@10 over the splits both ran:")
    base = {s: r["test"]["ndcg@10"] for s, r in complete[top_rb].items()}
    for (system, model), seeds in sorted(complete.items()):
        if (system, model) == top_rb:
            continue
        ours = {s: r["test"]["ndcg@10"] for s, r in seeds.items()}
        common = sorted(set(ours) & set(base))
        diffs = [ours[s] - base[s] for s in common]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        ratio = statistics.mean(ours[s] for s in common) / statistics.mean(base[s] for s in common)
        print(f"- {system} {model}: {statistics.mean(diffs):+.4f} ± {se:.4f} (s.e.), ratio {ratio:.3f}")


def read_users(split: Path) -> dict[str, dict[str, str]]:
    with (split / ATOMIC / f"{ATOMIC}.user").open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = [h.split(":")[0] for h in next(reader)]
        return {row[0]: dict(zip(header, row)) for row in reader}


def train_counts(split: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with (split / ATOMIC / f"{ATOMIC}.train.inter").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            user = line.split("\t", 1)[0]
            counts[user] = counts.get(user, 0) + 1
    return counts


AGE_BANDS = {"1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49",
             "50": "50-55", "56": "56+"}


def activity_band(n: int) -> str:
    return "<= 20 train items" if n <= 20 else "21-100" if n <= 100 else "> 100"


def groups(args: argparse.Namespace) -> None:
    """Mean test NDCG@10 per user group, per pipeline, over the splits (chosen variants)."""
    best = chosen(args.work)
    cells: dict[tuple[str, str, str], list[float]] = {}  # (pipeline, facet, group) -> per-split means
    for name in args.pipelines:
        for seed, r in sorted(best.get(("kgflow", name), {}).items()):
            split = split_dir(args.work, seed)
            users, counts = read_users(split), train_counts(split)
            per_group: dict[tuple[str, str], list[float]] = {}
            with (Path(r["run"]) / "test_per_user.csv").open() as fh:
                for row in csv.DictReader(fh):
                    u = users.get(row["user"], {})
                    keys = [("gender", u.get("gender", "?")), ("age", AGE_BANDS.get(u.get("age", "").split(".")[0], "?")),
                            ("activity", activity_band(counts.get(row["user"], 0)))]
                    for key in keys:
                        per_group.setdefault(key, []).append(float(row["ndcg@10"]))
            for (facet, group), values in per_group.items():
                cells.setdefault((name, facet, group), []).append(statistics.mean(values))
    facets = sorted({(f, g) for _, f, g in cells})
    print("| group | " + " | ".join(args.pipelines) + " |")
    print("|---|" + "---|" * len(args.pipelines))
    for facet, group in facets:
        row = [mean_se(cells.get((name, facet, group), [])) for name in args.pipelines]
        print(f"| {facet}: {group} | " + " | ".join(row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["kgflow", "recbole", "summarize", "groups"])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    ap.add_argument("--pipelines", nargs="+", default=["mf", "lightgcn", "ease"],
                    help="kgflow pipelines/ml1m-<name>.yaml")
    ap.add_argument("--set", action="append", default=[], help="an override for every kgflow run")
    ap.add_argument("--models", nargs="+", default=["BPR", "LightGCN", "EASE"], help="RecBole models")
    ap.add_argument("--config", default="{}", help="RecBole config overrides (JSON) for every run")
    ap.add_argument("--variant", default="default", help="the grid point these runs stand for")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--peers", type=Path, default=Path(os.environ.get("PEERS", "peers")))
    ap.add_argument("--recbole-python")
    ap.add_argument("--run-recbole")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.what == "recbole" and not (args.recbole_python and args.run_recbole):
        ap.error("recbole needs --recbole-python and --run-recbole")
    {"kgflow": run_kgflow, "recbole": run_recbole, "summarize": summarize, "groups": groups}[args.what](args)


if __name__ == "__main__":
    main()
