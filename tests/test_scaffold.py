"""`kgflow new plugin`: the generated package installs, registers and passes its own tests."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kgflow.scaffold import plugin_names


def test_names():
    assert plugin_names("kgflow-my-encoder") == {
        "dist": "kgflow-my-encoder", "module": "kgflow_my_encoder", "component": "my-encoder",
        "cls": "MyEncoder", "kgflow_version": plugin_names("x")["kgflow_version"]}


def test_refuses_existing_folder_and_bad_names(invoke, runner, tmp_path):
    from kgflow.cli import cli

    assert invoke("new", "plugin", "kgflow-a", "--dir", str(tmp_path)).exit_code == 0
    again = runner.invoke(cli, ["new", "plugin", "kgflow-a", "--dir", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output
    bad = runner.invoke(cli, ["new", "plugin", "no spaces", "--dir", str(tmp_path)])
    assert bad.exit_code == 2


@pytest.mark.slow
def test_generated_plugin_installs_and_passes_its_tests(invoke, tmp_path):
    result = invoke("new", "plugin", "kgflow-myencoder", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    root = tmp_path / "kgflow-myencoder"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(root)], check=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    listing = subprocess.run([sys.executable, "-m", "kgflow.cli", "plugins", "--json"], env=env,
                             capture_output=True, text=True, check=True)
    assert '"package": "kgflow-myencoder"' in listing.stdout
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(root / "tests")], env=env, capture_output=True, text=True, cwd=root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    run = subprocess.run([sys.executable, "-m", "kgflow.cli", "run", str(root / "pipeline.yaml"),
                          "--out", str(tmp_path / "run"), "--no-progress", "--set", "train.epochs=2"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
