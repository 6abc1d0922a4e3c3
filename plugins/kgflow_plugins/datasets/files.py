"""User-supplied data: RecBole atomic folders, and CSV/TSV/Parquet tables with a column mapping."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from kgflow.plugin import (DataError, DataPath, DatasetContext, Params, RecData, check_encoding,
                           load_atomic_dataset, parse_rows, read_bytes, read_text, row_lines)


class AtomicParams(Params):
    path: DataPath = Field(description="folder holding <name>.inter (and optionally .user .item .kg "
                           ".link); relative to the pipeline file")
    name: Optional[str] = Field(None, description="file prefix; defaults to the folder's name")
    user_field: Optional[str] = None
    item_field: Optional[str] = None
    rating_field: Optional[str] = None
    timestamp_field: Optional[str] = None
    value_field: Optional[str] = Field(None, description="a numeric field read as each interaction's "
                                       "value (dwell time, play count) for preprocess.weight")
    behavior_field: Optional[str] = Field(None, description="a field naming each interaction's "
                                          "behaviour (click, cart, buy) for preprocess.behaviors")
    encoding: str = Field(
        "utf-8", description="text encoding of every file in the folder (a Python codec name: "
        "utf-8, latin-1, cp1252, utf-16, ...); a byte invalid in it is refused with its offset")

    _known_encoding = field_validator("encoding")(check_encoding)


def load_atomic(params: AtomicParams, ctx: DatasetContext) -> RecData:
    folder = Path(params.path).expanduser()
    return load_atomic_dataset(folder, params.name or folder.name, user_field=params.user_field,
                               item_field=params.item_field, rating_field=params.rating_field,
                               timestamp_field=params.timestamp_field, encoding=params.encoding,
                               value_field=params.value_field, behavior_field=params.behavior_field)


class TableSpec(Params):
    path: DataPath = Field(description="CSV, TSV or Parquet file; relative to the pipeline file")
    sep: Optional[str] = Field(None, description="CSV separator; guessed from the extension")
    encoding: Optional[str] = Field(
        None, description="text encoding of this CSV file; defaults to the dataset's `encoding`")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else check_encoding(value)


class InteractionTable(TableSpec):
    user: str = "user_id"
    item: str = "item_id"
    rating: Optional[str] = None
    timestamp: Optional[str] = None
    value: Optional[str] = Field(None, description="a numeric column read as each interaction's value "
                                 "(dwell time, play count) for preprocess.weight")
    behavior: Optional[str] = Field(None, description="a column naming each interaction's behaviour "
                                    "(click, cart, buy) for preprocess.behaviors")


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
    encoding: str = Field(
        "utf-8", description="text encoding of the CSV files (a Python codec name: utf-8, latin-1, "
        "cp1252, utf-16, ...); a byte invalid in it is refused with its offset")

    _known_encoding = field_validator("encoding")(check_encoding)


def read_table(spec: TableSpec, columns: list[str], encoding: str = "utf-8"
               ) -> tuple[pd.DataFrame, Optional[np.ndarray]]:
    """The table (CSV values as text, a missing one empty) and, for a CSV, each row's line."""
    path = Path(spec.path).expanduser()
    lines = None
    if path.suffix.lower() in (".parquet", ".pq"):
        raw = read_bytes(path)
        try:
            frame = pd.read_parquet(io.BytesIO(raw))
        except Exception as exc:  # pyarrow raises many types for a damaged file
            raise DataError(f"{path}: cannot read the Parquet table: {exc}") from None
    else:
        text = read_text(path, spec.encoding or encoding)
        if not text.strip():
            raise DataError(f"{path}: the file is empty; a table needs a header row naming its columns")
        sep = spec.sep or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
        frame = parse_rows(text, path, sep=sep)
        lines = np.asarray(row_lines(text), dtype=np.int64)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column(s) {missing}; columns are {list(frame.columns)}")
    if frame.empty:
        raise DataError(f"{path}: has a header but no rows")
    return frame, lines


def load_tabular(params: TabularParams, ctx: DatasetContext) -> RecData:
    spec = params.interactions
    cols = [c for c in (spec.user, spec.item, spec.rating, spec.timestamp, spec.value, spec.behavior) if c]
    frame, lines = read_table(spec, cols, params.encoding)
    # handed over as read: the core checks every row (empty ids, ratings that are no number)
    interactions = pd.DataFrame({"user": frame[spec.user], "item": frame[spec.item]})
    interactions["rating"] = frame[spec.rating] if spec.rating else np.nan
    interactions["timestamp"] = frame[spec.timestamp] if spec.timestamp else np.nan
    if spec.value:
        interactions["value"] = frame[spec.value]
    if spec.behavior:
        interactions["behavior"] = frame[spec.behavior]

    def table(entity: Optional[EntityTable], index_name: str) -> Optional[pd.DataFrame]:
        if entity is None:
            return None
        t, _ = read_table(entity, [entity.id], params.encoding)
        t = t.set_index(t[entity.id].astype(str)).drop(columns=[entity.id])
        t.index.name = index_name
        return t

    kg = links = None
    if params.kg:
        t, _ = read_table(params.kg, [params.kg.head, params.kg.relation, params.kg.tail],
                          params.encoding)
        kg = pd.DataFrame({"head": t[params.kg.head].astype(str),
                           "relation": t[params.kg.relation].astype(str),
                           "tail": t[params.kg.tail].astype(str)})
    if params.links:
        t, _ = read_table(params.links, [params.links.item, params.links.entity], params.encoding)
        links = pd.DataFrame({"item": t[params.links.item].astype(str),
                              "entity": t[params.links.entity].astype(str)})
    return RecData(name=params.name, interactions=interactions, users=table(params.users, "user"),
                   items=table(params.items, "item"), kg=kg, item_links=links,
                   source={"inter": Path(spec.path)}, lines=lines)
