"""Neighbour sampling for mini-batch (sampled subgraph) training, in plain vectorised torch.

A training step then costs the batch's sampled neighbourhood, not the whole graph: for a batch's
seed nodes (its users, positive and negative items) each of K hops keeps at most ``fanouts[k]``
incoming edges per frontier node, and the model runs its K layers on the union of those edges
(torch-geometric's ``NeighborLoader`` semantics: ``edge_index[0]`` sends, ``edge_index[1]``
receives). PyG's compiled samplers (pyg-lib, torch-sparse) are not installable everywhere; this
sampler needs neither and works on any device the graph lives on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Subgraph:
    """A sampled neighbourhood: ``nodes`` (global ids, ascending), ``edge_index`` ([2, E], local
    positions in ``nodes``), ``edge_id`` (each edge's position in the full graph's edge list) and
    ``seeds`` (the local position of each seed node, in the order the seeds were given)."""

    nodes: torch.Tensor
    edge_index: torch.Tensor
    edge_id: torch.Tensor
    seeds: torch.Tensor


class NeighborSampler:
    """Samples up to ``fanouts[k]`` incoming edges per node at hop ``k`` (``-1``: all of them);
    no fan-outs: the seeds alone, without edges (encoders without layers).

    A node with no more incoming edges than its fan-out keeps them all; a larger one gets
    ``fanout`` draws with replacement, duplicates removed, so a hub's cost is its fan-out, never
    its degree."""

    def __init__(self, edge_index: torch.Tensor, num_nodes: int, fanouts: list[int],
                 edge_id: torch.Tensor | None = None) -> None:
        """``edge_id``: each edge's position in the graph's edge list, when ``edge_index`` is a
        selection of the graph's edges (by default its position in ``edge_index``)."""
        if any(f == 0 or f < -1 for f in fanouts):
            raise ValueError(f"fan-outs must be positive (or -1 for all neighbours), got {fanouts}")
        dst = edge_index[1].long()
        order = torch.argsort(dst, stable=True)
        self.src = edge_index[0].long()[order]
        self.dst = dst[order]
        self.edge_id = order if edge_id is None else edge_id.long()[order]
        counts = torch.bincount(dst, minlength=num_nodes)
        self.indptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self.fanouts = list(fanouts)

    def _hop(self, frontier: torch.Tensor, fanout: int, generator: torch.Generator | None) -> torch.Tensor:
        """Positions (in the dst-sorted edge list) of the sampled edges into ``frontier``."""
        start = self.indptr[frontier]
        degree = self.indptr[frontier + 1] - start
        take_all = degree <= fanout if fanout >= 0 else torch.ones_like(degree, dtype=torch.bool)
        all_start, all_degree = start[take_all], degree[take_all]
        first = torch.repeat_interleave(torch.cumsum(all_degree, 0) - all_degree, all_degree)
        every = (torch.repeat_interleave(all_start, all_degree)
                 + torch.arange(int(all_degree.sum())) - first)
        big_start, big_degree = start[~take_all], degree[~take_all]
        if len(big_start):
            draw = torch.rand(len(big_start), fanout, generator=generator)
            picked = big_start.unsqueeze(1) + (draw * big_degree.unsqueeze(1)).long().clamp(
                max=big_degree.unsqueeze(1) - 1)
            return torch.cat([every, torch.unique(picked.flatten())])
        return every

    def sample(self, seeds: torch.Tensor, generator: torch.Generator | None = None) -> Subgraph:
        """The sampled K-hop neighbourhood of ``seeds`` (global node ids, repeats allowed)."""
        seeds = seeds.long()
        frontier = torch.unique(seeds)
        seen = frontier
        positions = []
        for fanout in self.fanouts:
            hop = self._hop(frontier, fanout, generator)
            positions.append(hop)
            senders = torch.unique(self.src[hop])
            frontier = senders[~torch.isin(senders, seen)]
            seen = torch.unique(torch.cat([seen, frontier]))
        hop = torch.cat(positions) if positions else torch.zeros(0, dtype=torch.long)
        src, dst = self.src[hop], self.dst[hop]
        nodes = seen  # ascending: torch.unique sorts
        return Subgraph(nodes, torch.stack([torch.searchsorted(nodes, src), torch.searchsorted(nodes, dst)]),
                        self.edge_id[hop], torch.searchsorted(nodes, seeds))
