"""Every shipped example runs: the third-party plugin package (installed by the README's test
command) and the domain pipelines."""
from __future__ import annotations

import json

import pytest

from conftest import REPO


def test_example_plugin_is_installed_and_listed(invoke):
    try:
        import kgflow_plugin_example  # noqa: F401
    except ImportError:
        pytest.fail("install the example plugin: pip install -e examples/kgflow-plugin-example "
                    "(the README's test command does)")
    data = json.loads(invoke("plugins", "--json").output)
    mine = {c["name"]: c for c in data["components"] if c["package"] == "kgflow-plugin-example"}
    assert set(mine) == {"bias-mf", "toy-shop", "hinge"} and mine["hinge"]["version"] == "0.1.0"


def test_example_plugin_pipeline_runs(invoke, tmp_path):
    result = invoke("run", str(REPO / "examples/kgflow-plugin-example/pipeline.yaml"),
                    "--out", str(tmp_path / "r"), "--no-progress", "--set", "train.epochs=3")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["split"]["users"] == 200


def test_example_plugin_adds_a_command(runner):
    from kgflow.cli import _add_plugin_commands, cli

    _add_plugin_commands()
    result = runner.invoke(cli, ["toy-shop", "--customers", "20"])
    assert result.exit_code == 0 and "interactions: 240" in result.output


def test_allowlist_and_autoload_switch(monkeypatch):
    from kgflow.registry import build_registry

    monkeypatch.setenv("KGFLOW_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert build_registry().find("encoder", "bias-mf") is None
    assert build_registry().find("encoder", "lightgcn") is not None  # kgflow's own always load
    monkeypatch.setenv("KGFLOW_LOAD_PLUGINS", "kgflow-plugin-example")
    assert build_registry().find("encoder", "bias-mf") is not None
    monkeypatch.delenv("KGFLOW_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("KGFLOW_LOAD_PLUGINS", "some-other-plugin")
    assert build_registry().find("encoder", "bias-mf") is None


def test_trace_mode_names_the_provider(runner, monkeypatch):
    from kgflow.cli import cli
    from kgflow.registry import set_registry

    monkeypatch.setenv("KGFLOW_TRACE_PLUGINS", "0")
    result = runner.invoke(cli, ["--trace-plugins", "validate",
                                 str(REPO / "examples/kgflow-plugin-example/pipeline.yaml")])
    set_registry(None)
    assert result.exit_code == 0, result.output
    assert "encoder 'bias-mf' -> bias-mf from kgflow-plugin-example 0.1.0" in result.output
