"""Unit tests of the training parts: the ranking losses against hand-computed values, LightGCN
against torch-geometric's LGConv, per-epoch seeding of the batches, alternating objectives."""
from __future__ import annotations

import math

import pytest
import torch

from kgflow.config.schema import TrainConfig
from kgflow.models import AuxiliaryObjective, EncoderRecommender
from kgflow.plugin import LossContext, NoParams
from kgflow.training.datamodule import PairBatches
from kgflow.training.module import RecModule
from kgflow.training.sampling import NegativeSampler
from kgflow_plugins.objectives.losses import SoftmaxParams, bce, bpr, sampled_softmax


def _softplus(x: float) -> float:  # -ln sigmoid(-x)
    return math.log1p(math.exp(x))


def test_bpr_by_hand():
    loss = bpr(NoParams(), LossContext(negatives=1))
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([[1.0], [0.0]])
    # -ln sigmoid(2 - 1) and -ln sigmoid(0), averaged
    assert loss(pos, neg).item() == pytest.approx((_softplus(-1.0) + math.log(2)) / 2, abs=1e-6)
    # two negatives per positive: every (positive, negative) pair counts once
    neg2 = torch.tensor([[1.0, 3.0], [0.0, -2.0]])
    expected = (_softplus(-1.0) + _softplus(1.0) + math.log(2) + _softplus(-2.0)) / 4
    assert loss(pos, neg2).item() == pytest.approx(expected, abs=1e-6)


def test_bce_by_hand():
    loss = bce(NoParams(), LossContext(negatives=2))
    pos = torch.tensor([2.0])
    neg = torch.tensor([[-1.0, 1.0]])
    # positives: -ln sigmoid(2); negatives: mean of -ln(1 - sigmoid(s)) = softplus(s)
    expected = _softplus(-2.0) + (_softplus(-1.0) + _softplus(1.0)) / 2
    assert loss(pos, neg).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("temperature, expected", [
    (1.0, math.log(1 + 2 / math.e)),           # -ln(e^1 / (e^1 + e^0 + e^0))
    (0.5, math.log(1 + 2 * math.exp(-2))),     # logits doubled: -ln(e^2 / (e^2 + 2))
])
def test_sampled_softmax_by_hand(temperature, expected):
    loss = sampled_softmax(SoftmaxParams(temperature=temperature), LossContext(negatives=2))
    assert loss(torch.tensor([1.0]), torch.tensor([[0.0, 0.0]])).item() == pytest.approx(expected, abs=1e-6)


def test_lightgcn_propagation_equals_torch_geometric_lgconv():
    """kgflow's LightGCN (CSR propagation, mean of layers 0..K) against PyG's LGConv applied K
    times with the same symmetric normalisation, on a small random bipartite graph."""
    from torch_geometric.nn import LGConv

    from kgflow.graph import GraphBundle, GraphReport
    from kgflow_plugins.encoders.id_based import LightGCN, LightGCNParams

    gen = torch.Generator().manual_seed(0)
    n_users, n_items = 7, 5
    users = torch.randint(0, n_users, (20,), generator=gen)
    items = torch.randint(0, n_items, (20,), generator=gen) + n_users
    pairs = torch.unique(torch.stack([users, items]), dim=1)
    edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    graph = GraphBundle(edge_index=edge_index, num_nodes=n_users + n_items,
                        node_offsets={"user": 0, "item": n_users},
                        node_counts={"user": n_users, "item": n_items},
                        report=GraphReport(nodes={}, edges={}, isolated={}, density=0.0))
    model = LightGCN(graph, LightGCNParams(dim=4, layers=3))
    with torch.no_grad():
        ours = model()
        x = torch.cat([model.user.weight, model.item.weight])
        conv, layers = LGConv(normalize=True), [x]
        for _ in range(3):
            layers.append(conv(layers[-1], edge_index))
        reference = torch.stack(layers).mean(0)
    torch.testing.assert_close(ours.user, reference[:n_users], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours.item, reference[n_users:], atol=1e-6, rtol=1e-5)


def _pairs(n_users: int = 12, n_items: int = 9, per_user: int = 3):
    gen = torch.Generator().manual_seed(1)
    users = torch.arange(n_users).repeat_interleave(per_user)
    items = torch.stack([torch.randperm(n_items, generator=gen)[:per_user] for _ in range(n_users)]).flatten()
    return users, items, NegativeSampler(users, items, n_items)


def _epoch(batches: PairBatches) -> list[dict[str, torch.Tensor]]:
    return list(batches)


def test_each_epoch_draws_its_own_batches_and_a_resumed_epoch_draws_the_same():
    users, items, sampler = _pairs()
    running = PairBatches(users, items, sampler, batch_size=8, negatives=2, seed=4)
    first, second = _epoch(running), _epoch(running)
    cat = lambda bs, key: torch.cat([b[key] for b in bs])  # noqa: E731
    assert not torch.equal(cat(first, "user"), cat(second, "user"))  # reshuffled per epoch
    resumed = PairBatches(users, items, sampler, batch_size=8, negatives=2, seed=4)
    resumed.epoch = 1  # what the data module sets from the trainer's epoch after --resume
    again = _epoch(resumed)
    for key in ("user", "pos", "neg"):
        assert torch.equal(cat(again, key), cat(second, key))
    other_seed = _epoch(PairBatches(users, items, sampler, batch_size=8, negatives=2, seed=5))
    assert not torch.equal(cat(other_seed, "user"), cat(first, "user"))


class _CountingObjective(AuxiliaryObjective):
    """An alternating objective with one parameter whose loss is that parameter squared."""

    schedule = "alternate"
    weight = 0.5

    def __init__(self) -> None:
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(3.0))

    def batches(self, generator: torch.Generator):
        for _ in range(2):
            yield {"row": torch.randint(0, 10, (4,), generator=generator)}

    def num_batches(self) -> int:
        return 2

    def sample(self, size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return {"row": torch.zeros(size, dtype=torch.long)}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.value ** 2


def test_alternating_objective_batches_follow_the_ranking_batches_and_train_only_themselves():
    from kgflow_plugins.encoders.id_based import MF, MFParams

    users, items, sampler = _pairs()
    batches = PairBatches(users, items, sampler, batch_size=16, negatives=1, seed=0)
    objective = _CountingObjective()
    batches.alternating = [(0, objective)]
    epoch = _epoch(batches)
    kinds = ["objective" in b for b in epoch]
    assert len(epoch) == len(batches) == 3 + 2 and kinds == [False] * 3 + [True] * 2
    assert all(int(b["objective"][0]) == 0 for b in epoch[3:])

    module = RecModule(EncoderRecommender(MF(12, 9, MFParams(dim=4))), bpr(NoParams(), LossContext(1)),
                       l2=0.0, train=TrainConfig(),
                       tasks={}, ks=[5], metrics={}, objectives=[objective])
    module.on_train_epoch_start()
    loss = module.training_step(epoch[3], 3)
    assert loss.item() == pytest.approx(0.5 * 9.0)  # weight x value^2, no ranking loss in it
    loss.backward()
    assert objective.value.grad.item() == pytest.approx(0.5 * 2 * 3.0)
    assert module.model.encoder.user.weight.grad is None  # the ranking model is not touched
    ranking = module.training_step(epoch[0], 0)
    ranking.backward()
    assert module.model.encoder.user.weight.grad is not None
