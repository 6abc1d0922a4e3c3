"""Knowledge-graph preparation that graph builders share: cleaning triples, resolving item links,
relation and degree filters, hop limits, and the ``remove`` / ``shuffle`` controls.

Everything here works on raw (string) ids and counts what it drops, so a builder can report it:
nothing is dropped silently.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np
import pandas as pd

from kgflow.data.recdata import RecData
from kgflow.errors import DataError

KgControl = Literal["none", "remove", "shuffle"]


@dataclass
class PreparedKg:
    """Triples ready to become edges, the item each linked entity stands for, and what was dropped."""

    triples: pd.DataFrame  # columns head, relation, tail (str), unique, no self loops
    item_entity: pd.DataFrame  # columns item (dense item index), entity (str)
    relations: list[str]  # relation names in a fixed (sorted) order, before any filter
    stats: dict[str, int | float | str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def clean_triples(kg: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop incomplete rows (an empty head, relation or tail), duplicates and self loops, counting each."""
    frame = kg[["head", "relation", "tail"]].astype(str)
    blank = frame.apply(lambda col: col.str.strip().isin(["", "nan", "None"])).any(axis=1)
    stats = {"triples_read": len(frame), "triples_incomplete": int(blank.sum())}
    frame = frame[~blank]
    before = len(frame)
    frame = frame.drop_duplicates()
    stats["triples_duplicate"] = before - len(frame)
    loops = frame["head"] == frame["tail"]
    stats["triples_self_loop"] = int(loops.sum())
    frame = frame[~loops].reset_index(drop=True)
    return frame, stats


def kg_entities(triples: pd.DataFrame) -> pd.Index:
    return pd.Index(pd.unique(pd.concat([triples["head"], triples["tail"]], ignore_index=True)))


def link_items(links: Optional[pd.DataFrame], item_ids: np.ndarray,
               entities: pd.Index) -> tuple[pd.DataFrame, dict[str, int]]:
    """Resolve ``item -> entity`` links for the items in ``item_ids`` (dense order).

    Links naming an item the data does not have, or an entity absent from the KG, are counted and
    left out; an item linked twice keeps its first link (counted too).
    """
    stats = {"link_rows": 0, "links_to_absent_entities": 0, "links_to_unknown_items": 0,
             "links_duplicate_item": 0}
    if links is None or links.empty:
        return pd.DataFrame({"item": np.zeros(0, dtype=np.int64), "entity": []}), stats
    frame = links[["item", "entity"]].astype(str)
    stats["link_rows"] = len(frame)
    position = pd.Series(np.arange(len(item_ids)), index=pd.Index(item_ids.astype(str)))
    known_item = frame["item"].isin(position.index)
    known_entity = frame["entity"].isin(entities)
    stats["links_to_unknown_items"] = int((~known_item).sum())
    stats["links_to_absent_entities"] = int((known_item & ~known_entity).sum())
    frame = frame[known_item & known_entity]
    before = len(frame)
    frame = frame.drop_duplicates("item", keep="first")
    stats["links_duplicate_item"] = before - len(frame)
    out = pd.DataFrame({"item": position.loc[frame["item"]].to_numpy(dtype=np.int64),
                        "entity": frame["entity"].to_numpy()})
    return out.sort_values("item").reset_index(drop=True), stats


def linked_items(data: RecData) -> set[str]:
    """Raw ids of the items linked to an entity that occurs in the KG (RecBole's KG-aware item set)."""
    if data.kg is None or data.item_links is None:
        raise DataError(f"dataset {data.name!r} has no knowledge graph (.kg) and item links (.link)")
    triples, _ = clean_triples(data.kg)
    entities = kg_entities(triples)
    links = data.item_links.astype(str)
    return set(links.loc[links["entity"].isin(entities), "item"])


def select_relations(triples: pd.DataFrame, keep: Optional[list[str]],
                     drop: Optional[list[str]]) -> tuple[pd.DataFrame, int]:
    """Keep only ``keep`` (if given) and remove ``drop``; unknown names are an error."""
    known = sorted(triples["relation"].unique())
    for option, names in (("relations", keep), ("exclude_relations", drop)):
        for name in names or []:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DataError(f"graph.params.{option}: relation {name!r} is not in the KG{hint}; "
                                f"it has {len(known)}: {', '.join(known[:12])}"
                                + (", ..." if len(known) > 12 else ""))
    mask = np.ones(len(triples), dtype=bool)
    if keep:
        mask &= triples["relation"].isin(keep).to_numpy()
    if drop:
        mask &= ~triples["relation"].isin(drop).to_numpy()
    return triples[mask].reset_index(drop=True), int((~mask).sum())


def within_hops(triples: pd.DataFrame, seeds: set[str], hops: int) -> pd.DataFrame:
    """Triples reachable within ``hops`` steps (either direction) of the seed entities: hop 1 is
    every triple touching a seed, hop 2 adds those touching hop-1 entities, and so on."""
    reached = set(seeds)
    keep = np.zeros(len(triples), dtype=bool)
    heads, tails = triples["head"].to_numpy(), triples["tail"].to_numpy()
    for _ in range(hops):
        touch = np.isin(heads, list(reached)) | np.isin(tails, list(reached))
        new = touch & ~keep
        if not new.any():
            break
        keep |= new
        reached |= set(heads[new]) | set(tails[new])
    return triples[keep].reset_index(drop=True)


def min_degree(triples: pd.DataFrame, minimum: int, protected: set[str]) -> pd.DataFrame:
    """Repeatedly drop triples touching a non-item entity with fewer than ``minimum`` triples."""
    if minimum <= 1:
        return triples
    while True:
        degree = pd.concat([triples["head"], triples["tail"]]).value_counts()
        weak = set(degree.index[degree.to_numpy() < minimum]) - protected
        if not weak:
            return triples
        bad = triples["head"].isin(weak) | triples["tail"].isin(weak)
        triples = triples[~bad].reset_index(drop=True)


def shuffle_tails(triples: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Within each relation, permute the tails among that relation's triples.

    Every head keeps its out-degree per relation and every tail its in-degree per relation, so the
    degree distributions are exactly those of the real KG; only who is connected to whom changes.
    """
    rng = np.random.default_rng(seed)
    out = triples.copy()
    tails = out["tail"].to_numpy().copy()
    for _, index in out.groupby("relation", sort=True).indices.items():
        tails[index] = tails[rng.permutation(index)]
    out["tail"] = tails
    before = len(out)
    out = out[out["head"] != out["tail"]].drop_duplicates().reset_index(drop=True)
    out.attrs["collapsed"] = before - len(out)
    return out


def prepare_kg(data: RecData, item_ids: np.ndarray, *, relations: Optional[list[str]] = None,
               exclude_relations: Optional[list[str]] = None, min_entity_degree: int = 1,
               hops: Optional[int] = None, control: KgControl = "none", seed: int = 0) -> PreparedKg:
    """Everything between a dataset's raw KG and the triples a builder turns into edges."""
    if data.kg is None:
        raise DataError(f"dataset {data.name!r} has no knowledge graph (no .kg file or kg table); "
                        "use graph: user_item or attribute_graph, or add a KG (see docs/data.md)")
    triples, stats = clean_triples(data.kg)
    all_relations = sorted(triples["relation"].unique())
    links, link_stats = link_items(data.item_links, item_ids, kg_entities(triples))
    stats.update(link_stats)
    notes: list[str] = []
    triples, stats["triples_relation_filtered"] = select_relations(triples, relations, exclude_relations)
    protected = set(links["entity"])
    if hops is not None:
        before = len(triples)
        triples = within_hops(triples, protected, hops)
        stats["triples_beyond_hops"] = before - len(triples)
    before = len(triples)
    triples = min_degree(triples, min_entity_degree, protected)
    stats["triples_low_degree"] = before - len(triples)
    stats["items_linked"] = len(links)
    stats["items"] = len(item_ids)
    stats["item_link_share"] = round(len(links) / max(len(item_ids), 1), 4)
    stats["kg_control"] = control
    if stats["links_to_absent_entities"]:
        notes.append(f"{stats['links_to_absent_entities']:,} link rows point to entities absent from "
                     "the KG; those items are unlinked")
    if stats["triples_duplicate"]:
        notes.append(f"{stats['triples_duplicate']:,} duplicate triples removed")
    if stats["triples_incomplete"]:
        notes.append(f"{stats['triples_incomplete']:,} triples with an empty head, relation or tail removed")
    if control == "remove":
        stats["triples_removed_by_control"] = len(triples)
        triples = triples.iloc[0:0]
        notes.append("kg_control=remove: the KG's triples are left out (a control run)")
    elif control == "shuffle":
        triples = shuffle_tails(triples, seed)
        stats["triples_collapsed_by_shuffle"] = int(triples.attrs.get("collapsed", 0))
        notes.append("kg_control=shuffle: tails permuted within each relation (degrees kept, facts "
                     "destroyed; a control run)")
    stats["triples_used"] = len(triples)
    return PreparedKg(triples=triples, item_entity=links, relations=all_relations, stats=stats,
                      notes=notes)
