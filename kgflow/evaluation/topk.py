"""Top-k lists for many users without a users x items block: users are scored a chunk at a time,
their known items masked from a CSR index, and only ``k`` items per user are kept.

Peak memory is ``chunk x n_items`` scores plus ``users x k`` results, whatever the number of users;
evaluation, ``kgflow export --what topk``, ``kgflow recommend`` and a distillation teacher's lists
all go through here.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

from kgflow.data.recdata import Interactions
from kgflow.evaluation.ranking import CSR, mask_known

#: Scores of every item for a chunk of dense user indices: ``[len(users), n_items]``.
ScoreChunk = Callable[[torch.Tensor], torch.Tensor]


def known_items(parts: list[Interactions], n_users: int, n_items: int) -> CSR:
    """Each user's items in ``parts`` (e.g. training and validation), as a CSR index to mask."""
    return CSR.of(parts, n_users, n_items)


def chunked_topk(score_chunk: ScoreChunk, users: torch.Tensor, k: int, known: CSR | None = None,
                 chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best items (``[len(users), k]`` indices and scores, best first) for every user,
    scoring ``chunk`` users at a time; masked items score ``-inf`` and sort last."""
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1 user, not {chunk}")
    users = users.long()
    indices, values = [], []
    for start in range(0, len(users), chunk):
        part = users[start:start + chunk]
        scores = mask_known(score_chunk(part).float(), part, known)
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        indices.append(top.indices.cpu())
        values.append(top.values.cpu())
    if not indices:
        return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k)
    return torch.cat(indices), torch.cat(values)


def topk_frame(user_ids: np.ndarray, item_ids: np.ndarray, users: np.ndarray, indices: torch.Tensor,
               values: torch.Tensor) -> pd.DataFrame:
    """``user, rank, item, score`` rows (original ids) from :func:`chunked_topk`'s output, built
    with array operations; entries at ``-inf`` (masked, or fewer candidates than k) are dropped."""
    n, k = indices.shape
    keep = torch.isfinite(values).flatten().numpy()
    flat_users = np.repeat(np.asarray(users), k)[keep]
    return pd.DataFrame({
        "user": user_ids[flat_users],
        "rank": np.tile(np.arange(1, k + 1), n)[keep],
        "item": item_ids[indices.flatten().numpy()[keep]],
        "score": values.flatten().numpy()[keep],
    })
