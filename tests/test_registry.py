"""Registry: components from plugins, duplicates naming both packages, broken plugins isolated."""
from __future__ import annotations

import json
import types

import pytest

from kgflow.cli import cli
from kgflow.errors import PluginError
from kgflow.plugin import Component, NoParams, hookimpl
from kgflow.registry import build_registry, set_registry


def plugin_module(name: str, components):
    mod = types.ModuleType(name)

    @hookimpl
    def kgflow_components():
        return components

    mod.kgflow_components = kgflow_components
    return mod


def dummy_factory(params, ctx):  # pragma: no cover - never built in these tests
    return None


def test_builtins_register_through_entry_points():
    reg = build_registry()
    assert {"mf", "lightgcn"} <= set(reg.names("encoder"))
    comp = reg.get("encoder", "LightGCN")  # names are case- and dash/underscore-insensitive
    assert comp.package == "kgflow" and comp.description
    assert reg.get("builder", "user-item").name == "user_item"
    assert reg.get("encoder", "bpr_mf").name == "mf"


def test_unknown_name_suggests_and_lists_packages():
    reg = build_registry()
    with pytest.raises(PluginError, match=r"did you mean 'lightgcn'.*mf \(kgflow\)"):
        reg.get("encoder", "lightgnc")


def test_a_name_like_no_installed_one_points_at_reinstalling_the_plugin():
    # a plugin added to an editable install is invisible until its entry points are reinstalled
    reg = build_registry()
    with pytest.raises(PluginError, match=r"unknown encoder 'hypergraph-transformer'.*pip install -e.*kgflow plugins"):
        reg.get("encoder", "hypergraph-transformer")
    with pytest.raises(PluginError) as info:
        reg.get("encoder", "lightgnc")
    assert "pip install -e" not in str(info.value)  # a typo gets the suggestion only


def test_duplicate_name_names_both_packages():
    dup = plugin_module("dup", [Component("encoder", "mf", dummy_factory, NoParams, "copycat")])
    dup.__kgflow_package__ = "kgflow-copycat"
    reg = build_registry([("copycat", dup)])
    with pytest.raises(PluginError) as info:
        reg.get("encoder", "mf")
    assert "kgflow-copycat" in str(info.value) and "kgflow " in str(info.value) + " "


class Exploding:
    @hookimpl
    def kgflow_components(self):
        raise RuntimeError("boom")


def test_broken_plugin_is_reported_not_fatal(runner):
    reg = build_registry([("exploding", Exploding())])
    assert [b.name for b in reg.broken] == ["exploding"]
    assert "boom" in reg.broken[0].error
    assert "lightgcn" in reg.names("encoder")
    set_registry(reg)
    try:
        result = runner.invoke(cli, ["plugins", "--json"])
        assert result.exit_code == 0
        data = json.loads(result.output)
        assert data["broken"][0]["error"] == "RuntimeError: boom"
        assert any(c["name"] == "lightgcn" for c in data["components"])
    finally:
        set_registry(None)


def test_import_error_in_entry_point_is_isolated(monkeypatch):
    import importlib.metadata as md

    from kgflow.registry import registry as regmod

    real = regmod._entry_points()
    bad = md.EntryPoint(name="bad", value="kgflow_no_such_module_xyz", group="kgflow")
    monkeypatch.setattr(regmod, "_entry_points", lambda: real + [bad])
    reg = build_registry()
    assert any("ModuleNotFoundError" in b.error for b in reg.broken)
    assert "mf" in reg.names("encoder")
    # every other command still works with the broken plugin installed
    from click.testing import CliRunner

    from kgflow.cli import cli

    set_registry(None)
    try:
        runner = CliRunner()
        listing = runner.invoke(cli, ["plugins"])
        assert listing.exit_code == 0 and "broken plugin" in listing.output
        assert "kgflow_no_such_module_xyz" in listing.output
        schema = runner.invoke(cli, ["schema"])
        assert schema.exit_code == 0
    finally:
        set_registry(None)


def test_hookspecs_and_kinds_are_documented():
    from pathlib import Path

    from kgflow.registry import KINDS, hookspecs

    text = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    for name in dir(hookspecs):
        if name.startswith("kgflow_"):
            assert f"`{name}`" in text, f"hook {name} is not documented in docs/plugins.md"
    for kind in KINDS:
        assert f"`{kind}`" in text, f"component kind {kind} is not documented in docs/plugins.md"


def test_the_plugin_guide_example_works_as_written(tmp_path):
    """docs/plugins.md's first code block, run as a user would after copying it."""
    import re
    from pathlib import Path

    from kgflow.testing import registered, run_fast

    text = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    code = re.search(r"```python\n(# my_plugin/__init__.py\n.*?)```", text, re.S).group(1)
    module = types.ModuleType("my_plugin")
    exec(compile(code, "docs/plugins.md", "exec"), module.__dict__)
    with registered(module, package="my-plugin") as reg:
        assert reg.get("encoder", "learned-popularity").package == "my-plugin"
        metrics = run_fast({"encoders": {"graph": "learned-popularity"},
                            "train": {"epochs": 3, "lr": 0.1}}, tmp_path / "run")
    assert metrics["test"]["all"]["recall@10"] > 0
