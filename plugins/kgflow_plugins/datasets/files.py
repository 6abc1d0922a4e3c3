"""User-supplied data: RecBole atomic folders, and CSV/TSV/Parquet tables with a column mapping."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd
from pydantic import Field

from kgflow.plugin import DataError, DataPath, DatasetContext, Params, RecData, load_atomic_dataset


class AtomicParams(Params):
    path: DataPath = Field(description="folder holding <name>.inter (and optionally .user .item .kg "
                           ".link); relative to the pipeline file")
    name: Optional[str] = Field(None, description="file prefix; defaults to the folder's name")
    user_field: Optional[str] = None
    item_field: Optional[str] = None
    rating_field: Optional[str] = None
    timestamp_field: Optional[str] = None


def load_atomic(params: AtomicParams, ctx: DatasetContext) -> RecData:
    folder = Path(params.path).expanduser()
    return load_atomic_dataset(folder, params.name or folder.name, user_field=params.user_field,
                               item_field=params.item_field, rating_field=params.rating_field,
                               timestamp_field=params.timestamp_field)


class TableSpec(Params):
    path: DataPath = Field(description="CSV, TSV or Parquet file; relative to the pipeline file")
    sep: Optional[str] = Field(None, description="CSV separator; guessed from the extension")


class InteractionTable(TableSpec):
    user: str = "user_id"
    item: str = "item_id"
    rating: Optional[str] = None
    timestamp: Optional[str] = None


class EntityTable(TableSpec):
    id: str = Field(description="the id column (user or item id)")


class KgTable(TableSpec):
    head: str = "head"
    relation: str = "relation"
    tail: str = "tail"


class LinkTable(TableSpec):
    item: str = "item_id"
    entity: str = "entity_id"


class TabularParams(Params):
    name: str = "tabular"
    interactions: InteractionTable
    users: Optional[EntityTable] = None
    items: Optional[EntityTable] = None
    kg: Optional[KgTable] = None
    links: Optional[LinkTable] = None


def read_table(spec: TableSpec, columns: list[str]) -> pd.DataFrame:
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            sep = spec.sep or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many types for unreadable files
        raise DataError(f"{path}: cannot read table: {exc}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column(s) {missing}; columns are {list(frame.columns)}")
    return frame


def _numeric(frame: pd.DataFrame, column: Optional[str], path: str) -> pd.Series | float:
    if column is None:
        return float("nan")
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].astype(str).str.strip().ne("")
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(f"{path}: row {row + 2}: column {column!r} must be a number, "
                        f"got {frame[column].iloc[row]!r}")
    return values.astype(float)


def load_tabular(params: TabularParams, ctx: DatasetContext) -> RecData:
    spec = params.interactions
    cols = [c for c in (spec.user, spec.item, spec.rating, spec.timestamp) if c]
    frame = read_table(spec, cols)
    interactions = pd.DataFrame({"user": frame[spec.user].astype(str),
                                 "item": frame[spec.item].astype(str)})
    interactions["rating"] = _numeric(frame, spec.rating, spec.path)
    interactions["timestamp"] = _numeric(frame, spec.timestamp, spec.path)

    def table(entity: Optional[EntityTable], index_name: str) -> Optional[pd.DataFrame]:
        if entity is None:
            return None
        t = read_table(entity, [entity.id])
        t = t.set_index(t[entity.id].astype(str)).drop(columns=[entity.id])
        t.index.name = index_name
        return t

    kg = links = None
    if params.kg:
        t = read_table(params.kg, [params.kg.head, params.kg.relation, params.kg.tail])
        kg = pd.DataFrame({"head": t[params.kg.head].astype(str),
                           "relation": t[params.kg.relation].astype(str),
                           "tail": t[params.kg.tail].astype(str)})
    if params.links:
        t = read_table(params.links, [params.links.item, params.links.entity])
        links = pd.DataFrame({"item": t[params.links.item].astype(str),
                              "entity": t[params.links.entity].astype(str)})
    return RecData(name=params.name, interactions=interactions, users=table(params.users, "user"),
                   items=table(params.items, "item"), kg=kg, item_links=links,
                   source={"inter": Path(spec.path)})
