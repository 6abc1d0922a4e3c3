"""Regenerates data/ (deterministic): a small shop where customers keep to a few departments and
brands. Run from this folder: python make_data.py"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DEPARTMENTS = {"home": ["kitchen", "bedding", "lighting"], "outdoor": ["garden", "camping", "grill"],
               "tech": ["audio", "phones", "cameras"], "leisure": ["toys", "books", "games"]}
ADJ = ["compact", "premium", "classic", "wireless", "eco", "portable", "family", "pro"]


def main(out: Path = Path(__file__).parent / "data", seed: int = 5) -> None:
    rng = np.random.default_rng(seed)
    cats = [(d, c) for d, cs in DEPARTMENTS.items() for c in cs]
    n_products, n_customers, n_brands = 240, 400, 16
    cat_of = rng.integers(len(cats), size=n_products)
    brand_of = rng.integers(n_brands, size=n_products)
    products = pd.DataFrame({
        "product_id": [f"P{p:04d}" for p in range(n_products)],
        "title": [f"{rng.choice(ADJ).title()} {cats[c][1]} set {p}" for p, c in enumerate(cat_of)],
        "description": [f"A {rng.choice(ADJ)} {cats[c][1]} product from brand B{b:02d} for the "
                        f"{cats[c][0]} department" for c, b in zip(cat_of, brand_of)],
        "category": [cats[c][1] for c in cat_of],
        "brand": [f"B{b:02d}" for b in brand_of],
    })
    rows = []
    for u in range(n_customers):
        liked_cats = rng.choice(len(cats), size=2, replace=False)
        liked_brand = rng.integers(n_brands, size=2)
        w = np.ones(n_products)
        w[np.isin(cat_of, liked_cats)] *= 25
        w[np.isin(brand_of, liked_brand)] *= 4
        n = rng.integers(6, 25)
        bought = rng.choice(n_products, size=n, replace=False, p=w / w.sum())
        t0 = 1_690_000_000 + rng.integers(0, 10_000_000)
        rows += [(f"C{u:04d}", f"P{p:04d}", t0 + 86_400 * k) for k, p in enumerate(bought)]
    purchases = pd.DataFrame(rows, columns=["customer_id", "product_id", "timestamp"])
    events = browsing_events(purchases, cat_of, np.random.default_rng(seed + 1))
    kg = pd.concat([
        pd.DataFrame({"head": products["product_id"], "relation": "in_category", "tail": "cat:" + products["category"]}),
        pd.DataFrame({"head": products["product_id"], "relation": "made_by", "tail": "brand:" + products["brand"]}),
        pd.DataFrame({"head": [f"cat:{c}" for _, c in cats], "relation": "in_department",
                      "tail": [f"dept:{d}" for d, _ in cats]}),
    ])
    links = pd.DataFrame({"product_id": products["product_id"], "entity": products["product_id"]})
    out.mkdir(exist_ok=True)
    purchases.to_csv(out / "purchases.csv", index=False)
    products.to_csv(out / "products.csv", index=False)
    kg.to_csv(out / "product_kg.csv", index=False)
    links.to_csv(out / "product_links.csv", index=False)
    events.to_csv(out / "events.csv", index=False)


def browsing_events(purchases: pd.DataFrame, cat_of: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """The click / cart / purchase log around the purchases: every purchase comes after a click
    and a cart, and customers also browse products they do not buy (mostly in the categories they
    buy from), with longer page dwell times on the categories they care about."""
    rows = []
    for customer, own in purchases.groupby("customer_id", sort=True):
        bought = own["product_id"].str[1:].astype(int).to_numpy()
        cats = np.unique(cat_of[bought])
        for product, t in zip(bought, own["timestamp"]):
            rows.append((customer, product, "click", t - 3_600, rng.integers(60, 400)))
            rows.append((customer, product, "cart", t - 600, rng.integers(20, 120)))
            rows.append((customer, product, "purchase", t, rng.integers(30, 200)))
        w = np.where(np.isin(cat_of, cats), 12.0, 1.0)
        w[bought] = 0
        browsed = rng.choice(len(cat_of), size=int(rng.integers(8, 30)), replace=False, p=w / w.sum())
        for product in browsed:
            t = int(own["timestamp"].min()) + int(rng.integers(0, 40 * 86_400))
            liked = cat_of[product] in cats
            rows.append((customer, product, "click", t, rng.integers(40, 300) if liked else rng.integers(3, 40)))
            if liked and rng.random() < 0.25:
                rows.append((customer, product, "cart", t + 300, rng.integers(10, 90)))
    events = pd.DataFrame(rows, columns=["customer_id", "product_id", "event", "timestamp", "dwell_seconds"])
    events["product_id"] = events["product_id"].map(lambda p: f"P{int(p):04d}")
    return events.sort_values(["customer_id", "timestamp"], kind="stable").reset_index(drop=True)


if __name__ == "__main__":
    main()
