"""ID-based graph encoders: ``mf`` (no graph) and ``lightgcn``."""
from __future__ import annotations

import warnings
from typing import Callable, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from kgflow.plugin import (Component, Embeddings, EncoderContext, GraphBundle, GraphEncoder, Params)


class EmbeddingParams(Params):
    dim: int = Field(64, ge=1, description="embedding size")
    init: Literal["xavier_normal", "xavier_uniform", "normal"] = Field(
        "xavier_normal", description="initialisation of the ID embeddings")
    init_std: float = Field(0.1, gt=0, description="standard deviation for init: normal")


class MFParams(EmbeddingParams):
    #: no propagation layers: sampled training takes ``fanouts: []`` (the batch's own rows)
    layers: ClassVar[int] = 0


def _embedding(n: int, params: EmbeddingParams) -> nn.Embedding:
    emb = nn.Embedding(n, params.dim)
    if params.init == "normal":
        nn.init.normal_(emb.weight, std=params.init_std)
    elif params.init == "xavier_uniform":
        nn.init.xavier_uniform_(emb.weight)
    else:
        nn.init.xavier_normal_(emb.weight)
    return emb


class MF(GraphEncoder):
    """Matrix factorisation: a user and an item embedding table, scored by dot product (BPR-MF).

    With ``train.sampling: {method: neighbor, fanouts: []}`` a training step reads only its
    batch's rows (no hops: MF has no layers), which with ``optimizer: sparse_adam`` makes a step's
    cost follow the batch rather than the tables."""

    def __init__(self, n_users: int, n_items: int, params: EmbeddingParams, item_offset: int | None = None) -> None:
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        #: where items start among the node ids a sampled batch names (users start at 0)
        self.item_offset = n_users if item_offset is None else item_offset
        self.user = _embedding(n_users, params)
        self.item = _embedding(n_items, params)

    def forward(self) -> Embeddings:
        return Embeddings(self.user.weight, self.item.weight)

    def propagate(self, user0: torch.Tensor, item0: torch.Tensor) -> Embeddings:
        return Embeddings(user0, item0)

    def input_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> list[torch.Tensor]:
        # module calls, not weight indexing: they give sparse gradients under sparse_adam
        return [self.user(users), self.item(items)]

    def forward_sampled(self, nodes: torch.Tensor, edge_index: torch.Tensor,
                        edge_id: torch.Tensor) -> torch.Tensor:
        """The rows of ``nodes`` (users below ``item_offset``, items from it); edges are unused."""
        return _lookup_rows(nodes, [(0, self.n_users, self.user), (self.item_offset, self.n_items, self.item)])


def _lookup_rows(nodes: torch.Tensor, tables: list[tuple[int, int, nn.Embedding]]) -> torch.Tensor:
    """Vectors of global node ids drawn from several tables, each given as (first id, count,
    table). Rows are read by calling the table, so that a sparse table yields a sparse gradient."""
    first = tables[0][2]
    x = first.weight.new_zeros(len(nodes), first.embedding_dim)
    for start, count, table in tables:
        at = torch.nonzero((nodes >= start) & (nodes < start + count)).flatten()
        x = x.index_put((at,), table(nodes[at] - start))
    return x


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ X`` for a symmetric sparse ``A``: the gradient is ``A @ G``, so CSR works both ways."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, ctx.adj @ grad


def weighted_degree(graph: GraphBundle) -> torch.Tensor:
    """Each node's degree: its number of edges, or the sum of their weights on a weighted graph."""
    row = graph.edge_index[0]
    if graph.edge_weight is None:
        return torch.bincount(row, minlength=graph.num_nodes).float()
    return torch.zeros(graph.num_nodes).index_add(0, row, graph.edge_weight.float())


def normalized_adjacency(graph: GraphBundle) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the graph as a CSR tensor (symmetric: every edge is listed both ways).
    On a weighted graph ``A`` holds the edge weights and ``D`` their sums (a weighted GCN)."""
    row, col = graph.edge_index
    n = graph.num_nodes
    inv_sqrt = weighted_degree(graph).pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0.0
    values = inv_sqrt[row] * inv_sqrt[col]
    if graph.edge_weight is not None:
        values = values * graph.edge_weight.float()
    adj = torch.sparse_coo_tensor(torch.stack([row, col]), values, (n, n),
                                  check_invariants=True).coalesce()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only its matmul
        warnings.simplefilter("ignore", UserWarning)
        return adj.to_sparse_csr()


class LightGCNParams(EmbeddingParams):
    layers: int = Field(3, ge=0, description="propagation layers K; the output is the mean of layers 0..K")


class LightGCN(GraphEncoder):
    """LightGCN (He et al., SIGIR 2020): ``E(k+1) = D^-1/2 A D^-1/2 E(k)``, no weights, no
    nonlinearity; the final embedding is the mean of layers 0..K. L2 applies to layer 0."""

    def __init__(self, graph: GraphBundle, params: LightGCNParams) -> None:
        super().__init__()
        self.n_users, self.n_items = graph.n_users, graph.n_items
        self.user_offset = graph.node_offsets["user"]
        self.item_offset = graph.node_offsets["item"]
        self.layers = params.layers
        self.user = _embedding(self.n_users, params)
        self.item = _embedding(self.n_items, params)
        extra = graph.num_nodes - self.n_users - self.n_items
        self.other = _embedding(extra, params) if extra > 0 else None
        self.register_buffer("adj", normalized_adjacency(graph), persistent=False)
        # full-graph degrees, for sampled-subgraph training's edge weights: edge counts (for the
        # sampling correction) and, on a weighted graph, weight sums (for the normalisation)
        self.register_buffer("degree", torch.bincount(graph.edge_index[0], minlength=graph.num_nodes).float(),
                             persistent=False)
        self.register_buffer("norm_degree", weighted_degree(graph), persistent=False)
        self.register_buffer("edge_weight", graph.edge_weight, persistent=False)

    def forward(self) -> Embeddings:
        return self.propagate(self.user.weight, self.item.weight)

    def _rows(self, nodes: torch.Tensor) -> torch.Tensor:
        """Layer-0 vectors of global node ids, from the user, item and other tables."""
        tables = [(self.user_offset, self.n_users, self.user), (self.item_offset, self.n_items, self.item)]
        if self.other is not None:
            tables.append((self.n_users + self.n_items, self.other.num_embeddings, self.other))
        return _lookup_rows(nodes, tables)

    def sampled_step(self, nodes: torch.Tensor, edge_index: torch.Tensor,
                     edge_id: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """One propagation layer on a sampled subgraph (local ids, row 0 sends). An edge keeps its
        full-graph weight ``w_uv/sqrt(d_u d_v)``, scaled by ``n_v / sampled_v`` (the receiver's
        edge count over its sampled edges), so each aggregate is an unbiased estimate of the
        full-graph one. ``edge_id`` (the edges' positions in the graph) reads a weighted graph's
        edge weights."""
        src, dst = edge_index[0], edge_index[1]
        count = self.degree.index_select(0, nodes)
        degree = self.norm_degree.index_select(0, nodes)
        sampled = torch.bincount(dst, minlength=len(nodes)).float().clamp(min=1)
        weight = (degree[src] * degree[dst]).rsqrt() * (count[dst] / sampled[dst])
        if self.edge_weight is not None:
            if edge_id is None:
                raise ValueError("a weighted graph's sampled propagation needs the edges' ids")
            weight = weight * self.edge_weight.index_select(0, edge_id)
        weight = weight.unsqueeze(1)
        return lambda x: torch.zeros_like(x).index_add(0, dst, x.index_select(0, src) * weight)

    def forward_sampled(self, nodes: torch.Tensor, edge_index: torch.Tensor,
                        edge_id: torch.Tensor) -> torch.Tensor:
        """LightGCN on a sampled subgraph (see :meth:`sampled_step`)."""
        step = self.sampled_step(nodes, edge_index, edge_id)
        x = self._rows(nodes)
        total = x
        for _ in range(self.layers):
            x = step(x)
            total = total + x
        return total / (self.layers + 1)

    def node_input(self, user0: torch.Tensor, item0: torch.Tensor) -> torch.Tensor:
        """The layer-0 table of every node: the given users and items, then the other nodes."""
        return torch.cat([user0, item0] + ([self.other.weight] if self.other is not None else []))

    def split_nodes(self, out: torch.Tensor) -> Embeddings:
        """The user and item rows of a table of every node."""
        return Embeddings(out[self.user_offset:self.user_offset + self.n_users],
                          out[self.item_offset:self.item_offset + self.n_items])

    def propagate(self, user0: torch.Tensor, item0: torch.Tensor) -> Embeddings:
        x = self.node_input(user0, item0)
        total = x
        for _ in range(self.layers):
            x = _SymmetricSpMM.apply(self.adj, x)
            total = total + x
        return self.split_nodes(total / (self.layers + 1))

    def input_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> list[torch.Tensor]:
        return [self.user(users), self.item(items)]


def build_mf(params: MFParams, ctx: EncoderContext) -> MF:
    graph = ctx.graph
    if graph is not None and graph.node_offsets.get("user") == 0 and "item" in graph.node_offsets:
        return MF(ctx.split.n_users, ctx.split.n_items, params, graph.node_offsets["item"])
    return MF(ctx.split.n_users, ctx.split.n_items, params)


def user_item_graph(name: str, ctx: EncoderContext) -> GraphBundle:
    """The context's graph, if it has user and item nodes with users first (LightGCN's layout)."""
    graph = ctx.graph
    if graph is None or graph.node_offsets.get("user") != 0 or "item" not in graph.node_offsets:
        raise ValueError(f"{name} needs a graph with user and item nodes (users first), e.g. graph: user_item")
    return graph


def build_lightgcn(params: LightGCNParams, ctx: EncoderContext) -> LightGCN:
    return LightGCN(user_item_graph("lightgcn", ctx), params)


def components() -> list[Component]:
    from kgflow_plugins.text.encoding import TextParams, build_text

    return [
        Component("encoder", "text", build_text, TextParams,
                  "frozen language-model embeddings of item (and user) texts from templates"),
        Component("encoder", "mf", build_mf, MFParams,
                  "matrix factorisation (BPR-MF): ID embeddings, no graph", aliases=("bpr-mf",),
                  provides=("neighbor_sampling",)),
        Component("encoder", "lightgcn", build_lightgcn, LightGCNParams,
                  "LightGCN: weightless symmetric-normalised propagation, mean over layers",
                  provides=("neighbor_sampling",)),
    ]
