"""Fusion strategies. ``none``: the graph encoder alone, scored by dot product."""
from __future__ import annotations

from kgflow.plugin import (Component, ConfigCheck, ConfigIssue, EncoderRecommender, FusionContext,
                           GraphEncoder, NoParams, hookimpl)


def build_none(params: NoParams, ctx: FusionContext) -> EncoderRecommender:
    encoder = ctx.encoders["graph"]
    if not isinstance(encoder, GraphEncoder):
        raise TypeError(f"fusion 'none' needs a graph encoder under encoders.graph, got "
                        f"{type(encoder).__name__}")
    return EncoderRecommender(encoder)


def check_none_roles(config, registry) -> list[ConfigIssue]:
    if config.fusion.name.replace("_", "-").lower() not in ("none", "id-only"):
        return []
    extra = [role for role in config.encoders if role != "graph"]
    issues = []
    if "graph" not in config.encoders:
        issues.append(ConfigIssue("fusion 'none' uses one encoder under the role 'graph'",
                                  path="encoders", hint="e.g. encoders: {graph: lightgcn}"))
    if extra:
        issues.append(ConfigIssue(f"fusion 'none' ignores the encoders {extra}; choose a fusion "
                                  "that combines them, or remove them", path="encoders"))
    return issues


@hookimpl
def kgflow_components() -> list[Component]:
    return [Component("fusion", "none", build_none, NoParams,
                      "no fusion: the graph encoder alone (encoders.graph)", aliases=("id-only",))]


@hookimpl
def kgflow_config_checks() -> list[ConfigCheck]:
    return [ConfigCheck("fusion-none-roles", check_none_roles,
                        "fusion 'none' needs exactly one encoder, under 'graph'")]
