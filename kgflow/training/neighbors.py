"""Neighbour sampling for mini-batch (sampled subgraph) training, in plain vectorised torch.

A training step then costs the batch's sampled neighbourhood, not the whole graph: for a batch's
seed nodes (its users, positive and negative items) each of K hops keeps at most ``fanouts[k]``
incoming edges per frontier node, and the model runs its K layers on the union of those edges
(torch-geometric's ``NeighborLoader`` semantics: ``edge_index[0]`` sends, ``edge_index[1]``
receives). PyG's compiled samplers (pyg-lib, torch-sparse) are not installable everywhere:
:class:`NeighborSampler` needs neither and works on any device the graph lives on;
:class:`PygNeighborSampler` runs torch-geometric's own sampler on those backends when one is
installed, returning the same :class:`Subgraph`. :func:`make_neighbor_sampler` picks one
(``train.sampling.backend``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import torch


def _check_fanouts(fanouts: list[int]) -> None:
    if any(f == 0 or f < -1 for f in fanouts):
        raise ValueError(f"fan-outs must be positive (or -1 for all neighbours), got {fanouts}")


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
        _check_fanouts(fanouts)
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


def compiled_backend() -> str | None:
    """The compiled PyG sampling backend installed here (``pyg-lib`` or ``torch-sparse``), if any."""
    try:
        import torch_geometric.typing as pyg_typing
    except ImportError:  # pragma: no cover - torch-geometric is a dependency
        return None
    if pyg_typing.WITH_PYG_LIB:
        return "pyg-lib"
    if pyg_typing.WITH_TORCH_SPARSE:
        return "torch-sparse"
    return None


class PygNeighborSampler:
    """torch-geometric's ``NeighborSampler`` (on pyg-lib or torch-sparse) behind
    :class:`NeighborSampler`'s interface: up to ``fanouts[k]`` incoming edges per node at hop
    ``k``, drawn without replacement.

    The compiled samplers draw from torch's global generator; each call seeds it from
    ``generator`` inside a fork of the global state (restored afterwards), so batches stay
    reproducible from the run's seed and nothing else's random stream moves."""

    def __init__(self, edge_index: torch.Tensor, num_nodes: int, fanouts: list[int],
                 edge_id: torch.Tensor | None = None) -> None:
        from torch_geometric.data import Data
        from torch_geometric.sampler import NeighborSampler as PygSampler

        _check_fanouts(fanouts)
        if not fanouts:
            raise ValueError("the PyG sampler needs at least one hop; use backend torch for fanouts: []")
        self.fanouts = list(fanouts)
        self.edge_id = None if edge_id is None else edge_id.long().cpu()
        data = Data(edge_index=edge_index.long().cpu(), num_nodes=num_nodes)
        with warnings.catch_warnings():  # on torch-sparse alone PyG asks for pyg-lib: a choice, not a fault
            warnings.filterwarnings("ignore", message=".*without a 'pyg-lib' installation.*")
            self._sampler = PygSampler(data, num_neighbors=self.fanouts)

    def sample(self, seeds: torch.Tensor, generator: torch.Generator | None = None) -> Subgraph:
        from torch_geometric.sampler import NodeSamplerInput

        seeds = seeds.long()
        unique = torch.unique(seeds)
        with torch.random.fork_rng(devices=[]):
            if generator is not None:
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
            out = self._sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=unique))
        # PyG lists the seeds first, then nodes in the order it reached them; kgflow's subgraphs
        # hold their nodes ascending
        nodes, order = torch.sort(out.node)
        local = torch.empty_like(order)
        local[order] = torch.arange(len(order))
        edge = out.edge if self._sampler.perm is None else self._sampler.perm[out.edge]
        if self.edge_id is not None:
            edge = self.edge_id[edge]
        return Subgraph(nodes, torch.stack([local[out.row], local[out.col]]), edge,
                        torch.searchsorted(nodes, seeds))


SamplerBackend = Literal["auto", "torch", "pyg"]


def make_neighbor_sampler(edge_index: torch.Tensor, num_nodes: int, fanouts: list[int],
                          edge_id: torch.Tensor | None = None,
                          backend: SamplerBackend = "auto") -> NeighborSampler | PygNeighborSampler:
    """The sampler ``backend`` names. ``auto``: PyG's when pyg-lib is installed and there is at
    least one hop, otherwise kgflow's pure-torch one. torch-sparse alone is used only when asked
    for (``pyg``): on a CPU it samples slower than kgflow's sampler (docs/benchmarks.md, Scale)."""
    if backend == "pyg" and compiled_backend() is None:
        raise RuntimeError("train.sampling.backend pyg needs pyg-lib or torch-sparse installed; "
                           "use backend torch (or auto)")
    if backend == "pyg" or (backend == "auto" and fanouts and compiled_backend() == "pyg-lib"):
        return PygNeighborSampler(edge_index, num_nodes, fanouts, edge_id)
    return NeighborSampler(edge_index, num_nodes, fanouts, edge_id)


def backend_name(sampler: NeighborSampler | PygNeighborSampler) -> str:
    """How a sampler draws, for the run's report: ``torch`` or ``pyg (<backend>)``."""
    return f"pyg ({compiled_backend()})" if isinstance(sampler, PygNeighborSampler) else "torch"
