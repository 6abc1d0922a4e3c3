"""Nothing allocates users x items: serving, export and external evaluation score a chunk of users
at a time. A dispatch mode records the largest tensor any operation creates."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from kgflow.evaluation.topk import chunked_topk, topk_frame

USERS, ITEMS = 300, 4000


class LargestTensor(TorchDispatchMode):
    """Remembers the element count of the largest tensor produced while active."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.numel())
        return out


@pytest.fixture(scope="module")
def big_catalogue_run(tmp_path_factory):
    from click.testing import CliRunner

    from kgflow.cli import cli
    from kgflow.inference import TrainedRun

    folder = tmp_path_factory.mktemp("scale")
    pipeline = folder / "mf.yaml"
    pipeline.write_text(f"""
kgflow: 1
name: wide
seed: 1
dataset: {{name: synthetic, params: {{users: {USERS}, items: {ITEMS}, clusters: 4, interactions_per_user: 12}}}}
encoders: {{graph: {{name: mf, params: {{dim: 8}}}}}}
train: {{epochs: 1, batch_size: 512}}
eval: {{ks: [10], batch_users: 7}}
""")
    out = folder / "run"
    result = CliRunner().invoke(cli, ["run", str(pipeline), "--out", str(out), "--no-progress"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return TrainedRun.load(out)


def _largest(fn) -> int:
    with LargestTensor() as mode:
        fn()
    return mode.largest


def test_export_recommend_teacher_and_external_scores_stay_within_a_chunk(big_catalogue_run):
    from kgflow.inference import evaluate_scores

    run = big_catalogue_run
    n_users, n_items = run.split.n_users, run.split.n_items
    block = n_users * n_items
    chunk = 5
    bound = 3 * chunk * n_items  # a few chunk-sized temporaries, nowhere near users x items
    assert bound < block / 10
    run.cache.clear()
    top = run.topk_all(10, chunk=chunk)
    assert _largest(lambda: run.topk_all(10, chunk=chunk)) <= bound
    assert _largest(lambda: run.top_items(20, chunk=chunk)) <= bound
    assert _largest(lambda: run.recommend([str(u) for u in run.split.user_ids[:50]], 10)) <= bound
    frame = top.rename(columns={"rank": "r"})[["user", "item", "score"]]
    with LargestTensor() as mode:
        result, notes = evaluate_scores(frame, run, stage="test", chunk=chunk)
    assert mode.largest <= bound
    # the measurement can fail: one chunk of every user is a users x items block
    assert _largest(lambda: run.topk_all(10, chunk=n_users)) >= block
    # chunking changes nothing: the same lists and the same metrics at any chunk size
    pd.testing.assert_frame_equal(top, run.topk_all(10, chunk=n_users))
    again, _ = evaluate_scores(frame, run, stage="test", chunk=n_users)
    assert again == result


def test_exported_lists_reproduce_the_runs_test_metrics(big_catalogue_run):
    from kgflow.inference import evaluate_scores

    run = big_catalogue_run
    top = run.topk_all(10, exclude="train", chunk=3)
    # items known from validation are not masked by export (only training items), as in testing
    result, _ = evaluate_scores(top[["user", "item", "score"]], run, stage="valid", chunk=4)
    assert result["all"]["ndcg@10"] == pytest.approx(run.metrics["valid"]["all"]["ndcg@10"], abs=1e-5)


def test_topk_drops_masked_entries_and_keeps_order():
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.8]])
    from kgflow.evaluation.ranking import CSR

    known = CSR(torch.tensor([0, 2, 2]), torch.tensor([1, 2]))  # user 0 knows items 1 and 2
    idx, val = chunked_topk(lambda u: scores[u], torch.tensor([0, 1]), 3, known, chunk=1)
    assert idx[0, 0] == 0 and torch.isinf(val[0, 1:]).all()
    assert idx[1].tolist() == [2, 0, 1]
    frame = topk_frame(np.array(["a", "b"]), np.array(["x", "y", "z"]), np.array([0, 1]), idx, val)
    assert frame.values.tolist() == [["a", 1, "x", pytest.approx(0.1)], ["b", 1, "z", pytest.approx(0.8)],
                                     ["b", 2, "x", pytest.approx(0.3)], ["b", 3, "y", pytest.approx(0.2)]]
    with pytest.raises(ValueError, match="chunk must be at least 1"):
        chunked_topk(lambda u: scores[u], torch.tensor([0]), 1, None, chunk=0)


def test_chunk_of_zero_is_refused(invoke, tiny_pipeline, runner):
    from kgflow.cli import cli

    result = runner.invoke(cli, ["validate", str(tiny_pipeline), "--set", "eval.batch_users=0"])
    assert result.exit_code == 2 and "eval.batch_users" in result.output
    result = runner.invoke(cli, ["export", "nowhere", "--what", "topk", "--chunk", "0"])
    assert result.exit_code == 2 and "--chunk" in result.output
