"""Negative sampling strategies (objective.negative_sampling): popularity-proportional draws and
dynamic hard negatives, against hand-computed expectations and end to end."""
from __future__ import annotations

import json

import pytest
import torch

from kgflow.config.schema import TrainConfig
from kgflow.models import EncoderRecommender
from kgflow.plugin import LossContext, NoParams
from kgflow.training.module import RecModule
from kgflow.training.sampling import NegativeSampler, popularity_weights
from kgflow_plugins.encoders.id_based import MF, MFParams
from kgflow_plugins.objectives.losses import bpr


def test_popularity_weights_by_hand():
    items = torch.tensor([0, 0, 0, 1, 3, 3])
    assert popularity_weights(items, 4, 1.0).tolist() == [3.0, 1.0, 0.0, 2.0]
    assert popularity_weights(items, 4, 0.5).tolist() == pytest.approx([3 ** 0.5, 1.0, 0.0, 2 ** 0.5])
    assert popularity_weights(items, 4, 0.0).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_weighted_draws_follow_the_weights_and_skip_positives_and_excluded_items():
    # user 0 has item 4 as its only positive; user 1 has none of items 0..3
    users, items = torch.tensor([0, 1]), torch.tensor([4, 5])
    weights = torch.tensor([3.0, 1.0, 0.0, 2.0, 10.0, 0.0, 5.0])
    sampler = NegativeSampler(users, items, 7, exclude=torch.tensor([6]), weights=weights)
    gen = torch.Generator().manual_seed(0)
    draws = sampler.sample(torch.zeros(60_000, dtype=torch.long), 1, gen).flatten()
    freq = torch.bincount(draws, minlength=7).double() / len(draws)
    # item 4 is the user's positive, 2 and 5 weigh nothing, 6 is excluded: 3 : 1 : 2 of the rest
    assert freq.tolist() == pytest.approx([0.5, 1 / 6, 0.0, 1 / 3, 0.0, 0.0, 0.0], abs=0.01)


def test_all_zero_weights_are_refused():
    with pytest.raises(ValueError, match="zero for every item"):
        NegativeSampler(torch.tensor([0]), torch.tensor([0]), 3, weights=torch.zeros(3))


def test_dns_trains_on_the_candidate_the_model_scores_highest():
    mf = EncoderRecommender(MF(4, 10, MFParams(dim=2)))
    module = RecModule(mf, bpr(NoParams(), LossContext(2)), l2=0.0, train=TrainConfig(), tasks={},
                       ks=[5], metrics={}, hard_candidates=3)
    # score = the item id, whatever the user: the hardest candidate is the largest id
    module.model.score = lambda emb, users, items: items.float()
    batch = {"user": torch.tensor([0, 1]), "pos": torch.tensor([0, 1]),
             "neg": torch.tensor([[2, 7, 3, 9, 1, 4], [5, 6, 8, 2, 3, 1]])}
    chosen = module._hardest_negatives(None, batch)
    # two negatives per pair, three candidates each: max of (2, 7, 3), (9, 1, 4), ...
    assert chosen["neg"].tolist() == [[7, 9], [8, 3]]
    assert chosen["user"] is batch["user"] and batch["neg"].shape == (2, 6)


@pytest.mark.parametrize("sampling", ["{method: popularity, alpha: 0.75}", "{method: dns, candidates: 4}"])
def test_pipeline_trains_with_each_strategy(tiny_pipeline, write, invoke, tmp_path, sampling):
    pipe = write("ns.yaml", f"kgflow: 1\nextends: tiny.yaml\nobjective:\n  negatives: 2\n"
                            f"  negative_sampling: {sampling}\n")
    out = tmp_path / "run"
    result = invoke("run", str(pipe), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    resolved = (out / "resolved.yaml").read_text()
    assert sampling.split(",")[0].split(": ")[1] in resolved
    assert json.loads((out / "metrics.json").read_text())["test"]["all"]["ndcg@10"] >= 0


def test_an_unknown_strategy_is_refused_with_its_yaml_path(tiny_pipeline, write, invoke):
    pipe = write("ns.yaml", "kgflow: 1\nextends: tiny.yaml\nobjective:\n  negative_sampling: {method: hard}\n")
    result = invoke("validate", str(pipe))
    assert result.exit_code != 0
    assert "objective.negative_sampling.method" in result.output and "ns.yaml:4" in result.output
