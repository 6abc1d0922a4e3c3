"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): an item-item
linear model solved in closed form, no training.

With ``X`` the binary users x items matrix of the training interactions, EASE finds the item-item
weights ``B`` minimising ``||X - X B||^2 + lambda ||B||^2`` under ``diag(B) = 0`` (an item may not
predict itself). The solution is ``P = (X^T X + lambda I)^-1``, ``B_ij = -P_ij / P_jj`` (``i != j``),
and a user's score for item ``j`` is ``X_u . B[:, j]``. In kgflow's dot-product form the user vector
is the user's training row of ``X`` and the item vector is column ``j`` of ``B``.

On dense data such as MovieLens this shallow model is a strong baseline (stronger than tuned
LightGCN on kgflow's MovieLens splits; docs/benchmarks.md). It costs an items x items inverse
(cubic in the catalogue) and holds ``B`` dense, so it is for catalogues up to tens of thousands of
items, and it keeps each user's history row, so the users x items table must fit in memory too:
both limits are checked when the model is built.
"""
from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from kgflow.plugin import Component, EncoderContext, Embeddings, GraphEncoder, KgflowError, Params


class EASEParams(Params):
    l2: float = Field(250.0, gt=0, description="lambda, the L2 penalty on the item-item weights (the "
                      "paper's lambda, RecBole's reg_weight); larger values shrink towards popularity")
    max_items: int = Field(20_000, ge=1, description="refuse a larger catalogue: the model inverts and "
                           "stores a dense items x items matrix")
    max_user_item_cells: int = Field(500_000_000, ge=1, description="refuse when users x items exceeds "
                                     "this: each user's history row is kept as its vector")


def ease_weights(user: np.ndarray, item: np.ndarray, n_users: int, n_items: int,
                 l2: float, values: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The history matrix ``X`` [users, items] and EASE's item-item weights ``B`` [items, items]
    (zero diagonal), from training pairs (repeats count once). ``X`` is binary, or holds
    ``values`` (interaction weights) where given. The inverse is taken in float64; both are
    returned as float32."""
    x = torch.zeros(n_users, n_items, dtype=torch.float64)
    x[torch.as_tensor(user, dtype=torch.long), torch.as_tensor(item, dtype=torch.long)] = \
        1.0 if values is None else torch.as_tensor(values, dtype=torch.float64)
    gram = x.T @ x
    gram.diagonal().add_(l2)
    p = torch.linalg.inv(gram)
    b = -p / p.diagonal().unsqueeze(0)  # column j divided by P_jj
    b.diagonal().zero_()
    return x.float(), b.float()


class EASE(GraphEncoder):
    """EASE's closed-form item-item model (see the module docstring); it has no trainable
    parameters, so a run evaluates it as built."""

    def __init__(self, history: torch.Tensor, weights: torch.Tensor) -> None:
        super().__init__()
        self.n_users, self.n_items = history.shape
        self.register_buffer("history", history, persistent=False)
        self.register_buffer("weights", weights, persistent=False)

    def forward(self) -> Embeddings:
        return Embeddings(self.history, self.weights.T)


def build_ease(params: EASEParams, ctx: EncoderContext) -> EASE:
    train = ctx.split.train
    n_users, n_items = train.n_users, train.n_items
    where = f"encoders.{ctx.role}.params"
    if n_items > params.max_items:
        raise KgflowError(f"{where}: ease inverts a dense items x items matrix, and {n_items:,} items exceed "
                          f"max_items {params.max_items:,} (raise it if {n_items:,}^2 x 8 bytes and a cubic "
                          "inverse fit this machine, or use a trained model such as lightgcn)")
    if n_users * n_items > params.max_user_item_cells:
        raise KgflowError(f"{where}: ease keeps every user's history row, and {n_users:,} users x "
                          f"{n_items:,} items exceed max_user_item_cells {params.max_user_item_cells:,}")
    # interaction weights on the graph's edges (preprocess.weight.graph) are X's values here
    weighted = ctx.graph is not None and ctx.graph.edge_weight is not None
    return EASE(*ease_weights(train.user, train.item, n_users, n_items, params.l2,
                              train.weight if weighted else None))


def components() -> list[Component]:
    return [Component("encoder", "ease", build_ease, EASEParams,
                      "EASE: closed-form item-item model, no training (Steck, WWW 2019)")]
