"""Reading and writing RecBole atomic files (``.inter``, ``.user``, ``.item``, ``.kg``, ``.link``).

An atomic file is tab-separated with a typed header: ``user_id:token  item_id:token  rating:float``.
Types are ``token``, ``token_seq``, ``float`` and ``float_seq``. Malformed headers and rows are
reported with the file and line number.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from kgflow.data.recdata import RecData
from kgflow.data.textfile import parse_rows, read_text, row_lines
from kgflow.errors import DataError

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
_HEADER_FIELD = re.compile(r"^([^:\s]+):(\w+)$")
SUFFIXES = ("inter", "user", "item", "kg", "link")


def read_atomic_text(path: str | Path, encoding: str = "utf-8"
                     ) -> tuple[pd.DataFrame, np.ndarray, list[str], np.ndarray]:
    """One atomic file as text: (the rows, every value a string and a missing field empty; each
    row's line in the file; each column's declared type; each row's count of fields). A
    header-only file is refused."""
    path = Path(path)
    text = read_text(path, encoding)
    header_line = text.split("\n", 1)[0].rstrip("\r")
    if not text.strip():
        raise DataError(f"{path}: the file is empty; an atomic file starts with a tab-separated "
                        "header of 'name:type' fields")
    if not header_line.strip():
        raise DataError(f"{path}:1: empty header; expected tab-separated 'name:type' fields")
    names, types = [], []
    for column, raw in enumerate(header_line.split("\t"), start=1):
        m = _HEADER_FIELD.match(raw.strip())
        if not m:
            raise DataError(f"{path}:1: malformed header field {column} {raw!r}; expected 'name:type' "
                            f"with type one of {', '.join(ATOMIC_TYPES)}")
        if m.group(2) not in ATOMIC_TYPES:
            raise DataError(f"{path}:1: unknown type {m.group(2)!r} in header field {raw!r}; "
                            f"expected one of {', '.join(ATOMIC_TYPES)}")
        names.append(m.group(1))
        types.append(m.group(2))
    if len(set(names)) != len(names):
        raise DataError(f"{path}:1: duplicate field names in header {names}")
    physical = text.split("\n")
    lines = np.asarray(row_lines(physical), dtype=np.int64)
    if not len(lines):
        raise DataError(f"{path}: has a header but no rows")
    fields = np.fromiter((physical[n - 1].count("\t") + 1 for n in lines), dtype=np.int64,
                         count=len(lines))
    frame = parse_rows(text, path, sep="\t", skiprows=1, header=None, names=names,
                       quoting=csv.QUOTE_NONE, engine="c")
    return frame, lines, types, fields


def read_atomic(path: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read one atomic file; columns are named without their type, float columns are parsed, and
    a row with fewer fields than the header or a float field that is no number is refused with
    its line. (Interactions are read with :func:`read_atomic_text` instead: their bad rows are
    the core's to refuse or skip, see :mod:`kgflow.data.rows`.)"""
    path = Path(path)
    frame, lines, types, fields = read_atomic_text(path, encoding)
    short = fields < len(types)
    if short.any():
        i = int(np.argmax(short))
        raise DataError(f"{path}:{lines[i]}: row has {fields[i]} fields, fewer than the header's "
                        f"{len(types)}")
    for name, kind in zip(frame.columns, types):
        if kind == "float":
            text = frame[name]
            values = pd.to_numeric(text, errors="coerce")
            bad = values.isna().to_numpy() & (text.str.strip() != "").to_numpy()
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(f"{path}:{lines[i]}: field {name!r} must be a number, got {text.iloc[i]!r}")
            frame[name] = values.astype(float)
    return frame


def _pick(columns: list[str], wanted: Optional[str], fallbacks: tuple[str, ...], path: Path,
          required: bool = True) -> Optional[str]:
    if wanted:
        if wanted not in columns:
            raise DataError(f"{path}: no field {wanted!r}; fields are {columns}")
        return wanted
    for name in fallbacks:
        if name in columns:
            return name
    if required:
        raise DataError(f"{path}: cannot find a field among {list(fallbacks)}; fields are {columns}")
    return None


def load_atomic_dataset(folder: str | Path, name: str, *, user_field: Optional[str] = None,
                        item_field: Optional[str] = None, rating_field: Optional[str] = None,
                        timestamp_field: Optional[str] = None, encoding: str = "utf-8",
                        value_field: Optional[str] = None,
                        behavior_field: Optional[str] = None) -> RecData:
    """Load ``folder/name.inter`` plus whichever of ``.user .item .kg .link`` exist, every file in
    ``encoding``. The interactions are handed over as read (their rows are checked by the core).
    ``value_field`` and ``behavior_field`` name the columns read as the interactions' ``value``
    (for ``preprocess.weight``) and ``behavior`` (for ``preprocess.behaviors``)."""
    folder = Path(folder)
    inter_path = folder / f"{name}.inter"
    if not inter_path.exists():
        raise DataError(f"{inter_path}: data file not found (a RecBole dataset needs <name>.inter)")
    inter, lines, _, _ = read_atomic_text(inter_path, encoding)  # short rows: empty fields
    cols = list(inter.columns)
    u = _pick(cols, user_field, ("user_id", "user"), inter_path)
    i = _pick(cols, item_field, ("item_id", "item"), inter_path)
    r = _pick(cols, rating_field, ("rating", "label"), inter_path, required=False)
    t = _pick(cols, timestamp_field, ("timestamp", "time"), inter_path, required=False)
    interactions = pd.DataFrame({"user": inter[u], "item": inter[i]})
    interactions["rating"] = inter[r] if r else np.nan
    interactions["timestamp"] = inter[t] if t else np.nan
    for column, wanted in (("value", value_field), ("behavior", behavior_field)):
        if wanted is not None:
            interactions[column] = inter[_pick(cols, wanted, (), inter_path)]
    source = {"inter": inter_path}

    def optional(suffix: str) -> Optional[pd.DataFrame]:
        p = folder / f"{name}.{suffix}"
        if not p.is_file():
            return None
        source[suffix] = p
        return read_atomic(p, encoding)

    def entity_table(suffix: str, field: Optional[str], kind: str) -> Optional[pd.DataFrame]:
        """An attribute table indexed by its (string) id, the index named ``kind``."""
        table = optional(suffix)
        if table is None:
            return None
        key = _pick(list(table.columns), field, (f"{kind}_id", kind), folder / f"{name}.{suffix}")
        table = table.set_index(key)
        table.index = table.index.astype(str)
        table.index.name = kind
        return table

    users = entity_table("user", user_field, "user")
    items = entity_table("item", item_field, "item")
    kg = optional("kg")
    if kg is not None:
        cols = list(kg.columns)
        kg = pd.DataFrame({"head": kg[_pick(cols, None, ("head_id", "head"), source["kg"])],
                           "relation": kg[_pick(cols, None, ("relation_id", "relation"), source["kg"])],
                           "tail": kg[_pick(cols, None, ("tail_id", "tail"), source["kg"])]})
    links = optional("link")
    if links is not None:
        cols = list(links.columns)
        links = pd.DataFrame({"item": links[_pick(cols, item_field, ("item_id", "item"), source["link"])],
                              "entity": links[_pick(cols, None, ("entity_id", "entity"), source["link"])]})
    return RecData(name=name, interactions=interactions, users=users, items=items, kg=kg,
                   item_links=links, source=source, atomic_name=name, lines=lines)


def write_inter(frame: pd.DataFrame, path: str | Path) -> None:
    """Write interactions (raw ids) as a RecBole ``.inter`` file with the standard typed header."""
    path = Path(path)
    out = pd.DataFrame({"user_id:token": frame["user"].astype(str),
                        "item_id:token": frame["item"].astype(str),
                        "rating:float": frame["rating"], "timestamp:float": frame["timestamp"]})
    tmp = path.with_name(path.name + ".tmp")
    out.to_csv(tmp, sep="\t", index=False, na_rep="", float_format="%.10g", quoting=csv.QUOTE_NONE)
    tmp.replace(path)
