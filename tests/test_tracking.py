"""tracking: a run's parameters, per-epoch values and test metrics reach TensorBoard, MLflow and
W&B (offline), read back from what each tracker wrote."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from kgflow.errors import ConfigError
from kgflow.testing import run_fast

EPOCHS = 3


def wandb_records(folder: Path) -> list:
    """The protobuf records of a W&B offline run file (a LevelDB-style log of 32 KiB blocks after
    a 7-byte header), read without a W&B server."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(folder.glob("wandb/offline-run-*/run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.mark.slow
def test_every_tracker_receives_params_epochs_and_test_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    out = tmp_path / "tracked"
    metrics = run_fast({"train": {"epochs": EPOCHS, "early_stopping": None},
                        "tracking": [{"name": "tensorboard"}, {"name": "mlflow"},
                                     {"name": "wandb", "params": {"mode": "offline"}}]}, out)
    test_ndcg = metrics["test"]["all"]["ndcg@10"]
    assert (out / "logs" / "metrics.csv").is_file()  # the CSV log stays

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "valid/ndcg@10", "test/ndcg@10"} <= tags
    assert len(events.Scalars("train/loss")) == EPOCHS
    assert events.Scalars("test/ndcg@10")[-1].value == pytest.approx(test_ndcg, abs=1e-6)
    assert str(out.resolve()) in (out / "tensorboard" / "hparams.yaml").read_text()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out.resolve() / 'mlflow.db'}")
    run_id = json.loads((out / "tracking.json").read_text())["mlflow"]
    record = client.get_run(run_id)
    assert record.info.status == "FINISHED"
    assert record.data.params["run_dir"] == str(out.resolve())
    assert record.data.params["pipeline/train/epochs"] == str(EPOCHS)
    assert record.data.metrics["test/ndcg_at_10"] == pytest.approx(test_ndcg, abs=1e-6)
    assert len(client.get_metric_history(run_id, "train/loss")) == EPOCHS
    assert record.data.tags["kgflow.run_dir"] == str(out.resolve())

    history: dict[str, list[float]] = {}
    config = {}
    for rec in wandb_records(out):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                history.setdefault(key, []).append(json.loads(item.value_json))
        elif kind == "config":
            config |= {item.key: json.loads(item.value_json) for item in rec.config.update}
    assert len(history["train/loss"]) == EPOCHS
    assert history["test/ndcg@10"][-1] == pytest.approx(test_ndcg, abs=1e-6)
    assert config["run_dir"] == str(out.resolve())
    assert config["pipeline"]["train"]["epochs"] == EPOCHS


def test_tracking_mistakes_are_located(tmp_path):
    with pytest.raises(ConfigError) as caught:
        run_fast({"tracking": [{"name": "tensorbord"}, {"name": "mlflow", "params": {"tracking_url": "x"}}]},
                 tmp_path / "r")
    text = str(caught.value)
    assert "tracking[0].name: unknown tracker 'tensorbord'" in text and "tensorboard" in text
    assert "tracking[1].params.tracking_url: unknown key" in text and "tracking_uri" in text
    with pytest.raises(ConfigError, match="trainer.logger: 'logger' is set by kgflow"):
        run_fast({"trainer": {"logger": False}}, tmp_path / "r")


def test_a_missing_tracker_package_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r'needs the wandb package.*\n.*pip install "kgflow\[wandb\]"'):
        run_fast({"tracking": ["wandb"]}, tmp_path / "r")
