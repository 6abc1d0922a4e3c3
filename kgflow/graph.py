"""The graph bundle a builder hands to the encoders, its report, and the assembly of typed edges.

A bundle is a homogeneous view of a typed graph: node types occupy consecutive index ranges (users
first, then items, then whatever else a builder adds: KG entities, attribute values), and every
edge carries a relation id. Builders describe their edges as :class:`EdgeBlock` s and let
:func:`assemble_graph` do the bookkeeping (reverse edges, relation ids, the report).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: The relation of user-item edges; its reverse is ``interact~inv`` when reverses get their own type.
INTERACT = "interact"
INVERSE_SUFFIX = "~inv"
#: Auxiliary behaviours are user-item relations too: ``interact:click``, ``interact:watched``.
BEHAVIOUR_PREFIX = INTERACT + ":"


def is_interaction(relation: str) -> bool:
    """Whether a relation (or its reverse) joins users and items: the target ``interact`` or an
    auxiliary behaviour ``interact:<name>``; everything else is knowledge (KG, attributes)."""
    base = relation.split(INVERSE_SUFFIX)[0]
    return base == INTERACT or base.startswith(BEHAVIOUR_PREFIX)


@dataclass
class GraphReport:
    """What a builder made, for people: sizes per type, edges per relation, isolated nodes."""

    nodes: dict[str, int]
    edges: dict[str, int]
    isolated: dict[str, int]
    density: float
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"nodes": self.nodes, "edges": self.edges, "isolated": self.isolated,
                "density": self.density, "stats": self.stats, "notes": self.notes}

    def lines(self) -> list[str]:
        out = ["nodes: " + ", ".join(f"{k} {v:,}" for k, v in self.nodes.items())]
        out.append("edges: " + ", ".join(f"{k} {v:,}" for k, v in self.edges.items()))
        out.append("isolated: " + ", ".join(f"{k} {v:,}" for k, v in self.isolated.items()))
        out.append(f"density: {self.density:.6f}")
        if self.stats:
            out.append("details: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                                          for k, v in self.stats.items()))
        return out + self.notes


@dataclass
class GraphBundle:
    """A homogeneous view of a (possibly typed) graph.

    Nodes of all types share one index space; ``node_offsets[t]`` is where type ``t`` starts
    (users first at 0, items at ``n_users``, then any other types). ``edge_index`` is ``[2, E]``
    and lists each undirected connection in both directions. ``edge_type`` indexes
    ``relation_names``; ``edge_forward`` marks the direction a fact was stated in (head -> tail),
    so that ``edge_index[:, edge_forward]`` are the facts and the rest their reverses.
    """

    edge_index: torch.Tensor
    num_nodes: int
    node_offsets: dict[str, int]
    node_counts: dict[str, int]
    report: GraphReport
    edge_type: torch.Tensor | None = None
    relation_names: list[str] = field(default_factory=list)
    edge_forward: torch.Tensor | None = None
    #: labels of the nodes after users and items (KG entity ids, attribute values), in order
    extra_names: list[str] = field(default_factory=list)
    #: per-edge positive weight (interaction strength, ``preprocess.weight``); ``None``: all 1
    edge_weight: torch.Tensor | None = None

    @property
    def n_users(self) -> int:
        return self.node_counts.get("user", 0)

    @property
    def n_items(self) -> int:
        return self.node_counts.get("item", 0)

    @property
    def has_relations(self) -> bool:
        """Whether the graph holds facts beyond user-item interactions."""
        return any(not is_interaction(name) for name in self.relation_names)

    def knowledge_edges(self) -> torch.Tensor:
        """Boolean mask of the edges that are not user-item interactions (KG and attribute facts)."""
        if self.edge_type is None:
            return torch.zeros(self.edge_index.shape[1], dtype=torch.bool)
        interact = torch.tensor([is_interaction(name) for name in self.relation_names] or [False])
        return ~interact[self.edge_type]


@dataclass
class EdgeBlock:
    """One relation's facts as global node ids ``src -> dst`` (a builder adds the reverse later),
    optionally with a positive weight per fact (both directions get it)."""

    relation: str
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray | None = None


def assemble_graph(node_counts: dict[str, int], blocks: list[EdgeBlock], *, inverse_relations: bool,
                   stats: dict[str, Any] | None = None, notes: list[str] | None = None,
                   extra_names: list[str] | None = None) -> GraphBundle:
    """Turn typed edge blocks into a bundle whose every fact is listed in both directions.

    With ``inverse_relations`` the reverse of relation ``r`` is its own relation ``r~inv`` (as the
    KGAT and KGIN papers build their graphs); without, a reverse edge keeps ``r``. Duplicate
    edges within a relation are merged (a merged edge keeps the largest weight). The bundle has
    ``edge_weight`` when any block is weighted (unweighted blocks' edges weigh 1).
    """
    offsets, start = {}, 0
    for kind, count in node_counts.items():
        offsets[kind] = start
        start += count
    num_nodes = start
    blocks = [b for b in blocks if len(b.src)]
    names = [b.relation for b in blocks]
    weighted = any(b.weight is not None for b in blocks)
    srcs, dsts, types, weights, per_relation = [], [], [], [], {}
    for rel_id, block in enumerate(blocks):
        key, inverse = np.unique(block.src.astype(np.int64) * num_nodes + block.dst.astype(np.int64),
                                 return_inverse=True)
        srcs.append(key // num_nodes)
        dsts.append(key % num_nodes)
        types.append(np.full(len(key), rel_id, dtype=np.int64))
        merged = np.ones(len(key))
        if block.weight is not None:
            merged = np.zeros(len(key))
            np.maximum.at(merged, inverse.ravel(), np.asarray(block.weight, dtype=float))
        weights.append(merged)
        per_relation[block.relation] = len(key)
    if srcs:
        src, dst, rel = np.concatenate(srcs), np.concatenate(dsts), np.concatenate(types)
        weight = np.concatenate(weights)
    else:
        src = dst = rel = np.zeros(0, dtype=np.int64)
        weight = np.zeros(0)
    reverse_rel = rel + len(blocks) if inverse_relations else rel
    if inverse_relations:
        names = names + [name + INVERSE_SUFFIX for name in names]
    edge_index = torch.from_numpy(np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])]))
    edge_type = torch.from_numpy(np.concatenate([rel, reverse_rel]))
    forward = torch.cat([torch.ones(len(src), dtype=torch.bool), torch.zeros(len(src), dtype=torch.bool)])
    degree = np.bincount(edge_index[0].numpy(), minlength=num_nodes)
    isolated = {kind: int((degree[offsets[kind]:offsets[kind] + count] == 0).sum())
                for kind, count in node_counts.items()}
    edges = dict(per_relation)
    edges["reverse edges" + (" (typed ~inv)" if inverse_relations else "")] = len(src)
    report = GraphReport(nodes=dict(node_counts), edges=edges, isolated=isolated,
                         density=float(edge_index.shape[1]) / max(num_nodes * num_nodes, 1),
                         notes=list(notes or []), stats=dict(stats or {}))
    edge_weight = torch.from_numpy(np.concatenate([weight, weight]).astype(np.float32)) if weighted else None
    if weighted:
        report.stats["edge weights"] = (f"min {weight.min():.3g}, mean {weight.mean():.3g}, "
                                        f"max {weight.max():.3g}")
    return GraphBundle(edge_index=edge_index, num_nodes=num_nodes, node_offsets=offsets,
                       node_counts=dict(node_counts), report=report, edge_type=edge_type,
                       relation_names=names, edge_forward=forward, extra_names=list(extra_names or []),
                       edge_weight=edge_weight)
