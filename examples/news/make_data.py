"""Regenerates data/ (deterministic): readers who follow topics and named entities, clicking
articles over time. Run from this folder: python make_data.py"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TOPICS = ["politics", "sports", "science", "business", "culture", "travel"]
ENTITIES = {t: [f"{t}_entity_{k}" for k in range(5)] for t in TOPICS}
SOURCES = ["Daily Ledger", "Morning Wire", "City Post", "Global Times"]
REGIONS = ["north", "south", "east", "west"]


def main(out: Path = Path(__file__).parent / "data", seed: int = 9) -> None:
    rng = np.random.default_rng(seed)
    n_articles, n_readers = 300, 350
    topic_of = rng.integers(len(TOPICS), size=n_articles)
    published = np.sort(1_700_000_000 + rng.integers(0, 30 * 86_400, size=n_articles))
    mentions = [rng.choice(ENTITIES[TOPICS[t]], size=2, replace=False) for t in topic_of]
    articles = pd.DataFrame({
        "article_id": [f"N{a:04d}" for a in range(n_articles)],
        "headline": [f"{TOPICS[t].title()}: {m[0].replace('_', ' ')} meets {m[1].replace('_', ' ')}"
                     for t, m in zip(topic_of, mentions)],
        "topic": [TOPICS[t] for t in topic_of],
        "source": rng.choice(SOURCES, size=n_articles),
        "published": published,
    })
    readers = pd.DataFrame({"reader_id": [f"R{r:04d}" for r in range(n_readers)],
                            "region": rng.choice(REGIONS, size=n_readers)})
    rows = []
    for r in range(n_readers):
        follows = rng.choice(len(TOPICS), size=2, replace=False)
        w = np.where(np.isin(topic_of, follows), 30.0, 1.0)
        favourite = rng.choice(ENTITIES[TOPICS[follows[0]]])
        w[[favourite in m for m in mentions]] *= 5
        n = rng.integers(8, 30)
        clicked = rng.choice(n_articles, size=n, replace=False, p=w / w.sum())
        rows += [(f"R{r:04d}", f"N{a:04d}", int(1_700_000_000 + rng.integers(0, 30 * 86_400)))
                 for a in clicked]
    clicks = pd.DataFrame(rows, columns=["reader_id", "article_id", "clicked_at"])
    kg = pd.concat([
        pd.DataFrame({"head": articles["article_id"], "relation": "about",
                      "tail": "topic:" + articles["topic"]}),
        pd.DataFrame({"head": np.repeat(articles["article_id"].to_numpy(), 2), "relation": "mentions",
                      "tail": np.concatenate(mentions)}),
        pd.DataFrame({"head": articles["article_id"], "relation": "published_by",
                      "tail": "source:" + articles["source"]}),
    ])
    links = pd.DataFrame({"article_id": articles["article_id"], "entity": articles["article_id"]})
    out.mkdir(exist_ok=True)
    for name, frame in (("clicks", clicks), ("articles", articles), ("readers", readers),
                        ("news_kg", kg), ("article_links", links)):
        frame.to_csv(out / f"{name}.tsv", sep="\t", index=False)


if __name__ == "__main__":
    main()
