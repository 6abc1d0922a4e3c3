"""``kgflow new plugin NAME``: a working, tested plugin package to start from."""
from __future__ import annotations

import re
from pathlib import Path
from string import Template

from kgflow import __version__
from kgflow.errors import KgflowError

TEMPLATES = Path(__file__).parent / "templates" / "plugin"


def plugin_names(dist: str) -> dict[str, str]:
    """``kgflow-my-encoder`` -> module ``kgflow_my_encoder``, component ``my-encoder``, class
    ``MyEncoder``."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", dist):
        raise KgflowError(f"{dist!r} is not a valid package name (letters, digits, '-', '_', '.')")
    module = re.sub(r"[^0-9a-zA-Z]+", "_", dist).lower()
    component = re.sub(r"^kgflow[-_]", "", dist.lower()).replace("_", "-") or "my-encoder"
    cls = "".join(part.capitalize() for part in re.split(r"[-_.]", component)) or "MyEncoder"
    return {"dist": dist, "module": module, "component": component, "cls": cls,
            "kgflow_version": __version__}


def new_plugin(dist: str, parent: str | Path = ".") -> Path:
    """Write the package into ``parent/dist``; refuses to touch an existing folder."""
    names = plugin_names(dist)
    root = Path(parent) / dist
    if root.exists():
        raise KgflowError(f"{root} already exists; choose another name or folder")
    files = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        "pipeline.yaml": "pipeline.yaml.tmpl",
        f"src/{names['module']}/__init__.py": "module_init.py.tmpl",
        f"tests/test_{names['module']}.py": "test_plugin.py.tmpl",
    }
    for target, template in files.items():
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template((TEMPLATES / template).read_text()).substitute(names))
    return root
