"""SimGCL / XSimGCL (noise-view contrastive encoders) and the vector losses (DirectAU's alignment
and uniformity, sampled softmax with in-batch negatives): hand-computed values, the training /
evaluation split of the noise, refusals, and pipelines that learn end to end."""
from __future__ import annotations

import math

import pytest
import torch

from kgflow.plugin import PairVectors
from kgflow_plugins.encoders.contrastive import info_nce
from kgflow_plugins.objectives.losses import DirectAU, InBatchSoftmax, alignment, uniformity


def _vectors(user, pos, neg, pos_id) -> PairVectors:
    user, pos, neg = (torch.tensor(x, dtype=torch.float64) for x in (user, pos, neg))
    return PairVectors(user, pos, neg, torch.arange(len(user)), torch.tensor(pos_id),
                       torch.zeros(neg.shape[:2], dtype=torch.long))


def test_alignment_and_uniformity_by_hand():
    user = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    item = torch.tensor([[5.0, 0.0], [1.0, 0.0]])
    # after normalising: user 0 sits on its item (0), user 1 is orthogonal to its item (|a-b|^2 = 2)
    assert alignment(user, item).item() == pytest.approx(1.0)
    # one pair of orthogonal users: log exp(-2 * 2) = -4; two identical items: log exp(0) = 0
    assert uniformity(user).item() == pytest.approx(-4.0)
    assert uniformity(item).item() == pytest.approx(0.0, abs=1e-6)
    v = _vectors(user.tolist(), item.tolist(), [[[0.0, 1.0]], [[1.0, 1.0]]], [0, 1])
    assert DirectAU(gamma=1.0)(v).item() == pytest.approx(1.0 + (-4.0 + 0.0) / 2)
    assert DirectAU(gamma=0.25)(v).item() == pytest.approx(1.0 + 0.25 * (-4.0 + 0.0) / 2)


def test_uniformity_has_a_finite_gradient_when_a_row_repeats():
    """A user twice in a batch: distance 0, where pdist's gradient is undefined."""
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [-1.0, 0.5]], requires_grad=True)
    uniformity(x).backward()
    assert torch.isfinite(x.grad).all()


def test_in_batch_softmax_by_hand_and_a_shared_positive_is_never_a_negative():
    # user 0 likes item 7, user 1 likes item 8; each has one sampled negative
    v = _vectors([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 1.0]],
                 [[[0.0, 1.0]], [[1.0, 1.0]]], [7, 8])
    # row 0 logits: pos 2, sampled 0, other positive 0; row 1: pos 1, sampled 1, other 0
    expected = (-(2 - math.log(math.exp(2) + 1 + 1)) - (1 - math.log(math.e + math.e + 1))) / 2
    assert InBatchSoftmax(1.0)(v).item() == pytest.approx(expected)
    # both users like item 7: the other row's positive is the same item, so it is masked out
    same = _vectors([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 1.0]],
                    [[[0.0, 1.0]], [[1.0, 1.0]]], [7, 7])
    expected = (-(2 - math.log(math.exp(2) + 1)) - (1 - math.log(math.e + math.e))) / 2
    assert InBatchSoftmax(1.0)(same).item() == pytest.approx(expected)
    # two rows of one user: each row's positive is the user's own, so not the other row's negative
    one_user = _vectors([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 1.0]],
                        [[[0.0, 1.0]], [[1.0, 1.0]]], [7, 8])
    one_user.user_id = torch.tensor([4, 4])
    assert InBatchSoftmax(1.0)(one_user).item() == pytest.approx(expected)


def test_info_nce_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    t = 0.5
    # cosines: row 0 -> (1, 0), row 1 -> (0, 1/sqrt 2)
    c = 1 / math.sqrt(2)
    row0 = -(1 / t - math.log(math.exp(1 / t) + math.exp(c / t)))
    row1 = -(c / t - math.log(math.exp(0) + math.exp(c / t)))
    assert info_nce(a, b, t).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def _built(encoder: str, params: dict):
    from kgflow.config.validate import validate_located
    from kgflow.registry import get_registry
    from kgflow.runs.runner import build_graph, build_recommender, prepare
    from kgflow.testing import pipeline

    loaded = validate_located(pipeline({"encoders": {"graph": {"name": encoder, "params": params}}}),
                              "test.yaml")
    registry = get_registry()
    prepared = prepare(loaded, registry)
    graph = build_graph(loaded, prepared, registry)
    return build_recommender(loaded, prepared, graph, registry)


@pytest.mark.parametrize("encoder", ["simgcl", "xsimgcl"])
def test_noise_only_while_training_and_the_contrast_uses_the_batch(encoder):
    torch.manual_seed(0)
    model = _built(encoder, {"dim": 8, "layers": 2, "eps": 0.1, "cl_weight": 0.5})
    batch = {"user": torch.tensor([0, 1, 1]), "pos": torch.tensor([2, 3, 4]), "neg": torch.tensor([[5], [6], [7]])}
    model.eval()
    with torch.no_grad():
        one, two = model(), model()
    assert torch.equal(one.user, two.user)  # evaluation is deterministic: no noise
    assert model.extra_loss(one, batch) is None  # and no contrastive term outside training
    model.train()
    emb = model.train_forward(batch)
    if encoder == "xsimgcl":  # its ranking view is the noisy propagation itself
        assert not torch.allclose(emb.user, one.user)
    else:  # SimGCL ranks on the clean propagation and contrasts two extra noisy ones
        torch.testing.assert_close(emb.user, one.user)
    loss = model.extra_loss(emb, batch)
    assert loss is not None and loss.item() > 0
    loss.backward()
    grad = model.encoder.user.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.extra_loss(emb, batch) is None  # the views are used once


def test_simgcl_without_noise_contrasts_identical_views():
    """eps 0: both views are the clean propagation, so the loss is InfoNCE of a view with itself."""
    model = _built("simgcl", {"dim": 8, "layers": 2, "eps": 0.0, "cl_weight": 1.0, "temperature": 0.5})
    batch = {"user": torch.tensor([0, 2]), "pos": torch.tensor([1, 3]), "neg": torch.tensor([[4], [5]])}
    model.train()
    emb = model.train_forward(batch)
    enc = model.encoder
    users, items = emb.user[[0, 2]], emb.item[[1, 3]]
    expected = info_nce(users, users, 0.5) + info_nce(items, items, 0.5)
    torch.testing.assert_close(model.extra_loss(emb, batch), expected)
    assert enc.params.eps == 0.0


@pytest.mark.parametrize("setting, message", [
    ("encoders.graph={name: xsimgcl, params: {layers: 2, cl_layer: 3}}", "cl_layer 3 does not exist"),
    ("encoders.graph={name: simgcl, params: {layers: 0}}", "layers"),
    ("objective.loss={name: directau, params: {gamma: -1}}", "gamma"),
])
def test_bad_settings_are_refused_at_validate(runner, tiny_pipeline, setting, message):
    from kgflow.cli import cli

    result = runner.invoke(cli, ["validate", str(tiny_pipeline), "--set", setting])
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize("encoder", ["simgcl", "xsimgcl"])
def test_a_neighbourhood_holding_the_whole_graph_trains_as_the_full_graph(encoder):
    """Sampled training sees the whole graph when every edge is sampled: its propagation and its
    contrast (over the batch's rows of the local table) then equal the full graph's."""
    model = _built(encoder, {"dim": 8, "layers": 2, "eps": 0.0, "cl_weight": 1.0})
    enc = model.encoder
    edges = enc.adj.to_sparse_coo().indices()
    batch = {"user": torch.tensor([0, 1, 1]), "pos": torch.tensor([2, 3, 4]), "neg": torch.tensor([[5], [6], [7]])}
    n = enc.n_users + enc.n_items
    sampled = {**batch, "n_id": torch.arange(n), "sub_edge_index": edges, "sub_edge_id": torch.arange(edges.shape[1]),
               "user_at": batch["user"] + enc.user_offset, "pos_at": batch["pos"] + enc.item_offset,
               "neg_at": batch["neg"] + enc.item_offset}
    model.train()
    full = model.train_forward(batch)
    full_loss = model.extra_loss(full, batch)
    local = model.train_forward(sampled)
    torch.testing.assert_close(local.user[enc.user_offset:enc.user_offset + enc.n_users], full.user)
    torch.testing.assert_close(local.item[enc.item_offset:enc.item_offset + enc.n_items], full.item)
    torch.testing.assert_close(model.extra_loss(local, sampled), full_loss)
    # with noise, the views differ and the contrast still reaches the tables through the subgraph
    enc.params.eps = 0.1
    local = model.train_forward(sampled)
    loss = model.extra_loss(local, sampled)
    loss.backward()
    assert loss.item() > 0 and enc.item.weight.grad.abs().sum() > 0


def test_a_vector_loss_refuses_a_model_without_vectors():
    from kgflow.config.schema import TrainConfig
    from kgflow.errors import NotSupportedError
    from kgflow.models import Recommender
    from kgflow.training.module import RecModule

    class PairScorer(Recommender):
        has_vectors = False

    with pytest.raises(NotSupportedError, match="scores each pair jointly"):
        RecModule(PairScorer(), DirectAU(1.0), 0.0, TrainConfig(), {}, [10], {})


LEARNS = """
kgflow: 1
name: learns
seed: 11
dataset: {{name: synthetic, params: {{users: 300, items: 200, clusters: 4, interactions_per_user: 20}}}}
encoders: {{graph: {{name: {encoder}, params: {{dim: 32, layers: 2{params}}}}}}}
objective: {{loss: {loss}, l2: 1.0e-4}}
train: {{epochs: 30, lr: 0.01, batch_size: 1024, early_stopping: {{metric: ndcg@10, patience: 10}}}}
eval: {{ks: [10, 20]}}
"""


SAMPLED = ("--set", "train.sampling={method: neighbor, fanouts: [5, 5]}")


@pytest.mark.parametrize("encoder, params, loss, extra", [
    ("simgcl", ", cl_weight: 0.05", "bpr", ()),
    ("xsimgcl", ", cl_weight: 0.05", "bpr", ()),
    pytest.param("xsimgcl", ", cl_weight: 0.05", "bpr", SAMPLED, marks=pytest.mark.slow),
    ("lightgcn", "", "{name: directau, params: {gamma: 0.5}}", ()),
    ("lightgcn", "", "{name: softmax, params: {in_batch: true, temperature: 0.2}}", ()),
])
def test_pipelines_learn_end_to_end(invoke, write, tmp_path, encoder, params, loss, extra):
    from conftest import assert_reported_metrics_reproduce

    path = write("learns.yaml", LEARNS.format(encoder=encoder, params=params, loss=loss))
    result = invoke("run", str(path), "--out", str(tmp_path / "run"), "--no-progress", *extra)
    assert result.exit_code == 0, result.output
    assert_reported_metrics_reproduce(tmp_path / "run")
