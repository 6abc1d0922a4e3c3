"""``optimizer: sparse_adam``: Adam on dense gradients, lazy row-wise Adam on sparse ones."""
from __future__ import annotations

import pytest
import torch

from kgflow.training.optim import RowSparseAdam, use_sparse_lookups


def _train(param: torch.Tensor, optimizer: torch.optim.Optimizer, sparse: bool, steps: int = 15) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        rows = torch.randint(0, param.shape[0], (12,), generator=gen)
        optimizer.zero_grad()
        picked = torch.nn.functional.embedding(rows, param, sparse=sparse)
        (picked.pow(3).sum() + picked.sum()).backward()
        optimizer.step()


def test_dense_gradients_get_torch_adams_update_exactly():
    start = torch.randn(30, 4, dtype=torch.float64)
    ours, reference = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    _train(ours, RowSparseAdam([ours], lr=0.05, weight_decay=0.1), sparse=False)
    _train(reference, torch.optim.Adam([reference], lr=0.05, weight_decay=0.1), sparse=False)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)


def test_sparse_gradients_get_lazy_adam_like_torch_sparse_adam():
    # torch's SparseAdam adds eps outside the bias correction, we inside (as its Adam does): with
    # a negligible eps both are the same lazy update
    start = torch.randn(30, 4, dtype=torch.float64)
    ours, reference = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    _train(ours, RowSparseAdam([ours], lr=0.05, eps=1e-14), sparse=True)
    _train(reference, torch.optim.SparseAdam([reference], lr=0.05, eps=1e-14), sparse=True)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-9)
    assert not torch.equal(ours, start)


def test_rows_a_batch_did_not_use_are_left_exactly_as_they_were():
    table = torch.nn.Embedding(10, 3)
    use_sparse_lookups(table)
    before = table.weight.detach().clone()
    optimizer = RowSparseAdam(table.parameters(), lr=0.1, weight_decay=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        table(torch.tensor([1, 4, 4])).sum().backward()
        assert table.weight.grad.is_sparse
        optimizer.step()
    changed = (table.weight.detach() != before).any(1)
    assert changed.tolist() == [i in (1, 4) for i in range(10)]
    state = optimizer.state[table.weight]
    assert state["exp_avg"][0].abs().sum() == 0 and state["exp_avg"][4].abs().sum() > 0


@pytest.mark.parametrize("settings", [dict(lr=0.0), dict(betas=(0.9, 1.0)), dict(weight_decay=-1.0)])
def test_impossible_settings_are_refused(settings):
    with pytest.raises(ValueError, match="invalid Adam settings"):
        RowSparseAdam([torch.nn.Parameter(torch.zeros(2))], **settings)
