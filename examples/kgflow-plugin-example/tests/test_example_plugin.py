"""The example plugin's own tests, written with kgflow.testing."""
from __future__ import annotations

import kgflow_plugin_example as plugin
from kgflow.testing import registered, run_fast


def test_components_register_and_train(tmp_path):
    with registered(plugin, package="kgflow-plugin-example") as registry:
        assert registry.get("encoder", "bias-mf").package == "kgflow-plugin-example"
        metrics = run_fast({"dataset": {"name": "toy-shop", "params": {"customers": 80}},
                            "encoders": {"graph": {"name": "bias-mf", "params": {"dim": 8}}},
                            "objective": {"loss": "hinge"},
                            "train": {"epochs": 5, "lr": 0.05}}, tmp_path / "run")
    assert 0 < metrics["test"]["all"]["recall@10"] <= 1


def test_toy_shop_has_kg_and_text():
    data = plugin.load_toy_shop(plugin.ToyShopParams(customers=10), None)
    assert set(data.kg["relation"]) == {"in_category", "made_by"}
    assert data.items["description"].str.len().min() > 0
