"""Graph contrastive learning without graph augmentation: ``simgcl`` and ``xsimgcl``.

SimGCL (Yu et al., "Are Graph Augmentations Necessary? Simple Graph Contrastive Learning for
Recommendation", SIGIR 2022) found that what makes graph contrastive learning help
recommendation is not the dropped edges or nodes of earlier methods but the more uniform
embedding distribution the contrastive loss produces. It therefore makes its two views by adding
small random noise to every LightGCN layer's output (``x + eps * sign(x) * unit_random``, the
noise kept in the same orthant as ``x``) and contrasts the two views of each batch user and
item with InfoNCE. The ranking loss runs on the clean propagation, so a step costs three
propagations.

XSimGCL (Yu et al., "XSimGCL: Towards Extremely Simple Graph Contrastive Learning for
Recommendation", TKDE 2023) runs one noisy propagation only: the ranking loss uses its final
output, and the contrastive loss pairs that output with one of its intermediate layers
(``cl_layer``), so a step costs about what LightGCN's does.

Both encoders are LightGCN's graph, tables and normalisation; following the papers' code, the
final embedding is the mean of layers 1..K (layer 0 excluded), and evaluation runs without
noise. Both also work under ``fusion: feature`` (the contrast is then on the fused inputs'
propagation), and train on sampled subgraphs (``train.sampling: neighbor``): the views are then
the noisy propagations of the batch's neighbourhood, contrasted for the batch's users and items.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from kgflow.plugin import Component, EncoderContext, Embeddings, GraphBundle
from kgflow_plugins.encoders.id_based import LightGCN, LightGCNParams, _SymmetricSpMM, user_item_graph

#: one propagation layer over some graph (the full one, or a sampled neighbourhood)
Step = Callable[[torch.Tensor], torch.Tensor]


class SimGCLParams(LightGCNParams):
    layers: int = Field(2, ge=1, description="propagation layers K; the output is the mean of layers 1..K")
    eps: float = Field(0.1, ge=0, description="length of the noise added to each layer's output in the "
                       "contrastive views (the paper's epsilon)")
    cl_weight: float = Field(0.2, ge=0, description="weight of the contrastive loss (the paper's lambda)")
    temperature: float = Field(0.2, gt=0, description="InfoNCE temperature (the paper's tau)")


class XSimGCLParams(SimGCLParams):
    cl_layer: int = Field(1, ge=1, description="the layer whose (noisy) output is contrasted with the "
                          "final embedding (the paper's l*); at most layers")

    @model_validator(mode="after")
    def _cl_layer_exists(self) -> "XSimGCLParams":
        if self.cl_layer > self.layers:
            raise ValueError(f"cl_layer {self.cl_layer} does not exist: there are {self.layers} layers")
        return self


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE between two views of the same rows: row ``i`` of ``a`` should be closer (cosine)
    to row ``i`` of ``b`` than to any other row of ``b``."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.T / temperature
    return -torch.diagonal(F.log_softmax(logits, dim=1)).mean()


class SimGCL(LightGCN):
    """LightGCN with SimGCL's noise-based contrastive views (see the module docstring)."""

    def __init__(self, graph: GraphBundle, params: SimGCLParams) -> None:
        super().__init__(graph, params)
        self.params = params
        #: the layer-0 input of the last training propagation and its layer (``None``: the full
        #: graph's), reused for the noisy views
        self._last_input: tuple[torch.Tensor, Step | None] | None = None

    def _layer_outputs(self, x: torch.Tensor, noisy: bool, step: Step | None = None) -> list[torch.Tensor]:
        """Outputs of layers 1..K from the layer-0 table ``x``; ``noisy`` adds SimGCL's noise.
        ``step`` is one propagation layer (default: the full graph's)."""
        outputs = []
        for _ in range(self.layers):
            x = _SymmetricSpMM.apply(self.adj, x) if step is None else step(x)
            if noisy and self.params.eps > 0:
                noise = F.normalize(torch.rand_like(x), dim=1)
                x = x + torch.sign(x) * noise * self.params.eps
            outputs.append(x)
        return outputs

    def propagate(self, user0: torch.Tensor, item0: torch.Tensor) -> Embeddings:
        x = self.node_input(user0, item0)
        if self.training:
            self._last_input = (x, None)
        return self.split_nodes(torch.stack(self._layer_outputs(x, noisy=False)).mean(0))

    def forward_sampled(self, nodes: torch.Tensor, edge_index: torch.Tensor,
                        edge_id: torch.Tensor) -> torch.Tensor:
        """The clean propagation of a sampled neighbourhood; its noisy views follow in
        :meth:`batch_loss`, over the same subgraph."""
        step = self.sampled_step(nodes, edge_index, edge_id)
        x = self._rows(nodes)
        if self.training:
            self._last_input = (x, step)
        return torch.stack(self._layer_outputs(x, noisy=False, step=step)).mean(0)

    def _contrast(self, view1: torch.Tensor, view2: torch.Tensor,
                  batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted InfoNCE of the batch's distinct users and distinct positive items (rows
        of the full graph's table, or of the sampled neighbourhood's when the batch has one)."""
        if "n_id" in batch:
            users, items = torch.unique(batch["user_at"]), torch.unique(batch["pos_at"])
        else:
            users = torch.unique(batch["user"]) + self.user_offset
            items = torch.unique(batch["pos"]) + self.item_offset
        t = self.params.temperature
        loss = (info_nce(view1.index_select(0, users), view2.index_select(0, users), t)
                + info_nce(view1.index_select(0, items), view2.index_select(0, items), t))
        return self.params.cl_weight * loss

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        last, self._last_input = self._last_input, None
        if last is None or self.params.cl_weight == 0:
            return self.extra_loss()
        x, step = last
        view1 = torch.stack(self._layer_outputs(x, noisy=True, step=step)).mean(0)
        view2 = torch.stack(self._layer_outputs(x, noisy=True, step=step)).mean(0)
        return self._contrast(view1, view2, batch)


class XSimGCL(SimGCL):
    """XSimGCL: one noisy propagation serves both the ranking and the contrastive loss."""

    def __init__(self, graph: GraphBundle, params: XSimGCLParams) -> None:
        super().__init__(graph, params)
        self._views: tuple[torch.Tensor, torch.Tensor] | None = None

    def propagate(self, user0: torch.Tensor, item0: torch.Tensor) -> Embeddings:
        x = self.node_input(user0, item0)
        if not self.training:
            return self.split_nodes(torch.stack(self._layer_outputs(x, noisy=False)).mean(0))
        return self.split_nodes(self._noisy_views(x))

    def forward_sampled(self, nodes: torch.Tensor, edge_index: torch.Tensor,
                        edge_id: torch.Tensor) -> torch.Tensor:
        """The noisy propagation of a sampled neighbourhood, kept for the batch's contrast."""
        x, step = self._rows(nodes), self.sampled_step(nodes, edge_index, edge_id)
        if not self.training:
            return torch.stack(self._layer_outputs(x, noisy=False, step=step)).mean(0)
        return self._noisy_views(x, step)

    def _noisy_views(self, x: torch.Tensor, step: Step | None = None) -> torch.Tensor:
        """The final (noisy) embedding of layer-0 table ``x``; keeps it and layer ``cl_layer``'s
        output as the two views for :meth:`batch_loss`."""
        outputs = self._layer_outputs(x, noisy=True, step=step)
        final = torch.stack(outputs).mean(0)
        self._views = (final, outputs[self.params.cl_layer - 1])
        return final

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        views, self._views = self._views, None
        if views is None or self.params.cl_weight == 0:
            return self.extra_loss()
        return self._contrast(*views, batch)


def build_simgcl(params: SimGCLParams, ctx: EncoderContext) -> SimGCL:
    return SimGCL(user_item_graph("simgcl", ctx), params)


def build_xsimgcl(params: XSimGCLParams, ctx: EncoderContext) -> XSimGCL:
    return XSimGCL(user_item_graph("xsimgcl", ctx), params)


def components() -> list[Component]:
    return [
        Component("encoder", "simgcl", build_simgcl, SimGCLParams,
                  "SimGCL: LightGCN + contrastive views made by adding noise (Yu et al., SIGIR 2022)",
                  provides=("neighbor_sampling",)),
        Component("encoder", "xsimgcl", build_xsimgcl, XSimGCLParams,
                  "XSimGCL: one noisy propagation for ranking and cross-layer contrast (Yu et al., TKDE 2023)",
                  provides=("neighbor_sampling",)),
    ]
