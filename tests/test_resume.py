"""Resume that is exact: a run killed (SIGKILL) in the middle of training and resumed with
``--resume`` ends with the metrics of the same run left alone; SIGINT / SIGTERM stop a run
cleanly, resumable."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

PIPELINE = """kgflow: 1
name: resume-{name}
seed: 9
dataset: {{name: synthetic, params: {{users: 200, items: 120, clusters: 4, interactions_per_user: 15}}}}
graph: {graph}
encoders:
  graph: {encoder}
train: {{epochs: 4, lr: 0.01, batch_size: 12, early_stopping: {stopping}}}
eval: {{ks: [10, 20]}}
"""
CASES = {
    # a plain model, and one that draws from torch's global generator while training (KGIN drops
    # half its KG edges at random in every forward pass, and adds message dropout)
    "lightgcn": ("user_item", "{name: lightgcn, params: {dim: 16, layers: 2}}"),
    "kgin": ("collaborative_kg", "{name: kgin, params: {dim: 16, hops: 2, message_dropout: 0.1}}"),
}


def _kgflow(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same arithmetic in every process
    return subprocess.Popen([sys.executable, "-m", "kgflow", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _finish(proc: subprocess.Popen) -> str:
    """Wait for a kgflow process that must succeed; its stdout and stderr together."""
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out + err


def _epoch_of(checkpoint: Path) -> int | None:
    try:
        return int(torch.load(checkpoint, weights_only=True)["epoch"])
    except Exception:  # not there yet, or being written
        return None


def _interrupt_after_first_checkpoint(args: list[str], out: Path, how: signal.Signals) -> None:
    proc = _kgflow(*args, start_new_session=True)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not _epoch_of(last):
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    time.sleep(0.3)  # into the next epoch's training
    os.killpg(proc.pid, how)
    proc.communicate(timeout=120)
    assert not (out / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_killed_run_resumes_to_the_metrics_of_an_uninterrupted_one(tmp_path, case):
    graph, encoder = CASES[case]
    pipeline = tmp_path / f"{case}.yaml"
    # every epoch runs, so the epochs after the interruption decide the final weights
    pipeline.write_text(PIPELINE.format(name=case, graph=graph, encoder=encoder, stopping="null"))
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _finish(_kgflow("run", str(pipeline), "--out", str(whole), "--no-progress"))
    args = ["run", str(pipeline), "--out", str(resumed), "--no-progress"]
    _interrupt_after_first_checkpoint(args, resumed, signal.SIGKILL)
    said = _finish(_kgflow(*args, "--resume"))
    # Lightning's notices that the log folder will be deleted and the checkpoint folder is not
    # empty are wrong or expected when kgflow resumes: a user must not be told their log is lost
    assert "exists and is not empty" not in said, said[-3000:]
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((resumed / "metrics.json").read_text())
    assert a["best_epoch"] == b["best_epoch"] and a["timing"]["epochs"] == b["timing"]["epochs"]
    for stage in ("valid", "test"):
        for key, value in a[stage]["all"].items():
            assert b[stage]["all"][key] == pytest.approx(value, abs=1e-6), (stage, key)
    # the epochs trained after the resume drew exactly what the uninterrupted run drew
    losses = {name: _epoch_losses(path) for name, path in (("whole", whole), ("resumed", resumed))}
    after = [e for e in losses["resumed"] if e >= 2]
    assert after, losses
    # and the training log keeps the epochs from before the interruption, each once
    assert sorted(losses["resumed"]) == sorted(losses["whole"])
    assert not (resumed / "logs" / "earlier.csv").exists()
    for epoch in losses["whole"]:
        assert losses["resumed"][epoch] == pytest.approx(losses["whole"][epoch], abs=1e-6), (epoch, losses)
    last = [torch.load(p / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for p in (whole, resumed)]
    for key, value in last[0].items():
        torch.testing.assert_close(last[1][key], value, rtol=0, atol=1e-6)


def _epoch_losses(run: Path) -> dict[int, float]:
    import csv

    with open(run / "logs" / "metrics.csv") as fh:
        return {int(row["epoch"]): float(row["train/loss"]) for row in csv.DictReader(fh)
                if row.get("train/loss")}


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_stop_cleanly_and_resumably(tmp_path, how):
    graph, encoder = CASES["lightgcn"]
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(PIPELINE.format(name="signal", graph=graph, encoder=encoder,
                                        stopping="{metric: ndcg@10, patience: 2}"))
    out = tmp_path / "run"
    args = ["run", str(pipeline), "--out", str(out), "--no-progress"]
    _interrupt_after_first_checkpoint(args, out, how)
    status = json.loads((out / "run.json").read_text())
    assert status["state"] == "interrupted", status
    assert "--resume" in status.get("error", "") or "--resume" in status.get("hint", "")
    _finish(_kgflow(*args, "--resume"))
    assert json.loads((out / "run.json").read_text())["state"] == "finished"


def test_the_training_log_survives_resumes_and_a_repeated_epoch_is_kept_once(tmp_path):
    from kgflow.runs.history import keep_before_resume, restore_after_resume

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics.csv").write_text("epoch,step,train/loss\n0,10,0.9\n1,20,0.8\n2,25,0.75\n")
    keep_before_resume(logs)  # interrupted in epoch 2; its checkpoint is epoch 1's
    assert not (logs / "metrics.csv").exists()
    (logs / "metrics.csv").write_text("epoch,step,train/loss,valid/ndcg@10\n2,30,0.7,\n3,40,0.6,0.2\n")
    keep_before_resume(logs)  # interrupted again after epoch 3
    (logs / "metrics.csv").write_text("epoch,step,train/loss,valid/ndcg@10\n4,50,0.5,0.3\n")
    restore_after_resume(logs)
    with (logs / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["epoch"], r["train/loss"]) for r in rows] == [("0", "0.9"), ("1", "0.8"), ("2", "0.7"),
                                                          ("3", "0.6"), ("4", "0.5")]
    assert rows[0]["valid/ndcg@10"] == "" and rows[3]["valid/ndcg@10"] == "0.2"
    assert not (logs / "earlier.csv").exists()
    restore_after_resume(logs)  # nothing kept: a run that never resumed is left alone
    assert (logs / "metrics.csv").read_text().count("\n") == 6
