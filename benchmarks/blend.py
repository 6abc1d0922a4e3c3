"""Does blending trained runs' scores beat the best of them? (docs/benchmarks.md, issue 15)

For each group of run folders trained on the same split, every user's scores from each model are
standardised over the catalogue (so that a closed-form model's and an embedding model's scales
meet), mixed with weights that sum to one (every multiple of ``1 / steps``), and ranked with
kgflow's own full-ranking evaluation. The weights are chosen by validation NDCG@10 alone; the test
figures of that choice are reported, next to each model's own, and the best test figure any
weighting reaches is printed as a ceiling (chosen on test, so not a result).

    python benchmarks/blend.py W/ease-2020 W/xsimgcl-2020 [W/ease-2021 W/xsimgcl-2021 ...]
    python benchmarks/blend.py --group 3 W/ease-2020 W/xsimgcl-2020 W/kg-lm-2020

A benchmark script, not a kgflow feature: the runs must exist, and a group trained on different
splits is refused (their data fingerprints differ).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

import torch


def _standardised(run, users: torch.Tensor) -> torch.Tensor:
    """Each user's scores over every item, centred and scaled to unit deviation."""
    scores = run.scores(users.numpy(), exclude="none").double()
    return (scores - scores.mean(1, keepdim=True)) / scores.std(1, keepdim=True).clamp_min(1e-12)


def _ndcg_and_recall(evaluator, mix: torch.Tensor) -> dict:
    """NDCG and Recall at 10 and 20 of a block of the task's users' scores (masked in place)."""
    evaluator.reset()
    evaluator.add(evaluator.task.users, mix)
    return evaluator.result()["all"]


def simplex(n: int, steps: int) -> list[tuple[float, ...]]:
    """Every weighting of ``n`` runs in multiples of ``1 / steps`` that sums to one."""
    return [tuple(c / steps for c in combo)
            for combo in itertools.product(range(steps + 1), repeat=n) if sum(combo) == steps]


def blend_runs(folders: list[Path], weights: list[tuple[float, ...]]) -> dict:
    """Validation and test figures of every weighting, and the weighting validation chooses
    (among equals, the most even one)."""
    from kgflow.evaluation.ranking import EvalTask, RankingEvaluator, metric_functions
    from kgflow.inference import TrainedRun

    prints = {json.loads((p / "metrics.json").read_text())["data_fingerprint"] for p in folders}
    if len(prints) > 1:
        raise SystemExit(f"{', '.join(map(str, folders))} were trained on different splits "
                         f"(data fingerprints {', '.join(sorted(prints))})")
    runs = [TrainedRun.load(folder) for folder in folders]
    split = runs[0].split
    users = torch.arange(split.n_users)
    standardised = [_standardised(run, users) for run in runs]
    metrics = metric_functions(["ndcg", "recall"])
    out: dict = {"weights": {}}
    for stage in ("valid", "test"):
        evaluator = RankingEvaluator(EvalTask.for_stage(split, stage), [10, 20], metrics)
        rows = [z[evaluator.task.users] for z in standardised]
        for w in weights:
            mix = sum(x * z for x, z in zip(w, rows)).float()
            out["weights"].setdefault(w, {})[stage] = _ndcg_and_recall(evaluator, mix)
    out["chosen"] = max(weights, key=lambda w: (out["weights"][w]["valid"]["ndcg@10"], -max(w)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="run folders, in groups of --group trained on one split")
    ap.add_argument("--group", type=int, default=2, help="runs blended together (default 2)")
    ap.add_argument("--steps", type=int, default=20, help="weights in multiples of 1/steps (default 20)")
    args = ap.parse_args()
    if args.group < 2 or len(args.runs) % args.group:
        ap.error(f"give the run folders in groups of {args.group} (--group, at least 2)")
    weights = simplex(args.group, args.steps)
    print("| runs | weights chosen by valid | valid NDCG@10 | test NDCG@10 of each run | blend | blend / best run "
          "| ceiling: weights best on test (not a result) |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for at in range(0, len(args.runs), args.group):
        folders = args.runs[at:at + args.group]
        res = blend_runs(folders, weights)
        chosen = res["chosen"]
        alone = [res["weights"][tuple(float(i == j) for j in range(args.group))]["test"]["ndcg@10"]
                 for i in range(args.group)]
        blend = res["weights"][chosen]["test"]["ndcg@10"]
        ceiling = max(r["test"]["ndcg@10"] for r in res["weights"].values())
        ratios.append(blend / max(alone))
        print(f"| {' + '.join(f.name for f in folders)} | {' / '.join(f'{w:.2f}' for w in chosen)} | "
              f"{res['weights'][chosen]['valid']['ndcg@10']:.4f} | {' / '.join(f'{a:.4f}' for a in alone)} | "
              f"{blend:.4f} | {ratios[-1]:.3f} | {ceiling:.4f} |", flush=True)
    if len(ratios) > 1:
        print(f"\nmean blend / best run: {statistics.mean(ratios):.3f}")


if __name__ == "__main__":
    main()
