"""Metrics against hand-computed values and against torchmetrics' retrieval metrics."""
from __future__ import annotations

import math

import pytest
import torch

from kgflow.evaluation.ranking import CSR, EvalTask, RankingEvaluator
from kgflow_plugins.metrics import ranking as M

# One user: ranks 1..5 hold relevant, -, relevant, -, - ; 3 relevant items in total.
HITS = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0]])
NPOS = torch.tensor([3.0])


def test_hand_computed_values():
    assert M.recall(HITS, NPOS).item() == pytest.approx(2 / 3)
    assert M.precision(HITS, NPOS).item() == pytest.approx(2 / 5)
    assert M.hit(HITS, NPOS).item() == 1.0
    assert M.mrr(HITS, NPOS).item() == 1.0
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg(HITS, NPOS).item() == pytest.approx(dcg / idcg)
    assert M.average_precision(HITS, NPOS).item() == pytest.approx((1 / 1 + 2 / 3) / 3)


def test_no_hit_and_late_hit():
    none = torch.zeros(1, 4)
    one = torch.tensor([1.0])
    for fn in (M.recall, M.precision, M.hit, M.mrr, M.ndcg, M.average_precision):
        assert fn(none, one).item() == 0.0
    late = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    assert M.mrr(late, one).item() == pytest.approx(0.25)
    assert M.ndcg(late, one).item() == pytest.approx(1 / math.log2(5))


def test_ideal_dcg_is_capped_at_k():
    # 10 relevant items but k = 2 and both top items relevant: perfect NDCG and MAP
    hits = torch.ones(1, 2)
    assert M.ndcg(hits, torch.tensor([10.0])).item() == pytest.approx(1.0)
    assert M.average_precision(hits, torch.tensor([10.0])).item() == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 5, 10])
def test_against_torchmetrics_on_random_inputs(k):
    tm = pytest.importorskip("torchmetrics.functional.retrieval")
    gen = torch.Generator().manual_seed(k)
    n_users, n_items = 40, 30
    scores = torch.rand(n_users, n_items, generator=gen)
    truth = torch.rand(n_users, n_items, generator=gen) < 0.2
    truth[:, 0] |= ~truth.any(1)  # every user has a relevant item
    top = scores.topk(k, dim=1).indices
    hits = truth.gather(1, top).float()
    n_pos = truth.sum(1).float()
    pairs = {M.recall: tm.retrieval_recall, M.precision: tm.retrieval_precision,
             M.hit: tm.retrieval_hit_rate, M.mrr: tm.retrieval_reciprocal_rank,
             M.ndcg: tm.retrieval_normalized_dcg}
    for ours, theirs in pairs.items():
        expected = torch.stack([theirs(scores[u], truth[u], top_k=k) for u in range(n_users)])
        assert torch.allclose(ours(hits, n_pos), expected.float(), atol=1e-6), ours.__name__


def test_evaluator_masks_known_items_and_groups(monkeypatch):
    # 2 users, 4 items. User 0 trained on item 0 (masked), truth item 1; user 1 truth items 2, 3.
    mask = CSR(torch.tensor([0, 1, 1]), torch.tensor([0]))
    truth = CSR(torch.tensor([0, 1, 3]), torch.tensor([1, 2, 3]))
    cold = torch.tensor([False, False, False, True])
    task = EvalTask(truth, mask, {"all": None, "cold_items": cold}, torch.tensor([0, 1]))
    ev = RankingEvaluator(task, [1, 2], {"hit": M.hit, "recall": M.recall})
    scores = torch.tensor([[9.0, 5.0, 1.0, 0.0],    # item 0 masked -> item 1 ranked first
                           [0.0, 9.0, 1.0, 5.0]])   # top-2 = items 1, 3
    ev.add(torch.tensor([0, 1]), scores)
    res = ev.result()
    assert res["all"]["hit@1"] == pytest.approx(0.5)
    assert res["all"]["recall@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert res["cold_items"]["users"] == 1 and res["cold_items"]["recall@2"] == 1.0


def test_cold_group_ranks_cold_items_among_themselves():
    # item 3 is cold and scored below every warm item: invisible in `all`, first among cold items
    mask = CSR(torch.tensor([0, 0]), torch.tensor([], dtype=torch.long))
    truth = CSR(torch.tensor([0, 1]), torch.tensor([3]))
    cold = torch.tensor([False, False, False, True])
    task = EvalTask(truth, mask, {"all": None, "cold_items": cold, "warm_items": ~cold},
                    torch.tensor([0]))
    ev = RankingEvaluator(task, [1], {"hit": M.hit})
    ev.add(torch.tensor([0]), torch.tensor([[3.0, 2.0, 1.0, 0.5]]))
    res = ev.result()
    assert res["all"]["hit@1"] == 0.0 and res["cold_items"]["hit@1"] == 1.0
    assert "warm_items" not in res  # the user has no warm test item


def test_auc_against_hand_values():
    import torch

    from kgflow_plugins.metrics.ranking import auc

    inf = float("-inf")
    scores = torch.tensor([[0.9, 0.1, 0.5, inf, 0.3],     # masked item 3 is not a candidate
                           [1.0, 1.0, 0.0, 0.5, inf],
                           [0.0, 0.2, 0.4, 0.6, 0.8]])
    truth = torch.tensor([[True, False, True, False, False],
                          [True, False, False, False, False],
                          [True, True, False, False, False]])
    # row 0: positives 0.9, 0.5 beat both negatives 0.1, 0.3 -> 4/4
    # row 1: positive 1.0 ties one negative (half), beats 0.0 and 0.5 -> 2.5/3
    # row 2: positives are the two lowest of five -> 0/6
    assert auc(scores, truth).tolist() == pytest.approx([1.0, 2.5 / 3, 0.0])
