"""Graph builders.

- ``user_item``: the bipartite graph of training interactions.
- ``collaborative_kg``: users, items and KG entities in one graph (KGAT's collaborative KG).
- ``attribute_graph``: users and items joined through attribute-value nodes (age bucket, genre...).

The last two compose: either can add the other's part (``attributes:`` / ``kg:``), so one graph
can hold interactions, KG facts and attributes together. All of them read ``split.train`` only.
"""
from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import pandas as pd
from pydantic import Field

from kgflow.plugin import (BEHAVIOUR_PREFIX, INTERACT, BuilderContext, Component, DataError, EdgeBlock, GraphBundle, NoParams,
                           Params, assemble_graph, prepare_kg)


def interaction_blocks(ctx: BuilderContext) -> list[EdgeBlock]:
    """User -> item ``interact`` facts from the training interactions only (no leakage), weighted
    when the pipeline asks (``preprocess.weight.graph``), then one ``interact:<behaviour>``
    relation per auxiliary behaviour (weighted by ``preprocess.auxiliary_weights``, where set)."""
    split = ctx.split
    weight = split.train.weight if ctx.edge_weights else None
    blocks = [EdgeBlock(INTERACT, split.train.user.astype(np.int64),
                        split.train.item.astype(np.int64) + split.n_users, weight)]
    for name, part in sorted(split.auxiliary.items()):
        blocks.append(EdgeBlock(BEHAVIOUR_PREFIX + name, part.user.astype(np.int64),
                                part.item.astype(np.int64) + split.n_users, part.weight))
    return blocks


def build_user_item(params: NoParams, ctx: BuilderContext) -> GraphBundle:
    """Users take nodes ``0..n_users-1``, items follow; each training pair becomes two directed
    edges (auxiliary behaviours, when the pipeline has them, become relations of their own)."""
    split = ctx.split
    graph = assemble_graph({"user": split.n_users, "item": split.n_items}, interaction_blocks(ctx),
                           inverse_relations=False)
    pairs = graph.report.edges.get(INTERACT, 0)
    graph.report.density = pairs / max(split.n_users * split.n_items, 1)
    return graph


# -- knowledge graph part --------------------------------------------------------------------

class KgOptions(Params):
    relations: Optional[list[str]] = Field(None, description="keep only these KG relations (null: all)")
    exclude_relations: Optional[list[str]] = Field(None, description="drop these KG relations")
    min_entity_degree: int = Field(1, ge=1, description="repeatedly drop triples touching a non-item "
                                   "entity with fewer triples than this")
    hops: Optional[int] = Field(None, ge=1, description="keep triples within this many hops of the "
                                "linked entities (null: the whole KG)")
    kg_control: Literal["none", "remove", "shuffle"] = Field(
        "none", description="none: the real KG; remove: no KG triples; shuffle: tails permuted "
        "within each relation (same degrees, no facts). The controls answer 'does the KG help?'")


def kg_blocks(options: KgOptions, ctx: BuilderContext, first_free: int
              ) -> tuple[list[EdgeBlock], list[str], dict, list[str]]:
    """Edges of the KG: an entity linked to an item *is* that item's node; other entities get new
    nodes from ``first_free`` on. Returns the blocks, the new entity nodes' ids, stats, notes."""
    split = ctx.split
    kg = prepare_kg(ctx.data, split.item_ids, relations=options.relations,
                    exclude_relations=options.exclude_relations,
                    min_entity_degree=options.min_entity_degree, hops=options.hops,
                    control=options.kg_control, seed=ctx.seed)
    if kg.stats["items_linked"] == 0 and options.kg_control != "remove":
        links = ctx.data.source.get("link") or ctx.data.source.get("links")
        raise DataError(
            f"{links or 'the item links'}: the KG of dataset {ctx.data.name!r} links none of the "
            f"{split.n_items:,} items "
            f"({kg.stats['link_rows']:,} link rows: {kg.stats['links_to_unknown_items']:,} name "
            f"unknown items, {kg.stats['links_to_absent_entities']:,} point to entities absent from "
            "the KG); check the .link file's item ids against the interactions")
    node_of = pd.Series(kg.item_entity["item"].to_numpy() + split.n_users,
                        index=kg.item_entity["entity"].to_numpy())
    triples = kg.triples
    others = pd.Index(pd.unique(pd.concat([triples["head"], triples["tail"]], ignore_index=True)))
    others = others.difference(node_of.index, sort=False)
    node_of = pd.concat([node_of, pd.Series(np.arange(len(others)) + first_free, index=others)])
    heads = node_of.loc[triples["head"]].to_numpy()
    tails = node_of.loc[triples["tail"]].to_numpy()
    blocks = []
    for relation, index in triples.groupby("relation", sort=True).indices.items():
        blocks.append(EdgeBlock(str(relation), heads[index], tails[index]))
    return blocks, [str(e) for e in others], kg.stats, kg.notes


# -- attribute part ----------------------------------------------------------------------------

class AttributeOptions(Params):
    user: Optional[list[str]] = Field(None, description="user-table columns to use (null: every "
                                      "usable column; [] for none)")
    item: Optional[list[str]] = Field(None, description="item-table columns to use (null: every "
                                      "usable column; [] for none)")
    buckets: int = Field(5, ge=2, description="numeric columns are cut into this many quantile buckets")
    max_values: int = Field(200, ge=2, description="with null column lists, skip columns with more "
                            "distinct values than this (ids, titles, zip codes)")


def _column_values(series: pd.Series, name: str, options: AttributeOptions, explicit: bool
                   ) -> tuple[pd.Series | None, str]:
    """Map one attribute column to value labels per row (a row may have several: space-separated
    multi-value fields such as genres). Returns (exploded labels indexed by row, how it was read)."""
    text = series.astype(str).str.strip()
    text = text[~text.isin(["", "nan", "None"])]
    numbers = pd.to_numeric(text, errors="coerce")
    if len(text) and numbers.notna().mean() >= 0.95:  # numeric, up to a few junk values
        junk = int(numbers.isna().sum())
        numbers = numbers.dropna()
        bins = pd.qcut(numbers, q=options.buckets, duplicates="drop")
        labels = bins.astype(str).map(lambda b: f"{name}={b}")
        return labels, (f"numeric, {labels.nunique()} quantile buckets"
                         + (f" ({junk} non-numeric values left out)" if junk else ""))
    if text.str.contains(" ").mean() > 0.2:  # space-separated multi-value field (genres)
        tokens = text.str.split().explode()
        if tokens.nunique() <= options.max_values or explicit:
            return tokens.map(lambda v: f"{name}={v}"), f"multi-valued, {tokens.nunique()} values"
    elif text.nunique() <= options.max_values or explicit:
        return text.map(lambda v: f"{name}={v}"), f"categorical, {text.nunique()} values"
    distinct = text.nunique()
    return None, f"skipped ({distinct:,} distinct values)"


def attribute_blocks(options: AttributeOptions, ctx: BuilderContext, first_free: int
                     ) -> tuple[list[EdgeBlock], list[str], dict, list[str]]:
    """``user.<column>`` and ``item.<column>`` facts from the user and item tables."""
    split = ctx.split
    blocks: list[EdgeBlock] = []
    stats: dict = {}
    notes: list[str] = []
    value_node: dict[str, int] = {}
    sides = (("user", ctx.data.users, options.user, split.user_ids, 0),
             ("item", ctx.data.items, options.item, split.item_ids, split.n_users))
    for side, table, wanted, ids, offset in sides:
        if table is None:
            if wanted:
                raise DataError(f"graph.params: {side} attributes {wanted} requested, but dataset "
                                f"{ctx.data.name!r} has no {side} table")
            continue
        missing = [c for c in (wanted or []) if c not in table.columns]
        if missing:
            raise DataError(f"graph.params.{side}: no column {missing} in the {side} table; it has "
                            f"{', '.join(map(str, table.columns))}")
        rows = table.reindex(pd.Index(ids.astype(str)))
        for column in (wanted if wanted is not None else list(table.columns)):
            labels, how = _column_values(rows[column].reset_index(drop=True), str(column), options,
                                         explicit=wanted is not None)
            notes.append(f"{side}.{column}: {how}")
            if labels is None or labels.empty:
                continue
            for label in pd.unique(labels):
                value_node.setdefault(f"{side}.{label}", first_free + len(value_node))
            dst = np.array([value_node[f"{side}.{v}"] for v in labels.to_numpy()], dtype=np.int64)
            blocks.append(EdgeBlock(f"{side}.{column}", labels.index.to_numpy(dtype=np.int64) + offset, dst))
    stats["attribute_values"] = len(value_node)
    return blocks, list(value_node), stats, notes


# -- the composed builders ---------------------------------------------------------------------

class GraphParams(Params):
    interactions: bool = Field(True, description="include the user-item interact edges")
    inverse_relations: bool = Field(True, description="give each relation's reverse edges their own "
                                    "relation type (r~inv), as KGAT and KGIN do")


class CollaborativeKgParams(GraphParams, KgOptions):
    attributes: Optional[AttributeOptions] = Field(
        None, description="also add attribute-value nodes (see attribute_graph); {} uses every usable column")


class AttributeGraphParams(GraphParams, AttributeOptions):
    kg: Optional[KgOptions] = Field(None, description="also add the knowledge graph (see collaborative_kg)")


def _compose(ctx: BuilderContext, base: GraphParams, kg: KgOptions | None,
             attributes: AttributeOptions | None) -> GraphBundle:
    split = ctx.split
    counts = {"user": split.n_users, "item": split.n_items}
    blocks = interaction_blocks(ctx) if base.interactions else []
    stats: dict = {}
    notes: list[str] = []
    names: list[str] = []
    parts = [("entity", kg, kg_blocks), ("attribute", attributes, attribute_blocks)]
    for kind, options, make in parts:
        if options is None:
            continue
        edges, new_names, part_stats, part_notes = make(options, ctx, split.n_users + split.n_items
                                                        + len(names))  # type: ignore[operator]
        blocks += edges
        counts[kind] = len(new_names)
        names += new_names
        stats.update(part_stats)
        notes += part_notes
    return assemble_graph(counts, blocks, inverse_relations=base.inverse_relations, stats=stats,
                          notes=notes, extra_names=names)


def build_collaborative_kg(params: CollaborativeKgParams, ctx: BuilderContext) -> GraphBundle:
    """KGAT's collaborative knowledge graph: interactions plus item facts through the item links."""
    return _compose(ctx, params, params, params.attributes)


def build_attribute_graph(params: AttributeGraphParams, ctx: BuilderContext) -> GraphBundle:
    """Interactions plus user and item attribute values as nodes (for data without a KG)."""
    return _compose(ctx, params, params.kg, params)


def components() -> list[Component]:
    return [
        Component("builder", "user_item", build_user_item, NoParams,
                  "bipartite user-item graph of the training interactions", aliases=("bipartite",)),
        Component("builder", "collaborative_kg", build_collaborative_kg, CollaborativeKgParams,
                  "users, items and KG entities in one graph (interact edges + item facts via links)",
                  aliases=("ckg",), provides=("relations",)),
        Component("builder", "attribute_graph", build_attribute_graph, AttributeGraphParams,
                  "users and items linked through attribute-value nodes (age bucket, genre, ...)",
                  aliases=("attributes",), provides=("relations",)),
    ]
