"""Relational graph encoders over a graph with typed facts (``collaborative_kg``, ``attribute_graph``).

- ``kgat`` (Wang et al., KDD 2019): attentive propagation over the collaborative KG,
  pi(h, r, t) = (W_r e_t)^T tanh(W_r e_h + e_r), softmax over each head's edges and refreshed once
  per epoch; bi-interaction aggregator; every layer's L2-normalised output concatenated. Train it
  with the ``transr`` objective, which shares the encoder's relation vectors and W_r.
- ``kgin`` (Wang et al., WWW 2021): user intents as attentive mixtures of relation vectors; items
  aggregate relational paths (e_r * e_t, mean over their facts); users aggregate their items
  modulated by their intent mixture; hop outputs normalised and summed; an independence
  regulariser keeps the intents apart.

Both keep every node's layer-0 vector in one table (users, items, entities, attribute values) and
multiply sparse matrices of fixed pattern: nothing is ever ``entities x entities`` dense.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from kgflow.plugin import (Component, DataError, Embeddings, EncoderContext, GraphBundle, GraphEncoder,
                           KgEmbeddings)
from kgflow_plugins.encoders.id_based import EmbeddingParams, _embedding
from kgflow_plugins.encoders.sparse import CHUNK, FixedPattern, relational_mean


def _check_graph(graph: GraphBundle, name: str) -> None:
    if graph.edge_type is None or not graph.relation_names:
        raise DataError(f"encoder {name!r} needs a graph with relation types; use graph: "
                        "collaborative_kg or attribute_graph")
    if graph.node_offsets.get("user") != 0 or graph.node_offsets.get("item") != graph.n_users:
        raise DataError(f"encoder {name!r} needs a graph with user nodes first, then item nodes")
    from kgflow_plugins.encoders.message_passing import refuse_edge_weights

    refuse_edge_weights(graph, name)


class NodeTable(GraphEncoder):
    """Shared plumbing: one embedding table over all nodes, user and item slices of it."""

    def _init_nodes(self, graph: GraphBundle, params: EmbeddingParams,
                    groups: str = "per_type") -> None:
        """One table, initialised block by block as if it were several (xavier's scale depends on
        a table's size): ``per_type``, a block per node type; ``users_and_rest``, the users and
        everything else, as KGAT's separate user and entity tables (thousands of KG entities then
        shrink the items' initial vectors, never the users')."""
        self.n_users, self.n_items = graph.n_users, graph.n_items
        self.item_offset = graph.node_offsets["item"]
        self.node = nn.Embedding(graph.num_nodes, params.dim)
        blocks = [(start, graph.node_counts[kind]) for kind, start in graph.node_offsets.items()]
        if groups == "users_and_rest":  # RecBole's two tables
            blocks = [(0, self.n_users), (self.n_users, graph.num_nodes - self.n_users)]
        with torch.no_grad():
            for start, count in blocks:
                if count:
                    self.node.weight[start:start + count] = _embedding(count, params).weight

    def _split(self, x: torch.Tensor) -> Embeddings:
        return Embeddings(x[:self.n_users], x[self.item_offset:self.item_offset + self.n_items])

    def _layer0(self, user0: torch.Tensor | None = None, item0: torch.Tensor | None = None) -> torch.Tensor:
        x = self.node.weight
        if user0 is None:
            return x
        return torch.cat([user0, item0, x[self.item_offset + self.n_items:]])

    def input_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.node.weight
        return x[:self.n_users], x[self.item_offset:self.item_offset + self.n_items]

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> list[torch.Tensor]:
        return [self.node.weight.index_select(0, users),
                self.node.weight.index_select(0, items + self.item_offset)]


# -- KGAT --------------------------------------------------------------------------------------

class KGATParams(EmbeddingParams):
    layers: list[int] = Field(default_factory=lambda: [64], min_length=1,
                              description="output size of each propagation layer (RecBole: [64]; "
                              "the paper: [64, 32, 16])")
    relation_dim: int = Field(64, ge=1, description="size of relation vectors and of W_r's output")
    aggregator: Literal["bi", "gcn", "graphsage"] = Field(
        "bi", description="bi: bi-interaction (the paper's); gcn; graphsage")
    message_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on each layer's output")
    attention: bool = Field(True, description="false keeps the initial 1/|N_r(h)| weights (ablation)")
    init_groups: Literal["per_type", "users_and_rest"] = Field(
        "users_and_rest", description="users_and_rest: initialise users and all other nodes as two "
        "tables, as the paper's code and RecBole do (xavier's scale then follows the whole entity "
        "table: on a large KG items start much smaller than users); "
        "per_type: each node type as its own table")
    kg_direction: Literal["both", "stated"] = Field(
        "stated", description="stated: KG facts propagate only from tail to head as stated (a head "
        "hears its facts' tails; RecBole's KGAT graph); both: also from head to tail. "
        "Interactions always propagate both ways")


class _Aggregator(nn.Module):
    def __init__(self, kind: str, d_in: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.kind = kind
        if kind == "bi":
            self.w1, self.w2 = nn.Linear(d_in, d_out), nn.Linear(d_in, d_out)
        else:
            self.w1 = nn.Linear(2 * d_in if kind == "graphsage" else d_in, d_out)
        self.dropout = nn.Dropout(dropout)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, ego: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        if self.kind == "bi":
            out = F.leaky_relu(self.w1(ego + side)) + F.leaky_relu(self.w2(ego * side))
        elif self.kind == "gcn":
            out = F.leaky_relu(self.w1(ego + side))
        else:
            out = F.leaky_relu(self.w1(torch.cat([ego, side], dim=1)))
        return self.dropout(out)


class KGAT(NodeTable):
    def __init__(self, graph: GraphBundle, params: KGATParams) -> None:
        super().__init__()
        self._init_nodes(graph, params, params.init_groups)
        n_rel, d, k = len(graph.relation_names), params.dim, params.relation_dim
        self.relation = nn.Embedding(n_rel, k)
        self.projection = nn.Parameter(torch.empty(n_rel, d * k))
        nn.init.xavier_normal_(self.relation.weight)
        nn.init.xavier_normal_(self.projection)
        self.dims = (d, k)
        self.use_attention = params.attention
        keep = torch.ones(graph.edge_index.shape[1], dtype=torch.bool)
        if params.kg_direction == "stated" and graph.edge_forward is not None:
            keep = ~graph.knowledge_edges() | graph.edge_forward
        self.register_buffer("kept_edges", torch.nonzero(keep).flatten(), persistent=False)
        self.edge_count = len(keep)
        row, col = graph.edge_index[:, keep]
        self.adj = FixedPattern(row, col, graph.num_nodes, graph.num_nodes)
        rel = graph.edge_type[keep][self.adj.order]
        self.register_buffer("edge_relation", rel, persistent=False)
        by_relation = torch.argsort(rel, stable=True)
        self.register_buffer("by_relation", by_relation, persistent=False)
        self.relation_bounds = [0] + torch.bincount(rel, minlength=n_rel).cumsum(0).tolist()
        # Before the first refresh: 1/|N_r(h)| per edge, as the paper's (and RecBole's) start.
        key = self.adj.row * n_rel + rel
        _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
        self.register_buffer("attention", 1.0 / counts[inverse].float())  # saved with checkpoints
        # The last layer is only needed for users and items, the graph's first rows: their edges
        # are a prefix of the CSR order, so the last layer multiplies just that block.
        self.targets = self.n_users + self.n_items
        prefix = int(self.adj.crow[self.targets])
        self.adj_targets = FixedPattern(self.adj.row[:prefix], self.adj.col[:prefix], self.targets,
                                        graph.num_nodes)
        self.target_edges = prefix
        # the CSR position of each propagated edge, by its position in the graph (sampled training)
        position = torch.full((self.edge_count,), -1, dtype=torch.long)
        position[self.kept_edges[self.adj.order]] = torch.arange(len(self.adj))
        self.register_buffer("csr_position", position, persistent=False)
        dropped, partner = self._reverse_partners(graph.edge_index, keep)
        self.register_buffer("dropped_edges", dropped, persistent=False)
        self.register_buffer("dropped_partner", partner, persistent=False)
        dims = [d] + list(params.layers)
        self.aggregators = nn.ModuleList(_Aggregator(params.aggregator, a, b, params.message_dropout)
                                         for a, b in zip(dims[:-1], dims[1:]))

    def propagate_all(self, x: torch.Tensor) -> torch.Tensor:
        """Rows ``0..n_users+n_items-1`` of the concatenated layer outputs."""
        t = self.targets
        outputs = [x[:t]]
        for i, aggregator in enumerate(self.aggregators):
            if i == len(self.aggregators) - 1:
                x = aggregator(x[:t], self.adj_targets.matmul(self.attention[:self.target_edges], x))
            else:
                x = aggregator(x, self.adj.matmul(self.attention, x))
            outputs.append(F.normalize(x[:t], p=2, dim=1))
        return torch.cat(outputs, dim=1)

    def forward(self) -> Embeddings:
        return self._split(self.propagate_all(self._layer0()))

    def propagate(self, user0: torch.Tensor, item0: torch.Tensor) -> Embeddings:
        return self._split(self.propagate_all(self._layer0(user0, item0)))

    def kg_embeddings(self) -> KgEmbeddings:
        d, k = self.dims
        return KgEmbeddings(self.node.weight, self.relation.weight,
                            self.projection.view(-1, d, k))

    def edge_scores(self) -> torch.Tensor:
        """pi(h, r, t) before the softmax, for every edge in CSR order, one relation at a time."""
        d, k = self.dims
        x = self.node.weight
        scores = torch.empty(len(self.adj), dtype=x.dtype, device=x.device)
        projections = self.projection.view(-1, d, k)
        for r in range(len(self.relation_bounds) - 1):
            lo, hi = self.relation_bounds[r], self.relation_bounds[r + 1]
            if lo == hi:
                continue
            for start in range(lo, hi, CHUNK):  # bounded temporaries on large relations
                edges = self.by_relation[start:min(start + CHUNK, hi)]
                head = x.index_select(0, self.adj.row[edges]) @ projections[r]
                tail = x.index_select(0, self.adj.col[edges]) @ projections[r]
                scores[edges] = (tail * torch.tanh(head + self.relation.weight[r])).sum(-1)
        return scores

    def _reverse_partners(self, edge_index: torch.Tensor,
                          keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges not propagated (the reverses of facts under ``kg_direction: stated``) and the CSR
        position of their propagated reverse, so that explanations can weigh them by their fact's
        attention: how much the fact's head attends to the entity."""
        dropped = torch.nonzero(~keep).flatten()
        if not len(dropped) or not len(self.adj):
            return dropped[:0], dropped[:0]
        n = self.node.num_embeddings
        kept = self.adj.row * n + self.adj.col
        order = torch.argsort(kept)
        head, tail = edge_index[:, dropped]
        want = tail * n + head
        at = torch.searchsorted(kept[order], want).clamp(max=len(kept) - 1)
        found = kept[order][at] == want
        return dropped[found], order[at[found]]

    def message_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """KGAT's propagated edges: the tail (column) sends, the head (row) receives."""
        return torch.stack([self.adj.col, self.adj.row]), self.kept_edges[self.adj.order]

    def forward_sampled(self, nodes: torch.Tensor, edge_index: torch.Tensor,
                        edge_id: torch.Tensor) -> torch.Tensor:
        """KGAT's layers on a sampled subgraph: each head attends over its sampled facts only
        (the epoch's attention renormalised over them), then the same aggregators."""
        send, receive = edge_index[0], edge_index[1]
        attention = self.attention.index_select(0, self.csr_position.index_select(0, edge_id))
        sampled = torch.zeros(len(nodes), dtype=attention.dtype, device=attention.device)
        sampled = sampled.index_add(0, receive, attention)
        # scaled so that each head's sampled facts carry the attention mass of all its facts:
        # with every neighbour kept, this is KGAT's full propagation
        mass = self._attention_mass().index_select(0, nodes)
        attention = (attention * (mass / sampled.clamp(min=1e-12)).index_select(0, receive)).unsqueeze(1)
        x = self.node.weight.index_select(0, nodes)
        outputs = [x]
        for aggregator in self.aggregators:
            side = torch.zeros_like(x).index_add(0, receive, x.index_select(0, send) * attention)
            x = aggregator(x, side)
            outputs.append(F.normalize(x, p=2, dim=1))
        return torch.cat(outputs, dim=1)

    def _attention_mass(self) -> torch.Tensor:
        """Each node's total attention over its propagated edges, recomputed when the attention
        changes (a refresh, or a checkpoint loaded into it)."""
        key = (self.attention.data_ptr(), self.attention._version)
        if getattr(self, "_mass_key", None) != key:
            mass = torch.zeros(self.node.num_embeddings, dtype=self.attention.dtype,
                               device=self.attention.device)
            self._mass = mass.index_add(0, self.adj.row, self.attention)
            self._mass_key = key
        return self._mass

    def edge_weights(self) -> torch.Tensor:
        """The attention of every edge, in the graph's edge order (for explanations)."""
        weights = torch.zeros(self.edge_count, dtype=self.attention.dtype, device=self.attention.device)
        weights[self.kept_edges[self.adj.order]] = self.attention
        weights[self.dropped_edges] = self.attention[self.dropped_partner]
        return weights

    def after_train_epoch(self) -> None:
        if self.use_attention:
            self.attention.copy_(self.adj.row_softmax(self.edge_scores()))


def build_kgat(params: KGATParams, ctx: EncoderContext) -> KGAT:
    _check_graph(ctx.graph, "kgat")
    return KGAT(ctx.graph, params)


# -- KGIN --------------------------------------------------------------------------------------

class KGINParams(EmbeddingParams):
    hops: int = Field(2, ge=1, description="relational path length (context hops)")
    intents: int = Field(4, ge=1, description="number of latent user intents")
    independence: Literal["cosine", "distance", "mi", "none"] = Field(
        "cosine", description="intent independence regulariser (RecBole default: cosine)")
    independence_weight: float = Field(1e-4, ge=0, description="weight of the independence loss")
    temperature: float = Field(0.2, gt=0, description="temperature of the 'mi' regulariser")
    edge_dropout: float = Field(0.5, ge=0, lt=1, description="share of KG edges dropped per "
                                "training forward pass (the paper's node dropout)")
    message_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on each hop's output")
    init: Literal["xavier_normal", "xavier_uniform", "normal"] = Field(
        "xavier_uniform", description="initialisation of the node embeddings (KGIN's: xavier_uniform)")


def independence_loss(weights: torch.Tensor, kind: str, temperature: float) -> torch.Tensor:
    """How dependent the intents' relation mixtures (rows of ``weights``) are; 0 when independent."""
    n = weights.shape[0]
    if kind == "mi":
        unit = F.normalize(weights, dim=1)
        scores = torch.exp(unit @ unit.T / temperature)
        return -torch.log(scores.diag() / scores.sum(1)).sum()
    total = weights.new_zeros(())
    for i in range(n):
        for j in range(i + 1, n):
            if kind == "cosine":
                total = total + (F.normalize(weights[i], dim=0) * F.normalize(weights[j], dim=0)).sum() ** 2
            else:
                total = total + _distance_correlation(weights[i], weights[j])
    return total


def _distance_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    def centred(v: torch.Tensor) -> torch.Tensor:
        dist = torch.sqrt(torch.clamp((v[:, None] - v[None, :]) ** 2, min=0) + 1e-8)
        return dist - dist.mean(0, keepdim=True) - dist.mean(1, keepdim=True) + dist.mean()

    A, B = centred(a), centred(b)
    n2 = a.numel() ** 2
    cov = torch.sqrt(torch.clamp((A * B).sum() / n2, min=0) + 1e-8)
    var_a = torch.sqrt(torch.clamp((A * A).sum() / n2, min=0) + 1e-8)
    var_b = torch.sqrt(torch.clamp((B * B).sum() / n2, min=0) + 1e-8)
    return cov / torch.sqrt(var_a * var_b + 1e-8)


class KGIN(NodeTable):
    def __init__(self, graph: GraphBundle, params: KGINParams) -> None:
        super().__init__()
        self._init_nodes(graph, params)
        self.params = params
        n_rel, d = len(graph.relation_names), params.dim
        self.relation = nn.Embedding(n_rel, d)
        self.intent = nn.Embedding(params.intents, d)
        self.intent_relation = nn.Parameter(torch.empty(params.intents, n_rel))
        for w in (self.relation.weight, self.intent.weight, self.intent_relation):
            nn.init.xavier_uniform_(w)
        users, n_entities = self.n_users, graph.num_nodes - self.n_users
        knowledge = graph.knowledge_edges()
        head, tail = graph.edge_index[:, knowledge] - users
        self.register_buffer("kg_head", head, persistent=False)
        self.register_buffer("kg_tail", tail, persistent=False)
        self.register_buffer("kg_relation", graph.edge_type[knowledge], persistent=False)
        self.n_entities = n_entities
        # user -> item interactions, each user's row averaged (1/|N(u)|)
        src, dst = graph.edge_index
        interact = (~knowledge) & (src < users) & (dst >= users)
        u, i = src[interact], dst[interact] - users
        self.user_items = FixedPattern(u, i, users, n_entities)
        degree = torch.bincount(self.user_items.row, minlength=users).clamp(min=1).float()
        self.register_buffer("user_item_weight", 1.0 / degree[self.user_items.row], persistent=False)
        self.message_dropout = nn.Dropout(params.message_dropout)
        self._independence: torch.Tensor | None = None
        # for sampled-subgraph training: which graph edges carry messages, and of what kind
        self.register_buffer("edge_relation", graph.edge_type, persistent=False)
        self.register_buffer("knowledge_edge", knowledge, persistent=False)
        self.register_buffer("interact_edge", interact, persistent=False)
        self.register_buffer("interact_user", u, persistent=False)
        self.register_buffer("interact_item", i, persistent=False)

    def _hops(self, x: torch.Tensor) -> torch.Tensor:
        users = self.n_users
        user, entity = x[:users], x[users:]
        head, tail, rel = self.kg_head, self.kg_tail, self.kg_relation
        if self.training and self.params.edge_dropout > 0 and len(head):
            keep = torch.rand(len(head), device=head.device) >= self.params.edge_dropout
            head, tail, rel = head[keep], tail[keep], rel[keep]
        relation = self.relation.weight
        intent_mix = torch.softmax(self.intent_relation, dim=-1) @ relation  # [intents, d]
        user_sum, entity_sum = user, entity
        for hop in range(self.params.hops):
            n_out = self.n_entities
            if hop == self.params.hops - 1:  # the last hop is only needed for items (entity rows 0..)
                on_items = head < self.n_items
                head, tail, rel = head[on_items], tail[on_items], rel[on_items]
                entity_sum, n_out = entity_sum[:self.n_items], self.n_items
            entity_next = relational_mean(entity, relation, head, tail, rel, n_out)
            belief = torch.softmax(user @ self.intent.weight.T, dim=1)  # [users, intents]
            user_next = self.user_items.matmul(self.user_item_weight, entity)
            user_next = (belief @ intent_mix) * user_next + user_next
            entity = F.normalize(self.message_dropout(entity_next), dim=1)
            user = F.normalize(self.message_dropout(user_next), dim=1)
            entity_sum = entity_sum + entity
            user_sum = user_sum + user
        if self.training and self.params.independence != "none":
            self._independence = independence_loss(self.intent_relation, self.params.independence,
                                                   self.params.temperature)
        return torch.cat([user_sum, entity_sum])

    def forward(self) -> Embeddings:
        return self._split(self._hops(self._layer0()))

    def propagate(self, user0: torch.Tensor, item0: torch.Tensor) -> Embeddings:
        return self._split(self._hops(self._layer0(user0, item0)))

    def kg_embeddings(self) -> KgEmbeddings:
        return KgEmbeddings(self.node.weight, self.relation.weight, None)

    def message_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """KG facts (tail sends to head) and interactions (the item sends to its user)."""
        edge_id = torch.cat([torch.nonzero(self.knowledge_edge).flatten(),
                             torch.nonzero(self.interact_edge).flatten()])
        users = self.n_users
        facts = torch.stack([self.kg_tail + users, self.kg_head + users])
        clicks = torch.stack([self.interact_item + users, self.interact_user])
        return torch.cat([facts, clicks], dim=1), edge_id

    def forward_sampled(self, nodes: torch.Tensor, edge_index: torch.Tensor,
                        edge_id: torch.Tensor) -> torch.Tensor:
        """KGIN's hops on a sampled subgraph: each entity averages its sampled facts
        (relation * tail), each user its sampled items, modulated by its intents; with every
        neighbour kept this is KGIN's propagation."""
        send, receive = edge_index[0], edge_index[1]
        fact = self.knowledge_edge.index_select(0, edge_id)
        if self.training and self.params.edge_dropout > 0:
            fact_kept = torch.rand(len(fact), device=fact.device) >= self.params.edge_dropout
            keep = ~fact | fact_kept
            send, receive, edge_id, fact = send[keep], receive[keep], edge_id[keep], fact[keep]
        f_send, f_receive = send[fact], receive[fact]
        f_relation = self.edge_relation.index_select(0, edge_id[fact])
        i_send, i_receive = send[~fact], receive[~fact]
        n = len(nodes)
        f_count = torch.bincount(f_receive, minlength=n).clamp(min=1).unsqueeze(1)
        i_count = torch.bincount(i_receive, minlength=n).clamp(min=1).unsqueeze(1)
        is_user = (nodes < self.n_users).unsqueeze(1)
        relation = self.relation.weight
        intent_mix = torch.softmax(self.intent_relation, dim=-1) @ relation
        x = self.node.weight.index_select(0, nodes)
        total = x
        for _ in range(self.params.hops):
            message = x.index_select(0, f_send) * relation.index_select(0, f_relation)
            entity_next = torch.zeros_like(x).index_add(0, f_receive, message) / f_count
            user_next = torch.zeros_like(x).index_add(0, i_receive, x.index_select(0, i_send)) / i_count
            belief = torch.softmax(x @ self.intent.weight.T, dim=1)
            user_next = (belief @ intent_mix) * user_next + user_next
            x = torch.where(is_user, F.normalize(self.message_dropout(user_next), dim=1),
                            F.normalize(self.message_dropout(entity_next), dim=1))
            total = total + x
        if self.training and self.params.independence != "none":
            self._independence = independence_loss(self.intent_relation, self.params.independence,
                                                   self.params.temperature)
        return total

    def extra_loss(self) -> torch.Tensor | None:
        """The intent independence loss of the last training forward pass, weighted."""
        loss, self._independence = self._independence, None
        return None if loss is None else self.params.independence_weight * loss


def build_kgin(params: KGINParams, ctx: EncoderContext) -> KGIN:
    _check_graph(ctx.graph, "kgin")
    return KGIN(ctx.graph, params)


def components() -> list[Component]:
    return [
        Component("encoder", "kgat", build_kgat, KGATParams,
                  "KGAT: attentive relational propagation, bi-interaction, concatenated layers "
                  "(train with objective.auxiliary: transr)", requires=("relations",),
                  provides=("neighbor_sampling",)),
        Component("encoder", "kgin", build_kgin, KGINParams,
                  "KGIN: intent-aware relational paths with an intent independence regulariser",
                  requires=("relations",), provides=("neighbor_sampling",)),
    ]
