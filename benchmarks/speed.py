#!/usr/bin/env python3
"""Training seconds per epoch and full-ranking evaluation seconds: kgflow vs RecBole 1.2.1.

Both systems train the same models for a fixed number of epochs (no early stopping) on the same
exported MovieLens-100K split, one after the other, on an otherwise idle machine:

    python benchmarks/speed.py --work W --epochs 30 [--models mf lightgcn kgat kgin] \
        --recbole-python $PEERS/venv/bin/python --run-recbole shared/reference/recbole/run_recbole.py

kgflow's figures come from its run's metrics.json (``seconds_per_epoch`` times the training batches of
an epoch, sampling included; ``eval_seconds`` one full-ranking pass over the validation users);
RecBole's from run_recbole.py (``mean_train_epoch_s``, ``mean_eval_s``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: kgflow model -> (pipeline, RecBole model); KG models run on the KG-linked data (their protocol)
PAIRS = {"mf": ("movielens-mf.yaml", "BPR"), "lightgcn": ("movielens-lightgcn.yaml", "LightGCN"),
         "kgat": ("movielens-kgat.yaml", "KGAT"), "kgin": ("movielens-kgin.yaml", "KGIN")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--peers", type=Path, default=Path(os.environ.get("PEERS", "peers")))
    ap.add_argument("--recbole-python")
    ap.add_argument("--run-recbole")
    ap.add_argument("--models", nargs="+", default=["mf", "lightgcn"], choices=list(PAIRS))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    kg = [sys.executable, "-m", "kgflow.cli"]
    rows = []
    for model in args.models:
        pipeline, peer = PAIRS[model]
        # each pipeline's own data (the KG pipelines keep KG-linked items), exported once
        split = args.work / f"split-{pipeline.removesuffix('.yaml')}-{args.seed}"
        if not (split / "ml-100k" / "ml-100k.test.inter").is_file():
            subprocess.run(kg + ["data", "split", str(REPO / "pipelines" / pipeline), "--set",
                                 f"seed={args.seed}", "--export", str(split)], check=True)
        out = args.work / f"speed-kgflow-{model}"
        subprocess.run(kg + ["run", str(REPO / "pipelines" / pipeline), "--out", str(out),
                             "--overwrite", "--no-progress", "--set", f"seed={args.seed}",
                             "--set", f"train.epochs={args.epochs}",
                             "--set", "train.early_stopping=null"], check=True)
        t = json.loads((out / "metrics.json").read_text())["timing"]
        rows.append((model, "kgflow", t["seconds_per_epoch"], t["eval_seconds"], t["peak_rss_mb"]))
        if args.recbole_python:
            raw = args.work / f"speed-recbole-{model}.jsonl"
            raw.unlink(missing_ok=True)
            subprocess.run([args.recbole_python, args.run_recbole, peer, "--split-dir", str(split),
                            "--epochs", str(args.epochs), "--stopping-step", str(10 * args.epochs),
                            "--out", str(raw)], check=True, cwd=args.peers / "run",
                           env=dict(os.environ, PEERS=str(args.peers)))
            r = json.loads(raw.read_text().splitlines()[-1])
            rows.append((model, "recbole", r["mean_train_epoch_s"], r["mean_eval_s"], r["peak_rss_mb"]))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.epochs} epochs, seed {args.seed}")
    print("| model | system | s/epoch | s/eval | peak MB |")
    print("|---|---|---|---|---|")
    for model, system, s_epoch, s_eval, peak in rows:
        print(f"| {model} | {system} | {s_epoch:.3f} | {s_eval:.3f} | {peak:.0f} |")
    (args.work / "speed.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
