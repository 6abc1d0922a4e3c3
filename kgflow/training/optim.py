"""Adam whose embedding-table updates touch only the rows a batch used (``optimizer: sparse_adam``).

Why: with plain Adam every step reads and writes every row of every ID table (the gradient, both
moments and the weights), so an epoch costs ``steps x (users + items)`` on top of the batches
themselves -- quadratic once users grow with interactions. Here a parameter whose gradient arrives
sparse (an ``nn.Embedding`` looked up with ``sparse=True``) is updated lazily, row by row, as
TensorFlow's LazyAdam and torch's ``SparseAdam`` do: the rows the batch touched get Adam's update
(and the weight decay), their moments advance, the other rows stay as they are. Dense gradients
(projection matrices, relation vectors) get the ordinary Adam update in the same step, so one
optimizer serves a whole model and its checkpoints resume like any other.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn


class RowSparseAdam(torch.optim.Optimizer):
    """Adam (Kingma & Ba) with lazy row-wise updates for sparse gradients; see the module doc.

    ``weight_decay`` is L2 added to the gradient (as in ``torch.optim.Adam``), applied to the rows
    being updated only."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid Adam settings: lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])
                # torch's Adam: p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
                step_size = group["lr"] / (1 - beta1 ** step)
                bias2 = math.sqrt(1 - beta2 ** step)
                if p.grad.is_sparse:
                    self._sparse_update(p, state, group, step_size, bias2)
                else:
                    self._dense_update(p, state, group, step_size, bias2)
        return loss

    @staticmethod
    def _dense_update(p: torch.Tensor, state: dict, group: dict, step_size: float, bias2: float) -> None:
        beta1, beta2 = group["betas"]
        grad = p.grad
        if group["weight_decay"]:
            grad = grad.add(p, alpha=group["weight_decay"])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        p.addcdiv_(m, v.sqrt().div_(bias2).add_(group["eps"]), value=-step_size)

    @staticmethod
    def _sparse_update(p: torch.Tensor, state: dict, group: dict, step_size: float, bias2: float) -> None:
        beta1, beta2 = group["betas"]
        grad = p.grad.coalesce()  # one row per index, duplicates summed
        rows, values = grad.indices()[0], grad.values()
        if rows.numel() == 0:
            return
        if group["weight_decay"]:
            values = values.add(p.index_select(0, rows), alpha=group["weight_decay"])
        m = state["exp_avg"].index_select(0, rows).lerp_(values, 1 - beta1)
        v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        p.index_add_(0, rows, m.div_(v.sqrt_().div_(bias2).add_(group["eps"])), alpha=-step_size)


def use_sparse_lookups(model: nn.Module) -> int:
    """Make every ``nn.Embedding`` in ``model`` return sparse gradients for the rows it looked
    up; returns how many tables were switched. Encoders that read ``table.weight`` directly (a
    full-graph propagation) still produce dense gradients, which :class:`RowSparseAdam` handles."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            module.sparse = True
            count += 1
    return count
