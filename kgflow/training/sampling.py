"""Vectorised negative sampling that never returns one of the user's training positives."""
from __future__ import annotations

import torch

MAX_ROUNDS = 100


class NegativeSampler:
    """Uniform negatives per (user, positive) pair, rejecting the user's training items.

    Membership is tested against the sorted keys ``user * n_items + item`` with one
    ``searchsorted`` per round; only the rejected draws are redrawn.
    """

    def __init__(self, users: torch.Tensor, items: torch.Tensor, n_items: int) -> None:
        self.n_items = n_items
        self.keys = torch.unique(users.long() * n_items + items.long())  # sorted
        counts = torch.bincount(users.long(), minlength=int(users.max()) + 1 if len(users) else 0)
        self.full_users = torch.nonzero(counts >= n_items).flatten()

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users.unsqueeze(-1).expand_as(items) * self.n_items + items if items.dim() > users.dim() \
            else users * self.n_items + items
        pos = torch.searchsorted(self.keys, keys).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == keys

    def sample(self, users: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[len(users), n]`` negative items."""
        neg = torch.randint(self.n_items, (len(users), n), generator=generator)
        bad = self.is_positive(users, neg)
        if len(self.full_users):  # users who interacted with every item cannot get a negative
            bad &= ~torch.isin(users, self.full_users).unsqueeze(-1)
        rounds = 0
        while bad.any():
            rounds += 1
            if rounds > MAX_ROUNDS:
                raise RuntimeError("negative sampling did not converge; a user may have almost every item")
            idx = bad.nonzero(as_tuple=True)
            redraw = torch.randint(self.n_items, (len(idx[0]),), generator=generator)
            neg[idx] = redraw
            bad[idx] = self.is_positive(users[idx[0]], redraw)
        return neg
