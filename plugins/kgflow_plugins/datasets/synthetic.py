"""A synthetic dataset with planted structure, for tests and quick runs.

Users and items belong to latent clusters. Users mostly interact with (and rate highly) items of
their own cluster; item titles use words of the cluster's vocabulary; the KG links items to their
cluster's genre and to directors who work within one cluster. A model that learns anything should
therefore beat popularity clearly, and the KG and text carry real signal.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from kgflow.plugin import DatasetContext, Params, RecData

VOCAB = [
    ["space", "star", "galaxy", "orbit", "alien", "rocket"],
    ["love", "heart", "wedding", "kiss", "romance", "letter"],
    ["murder", "detective", "shadow", "crime", "alibi", "case"],
    ["dragon", "castle", "magic", "quest", "sword", "wizard"],
    ["laugh", "party", "holiday", "prank", "family", "road"],
    ["war", "soldier", "battle", "empire", "siege", "front"],
    ["ocean", "island", "storm", "ship", "pirate", "reef"],
    ["robot", "code", "machine", "circuit", "future", "signal"],
]
GENRES = ["SciFi", "Romance", "Mystery", "Fantasy", "Comedy", "War", "Adventure", "Techno"]
OCCUPATIONS = ["student", "engineer", "artist", "doctor", "writer", "lawyer", "teacher", "retired"]


class SyntheticParams(Params):
    users: int = Field(300, ge=2)
    items: int = Field(200, ge=2)
    clusters: int = Field(4, ge=1, le=len(VOCAB))
    interactions_per_user: int = Field(20, ge=1)
    in_cluster: float = Field(0.85, ge=0, le=1, description="share of a user's items from their cluster")
    directors_per_cluster: int = Field(3, ge=1)
    seed: int = Field(0, description="generator seed (the data, not the split)")


def generate(params: SyntheticParams) -> RecData:
    rng = np.random.default_rng(params.seed)
    n_u, n_i, k = params.users, params.items, params.clusters
    user_cluster = rng.integers(k, size=n_u)
    item_cluster = np.arange(n_i) % k
    rng.shuffle(item_cluster)
    popularity = 1.0 / np.arange(1, n_i + 1) ** 0.7
    rng.shuffle(popularity)

    rows_u, rows_i, rows_r = [], [], []
    for c in range(k):
        members = np.flatnonzero(user_cluster == c)
        if not len(members):
            continue
        own = item_cluster == c
        for weights, share, rating_range in ((own, params.in_cluster, (4, 6)),
                                             (~own, 1 - params.in_cluster, (1, 4))):
            p = popularity * weights
            if p.sum() == 0:
                continue
            p = p / p.sum()
            n = int(round(params.interactions_per_user * share))
            n = min(n, int(weights.sum()))
            if n == 0:
                continue
            # sample without replacement per user via Gumbel top-k
            gumbel = np.log(p + 1e-12)[None, :] - np.log(-np.log(rng.random((len(members), n_i))))
            chosen = np.argsort(-gumbel, axis=1)[:, :n]
            rows_u.append(np.repeat(members, n))
            rows_i.append(chosen.ravel())
            rows_r.append(rng.integers(*rating_range, size=len(members) * n))
    user = np.concatenate(rows_u)
    item = np.concatenate(rows_i)
    rating = np.concatenate(rows_r).astype(float)
    timestamp = 1_000_000_000 + rng.permutation(len(user)).astype(float) * 60
    interactions = pd.DataFrame({"user": [f"u{u}" for u in user], "item": [f"i{i}" for i in item],
                                 "rating": rating, "timestamp": timestamp})

    vocab = [VOCAB[c % len(VOCAB)] for c in range(k)]
    titles = [" ".join(rng.choice(vocab[c], size=2, replace=False)).title() + f" {i}"
              for i, c in enumerate(item_cluster)]
    items = pd.DataFrame({
        "title": titles,
        "genre": [GENRES[c % len(GENRES)] for c in item_cluster],
        "year": (1970 + rng.integers(0, 50, size=n_i)).astype(str),
    }, index=pd.Index([f"i{i}" for i in range(n_i)], name="item"))
    users = pd.DataFrame({
        "age": (18 + rng.integers(0, 50, size=n_u)).astype(str),
        "gender": rng.choice(["F", "M"], size=n_u),
        "occupation": [OCCUPATIONS[(c + rng.integers(0, 2)) % len(OCCUPATIONS)] for c in user_cluster],
    }, index=pd.Index([f"u{u}" for u in range(n_u)], name="user"))

    director = item_cluster * params.directors_per_cluster + rng.integers(
        params.directors_per_cluster, size=n_i)
    entity = np.array([f"e.item{i}" for i in range(n_i)], dtype=object)
    kg = pd.concat([
        pd.DataFrame({"head": entity, "relation": "film.genre",
                      "tail": [f"e.genre{c}" for c in item_cluster]}),
        pd.DataFrame({"head": entity, "relation": "film.directed_by",
                      "tail": [f"e.director{d}" for d in director]}),
        pd.DataFrame({"head": [f"e.director{d}" for d in range(k * params.directors_per_cluster)],
                      "relation": "person.nationality",
                      "tail": [f"e.country{d % 3}" for d in range(k * params.directors_per_cluster)]}),
    ], ignore_index=True)
    links = pd.DataFrame({"item": [f"i{i}" for i in range(n_i)], "entity": entity})
    return RecData(name="synthetic", interactions=interactions, users=users, items=items, kg=kg,
                   item_links=links)


def load(params: SyntheticParams, ctx: DatasetContext) -> RecData:
    return generate(params)
