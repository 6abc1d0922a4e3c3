#!/usr/bin/env python3
"""How well does a finished run serve users it was never trained on?

For every test user of a run, the user is rebuilt as a *new* user from their training items alone
(``TrainedRun.new_user_scores``: fold-in for ID models, the text path for text models), and the
test metrics of those rebuilt users are set beside the run's own (trained) user vectors, on the
same users, items masked the same way. A ratio near 1 means new users are served about as well as
trained ones.

    python benchmarks/new_users.py RUN_DIR [RUN_DIR ...] [--users N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from kgflow.evaluation.ranking import EvalTask, RankingEvaluator, metric_functions
from kgflow.inference import TrainedRun


def evaluators(split, metrics: list[str], ks: list[int]) -> tuple[RankingEvaluator, RankingEvaluator]:
    fns = metric_functions(metrics)
    task = EvalTask.for_stage(split, "test")
    return RankingEvaluator(task, ks, fns), RankingEvaluator(task, ks, fns)


def measure(path: str, users: int, seed: int) -> dict:
    run = TrainedRun.load(path)
    split = run.split
    trained, rebuilt = evaluators(split, ["ndcg", "recall"], [10, 20])
    task_users = trained.task.users
    if users and users < len(task_users):
        pick = np.random.default_rng(seed).choice(len(task_users), users, replace=False)
        task_users = task_users[torch.as_tensor(np.sort(pick))]
    with torch.no_grad():
        emb = run.model()
        own = run.model.full_scores(emb, task_users).float()
    trained.add(task_users, own)
    started = time.perf_counter()
    rows = []
    for user in task_users.tolist():
        liked = split.item_ids[split.train.item[split.train.user == user]].astype(str).tolist()
        rows.append(run.new_user_scores(liked).nan_to_num(neginf=-1e30))
    seconds = (time.perf_counter() - started) / max(len(rows), 1)
    rebuilt.add(task_users, torch.stack(rows))
    a, b = trained.result()["all"], rebuilt.result()["all"]
    return {"run": path, "users": len(task_users), "seconds_per_user": seconds,
            **{f"trained {k}": a[k] for k in ("ndcg@10", "recall@20")},
            **{f"new {k}": b[k] for k in ("ndcg@10", "recall@20")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--users", type=int, default=0, help="sample this many test users (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| run | users | trained NDCG@10 | new-user NDCG@10 | ratio | trained R@20 | new-user R@20 "
          "| s/user |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.runs:
        r = measure(path, args.users, args.seed)
        print(f"| {r['run']} | {r['users']} | {r['trained ndcg@10']:.4f} | {r['new ndcg@10']:.4f} | "
              f"{r['new ndcg@10'] / r['trained ndcg@10']:.2f} | {r['trained recall@20']:.4f} | "
              f"{r['new recall@20']:.4f} | {r['seconds_per_user']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
