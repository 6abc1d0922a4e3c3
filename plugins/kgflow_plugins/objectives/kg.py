"""Auxiliary KG embedding objectives: ``transe`` and ``transr``.

Both score a fact (h, r, t) by the distance ``|| h' + r - t' ||^2`` and push a true fact's
distance below that of a corrupted one (same head and relation, a random tail that makes no true
fact): ``softplus(d_true - d_corrupt)``, as KGAT trains its knowledge part. TransE uses the
node vectors as they are (h' = h); TransR first projects them into the relation's space
(h' = h W_r). The vectors are the encoder's own layer-0 table (:meth:`GraphEncoder.kg_embeddings`);
relation vectors and projections are the encoder's when it has them (KGAT's attention uses the
same W_r), otherwise the objective owns them.
"""
from __future__ import annotations

import warnings
from typing import Iterator, Literal, Optional

import torch
from pydantic import Field
from torch import nn

from kgflow.plugin import (AuxiliaryObjective, Component, GraphBundle, GraphEncoder, KgEmbeddings,
                           KgflowError, ObjectiveContext, Params, in_sorted)


class KgObjectiveParams(Params):
    schedule: Literal["alternate", "joint"] = Field(
        "alternate", description="alternate: a pass over the facts after each epoch's ranking "
        "batches (KGAT); joint: each ranking batch adds weight x the loss of a random fact batch")
    weight: float = Field(1.0, gt=0, description="multiplies this loss")
    batch_size: Optional[int] = Field(None, ge=1, description="facts per batch (default: train.batch_size)")
    facts: Literal["knowledge", "all"] = Field(
        "knowledge", description="knowledge: KG/attribute facts as stated (head -> tail), as RecBole's "
        "KGAT; all: every edge of the graph, reverses and interactions included (KGAT's code)")
    l2: float = Field(1e-5, ge=0, description="L2 weight on the projected vectors of a batch")
    relation_dim: Optional[int] = Field(None, ge=1, description="size of relation vectors when the "
                                        "encoder has none (default: the node size)")
    corrupt: Literal["entities", "same_type"] = Field(
        "entities", description="where a corrupted fact's tail comes from: entities: any node but "
        "the users (items included), never one that makes a true fact (KGAT's code, RecBole); "
        "same_type: any node of the true tail's type")


class KgObjective(AuxiliaryObjective):
    def __init__(self, params: KgObjectiveParams, ctx: ObjectiveContext, project: bool) -> None:
        super().__init__()
        self.schedule, self.weight = params.schedule, params.weight
        self.l2 = params.l2
        self.batch_size = params.batch_size or ctx.batch_size
        encoders = [m for m in ctx.model.modules() if isinstance(m, GraphEncoder)
                    and type(m).kg_embeddings is not GraphEncoder.kg_embeddings]
        if not encoders:
            raise KgflowError("objective.auxiliary: a KG objective needs a graph encoder with node "
                              "embeddings over the whole graph (kgat, kgin, gcn, sage, gat)")
        self.encoder = encoders[0]
        graph = ctx.graph
        if params.facts == "knowledge":
            keep = graph.knowledge_edges() & graph.edge_forward
        else:
            keep = torch.ones(graph.edge_index.shape[1], dtype=torch.bool)
        if not bool(keep.any()):  # e.g. kg_control: remove -- the control run keeps its pipeline
            warnings.warn("objective.auxiliary: the graph has no KG facts; the KG objective does "
                          "nothing in this run (graph.params.kg_control: remove?)", stacklevel=2)
        self.register_buffer("head", graph.edge_index[0, keep], persistent=False)
        self.register_buffer("tail", graph.edge_index[1, keep], persistent=False)
        self.register_buffer("rel", graph.edge_type[keep], persistent=False)
        self.corrupt = params.corrupt
        self._init_corruption(graph)
        own = self.encoder.kg_embeddings()
        n_rel, d = len(graph.relation_names), own.nodes.shape[1]
        k = own.relations.shape[1] if own.relations is not None else (params.relation_dim or d)
        self.own_relations = None if own.relations is not None else nn.Parameter(
            nn.init.xavier_normal_(torch.empty(n_rel, k)))
        self.project = project
        self.own_projections = None
        if project and own.projections is None:
            self.own_projections = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_rel, d * k)))
            self.dims = (d, k)
        if not project and own.relations is not None and k != d:
            raise KgflowError(f"transe needs relation vectors of the node size {d}, the encoder's "
                              f"are {k}; use transr")

    def num_batches(self) -> int:
        return (len(self.head) + self.batch_size - 1) // self.batch_size

    def _init_corruption(self, graph: GraphBundle) -> None:
        if self.corrupt == "same_type":
            starts = torch.tensor(list(graph.node_offsets.values()))
            counts = torch.tensor([graph.node_counts[t] for t in graph.node_offsets])
            kind = torch.bucketize(self.tail, starts, right=True) - 1
            self.register_buffer("tail_start", starts[kind], persistent=False)
            self.register_buffer("tail_count", counts[kind], persistent=False)
            return
        # Candidate tails: every node but the users, unless the facts themselves end at users
        # (facts: all includes item -> user edges).
        n_users = graph.node_counts.get("user", 0)
        user_start = graph.node_offsets.get("user", 0)
        is_user = (self.tail >= user_start) & (self.tail < user_start + n_users)
        nodes = torch.arange(graph.num_nodes)
        if n_users and not bool(is_user.any()):
            nodes = nodes[(nodes < user_start) | (nodes >= user_start + n_users)]
        self.register_buffer("candidates", nodes, persistent=False)
        # True facts as sorted integer keys, so that a corrupted fact is checked by binary search.
        self.n_nodes, self.n_relations = graph.num_nodes, len(graph.relation_names)
        self.register_buffer("true_facts", torch.unique(self._fact_key(self.head, self.rel, self.tail)),
                             persistent=False)

    def _fact_key(self, head: torch.Tensor, rel: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        return (head * self.n_relations + rel) * self.n_nodes + tail

    def _is_true_fact(self, head: torch.Tensor, rel: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        return in_sorted(self.true_facts, self._fact_key(head, rel, tail))

    def _draw(self, size: int, generator: torch.Generator | None) -> torch.Tensor:
        draw = torch.rand(size, generator=generator).to(self.candidates.device)
        n = len(self.candidates)
        return self.candidates[torch.clamp((draw * n).long(), max=n - 1)]

    def _corrupt(self, index: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.corrupt == "same_type":
            draw = torch.rand(len(index), generator=generator).to(self.tail_count.device)
            count = self.tail_count[index]
            return self.tail_start[index] + torch.minimum((draw * count).long(), count - 1)
        head, rel = self.head[index], self.rel[index]
        tails = self._draw(len(index), generator)
        # Redraw the few that landed on a true fact; a bounded number of rounds, so that a head
        # whose facts cover nearly every node cannot stall training.
        for _ in range(20):
            hit = torch.nonzero(self._is_true_fact(head, rel, tails)).flatten()
            if not len(hit):
                break
            tails[hit] = self._draw(len(hit), generator)
        return tails

    def _batch(self, index: torch.Tensor, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        return {"head": self.head[index], "rel": self.rel[index], "tail": self.tail[index],
                "neg": self._corrupt(index, generator)}

    def batches(self, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        if not len(self.head):
            return
        order = torch.randperm(len(self.head), generator=generator).to(self.head.device)
        for start in range(0, len(order), self.batch_size):
            yield self._batch(order[start:start + self.batch_size], generator)

    def sample(self, size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        if not len(self.head):
            return {}
        index = torch.randint(len(self.head), (size,), generator=generator).to(self.head.device)
        return self._batch(index, generator)

    def _tables(self) -> KgEmbeddings:
        own = self.encoder.kg_embeddings()
        relations = own.relations if own.relations is not None else self.own_relations
        projections = own.projections
        if self.project and projections is None:
            projections = self.own_projections.view(-1, *self.dims)
        return KgEmbeddings(own.nodes, relations, projections if self.project else None)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if not len(self.head):
            return self.head.new_zeros((), dtype=torch.float32)
        tables = self._tables()
        nodes = tables.nodes
        h = nodes.index_select(0, batch["head"])
        t = nodes.index_select(0, batch["tail"])
        n = nodes.index_select(0, batch["neg"])
        rel = batch["rel"]
        if tables.projections is not None:
            # one matrix product per relation over that relation's rows (a per-row gather of W_r
            # and a batched product would move B x d x k floats)
            order = torch.argsort(rel)
            counts = torch.bincount(rel, minlength=tables.projections.shape[0]).tolist()
            rows = torch.stack([h, t, n], dim=1).index_select(0, order).split(counts)
            projected = torch.cat([part @ tables.projections[r] for r, part in enumerate(rows) if len(part)])
            h, t, n = projected.unbind(1)
            rel = rel.index_select(0, order)
        r = tables.relations.index_select(0, rel)
        true = (h + r - t).pow(2).sum(-1)
        false = (h + r - n).pow(2).sum(-1)
        loss = nn.functional.softplus(true - false).mean()
        if self.l2 > 0:
            loss = loss + self.l2 * 0.5 * sum(v.pow(2).sum() for v in (h, r, t, n)) / len(h)
        return loss


def build_transe(params: KgObjectiveParams, ctx: ObjectiveContext) -> KgObjective:
    return KgObjective(params, ctx, project=False)


def build_transr(params: KgObjectiveParams, ctx: ObjectiveContext) -> KgObjective:
    return KgObjective(params, ctx, project=True)


def components() -> list[Component]:
    return [
        Component("objective", "transe", build_transe, KgObjectiveParams,
                  "TransE on the graph's facts: ||h + r - t||^2, true below corrupted",
                  requires=("relations",)),
        Component("objective", "transr", build_transr, KgObjectiveParams,
                  "TransR on the graph's facts: ||h W_r + r - t W_r||^2 (KGAT's knowledge loss)",
                  requires=("relations",)),
    ]
