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
    code = ast.parse((REPO / "plugins" / "kgflow_plugins" / "fusions" / "feature.py").read_text())
    literals = {node.value for node in ast.walk(code) if isinstance(node, ast.Constant)}
    assert "lm_only" not in literals and "distill" not in literals  # no table of other plugins' names


def _core_import_graph() -> dict[str, set[str]]:
    """Which kgflow modules each kgflow module imports, at any depth (a function's deferred
    import counts: it runs sooner or later); ``from pkg import name`` points at ``pkg.name`` when
    that is a module, else at ``pkg``."""
    modules = {}
    for path in (REPO / "kgflow").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def module_of(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {module_of(f"{node.module}.{alias.name}") for alias in node.names}
            elif isinstance(node, ast.Import):
                targets |= {module_of(alias.name) for alias in node.names}
        graph[name] = {t for t in targets if t and t != name and t.startswith("kgflow")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_among_kgflows_modules():
    graph = _core_import_graph()
    assert len(graph) > 40 and "kgflow.registry.contexts" in graph["kgflow.runs.assembly"]
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_core_module_imports_the_public_face():
    """kgflow.plugin re-exports for plugin authors; the core imports where things live."""
    users = sorted(name for name, targets in _core_import_graph().items() if "kgflow.plugin" in targets)
    assert users == []
