"""Vectorised negative sampling that never returns one of the user's training positives."""
from __future__ import annotations

import torch

MAX_ROUNDS = 100


def in_sorted(sorted_keys: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Which of ``keys`` occur in ``sorted_keys`` (ascending, e.g. from ``torch.unique``).

    One binary search per key instead of a Python set: samplers test every drawn negative
    against the true pairs (or facts) encoded as integer keys, on whatever device they live.
    """
    if not len(sorted_keys):
        return torch.zeros_like(keys, dtype=torch.bool)
    at = torch.searchsorted(sorted_keys, keys).clamp(max=len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def popularity_weights(items: torch.Tensor, n_items: int, alpha: float) -> torch.Tensor:
    """Each item's drawing weight for popularity-proportional negatives: its training
    interactions to the power ``alpha`` (1: proportional; 0.75: word2vec's smoothing). An item
    without training interactions gets weight 0 when ``alpha > 0``: it is never drawn."""
    counts = torch.bincount(items.long(), minlength=n_items).double()
    return counts.pow(alpha) if alpha > 0 else torch.ones(n_items, dtype=torch.float64)


class NegativeSampler:
    """Negatives per (user, positive) pair, rejecting the user's training items: uniform over the
    catalogue, or in proportion to ``weights`` (popularity-proportional sampling).

    Membership is tested against the sorted keys ``user * n_items + item`` with one
    ``searchsorted`` per round; only the rejected draws are redrawn. Weighted draws invert the
    weights' cumulative sum (one ``searchsorted`` per draw), which costs the same per draw however
    many items there are.
    """

    def __init__(self, users: torch.Tensor, items: torch.Tensor, n_items: int,
                 exclude: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> None:
        """``exclude``: items never drawn (a strict cold-start split's held-out items, which do
        not exist as far as training is concerned). ``weights``: per item, non-negative; drawing
        probability is proportional to it (``None``: uniform)."""
        self.n_items = n_items
        self.keys = torch.unique(users.long() * n_items + items.long())  # sorted
        allowed = torch.ones(n_items, dtype=torch.bool)
        if exclude is not None and len(exclude):
            allowed[exclude.long()] = False
        self.cdf = None
        if weights is not None:
            w = weights.double().clone()
            w[~allowed] = 0
            if not bool((w > 0).any()):
                raise ValueError("negative sampling weights are zero for every item")
            allowed &= w > 0
            self.cdf = torch.cumsum(w, 0)
        self.candidates = None if bool(allowed.all()) else torch.nonzero(allowed).flatten()
        n_candidates = int(allowed.sum())
        counts = torch.bincount(users.long(), minlength=int(users.max()) + 1 if len(users) else 0)
        self.full_users = torch.nonzero(counts >= n_candidates).flatten()

    def _draw(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        if self.cdf is not None:
            u = torch.rand(shape, generator=generator, dtype=torch.float64) * self.cdf[-1]
            return torch.searchsorted(self.cdf, u, right=True).clamp(max=self.n_items - 1)
        if self.candidates is None:
            return torch.randint(self.n_items, shape, generator=generator)
        return self.candidates[torch.randint(len(self.candidates), shape, generator=generator)]

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users.unsqueeze(-1).expand_as(items) * self.n_items + items if items.dim() > users.dim() \
            else users * self.n_items + items
        return in_sorted(self.keys, keys)

    def sample(self, users: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[len(users), n]`` negative items."""
        neg = self._draw((len(users), n), generator)
        bad = self.is_positive(users, neg)
        if len(self.full_users):  # users who interacted with every item cannot get a negative
            bad &= ~torch.isin(users, self.full_users).unsqueeze(-1)
        rounds = 0
        while bad.any():
            rounds += 1
            if rounds > MAX_ROUNDS:
                raise RuntimeError("negative sampling did not converge; a user may have almost every item")
            idx = bad.nonzero(as_tuple=True)
            redraw = self._draw((len(idx[0]),), generator)
            neg[idx] = redraw
            bad[idx] = self.is_positive(users[idx[0]], redraw)
        return neg
