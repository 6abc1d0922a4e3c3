"""Reading a data file's bytes and text, with errors that name the file and say what to do.

Every reader of user data goes through here, so that a missing, unreadable or wrongly encoded file
is a :class:`~kgflow.errors.DataError` (exit 2, no traceback) naming the file -- and, for a byte
that is not valid in the declared encoding, its byte offset and line -- instead of a Python
``PermissionError`` or ``UnicodeDecodeError`` from deep inside pandas.
"""
from __future__ import annotations

import codecs
import io
import re
from pathlib import Path
from typing import Any

import pandas as pd

from kgflow.errors import DataError

#: byte-order marks that tell a file's encoding, and the name to declare for each
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def check_encoding(name: str) -> str:
    """``name`` if Python knows the codec (for parameter validation), else a ``ValueError``."""
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown text encoding {name!r}; use a Python codec name such as "
                         "utf-8, latin-1, cp1252 or utf-16") from None
    return name


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes; a missing, unreadable or non-regular file is a :class:`DataError`."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: data file not found") from None
    except PermissionError:
        raise DataError(f"{path}: cannot be read (permission denied); give the user running kgflow "
                        "read access to it") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def decode(raw: bytes, path: str | Path, encoding: str = "utf-8") -> str:
    """``raw`` as text in ``encoding`` (a UTF-8 byte-order mark is dropped); a byte that is not
    valid there is reported with its offset, line and a likely encoding."""
    codec = codecs.lookup(encoding).name
    if codec == "utf-8":
        codec = "utf-8-sig"  # a BOM would otherwise become part of the first field's name
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        offset = exc.start
        line = raw[:offset].count(b"\n") + 1
        guess = next((name for bom, name in _BOMS if raw.startswith(bom)), None)
        if guess:
            hint = f"it starts with a {guess.upper()} byte-order mark: set encoding: {guess}"
        else:
            hint = ("if the file is Latin-1 or Windows text, set encoding: latin-1 (or cp1252); "
                    "or convert it to UTF-8")
        raise DataError(f"{path}:{line}: not valid {encoding} text: byte 0x{raw[offset]:02x} at "
                        f"byte offset {offset}; {hint} (the dataset's `encoding:` parameter)"
                        ) from None


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The whole file as text (see :func:`read_bytes` and :func:`decode`)."""
    return decode(read_bytes(path), path, encoding)


def row_lines(text: str | list[str], skip: int = 1) -> list[int]:
    """The 1-based line numbers of the non-empty lines after the first ``skip``: the line each data
    row of a file without quoted line breaks came from (pandas skips blank lines). ``text`` may
    be given already split at its newlines."""
    lines = text.split("\n") if isinstance(text, str) else text
    return [number for number, line in enumerate(lines[skip:], start=skip + 1)
            if line.rstrip("\r")]


def parse_rows(text: str, path: str | Path, **read_csv: Any) -> pd.DataFrame:
    """``text`` parsed by ``pandas.read_csv`` with every value kept as text (an empty field stays
    empty, never NaN); a row with too many fields is reported with its line."""
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[],
                           **read_csv)
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise DataError(f"{path}:{m.group(2)}: row has {m.group(3)} fields, the header has "
                            f"{m.group(1)}") from None
        raise DataError(f"{path}: cannot parse: {exc}") from None
    except (ValueError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot parse: {exc}") from None
