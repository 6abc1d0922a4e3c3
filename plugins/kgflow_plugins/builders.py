"""Graph builders. ``user_item``: the bipartite graph of training interactions."""
from __future__ import annotations

import numpy as np
import torch

from kgflow.plugin import BuilderContext, Component, GraphBundle, GraphReport, NoParams, hookimpl


def build_user_item(params: NoParams, ctx: BuilderContext) -> GraphBundle:
    """Users take nodes ``0..n_users-1``, items follow; each training pair becomes two directed edges.
    Only ``split.train`` is read, so validation and test interactions never leak into the graph."""
    split = ctx.split
    n_u, n_i = split.n_users, split.n_items
    pairs = np.unique(split.train.user * n_i + split.train.item)
    users = torch.from_numpy(pairs // n_i)
    items = torch.from_numpy(pairs % n_i) + n_u
    edge_index = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
    user_deg = np.bincount(pairs // n_i, minlength=n_u)
    item_deg = np.bincount(pairs % n_i, minlength=n_i)
    report = GraphReport(
        nodes={"user": n_u, "item": n_i},
        edges={"interact (user-item pairs)": len(pairs), "directed": int(edge_index.shape[1])},
        isolated={"user": int((user_deg == 0).sum()), "item": int((item_deg == 0).sum())},
        density=len(pairs) / max(n_u * n_i, 1),
    )
    return GraphBundle(edge_index=edge_index, num_nodes=n_u + n_i,
                       node_offsets={"user": 0, "item": n_u}, node_counts={"user": n_u, "item": n_i},
                       report=report, relation_names=["interact"],
                       edge_type=torch.zeros(edge_index.shape[1], dtype=torch.long))


@hookimpl
def kgflow_components() -> list[Component]:
    return [Component("builder", "user_item", build_user_item, NoParams,
                      "bipartite user-item graph of the training interactions", aliases=("bipartite",))]
