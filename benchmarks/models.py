#!/usr/bin/env python3
"""Several pipelines on identical splits, paired over split seeds against a baseline pipeline.

    python benchmarks/models.py run --work W --pipelines movielens-lightgcn movielens-xsimgcl \
        [--seeds 2020 2021 2022] [--set KEY=VALUE ...]
    python benchmarks/models.py table --work W --baseline movielens-lightgcn \
        --pipelines movielens-lightgcn movielens-xsimgcl [--seeds ...] [--show coverage@10 ...]

Each seed is both the split's and the training's (``--set seed=S``), so every pipeline of one seed
sees the same split. A finished run is never rerun. The table gives test NDCG@10 and Recall@20 per
seed, their means, the mean paired difference to the baseline with its standard error, seconds per
epoch and the selected (best) epoch; ``--show KEY`` adds the mean of further test metrics
(beyond-accuracy ones such as coverage@10, or ``gap:gender:ndcg@10``, the largest minus the
smallest group's value of a metric over the runs' ``eval.user_groups``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def out_dir(work: Path, pipeline: str, seed: int) -> Path:
    return work / f"{pipeline}-{seed}"


def run(work: Path, pipelines: list[str], seeds: list[int], extra: list[str]) -> None:
    for seed in seeds:
        for name in pipelines:
            out = out_dir(work, name, seed)
            if (out / "metrics.json").is_file():
                continue
            cmd = [sys.executable, "-m", "kgflow", "run", str(REPO / "pipelines" / f"{name}.yaml"),
                   "--out", str(out), "--overwrite", "--no-progress", "--set", f"seed={seed}"]
            for setting in extra:
                cmd += ["--set", setting]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _figures(work: Path, name: str, seed: int) -> dict | None:
    path = out_dir(work, name, seed) / "metrics.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    return {"ndcg": m["test"]["all"]["ndcg@10"], "recall": m["test"]["all"]["recall@20"],
            "epoch_s": m["timing"]["seconds_per_epoch"], "best": m.get("best_epoch"), "metrics": m}


def shown(metrics: dict, key: str) -> float:
    """A test figure of a run's metrics.json: a metric of group ``all``, or ``gap:FIELD:METRIC``."""
    if key.startswith("gap:"):
        _, field, metric = key.split(":", 2)
        groups = metrics["user_groups"]["test"][field]["groups"].values()
        values = [g[metric] for g in groups if metric in g]
        return max(values) - min(values)
    return metrics["test"]["all"][key]


def table(work: Path, pipelines: list[str], seeds: list[int], baseline: str,
          show: list[str] | None = None) -> None:
    show = list(show or [])
    runs = {(n, s): _figures(work, n, s) for n in pipelines + [baseline] for s in seeds}
    print("| pipeline | " + " | ".join(f"NDCG@10 {s}" for s in seeds)
          + " | mean NDCG@10 | mean Recall@20 | vs " + baseline + " (paired, s.e.) | s/epoch | best epochs |"
          + "".join(f" {key} |" for key in show))
    print("|---|" + "---|" * (len(seeds) + 5 + len(show)))
    for name in pipelines:
        got = [runs[(name, s)] for s in seeds]
        done = [(s, r) for s, r in zip(seeds, got) if r is not None]
        if not done:
            continue
        cells = [f"{r['ndcg']:.4f}" if r else "" for r in got]
        mean_ndcg = statistics.mean(r["ndcg"] for _, r in done)
        mean_recall = statistics.mean(r["recall"] for _, r in done)
        diffs = [r["ndcg"] - runs[(baseline, s)]["ndcg"] for s, r in done if runs[(baseline, s)]]
        if name == baseline or not diffs:
            paired = ""
        elif len(diffs) == 1:
            paired = f"{diffs[0]:+.4f} (1 split)"
        else:
            se = statistics.stdev(diffs) / len(diffs) ** 0.5
            paired = f"{statistics.mean(diffs):+.4f} ± {se:.4f} ({len(diffs)} splits)"
        epoch_s = statistics.mean(r["epoch_s"] for _, r in done)
        best = " / ".join(str(r["best"]) for _, r in done)
        extra = "".join(f" {statistics.mean(shown(r['metrics'], key) for _, r in done):.4f} |"
                        for key in show)
        print(f"| {name} | " + " | ".join(cells) + f" | {mean_ndcg:.4f} | {mean_recall:.4f} | {paired} | "
              f"{epoch_s:.2f} | {best} |" + extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["run", "table"])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--pipelines", nargs="+", required=True, help="names under pipelines/, without .yaml")
    ap.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    ap.add_argument("--baseline", default="movielens-lightgcn")
    ap.add_argument("--set", dest="extra", action="append", default=[], help="passed to every run")
    ap.add_argument("--show", action="append", default=[], help="table: also the mean of this test "
                    "metric (coverage@10) or group gap (gap:gender:ndcg@10); repeatable")
    args = ap.parse_args()
    if args.action == "run":
        run(args.work, args.pipelines, args.seeds, args.extra)
    else:
        table(args.work, args.pipelines, args.seeds, args.baseline, args.show)


if __name__ == "__main__":
    main()
