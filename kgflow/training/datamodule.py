"""The Lightning data module: shuffled training batches with sampled negatives, and user chunks
for full-ranking evaluation.

Batches are dictionaries of tensors, so that full-graph training and (later) sampled-subgraph
training can hand models the same interface.
"""
from __future__ import annotations

from typing import Iterator

import lightning as L
import torch

from kgflow.data.recdata import Split
from kgflow.evaluation.ranking import EvalTask
from kgflow.models import AuxiliaryObjective
from kgflow.training.sampling import NegativeSampler


class PairBatches:
    """One epoch of (user, positive, negatives) batches, reshuffled and resampled per epoch from a
    generator seeded with ``seed + epoch`` (so a resumed run sees the batches it would have seen)."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, sampler: NegativeSampler,
                 batch_size: int, negatives: int, seed: int) -> None:
        self.users, self.items = users, items
        self.sampler = sampler
        self.batch_size, self.negatives, self.seed = batch_size, negatives, seed
        self.epoch = 0
        self.alternating: list[tuple[int, AuxiliaryObjective]] = []

    def __len__(self) -> int:
        own = (len(self.users) + self.batch_size - 1) // self.batch_size
        return own + sum(objective.num_batches() for _, objective in self.alternating)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        perm = torch.randperm(len(self.users), generator=gen)
        users, items = self.users[perm], self.items[perm]
        neg = self.sampler.sample(users, self.negatives, gen)
        for start in range(0, len(users), self.batch_size):
            end = start + self.batch_size
            yield {"user": users[start:end], "pos": items[start:end], "neg": neg[start:end]}
        for index, objective in self.alternating:
            tag = torch.tensor([index])
            for batch in objective.batches(gen):
                yield {**batch, "objective": tag}


class UserChunks:
    """The users to evaluate, in chunks."""

    def __init__(self, users: torch.Tensor, size: int) -> None:
        self.users, self.size = users, size

    def __len__(self) -> int:
        return (len(self.users) + self.size - 1) // self.size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, len(self.users), self.size):
            yield {"user": self.users[start:start + self.size]}


class RecDataModule(L.LightningDataModule):
    def __init__(self, split: Split, batch_size: int, negatives: int, eval_batch_users: int,
                 seed: int, max_users: int | None = None) -> None:
        super().__init__()
        self.split = split
        users = torch.from_numpy(split.train.user)
        items = torch.from_numpy(split.train.item)
        # Held-out cold items do not exist during training: they are never drawn as negatives.
        self.sampler = NegativeSampler(users, items, split.n_items,
                                       exclude=torch.from_numpy(split.cold_items))
        self.train_batches = PairBatches(users, items, self.sampler, batch_size, negatives, seed)
        self.tasks = {stage: EvalTask.for_stage(split, stage) for stage in ("valid", "test")}
        if max_users is not None:  # one fixed, seeded sample per stage
            for task in self.tasks.values():
                if len(task.users) > max_users:
                    gen = torch.Generator().manual_seed(seed)
                    pick = torch.randperm(len(task.users), generator=gen)[:max_users]
                    task.users = task.users[pick.sort().values]
        self.eval_batch_users = eval_batch_users

    def train_dataloader(self) -> PairBatches:
        if self.trainer is not None:
            self.train_batches.epoch = self.trainer.current_epoch
        return self.train_batches

    def val_dataloader(self) -> UserChunks:
        return UserChunks(self.tasks["valid"].users, self.eval_batch_users)

    def test_dataloader(self) -> UserChunks:
        return UserChunks(self.tasks["test"].users, self.eval_batch_users)
