"""``toy-shop``: customers buy products mostly from their favourite category; products have a
category and a brand (the knowledge graph) and a one-line description (the text)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from kgflow.plugin import Params, RecData

CATEGORIES = ["kitchen", "garden", "toys", "books", "audio", "sports"]
ADJECTIVES = ["compact", "classic", "deluxe", "eco", "smart", "travel"]


class ToyShopParams(Params):
    customers: int = Field(200, ge=2)
    products: int = Field(120, ge=len(CATEGORIES))
    purchases_per_customer: int = Field(12, ge=1)
    brands: int = Field(10, ge=1)
    seed: int = 0


def load_toy_shop(params: ToyShopParams, ctx) -> RecData:
    rng = np.random.default_rng(params.seed)
    category = np.arange(params.products) % len(CATEGORIES)
    brand = rng.integers(params.brands, size=params.products)
    favourite = rng.integers(len(CATEGORIES), size=params.customers)
    rows = []
    for c in range(params.customers):
        weights = np.where(category == favourite[c], 8.0, 1.0)
        bought = rng.choice(params.products, size=params.purchases_per_customer, replace=False,
                            p=weights / weights.sum())
        rows += [(f"c{c}", f"p{p}", float(rng.integers(3, 6)), float(1_700_000_000 + 3600 * k))
                 for k, p in enumerate(bought)]
    interactions = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    items = pd.DataFrame({
        "description": [f"{rng.choice(ADJECTIVES)} {CATEGORIES[k]} item by brand{b}"
                        for k, b in zip(category, brand)],
        "category": [CATEGORIES[k] for k in category],
    }, index=pd.Index([f"p{p}" for p in range(params.products)], name="item"))
    kg = pd.concat([
        pd.DataFrame({"head": [f"p{p}" for p in range(params.products)], "relation": "in_category",
                      "tail": [f"cat:{CATEGORIES[k]}" for k in category]}),
        pd.DataFrame({"head": [f"p{p}" for p in range(params.products)], "relation": "made_by",
                      "tail": [f"brand:{b}" for b in brand]}),
    ], ignore_index=True)
    links = pd.DataFrame({"item": [f"p{p}" for p in range(params.products)],
                          "entity": [f"p{p}" for p in range(params.products)]})
    return RecData(name="toy-shop", interactions=interactions, items=items, kg=kg, item_links=links)
