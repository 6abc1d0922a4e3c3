"""Fusion strategies (YAML ``fusion:``): none, content, feature and joint (``feature``), distill
(``distill``), and the language model alone as a ranker, lm_only (``lm_only``)."""
from __future__ import annotations

from kgflow.plugin import Component, ConfigCheck, hookimpl

from kgflow_plugins.fusions import distill, feature, lm_only


@hookimpl
def kgflow_components() -> list[Component]:
    return [*feature.components(), *distill.components(), *lm_only.components()]


@hookimpl
def kgflow_config_checks() -> list[ConfigCheck]:
    return [*feature.config_checks(), *distill.config_checks()]
