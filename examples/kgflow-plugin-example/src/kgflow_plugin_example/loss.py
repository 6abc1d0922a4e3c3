"""``hinge``: a margin ranking loss over a positive and its sampled negatives."""
from __future__ import annotations

import torch
from pydantic import Field

from kgflow.plugin import LossContext, Params


class HingeParams(Params):
    margin: float = Field(1.0, gt=0, description="how far above each negative a positive should score")


def build_hinge(params: HingeParams, ctx: LossContext):
    def loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return torch.relu(params.margin - (pos.unsqueeze(-1) - neg)).mean()
    return loss
