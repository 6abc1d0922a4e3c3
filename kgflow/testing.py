"""Helpers for testing kgflow plugins (and kgflow itself).

Use them from a plugin package's tests::

    from kgflow.testing import registered, run_fast, tiny_data

    def test_my_encoder_trains(tmp_path):
        with registered(my_plugin):                 # without installing the package
            metrics = run_fast({"encoders": {"graph": "my-encoder"}}, tmp_path)
        assert metrics["test"]["all"]["ndcg@10"] > 0

or, as pytest fixtures, add ``pytest_plugins = ["kgflow.testing"]`` to a ``conftest.py`` and ask for
``kgflow_home``, ``tiny_recdata`` or ``kgflow_run``.
"""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, Iterator

import pytest

from kgflow.config.compose import deep_merge
from kgflow.config.validate import validate_located
from kgflow.config.yaml_loader import Located
from kgflow.data.recdata import RecData
from kgflow.registry import Registry, build_registry, get_registry, set_registry

#: A complete small pipeline: synthetic data with KG and text, LightGCN, a few fast epochs.
TINY_PIPELINE: dict[str, Any] = {
    "kgflow": 1,
    "name": "tiny",
    "seed": 1,
    "dataset": {"name": "synthetic", "params": {"users": 60, "items": 40, "clusters": 2,
                                                "interactions_per_user": 10}},
    "encoders": {"graph": {"name": "lightgcn", "params": {"dim": 8, "layers": 1}}},
    "train": {"epochs": 3, "lr": 0.01, "batch_size": 256},
    "eval": {"ks": [5, 10]},
}


@contextlib.contextmanager
def registered(*plugins: Any, package: str = "test-plugin") -> Iterator[Registry]:
    """Register plugin modules or objects (in addition to everything installed) for the duration of
    the block, without installing a package."""
    previous = get_registry()
    extras = []
    for i, plugin in enumerate(plugins):
        if not hasattr(plugin, "__kgflow_package__"):
            try:
                plugin.__kgflow_package__ = package
            except AttributeError:
                pass
        extras.append((f"{package}:{getattr(plugin, '__name__', i)}", plugin))
    registry = build_registry(extras)
    set_registry(registry)
    try:
        yield registry
    finally:
        set_registry(previous)


def tiny_data(users: int = 60, items: int = 40, seed: int = 0) -> RecData:
    """A small RecData with ratings, timestamps, user and item tables (titles, genres), KG triples
    and item-entity links."""
    from kgflow.registry.contexts import DatasetContext

    comp = get_registry().get("dataset", "synthetic")
    params = comp.params(users=users, items=items, clusters=2, interactions_per_user=10, seed=seed)
    return comp.factory(params, DatasetContext(home=Path("."), seed=seed))


def pipeline(overrides: dict[str, Any] | None = None, base: dict[str, Any] | None = None) -> Located:
    """``TINY_PIPELINE`` (or ``base``) with ``overrides`` merged in, ready to validate."""
    data = copy.deepcopy(base or TINY_PIPELINE)
    located = Located(data, {})
    if overrides:
        located = deep_merge(located, Located(copy.deepcopy(overrides), {}))
    return located


def run_fast(overrides: dict[str, Any] | None, out: str | Path, *,
             base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate and run a small pipeline on the CPU; return its metrics (also in ``out``)."""
    from kgflow.runs.runner import run_pipeline

    located = pipeline(overrides, base)
    loaded = validate_located(located, "<kgflow.testing pipeline>")
    return run_pipeline(loaded, out, overwrite=True, progress=False, echo=lambda *a, **k: None)


# -- pytest fixtures (enable with `pytest_plugins = ["kgflow.testing"]`) -----------------------
@pytest.fixture
def kgflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, private KGFLOW_HOME."""
    home = tmp_path / "kgflow-home"
    monkeypatch.setenv("KGFLOW_HOME", str(home))
    return home


@pytest.fixture
def tiny_recdata() -> RecData:
    return tiny_data()


@pytest.fixture
def kgflow_run(tmp_path: Path, kgflow_home: Path):
    """``kgflow_run(overrides)`` runs a small pipeline in a temporary folder and returns metrics."""
    counter = iter(range(1_000_000))

    def _run(overrides: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        return run_fast(overrides, tmp_path / f"run-{next(counter)}", **kwargs)
    return _run
