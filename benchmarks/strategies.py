#!/usr/bin/env python3
"""The fusion strategies side by side on one split: the same LightGCN backbone under

- ``none``     pipelines/movielens-lightgcn.yaml (ID only)
- ``feature``  pipelines/movielens-lm-feature.yaml (frozen MiniLM text as input features)
- ``joint``    pipelines/movielens-lm-joint.yaml, LoRA on MiniLM, warm-started from the feature run
               (``train.init_from``) and fine-tuned for ``--joint-epochs`` epochs
- ``distill``  pipelines/movielens-lm-distill.yaml, an ID-only LightGCN taught by the feature run

then ``kgflow compare`` of the four (quality, seconds per epoch, peak memory, trainable parameters,
inference time per user, paired tests against ``none``). Finished runs in ``--work`` are reused.

    python benchmarks/strategies.py --work W --seed 2020 [--joint-epochs 12]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def kgflow(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "kgflow.cli", *args], check=True)


def finished(path: Path) -> bool:
    status = path / "run.json"
    return status.is_file() and json.loads(status.read_text()).get("state") == "finished"


def run(work: Path, name: str, pipeline: str, seed: int, *sets: str) -> Path:
    out = work / f"{name}-{seed}"
    if not finished(out):
        extra = [item for value in sets for item in ("--set", value)]
        kgflow("run", str(REPO / "pipelines" / pipeline), "--set", f"seed={seed}", *extra,
               "--out", str(out), "--overwrite", "--no-progress")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--joint-epochs", type=int, default=12)
    parser.add_argument("--joint-patience", type=int, default=4)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    none = run(args.work, "none", "movielens-lightgcn.yaml", args.seed)
    feature = run(args.work, "feature", "movielens-lm-feature.yaml", args.seed)
    joint = run(args.work, "joint", "movielens-lm-joint.yaml", args.seed,
                f"train.init_from={feature}", f"train.epochs={args.joint_epochs}",
                f"train.early_stopping.patience={args.joint_patience}")
    distill = run(args.work, "distill", "movielens-lm-distill.yaml", args.seed,
                  f"fusion.params.teacher={feature}")
    kgflow("compare", str(none), str(feature), str(joint), str(distill))
    teacher = json.loads((distill / "metrics.json").read_text())
    share = teacher["test"]["all"]["ndcg@10"] / teacher["teacher"]["test"]["all"]["ndcg@10"]
    print(f"distill keeps {share:.1%} of its teacher's test NDCG@10 and serves without "
          f"{teacher['teacher']['language_model']}")


if __name__ == "__main__":
    main()
