#!/usr/bin/env python3
"""Retraining as data arrives: MovieLens-100K replayed in time order, warm start against scratch.

    python benchmarks/retrain.py --work W [--chunks 6] [--set train.early_stopping.patience=10]

The positive interactions (rating >= 4) are ordered by time and cut into ``--chunks`` equal parts
C0..C(n-1). Period t (t = 1 .. n-2) trains on C0..Ct (each user's latest 10% of it, by time, is
the validation part, for users with 5 or more interactions) and is tested on C(t+1), the interactions that arrive next, restricted to users and items the
period's training part has (a model cannot rank someone it has never seen, however trained). Each
period is written as a RecBole benchmark split (``split: predefined``) and run twice with the same
pipeline (LightGCN of pipelines/movielens-lightgcn.yaml, same early stopping): from scratch, and
warm-started from the previous period's warm run (``train.init_from``, ``train.init_match: ids``);
period 1 has no earlier run, so both start from scratch there. Reported per period: test NDCG@10
and Recall@20, epochs, the best epoch, fit and total seconds, and the carried/new/vanished counts.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def interactions() -> pd.DataFrame:
    from kgflow.data.store import kgflow_home

    path = kgflow_home() / "datasets" / "movielens-100k" / "ml-100k.inter"
    if not path.is_file():
        subprocess.run([sys.executable, "-m", "kgflow", "data", "fetch", "movielens-100k"], check=True)
    frame = pd.read_csv(path, sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    frame = frame[frame["rating"] >= 4].sort_values("timestamp", kind="stable").reset_index(drop=True)
    return frame[["user_id", "item_id", "rating", "timestamp"]]


def write_split(folder: Path, train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    users, items = set(train["user_id"]), set(train["item_id"])
    known = lambda f: f[f["user_id"].isin(users) & f["item_id"].isin(items)]  # noqa: E731
    valid, test = known(valid), known(test)
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    for part, frame in (("train", train), ("valid", valid), ("test", test)):
        with open(folder / f"ml-100k.{part}.inter", "w") as fh:
            fh.write(header + "\n")
            frame.to_csv(fh, sep="\t", header=False, index=False)
    return {"train": len(train), "valid": len(valid), "test": len(test),
            "users": len(users), "items": len(items)}


def run(pipeline: Path, out: Path, sets: list[str]) -> dict:
    cmd = [sys.executable, "-m", "kgflow", "run", str(pipeline), "--out", str(out), "--overwrite",
           "--no-progress"] + [a for s in sets for a in ("--set", s)]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall_s": time.perf_counter() - t, "ndcg@10": metrics["test"]["all"]["ndcg@10"],
            "recall@20": metrics["test"]["all"]["recall@20"], "epochs": metrics["timing"]["epochs"],
            "best_epoch": metrics["best_epoch"], "fit_s": metrics["timing"]["fit_seconds"],
            "warm_start": metrics.get("warm_start")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--chunks", type=int, default=6)
    ap.add_argument("--pipeline", type=Path, default=REPO / "pipelines" / "movielens-lightgcn.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    frame = interactions()
    bounds = np.linspace(0, len(frame), args.chunks + 1).astype(int)
    results = []
    previous_warm: Path | None = None
    for t in range(1, args.chunks - 1):
        history, test = frame.iloc[:bounds[t + 1]], frame.iloc[bounds[t + 1]:bounds[t + 2]]
        # each user's latest tenth (by time) validates: a global time cut would leave almost only
        # users the training part has never seen
        rank = history.groupby("user_id").cumcount(ascending=False)
        size = history.groupby("user_id")["item_id"].transform("size")
        held = (size >= 5) & (rank < np.maximum(1, (size * 0.1).astype(int)))
        folder = args.work / f"period-{t}" / "split"
        sizes = write_split(folder, history[~held], history[held], test)
        base = [f"split={{method: predefined, path: {folder}}}", *args.sets]
        scratch = run(args.pipeline, args.work / f"period-{t}" / "scratch", base)
        if previous_warm is None:
            warm, warm_dir = scratch, args.work / f"period-{t}" / "scratch"
        else:
            warm_dir = args.work / f"period-{t}" / "warm"
            warm = run(args.pipeline, warm_dir, base + [f"train.init_from={previous_warm}",
                                                         "train.init_match=ids"])
        previous_warm = warm_dir
        record = {"period": t, **sizes, "scratch": scratch, "warm": warm}
        print(json.dumps(record), flush=True)
        results.append(record)
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    print("| period | train | test (known users/items) | users | items | scratch NDCG@10 | warm NDCG@10 "
          "| scratch R@20 | warm R@20 | scratch epochs (best) | warm epochs (best) | scratch fit s "
          "| warm fit s | warm: users carried/new/vanished | items carried/new/vanished |")
    print("|" + "---|" * 15)
    for r in results:
        s, w = r["scratch"], r["warm"]
        ws = w.get("warm_start") or {}
        users = "/".join(str(ws.get("users", {}).get(k, "-")) for k in ("carried", "new", "vanished"))
        items = "/".join(str(ws.get("items", {}).get(k, "-")) for k in ("carried", "new", "vanished"))
        print(f"| {r['period']} | {r['train']:,} | {r['test']:,} | {r['users']:,} | {r['items']:,} | "
              f"{s['ndcg@10']:.4f} | {w['ndcg@10']:.4f} | {s['recall@20']:.4f} | {w['recall@20']:.4f} | "
              f"{s['epochs']} ({s['best_epoch']}) | {w['epochs']} ({w['best_epoch']}) | {s['fit_s']:.0f} | "
              f"{w['fit_s']:.0f} | {users} | {items} |")


if __name__ == "__main__":
    main()
