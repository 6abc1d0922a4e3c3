"""``bias-mf``: dot product plus a learned per-item bias, expressed as one extra dimension
(users carry a constant 1 there, items their bias), so the core's dot-product scoring needs no change."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from kgflow.plugin import Embeddings, EncoderContext, GraphEncoder, Params


class BiasMFParams(Params):
    dim: int = Field(32, ge=1, description="embedding size (the bias adds one more dimension)")


class BiasMF(GraphEncoder):
    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        self.user = nn.Parameter(torch.randn(n_users, dim) * 0.05)
        self.item = nn.Parameter(torch.randn(n_items, dim) * 0.05)
        self.item_bias = nn.Parameter(torch.zeros(n_items, 1))

    def forward(self) -> Embeddings:
        ones = torch.ones(self.n_users, 1, device=self.user.device)
        return Embeddings(torch.cat([self.user, ones], 1), torch.cat([self.item, self.item_bias], 1))

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> list[torch.Tensor]:
        return [self.user.index_select(0, users), self.item.index_select(0, items)]


def build_bias_mf(params: BiasMFParams, ctx: EncoderContext) -> BiasMF:
    return BiasMF(ctx.split.n_users, ctx.split.n_items, params.dim)
