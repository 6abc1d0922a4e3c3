"""First-party plugins use only the public plugin API, and training and serving stand apart."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN_TREES = [REPO / "plugins" / "kgflow_plugins", REPO / "examples" / "kgflow-plugin-example" / "src",
                REPO / "kgflow" / "templates"]


def _kgflow_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a kgflow module in a Python file, at any depth (a
    template, which is not Python until rendered, line by line)."""
    if path.suffix == ".tmpl":
        pattern = re.compile(r"^\s*(?:from\s+(kgflow(?:\.[\w.]+)?)\s+import|import\s+(kgflow(?:\.[\w.]+)?))")
        return [(i, (m.group(1) or m.group(2))) for i, line in enumerate(path.read_text().splitlines(), 1)
                if (m := pattern.match(line))]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name == "kgflow" or name.startswith("kgflow.")]
    return found


def _python_files() -> list[Path]:
    files = [p for tree in PLUGIN_TREES if tree.exists() for p in tree.rglob("*.py")]
    files += [p for tree in PLUGIN_TREES if tree.exists() for p in tree.rglob("*.py.tmpl")]
    return files


def test_plugins_import_nothing_from_kgflow_but_the_plugin_api():
    files = _python_files()
    assert len(files) > 10
    # a plugin's own tests may use the public test kit as well
    allowed = lambda path: {"kgflow.plugin"} | ({"kgflow.testing"} if path.name.startswith("test_") else set())  # noqa: E731
    offending = [f"{path.relative_to(REPO)}:{line} imports {module}" for path in files
                 for line, module in _kgflow_imports(path) if module not in allowed(path)]
    assert not offending, "\n".join(offending)


def test_the_check_sees_a_private_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from kgflow.runs.runner import run_pipeline\n")
    assert _kgflow_imports(sample) == [(2, "kgflow.runs.runner")]


@pytest.mark.parametrize("module, forbidden", [
    ("kgflow/runs/runner.py", "kgflow.inference"),
    ("kgflow/inference.py", "kgflow.runs.runner"),
])
def test_training_and_serving_do_not_import_each_other(module, forbidden):
    imports = [name for _, name in _kgflow_imports(REPO / module)]
    assert forbidden not in imports


def test_fusions_declare_their_encoder_roles_in_their_registration():
    from kgflow.registry import get_registry

    fusions = {c.name: c for c in get_registry().components("fusion")}
    assert fusions["feature"].roles == ("graph", "text") and fusions["lm_only"].roles == ("text",)
    assert all(c.roles for c in fusions.values()), [c.name for c in fusions.values() if not c.roles]
    code = ast.parse((REPO / "plugins" / "kgflow_plugins" / "fusions.py").read_text())
    literals = {node.value for node in ast.walk(code) if isinstance(node, ast.Constant)}
    assert "lm_only" not in literals and "distill" not in literals  # no table of other plugins' names
