"""Does blending two trained runs' scores beat the better of them? (docs/benchmarks.md, issue 15)

For each pair of run folders trained on the same split, every user's scores from each model are
standardised over the catalogue (so that a closed-form model's and an embedding model's scales
meet), mixed as ``w * first + (1 - w) * second`` for ``w`` on a grid, and ranked with kgflow's own
full-ranking evaluation. The weight is chosen by validation NDCG@10 alone; the test figures of that
weight are reported, next to each model's own.

    python benchmarks/blend.py W/ease-2020 W/xsimgcl-2020 [W/ease-2021 W/xsimgcl-2021 ...]

A benchmark script, not a kgflow feature: both runs must exist, and a pair trained on different
splits is refused (their data fingerprints differ).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch


def _standardised(run, users: torch.Tensor) -> torch.Tensor:
    """Each user's scores over every item, centred and scaled to unit deviation."""
    scores = run.scores(users.numpy(), exclude="none").double()
    return (scores - scores.mean(1, keepdim=True)) / scores.std(1, keepdim=True).clamp_min(1e-12)


def _ndcg_and_recall(task, users: torch.Tensor, mix: torch.Tensor) -> dict:
    """NDCG and Recall at 10 and 20 of a users x items score block, known items masked."""
    from kgflow.evaluation.ranking import RankingEvaluator
    from kgflow.plugin import MetricContext
    from kgflow.registry import get_registry

    registry = get_registry()
    fns = {m: registry.get("metric", m).factory(registry.get("metric", m).params(), MetricContext())
           for m in ("ndcg", "recall")}
    evaluator = RankingEvaluator(task, [10, 20], fns)
    evaluator.add(users, mix.clone())
    return evaluator.result()["all"]


def blend_pair(first: Path, second: Path, weights: list[float]) -> dict:
    """Validation and test figures of every weight, and the weight validation chooses."""
    from kgflow.evaluation.ranking import EvalTask
    from kgflow.inference import TrainedRun

    prints = [json.loads((p / "metrics.json").read_text())["data_fingerprint"] for p in (first, second)]
    if prints[0] != prints[1]:
        raise SystemExit(f"{first} and {second} were trained on different splits ({prints[0]} != {prints[1]})")
    runs = [TrainedRun.load(first), TrainedRun.load(second)]
    split = runs[0].split
    users = torch.arange(split.n_users)
    a, b = (_standardised(run, users) for run in runs)
    out: dict = {"weights": {}}
    for stage in ("valid", "test"):
        task = EvalTask.for_stage(split, stage)
        for w in weights:
            mix = (w * a + (1 - w) * b)[task.users].float()
            out["weights"].setdefault(w, {})[stage] = _ndcg_and_recall(task, task.users, mix)
    chosen = max(weights, key=lambda w: (out["weights"][w]["valid"]["ndcg@10"], -abs(w - 0.5)))
    out["chosen"] = chosen
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="run folders in pairs: first, second, first, second ...")
    ap.add_argument("--steps", type=int, default=20, help="weights 0, 1/steps, ..., 1 (default 20)")
    args = ap.parse_args()
    if len(args.runs) % 2:
        ap.error("give the run folders in pairs")
    weights = [i / args.steps for i in range(args.steps + 1)]
    print("| first | second | w (first) chosen by valid | valid NDCG@10 | test NDCG@10: first / second / blend | blend / better |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for first, second in zip(args.runs[::2], args.runs[1::2]):
        res = blend_pair(first, second, weights)
        w = res["chosen"]
        test = {name: res["weights"][x]["test"]["ndcg@10"] for name, x in (("first", 1.0), ("second", 0.0), ("blend", w))}
        ratios.append(test["blend"] / max(test["first"], test["second"]))
        print(f"| {first.name} | {second.name} | {w:.2f} | {res['weights'][w]['valid']['ndcg@10']:.4f} | "
              f"{test['first']:.4f} / {test['second']:.4f} / {test['blend']:.4f} | {ratios[-1]:.3f} |", flush=True)
    if len(ratios) > 1:
        print(f"\nmean blend / better model: {statistics.mean(ratios):.3f}")


if __name__ == "__main__":
    main()
