"""Shared fixtures: an isolated kgflow home, the CLI runner, and small pipeline files."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from kgflow.cli import cli

REPO = Path(__file__).resolve().parents[1]

pytest_plugins = ["kgflow.testing"]  # the fixtures plugin authors use, exercised by our own tests


@pytest.fixture(autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own kgflow home unless KGFLOW_TEST_HOME shares a cached one (so
    MovieLens is fetched once per session)."""
    shared = os.environ.get("KGFLOW_TEST_HOME")
    home = Path(shared) if shared else tmp_path_factory.mktemp("kgflow-home")
    monkeypatch.setenv("KGFLOW_HOME", str(home))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def invoke(runner: CliRunner):
    def _invoke(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)
    return _invoke


@pytest.fixture
def write(tmp_path: Path):
    """Write a dedented text file under tmp_path and return its path."""
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path
    return _write


TINY = """
kgflow: 1
name: tiny
seed: 3
dataset:
  name: synthetic
  params: {users: 60, items: 40, clusters: 2, interactions_per_user: 10}
encoders:
  graph:
    name: lightgcn
    params: {dim: 8, layers: 2}
train:
  epochs: 3
  lr: 0.01
  batch_size: 256
eval:
  ks: [5, 10]
"""


@pytest.fixture
def tiny_pipeline(write) -> Path:
    return write("tiny.yaml", TINY)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true",
                     help="also run the slow end-to-end tests on real data (CI does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow; run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny random BERT (2 layers, width 32) saved as a transformers folder: no download."""
    from kgflow_plugins.datasets.synthetic import VOCAB

    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for group in VOCAB for w in group} | {"scifi", "romance", "mystery", "fantasy",
                                                            "comedy", "war", "adventure", "techno"})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "(", ")"] + words + [str(d) for d in range(10)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    return folder


def served_metrics(out: Path, stage: str = "test", random: bool = False) -> dict:
    """``stage``'s metrics recomputed from the run directory alone: the best checkpoint, served by
    TrainedRun, scores every item for every user and kgflow's external evaluation ranks them
    (``random``: a seeded random scorer on the same split, the floor a model must beat)."""
    import numpy as np
    import pandas as pd

    from kgflow.inference import TrainedRun, evaluate_scores

    run = TrainedRun.load(out)
    split = run.split
    users = np.arange(split.n_users)
    if random:
        scores = torch.rand(len(users), split.n_items, generator=torch.Generator().manual_seed(0))
    else:
        scores = run.scores(users, exclude="none")
    frame = pd.DataFrame({"user": np.repeat(split.user_ids.astype(str), split.n_items),
                          "item": np.tile(split.item_ids.astype(str), split.n_users),
                          "score": scores.flatten().numpy()})
    return evaluate_scores(frame, run, stage=stage)[0]


def assert_reported_metrics_reproduce(out: Path, stage: str = "test", beats_random: bool = True) -> dict:
    """metrics.json's ``stage`` figures are what the saved model scores on the saved split (to
    float precision) and (``beats_random``) beat random ranking; returns the reported ``all``
    group. Smoke runs of a few epochs on tiny data need not beat random: they pass False."""
    import json

    reported = json.loads((out / "metrics.json").read_text())[stage]["all"]
    served = served_metrics(out, stage)["all"]
    for key, value in reported.items():
        assert served[key] == pytest.approx(value, abs=1e-5), (key, served[key], value)
    if beats_random:
        floor = served_metrics(out, stage, random=True)["all"]
        assert reported["ndcg@10"] > floor["ndcg@10"], (reported, floor)
    return reported
