"""The graph bundle a builder hands to the encoders, and its report."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class GraphReport:
    """What a builder made, for people: sizes per type, isolated nodes, density."""

    nodes: dict[str, int]
    edges: dict[str, int]
    isolated: dict[str, int]
    density: float
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"nodes": self.nodes, "edges": self.edges, "isolated": self.isolated,
                "density": self.density, "notes": self.notes}

    def lines(self) -> list[str]:
        out = ["nodes: " + ", ".join(f"{k} {v:,}" for k, v in self.nodes.items())]
        out.append("edges: " + ", ".join(f"{k} {v:,}" for k, v in self.edges.items()))
        out.append("isolated: " + ", ".join(f"{k} {v:,}" for k, v in self.isolated.items()))
        out.append(f"density: {self.density:.6f}")
        return out + self.notes


@dataclass
class GraphBundle:
    """A homogeneous view of a (possibly typed) graph.

    Nodes of all types share one index space; ``node_offsets[t]`` is where type ``t`` starts
    (users first at 0, items at ``n_users``, then any other types). ``edge_index`` is ``[2, E]``
    and lists each undirected connection in both directions. ``edge_type`` indexes
    ``relation_names`` (``None`` for an untyped graph).
    """

    edge_index: torch.Tensor
    num_nodes: int
    node_offsets: dict[str, int]
    node_counts: dict[str, int]
    report: GraphReport
    edge_type: torch.Tensor | None = None
    relation_names: list[str] = field(default_factory=list)

    @property
    def n_users(self) -> int:
        return self.node_counts.get("user", 0)

    @property
    def n_items(self) -> int:
        return self.node_counts.get("item", 0)
