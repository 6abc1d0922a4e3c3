"""The Lightning data module: shuffled training batches with sampled negatives, and user chunks
for full-ranking evaluation.

Batches are dictionaries of tensors, so that full-graph training and (later) sampled-subgraph
training can hand models the same interface.

Under DDP every rank builds this module alike and takes its own shard: ``train.batch_size`` stays
the global batch (each of W ranks trains on ``ceil(batch_size / W)`` rows of it per step, so an
optimiser step sees as many pairs as on one device) and evaluation users are dealt out in turn.
"""
from __future__ import annotations

from typing import Callable, Iterator

import lightning as L
import torch

from kgflow.config.schema import NegativeSampling
from kgflow.data.recdata import Split
from kgflow.evaluation.ranking import EvalTask
from kgflow.models import AuxiliaryObjective
from kgflow.training.distributed import shard_rows
from kgflow.training.neighbors import NeighborSampler, PygNeighborSampler, make_neighbor_sampler
from kgflow.training.sampling import NegativeSampler, popularity_weights


class PairBatches:
    """One epoch of (user, positive, negatives) batches, reshuffled and resampled per epoch from a
    generator seeded with ``seed + epoch`` (so a resumed run sees the batches it would have seen).

    With ``world > 1`` (DDP), every rank draws the same permutation and keeps its shard of it
    (every ``world``-th pair, padded by wrap-around to equal length), and draws its negatives from
    a stream of its own seeded by (seed, epoch, rank); alternating objectives' batches are drawn
    alike on every rank and each rank trains on its rows of them. One rank of one (the default)
    draws exactly as a single-process run always has.
    """

    def __init__(self, users: torch.Tensor, items: torch.Tensor, sampler: NegativeSampler,
                 batch_size: int, negatives: int, seed: int,
                 weights: torch.Tensor | None = None) -> None:
        """``weights``: each pair's interaction weight, handed to the loss as the batch's
        ``weight`` (``preprocess.weight.loss``); ``None`` leaves batches without one."""
        self.users, self.items = users, items
        self.weights = weights
        self.sampler = sampler
        self.batch_size, self.negatives, self.seed = batch_size, negatives, seed
        self.epoch = 0
        #: Where the epoch being trained is read at the start of each iteration (the trainer's
        #: ``current_epoch``): a resumed run may set up its data before the trainer has moved on
        #: to the epoch it resumes at, and must still draw that epoch's batches.
        self.epoch_source: Callable[[], int] | None = None
        self.rank, self.world = 0, 1
        self.alternating: list[tuple[int, AuxiliaryObjective]] = []
        #: Set for sampled-subgraph training: each batch then carries its sampled neighbourhood.
        self.neighbors: NeighborSampler | PygNeighborSampler | None = None
        self.user_offset, self.item_offset = 0, 0

    def shard(self, rank: int, world: int) -> None:
        """Take rank ``rank``'s share of every epoch among ``world`` processes."""
        self.rank, self.world = rank, world

    @property
    def rank_batch_size(self) -> int:
        return -(-self.batch_size // self.world)

    def __len__(self) -> int:
        rows = -(-len(self.users) // self.world)
        own = -(-rows // self.rank_batch_size)
        return own + sum(objective.num_batches() for _, objective in self.alternating)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.epoch_source is not None:
            self.epoch = self.epoch_source()
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(len(self.users), generator=gen)
        rows = perm if self.world == 1 else perm[shard_rows(len(perm), self.rank, self.world)]
        weights = None if self.weights is None else self.weights[rows]
        if self.world == 1:
            users, items = self.users[perm], self.items[perm]
            neg = self.sampler.sample(users, self.negatives, gen)
        else:
            users, items = self.users[rows], self.items[rows]
            own = torch.Generator().manual_seed(
                ((self.seed * 1_000_003 + self.epoch) * 7919 + self.rank + 1) % (2 ** 63))
            neg = self.sampler.sample(users, self.negatives, own)
        self.epoch += 1
        size = self.rank_batch_size
        for start in range(0, len(users), size):
            end = start + size
            batch = {"user": users[start:end], "pos": items[start:end], "neg": neg[start:end]}
            if weights is not None:
                batch["weight"] = weights[start:end]
            if self.neighbors is not None:
                batch.update(self._neighbourhood(batch, gen if self.world == 1 else own))
            yield batch
        for index, objective in self.alternating:
            tag = torch.tensor([index])
            for batch in objective.batches(gen):
                yield {**self._rows_of_rank(batch), "objective": tag}

    def _neighbourhood(self, batch: dict[str, torch.Tensor],
                       generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The batch's sampled subgraph, and where its users and items sit in it (``*_at``)."""
        users, pos, neg = batch["user"], batch["pos"], batch["neg"]
        seeds = torch.cat([users + self.user_offset, pos + self.item_offset,
                           neg.flatten() + self.item_offset])
        sub = self.neighbors.sample(seeds, generator)  # type: ignore[union-attr]
        b = len(users)
        return {"n_id": sub.nodes, "sub_edge_index": sub.edge_index, "sub_edge_id": sub.edge_id,
                "user_at": sub.seeds[:b], "pos_at": sub.seeds[b:2 * b],
                "neg_at": sub.seeds[2 * b:].view_as(neg)}

    def _rows_of_rank(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.world == 1:
            return batch
        n = len(next(iter(batch.values())))
        rows = shard_rows(n, self.rank, self.world)
        return {key: value[rows.to(value.device)] for key, value in batch.items()}


class UserChunks:
    """The users to evaluate, in chunks (under DDP, each rank's share of them)."""

    def __init__(self, users: torch.Tensor, size: int) -> None:
        self.users, self.size = users, size

    def __len__(self) -> int:
        return (len(self.users) + self.size - 1) // self.size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, len(self.users), self.size):
            yield {"user": self.users[start:start + self.size]}


class RecDataModule(L.LightningDataModule):
    def __init__(self, split: Split, batch_size: int, negatives: int, eval_batch_users: int,
                 seed: int, max_users: int | None = None,
                 sampling: NegativeSampling | None = None, loss_weights: bool = False) -> None:
        """Full-graph training batches; :meth:`sample_neighbourhoods` turns on sampled subgraphs.
        ``sampling`` (``objective.negative_sampling``): popularity-proportional draws, or for
        ``dns`` ``candidates`` uniform draws per negative, from which the module picks.
        ``loss_weights``: batches carry each positive's interaction weight (``weight``)."""
        super().__init__()
        self.split = split
        users = torch.from_numpy(split.train.user)
        items = torch.from_numpy(split.train.item)
        sampling = sampling or NegativeSampling()
        weights = (popularity_weights(items, split.n_items, sampling.alpha)
                   if sampling.method == "popularity" else None)
        if sampling.method == "dns":
            negatives *= sampling.candidates
        # Held-out cold items do not exist during training: they are never drawn as negatives.
        self.sampler = NegativeSampler(users, items, split.n_items,
                                       exclude=torch.from_numpy(split.cold_items), weights=weights)
        weights = (torch.from_numpy(split.train.weights()).float() if loss_weights else None)
        self.train_batches = PairBatches(users, items, self.sampler, batch_size, negatives, seed, weights)
        self.tasks = {stage: EvalTask.for_stage(split, stage) for stage in ("valid", "test")}
        if max_users is not None:  # one fixed, seeded sample per stage
            for task in self.tasks.values():
                if len(task.users) > max_users:
                    gen = torch.Generator().manual_seed(seed)
                    pick = torch.randperm(len(task.users), generator=gen)[:max_users]
                    task.users = task.users[pick.sort().values]
        self.eval_batch_users = eval_batch_users

    def sample_neighbourhoods(self, edge_index: torch.Tensor, num_nodes: int, fanouts: list[int],
                              user_offset: int, item_offset: int,
                              edge_id: torch.Tensor | None = None, backend: str = "auto") -> None:
        """Give every training batch its sampled neighbourhood in the graph (mini-batch training)."""
        self.train_batches.neighbors = make_neighbor_sampler(edge_index, num_nodes, fanouts, edge_id,
                                                             backend)  # type: ignore[arg-type]
        self.train_batches.user_offset, self.train_batches.item_offset = user_offset, item_offset

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> PairBatches:
        if self.trainer is not None:
            self.train_batches.epoch = self.trainer.current_epoch
            self.train_batches.epoch_source = lambda: self.trainer.current_epoch
        self.train_batches.shard(*self._rank_world())
        return self.train_batches

    def _eval_chunks(self, stage: str) -> UserChunks:
        rank, world = self._rank_world()
        return UserChunks(self.tasks[stage].users[rank::world], self.eval_batch_users)

    def val_dataloader(self) -> UserChunks:
        return self._eval_chunks("valid")

    def test_dataloader(self) -> UserChunks:
        return self._eval_chunks("test")
