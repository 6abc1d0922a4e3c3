"""On a CUDA machine: training, sampled training, evaluation and DDP on the GPU. Run by
``benchmarks/gpu_check.sh``; skipped where torch sees no GPU (CI has none)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
pytestmark = [pytest.mark.gpu, needs_gpu]


def _run(tmp_path, *sets: str) -> dict:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "kgflow", "run", "pipelines/quickstart.yaml", "--out", str(out),
           "--no-progress", "--set", "trainer.accelerator=gpu"]
    for value in sets:
        cmd += ["--set", value]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def test_quickstart_trains_on_the_gpu(tmp_path):
    metrics = _run(tmp_path, "trainer.devices=1")
    assert metrics["accelerator"] == "cuda" and metrics["timing"]["peak_gpu_mb"] > 0
    assert metrics["test"]["all"]["ndcg@10"] > 0.2  # the planted clusters are found


def test_sampled_training_on_the_gpu(tmp_path):
    metrics = _run(tmp_path, "trainer.devices=1", "train.sampling={method: neighbor, fanouts: [5, 5]}")
    assert metrics["test"]["all"]["ndcg@10"] > 0.2


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_ddp_on_every_gpu(tmp_path):
    metrics = _run(tmp_path, f"trainer.devices={torch.cuda.device_count()}", "trainer.strategy=ddp")
    assert metrics["processes"] == torch.cuda.device_count()
    assert metrics["test"]["all"]["ndcg@10"] > 0.2
