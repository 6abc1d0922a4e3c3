"""Ranking losses over a positive score ``[B]`` and sampled negative scores ``[B, N]``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from kgflow.plugin import Component, LossContext, NoParams, Params, hookimpl


def bpr(params: NoParams, ctx: LossContext):
    """Bayesian personalised ranking: ``-ln sigmoid(s_ui - s_uj)`` averaged over pairs."""

    def loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return -F.logsigmoid(pos.unsqueeze(-1) - neg).mean()

    return loss


def bce(params: NoParams, ctx: LossContext):
    """Binary cross-entropy: positives labelled 1, sampled negatives 0 (each side averaged)."""

    def loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))

    return loss


class SoftmaxParams(Params):
    temperature: float = Field(1.0, gt=0, description="scores are divided by this before the softmax")


def sampled_softmax(params: SoftmaxParams, ctx: LossContext):
    """Sampled softmax / InfoNCE: the positive against its N negatives, cross-entropy at position 0."""

    def loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        logits = torch.cat([pos.unsqueeze(-1), neg], dim=-1) / params.temperature
        return -F.log_softmax(logits, dim=-1)[..., 0].mean()

    return loss


@hookimpl
def kgflow_components() -> list[Component]:
    return [
        Component("loss", "bpr", bpr, NoParams, "Bayesian personalised ranking (pairwise)"),
        Component("loss", "bce", bce, NoParams, "binary cross-entropy with sampled negatives"),
        Component("loss", "softmax", sampled_softmax, SoftmaxParams,
                  "sampled softmax / InfoNCE over the positive and its negatives", aliases=("infonce",)),
    ]
