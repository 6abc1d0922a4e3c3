"""Ranking losses: over a positive score ``[B]`` and sampled negative scores ``[B, N]``, or (a
:class:`~kgflow.plugin.VectorLoss`) over the batch's user and item vectors."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from kgflow.plugin import (Component, LossContext, NoParams, PairVectors, Params, VectorLoss,
                           weighted_mean)


# Score losses take ``weight`` (each positive's interaction weight, preprocess.weight.loss) and
# then return the weighted mean over positives; without it, the plain mean.

def bpr(params: NoParams, ctx: LossContext):
    """Bayesian personalised ranking: ``-ln sigmoid(s_ui - s_uj)`` averaged over pairs."""

    def loss(pos: torch.Tensor, neg: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        pairs = -F.logsigmoid(pos.unsqueeze(-1) - neg)
        return pairs.mean() if weight is None else weighted_mean(pairs.mean(-1), weight)

    return loss


def bce(params: NoParams, ctx: LossContext):
    """Binary cross-entropy: positives labelled 1, sampled negatives 0 (each side averaged; a
    positive's weight weights its own term and its negatives')."""

    def loss(pos: torch.Tensor, neg: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        if weight is None:
            return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                    + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))
        on_pos = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos), reduction="none")
        on_neg = F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), reduction="none")
        return weighted_mean(on_pos, weight) + weighted_mean(on_neg.mean(-1), weight)

    return loss


class SoftmaxParams(Params):
    temperature: float = Field(1.0, gt=0, description="scores are divided by this before the softmax")
    in_batch: bool = Field(False, description="also use the batch's other positive items as negatives "
                           "(up to B - 1 more per row for one B x B product; never the row's own item "
                           "or another positive of the same user in the batch)")


class InBatchSoftmax(VectorLoss):
    """Sampled softmax whose negatives are a row's sampled items plus every other row's positive.

    The other positives are drawn in proportion to popularity, so popular items are pushed down
    harder than with uniform negatives (no log-popularity correction is applied)."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def __call__(self, v: PairVectors) -> torch.Tensor:
        pos = (v.user * v.pos).sum(-1, keepdim=True)
        neg = (v.user.unsqueeze(1) * v.neg).sum(-1)
        others = v.user @ v.pos.T
        # never a negative: a row's own positive, another row's identical item, and the positive of
        # another row of the same user (the batch knows it is one of theirs)
        known = (v.pos_id.unsqueeze(0) == v.pos_id.unsqueeze(1)) | (v.user_id.unsqueeze(0) == v.user_id.unsqueeze(1))
        others = others.masked_fill(known, float("-inf"))
        logits = torch.cat([pos, neg, others], dim=1) / self.temperature
        return weighted_mean(-F.log_softmax(logits, dim=1)[:, 0], v.weight)

    supports_weights = True


def sampled_softmax(params: SoftmaxParams, ctx: LossContext):
    """Sampled softmax / InfoNCE: the positive against its N negatives (and, with ``in_batch``,
    the batch's other positives), cross-entropy at the positive."""
    if params.in_batch:
        return InBatchSoftmax(params.temperature)

    def loss(pos: torch.Tensor, neg: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        logits = torch.cat([pos.unsqueeze(-1), neg], dim=-1) / params.temperature
        return weighted_mean(-F.log_softmax(logits, dim=-1)[..., 0], weight)

    return loss


class DirectAUParams(Params):
    gamma: float = Field(1.0, ge=0, description="weight of uniformity against alignment (the paper tunes "
                         "it in 0.2 .. 10)")


def alignment(user: torch.Tensor, item: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared distance between each normalised user and its normalised positive item
    (weighted by the positives' weights, where given)."""
    return weighted_mean((F.normalize(user, dim=-1) - F.normalize(item, dim=-1)).pow(2).sum(-1), weight)


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """``log mean exp(-t ||a - b||^2)`` over all pairs of distinct rows of normalised ``x``.

    Squared distances of unit vectors are ``2 - 2 a.b``: computed from one product, which (unlike
    ``pdist``) has a well-defined gradient when two rows coincide (a user twice in a batch). Every
    term lies in ``[exp(-4t), 1]``, so the plain sum cannot overflow or vanish."""
    x = F.normalize(x, dim=-1)
    n = len(x)
    if n < 2:
        return x.new_zeros(())
    kernel = torch.exp(-t * (2 - 2 * x @ x.T).clamp(min=0))
    return torch.log((kernel.sum() - kernel.diagonal().sum()) / (n * (n - 1)))


class DirectAU(VectorLoss):
    """DirectAU (Wang et al., KDD 2022): alignment of users with their positive items plus
    ``gamma`` times the uniformity of the batch's users and of its items; no negatives."""

    def __init__(self, gamma: float) -> None:
        self.gamma = gamma

    supports_weights = True

    def __call__(self, v: PairVectors) -> torch.Tensor:
        """Weights weight the alignment of each positive; uniformity is a property of the batch."""
        return alignment(v.user, v.pos, v.weight) + self.gamma * (uniformity(v.user) + uniformity(v.pos)) / 2


def direct_au(params: DirectAUParams, ctx: LossContext) -> DirectAU:
    return DirectAU(params.gamma)


def components() -> list[Component]:
    return [
        Component("loss", "bpr", bpr, NoParams, "Bayesian personalised ranking (pairwise)"),
        Component("loss", "bce", bce, NoParams, "binary cross-entropy with sampled negatives"),
        Component("loss", "softmax", sampled_softmax, SoftmaxParams,
                  "sampled softmax / InfoNCE over the positive and its negatives (optionally the "
                  "batch's other positives too)", aliases=("infonce",)),
        Component("loss", "directau", direct_au, DirectAUParams,
                  "DirectAU: alignment of users with their items + uniformity (Wang et al., KDD 2022)",
                  aliases=("alignment_uniformity",)),
    ]
