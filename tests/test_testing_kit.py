"""kgflow.testing: what plugin authors use in their own tests."""
from __future__ import annotations

import types

import torch

from kgflow.plugin import Component, Embeddings, GraphEncoder, Params, hookimpl
from kgflow.registry import get_registry
from kgflow.testing import registered, run_fast, tiny_data



class ConstParams(Params):
    dim: int = 4


class ItemPopularity(GraphEncoder):
    """Scores items by a learned bias only: a minimal encoder written against the public API."""

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        self.bias = torch.nn.Parameter(torch.zeros(n_items, 1))

    def forward(self) -> Embeddings:
        return Embeddings(torch.ones(self.n_users, 1, device=self.bias.device), self.bias)


def make_plugin():
    mod = types.ModuleType("pop_plugin")

    @hookimpl
    def kgflow_components():
        return [Component("encoder", "item-pop", lambda p, ctx: ItemPopularity(ctx.split.n_users,
                                                                               ctx.split.n_items),
                          ConstParams, "learned item popularity")]

    mod.kgflow_components = kgflow_components
    return mod


def test_registered_is_temporary_and_runs_a_pipeline(tmp_path):
    plugin = make_plugin()
    with registered(plugin, package="kgflow-pop") as reg:
        assert reg.get("encoder", "item-pop").package == "kgflow-pop"
        metrics = run_fast({"encoders": {"graph": "item-pop"}, "train": {"epochs": 5, "lr": 0.1}},
                           tmp_path / "r")
    assert metrics["test"]["all"]["recall@10"] > 0
    assert get_registry().find("encoder", "item-pop") is None


def test_tiny_data_has_kg_and_text():
    data = tiny_data()
    assert data.kg is not None and len(data.kg) > 0
    assert "title" in data.items.columns and data.item_links is not None


def test_fixtures(kgflow_run, kgflow_home, tiny_recdata):
    metrics = kgflow_run({"train": {"epochs": 1}})
    assert metrics["timing"]["epochs"] == 1
    assert str(kgflow_home).endswith("kgflow-home") and len(tiny_recdata.interactions) > 0
