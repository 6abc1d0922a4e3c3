#!/usr/bin/env python3
"""Sampled-subgraph against full-graph training, on identical splits, paired over split seeds.

    python benchmarks/sampling.py --work W [--pipeline pipelines/movielens-lightgcn.yaml] \
        [--fanouts 10 10 10] [--seeds 2020 2021 2022]
    python benchmarks/sampling.py --work W --summarize

Each seed is both the split's and the training's seed, so the two modes of one seed see the same
split; the table gives test NDCG@10 / Recall@20 per seed, the mean of each mode and the mean paired
difference with its standard error.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(work: Path, pipeline: str, fanouts: list[int], seeds: list[int]) -> None:
    sampling = "{method: neighbor, fanouts: [" + ", ".join(map(str, fanouts)) + "]}"
    for seed in seeds:
        for mode, extra in (("full", []), ("sampled", ["--set", f"train.sampling={sampling}"])):
            out = work / f"{Path(pipeline).stem}-{mode}-{seed}"
            if (out / "metrics.json").is_file():
                continue
            cmd = [sys.executable, "-m", "kgflow", "run", str(REPO / pipeline), "--out", str(out),
                   "--overwrite", "--no-progress", "--set", f"seed={seed}", *extra]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def summarize(work: Path, pipeline: str, seeds: list[int]) -> None:
    rows = {}
    for seed in seeds:
        for mode in ("full", "sampled"):
            path = work / f"{Path(pipeline).stem}-{mode}-{seed}" / "metrics.json"
            if path.is_file():
                m = json.loads(path.read_text())
                rows[(mode, seed)] = (m["test"]["all"]["ndcg@10"], m["test"]["all"]["recall@20"],
                                      m["timing"]["seconds_per_epoch"], m["best_epoch"])
    print("| seed | full NDCG@10 | sampled NDCG@10 | full Recall@20 | sampled Recall@20 | "
          "s/epoch full / sampled | best epoch full / sampled |")
    print("|---|---|---|---|---|---|---|")
    diffs = []
    for seed in seeds:
        if ("full", seed) in rows and ("sampled", seed) in rows:
            f, s = rows[("full", seed)], rows[("sampled", seed)]
            diffs.append(s[0] - f[0])
            print(f"| {seed} | {f[0]:.4f} | {s[0]:.4f} | {f[1]:.4f} | {s[1]:.4f} | {f[2]:.2f} / {s[2]:.2f} "
                  f"| {f[3]} / {s[3]} |")
    if diffs:
        paired = [s for s in seeds if ("full", s) in rows and ("sampled", s) in rows]
        full = [rows[("full", s)][0] for s in paired]
        sampled = [rows[("sampled", s)][0] for s in paired]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        print(f"\nmean NDCG@10: full {statistics.mean(full):.4f}, sampled {statistics.mean(sampled):.4f}; "
              f"sampled - full, paired over {len(diffs)} splits: {statistics.mean(diffs):+.4f} +- {se:.4f} (s.e.)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--pipeline", default="pipelines/movielens-lightgcn.yaml")
    ap.add_argument("--fanouts", type=int, nargs="+", default=[10, 10, 10])
    ap.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    ap.add_argument("--summarize", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        run(args.work, args.pipeline, args.fanouts, args.seeds)
    summarize(args.work, args.pipeline, args.seeds)


if __name__ == "__main__":
    main()
