"""General-purpose GNNs from torch-geometric: ``gcn``, ``sage``, ``gat``.

They run on any builder's graph -- the user-item graph, the collaborative KG, the attribute
graph -- so "which GNN fits my graph" is answered by changing one name. Relation types are used
when the graph has them: ``gcn`` learns one positive weight per relation (``relations: weights``),
``gat`` feeds a learned relation vector to its attention as an edge feature
(``relations: features``); ``sage`` has no edge input and treats all edges alike.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from kgflow.plugin import (Component, Embeddings, EncoderContext, GraphBundle, KgEmbeddings,
                           NotSupportedError)
from kgflow_plugins.encoders.id_based import EmbeddingParams
from kgflow_plugins.encoders.relational import NodeTable

ACTIVATIONS = {"none": lambda x: x, "relu": F.relu, "leaky_relu": F.leaky_relu, "tanh": torch.tanh}


class PygParams(EmbeddingParams):
    layers: int = Field(2, ge=1, description="message-passing layers")
    combine: Literal["mean", "last", "concat"] = Field(
        "mean", description="final embedding: mean of layers 0..K (as LightGCN), the last layer, "
        "or all layers concatenated")
    activation: Literal["none", "relu", "leaky_relu", "tanh"] = Field(
        "none", description="between layers (none keeps the model linear, which ranks well)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on each layer's output")


class GCNParams(PygParams):
    relations: Literal["ignore", "weights"] = Field(
        "weights", description="weights: learn one positive weight per relation type")


class SAGEParams(PygParams):
    aggr: Literal["mean", "max", "sum"] = Field("mean", description="neighbour aggregation")


class GATParams(PygParams):
    heads: int = Field(2, ge=1, description="attention heads (their outputs are concatenated)")
    relations: Literal["ignore", "features"] = Field(
        "features", description="features: a learned relation vector enters the attention")
    relation_dim: int = Field(16, ge=1, description="size of the relation vectors")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> "GATParams":
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads} (each head "
                             f"gets dim / heads features)")
        return self


def refuse_edge_weights(graph: GraphBundle, name: str) -> None:
    """An encoder that cannot use edge weights refuses a weighted graph rather than silently
    training as if every interaction weighed the same."""
    if graph.edge_weight is not None:
        raise NotSupportedError(
            f"encoder {name!r} does not use edge weights, but preprocess.weight.graph or "
            "preprocess.auxiliary_weights puts them on the graph; use lightgcn, simgcl, xsimgcl, gcn "
            "or ease, or set preprocess.weight.graph: false (and loss: true to weight the ranking "
            "loss instead) and drop auxiliary_weights")


class PygEncoder(NodeTable):
    """Layer-0 node table -> K torch-geometric convolutions -> combined user and item rows."""

    def __init__(self, graph: GraphBundle, params: PygParams, convs: list[nn.Module]) -> None:
        super().__init__()
        self._init_nodes(graph, params)
        self.params = params
        self.convs = nn.ModuleList(convs)
        self.register_buffer("edge_index", graph.edge_index, persistent=False)
        edge_type = graph.edge_type if graph.edge_type is not None else \
            torch.zeros(graph.edge_index.shape[1], dtype=torch.long)
        self.register_buffer("edge_type", edge_type, persistent=False)
        self.register_buffer("graph_edge_weight", graph.edge_weight, persistent=False)
        self.n_relations = max(len(graph.relation_names), 1)

        # Convolutions that take a bipartite (source, target) input compute their last layer for
        # the users and items only (the graph's first rows), over the edges into them.
        self.targets = self.n_users + self.n_items
        into_targets = self.edge_index[1] < self.targets
        self.register_buffer("target_edges", torch.nonzero(into_targets).flatten(), persistent=False)

    bipartite_last = False

    def edge_inputs(self, edges: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Extra per-edge inputs of the convolutions (for all edges, or the ``edges`` listed)."""
        return {}

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.params.activation]
        t = self.targets
        outputs = [x[:t]]
        for i, conv in enumerate(self.convs):
            last = i == len(self.convs) - 1
            if last and self.bipartite_last:
                edges = self.target_edges
                x = conv((x, x[:t]), self.edge_index.index_select(1, edges),
                         size=(x.shape[0], t), **self.edge_inputs(edges))
            else:
                x = conv(x, self.edge_index, **self.edge_inputs())
            if not last:
                x = act(x)
            x = F.dropout(x, self.params.dropout, self.training)
            outputs.append(x[:t])
        if self.params.combine == "last":
            return outputs[-1]
        if self.params.combine == "concat":
            return torch.cat(outputs, dim=1)
        return torch.stack(outputs).mean(0)

    def forward(self) -> Embeddings:
        return self._split(self._run(self._layer0()))

    def forward_sampled(self, nodes: torch.Tensor, edge_index: torch.Tensor,
                        edge_id: torch.Tensor) -> torch.Tensor:
        """The K convolutions on a sampled subgraph (every node's output; the subgraph's own
        degrees normalise, as in torch-geometric's neighbour-loader training)."""
        act = ACTIVATIONS[self.params.activation]
        x = self.node.weight.index_select(0, nodes)
        outputs = [x]
        cached = [conv for conv in self.convs if getattr(conv, "cached", False)]
        for conv in cached:  # a normalisation cached for the full graph must not be reused here
            conv.cached = False
        try:
            for i, conv in enumerate(self.convs):
                x = conv(x, edge_index, **self.edge_inputs(edge_id))
                if i < len(self.convs) - 1:
                    x = act(x)
                x = F.dropout(x, self.params.dropout, self.training)
                outputs.append(x)
        finally:
            for conv in cached:
                conv.cached = True
        if self.params.combine == "last":
            return outputs[-1]
        if self.params.combine == "concat":
            return torch.cat(outputs, dim=1)
        return torch.stack(outputs).mean(0)

    def propagate(self, user0: torch.Tensor, item0: torch.Tensor) -> Embeddings:
        return self._split(self._run(self._layer0(user0, item0)))

    def kg_embeddings(self) -> KgEmbeddings:
        return KgEmbeddings(self.node.weight)


class GCNEncoder(PygEncoder):
    def __init__(self, graph: GraphBundle, params: GCNParams) -> None:
        from torch_geometric.nn import GCNConv

        d = params.dim
        # Normalisation is cached only when edge weights are fixed.
        fixed = params.relations == "ignore" or graph.edge_type is None
        super().__init__(graph, params, [GCNConv(d, d, cached=fixed, add_self_loops=False)
                                         for _ in range(params.layers)])
        self.relation_weight = None if fixed else nn.Parameter(torch.zeros(self.n_relations))

    def edge_inputs(self, edges: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The edge weights: learned per relation, times the interaction weights of a weighted graph."""
        given = self.graph_edge_weight
        if given is not None and edges is not None:
            given = given.index_select(0, edges)
        if self.relation_weight is None:
            return {} if given is None else {"edge_weight": given}
        types = self.edge_type if edges is None else self.edge_type.index_select(0, edges)
        learned = F.softplus(self.relation_weight).index_select(0, types) / 0.6931
        return {"edge_weight": learned if given is None else learned * given}


class SAGEEncoder(PygEncoder):
    def __init__(self, graph: GraphBundle, params: SAGEParams) -> None:
        from torch_geometric.nn import SAGEConv

        d = params.dim
        super().__init__(graph, params, [SAGEConv(d, d, aggr=params.aggr) for _ in range(params.layers)])

    bipartite_last = True


class GATEncoder(PygEncoder):
    def __init__(self, graph: GraphBundle, params: GATParams) -> None:
        from torch_geometric.nn import GATConv

        d = params.dim
        if d % params.heads:
            raise ValueError(f"gat: dim {d} must be divisible by heads {params.heads}")
        typed = params.relations == "features" and graph.edge_type is not None
        edge_dim = params.relation_dim if typed else None
        super().__init__(graph, params, [GATConv(d, d // params.heads, heads=params.heads,
                                                 edge_dim=edge_dim, add_self_loops=False)
                                         for _ in range(params.layers)])
        self.relation = nn.Embedding(self.n_relations, params.relation_dim) if typed else None

    bipartite_last = True

    def edge_inputs(self, edges: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.relation is None:
            return {}
        types = self.edge_type if edges is None else self.edge_type.index_select(0, edges)
        return {"edge_attr": self.relation.weight.index_select(0, types)}


def _build(cls: type[PygEncoder]):
    def build(params: PygParams, ctx: EncoderContext) -> PygEncoder:
        graph = ctx.graph
        if graph.node_offsets.get("user") != 0 or graph.node_offsets.get("item") != graph.n_users:
            raise ValueError(f"{cls.__name__} needs a graph with user nodes first, then item nodes")
        if cls is not GCNEncoder:
            refuse_edge_weights(graph, cls.__name__.removesuffix("Encoder").lower())
        return cls(ctx.graph, params)  # type: ignore[call-arg]
    return build


def components() -> list[Component]:
    return [
        Component("encoder", "gcn", _build(GCNEncoder), GCNParams,
                  "graph convolution (torch-geometric GCNConv); learns a weight per relation type",
                  provides=("neighbor_sampling",)),
        Component("encoder", "sage", _build(SAGEEncoder), SAGEParams,
                  "GraphSAGE (torch-geometric SAGEConv) over any builder's graph", aliases=("graphsage",),
                  provides=("neighbor_sampling",)),
        Component("encoder", "gat", _build(GATEncoder), GATParams,
                  "graph attention (torch-geometric GATConv) with relation vectors as edge features",
                  provides=("neighbor_sampling",)),
    ]
