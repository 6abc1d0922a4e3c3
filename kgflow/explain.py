"""KG-path explanations for recommendations, and a check that they are faithful.

For a user u and a recommended item i, a path is ``u -> j -> e -> i``: an item j from u's training
history, a KG entity (or attribute value) e that j and i share in the run's graph, and the two
facts linking them. Paths are ranked by the model:

- encoders that weight edges (``GraphEncoder.edge_weights()``, e.g. KGAT's attention): the product
  of the weights along the path's edges;
- otherwise: the cosine similarity of j's and i's final item representations, divided by the
  entity's degree (a shared director says more than a shared genre).

Entities shared by more than a tenth of all items (a language, a country) are not used: "you liked
another film in English" explains nothing.

The faithfulness check removes the history items that explain an item from the user's training
interactions, rebuilds the graph and the model around the same trained parameters, and asks
whether the item's score went down.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from kgflow.inference import TrainedRun, item_titles


@dataclass
class Path:
    history_item: str
    entity: str
    relation_in: str  # j -> e
    relation_out: str  # e -> i
    strength: float

    def sentence(self, titles: dict[str, str] | None = None) -> str:
        name = (titles or {}).get(self.history_item, self.history_item)
        return (f"you liked {name}, which shares {self.entity} ({self.relation_in}) with it "
                f"[{self.strength:.3g}]")


class Explainer:
    """Paths through the run's graph, ranked by the run's model."""

    def __init__(self, run: TrainedRun, max_item_share: float = 0.1) -> None:
        """``max_item_share``: entities shared by more than this share of all items (a language, a
        country) explain nothing and are not used as the middle of a path."""
        self.run = run
        graph = run.graph
        self.item_offset = graph.node_offsets["item"]
        self.first_extra = graph.n_users + graph.n_items
        src, dst = graph.edge_index.numpy()
        knowledge = graph.knowledge_edges().numpy()
        types = graph.edge_type.numpy()
        self.kg = pd.DataFrame({"src": src[knowledge], "dst": dst[knowledge],
                                "rel": np.asarray(graph.relation_names, dtype=object)[types[knowledge]]})
        self.degree = self.kg.groupby("src").size()
        n_items = graph.n_items
        is_item = (self.kg["dst"] >= self.item_offset) & (self.kg["dst"] < self.item_offset + n_items)
        items_per_entity = self.kg[is_item].groupby("src").size()
        self.hubs = set(items_per_entity.index[items_per_entity.to_numpy() > max_item_share * n_items])
        # Edge weights as sorted (src, dst) keys and their weights, looked up by binary search: a
        # Python dict of every edge would cost gigabytes on a large graph.
        self.edge_weights: tuple[np.ndarray, np.ndarray] | None = None
        self.n_nodes = graph.num_nodes
        for module in run.model.modules():
            getter = getattr(module, "edge_weights", None)
            weights = getter() if callable(getter) else None
            if weights is not None:
                keys = src.astype(np.int64) * self.n_nodes + dst
                order = np.argsort(keys, kind="stable")
                self.edge_weights = (keys[order], weights.detach().float().cpu().numpy()[order])
                break
        with torch.no_grad():
            items = run.model().item.float()
        self.items = torch.nn.functional.normalize(items, dim=1).numpy()
        self.titles = item_titles(run)

    def node_label(self, node: int) -> str:
        names = self.run.graph.extra_names
        offset = node - self.first_extra
        if 0 <= offset < len(names):
            return names[offset]
        item = node - self.item_offset
        return self.titles.get(str(self.run.split.item_ids[item]), str(self.run.split.item_ids[item]))

    def _weight(self, a: int, b: int) -> float:
        if self.edge_weights is None:
            return 0.0
        keys, weights = self.edge_weights
        key = int(a) * self.n_nodes + int(b)
        at = int(np.searchsorted(keys, key))
        return float(weights[at]) if at < len(keys) and keys[at] == key else 0.0

    def paths(self, user: int, item: int, limit: int = 3) -> list[Path]:
        """The strongest ``u -> j -> e -> i`` paths for dense user and item indices."""
        split = self.run.split
        return self.paths_from(split.train.item[split.train.user == user], item, limit, user)

    def paths_from(self, history: np.ndarray, item: int, limit: int = 3,
                   user: int | None = None) -> list[Path]:
        """Paths from given history items (dense indices) to ``item``; ``user`` is the trained
        user's node, whose edges to the history carry attention (a new user has none: weight 1)."""
        split = self.run.split
        i_node = item + self.item_offset
        into_item = self.kg[(self.kg["dst"] == i_node) & ~self.kg["src"].isin(self.hubs)]  # e -> i
        if into_item.empty or not len(history):
            return []
        h_nodes = history + self.item_offset
        from_history = self.kg[self.kg["src"].isin(h_nodes) & self.kg["dst"].isin(into_item["src"])]
        if from_history.empty:
            return []
        merged = from_history.merge(into_item, left_on="dst", right_on="src", suffixes=("_in", "_out"))
        out: list[Path] = []
        for row in merged.itertuples():
            j, e = int(row.src_in), int(row.dst_in)
            if self.edge_weights is not None:
                first = self._weight(user, j) if user is not None else 1.0
                strength = first * self._weight(j, e) * self._weight(e, i_node)
            else:
                similarity = float(self.items[j - self.item_offset] @ self.items[item])
                strength = similarity / float(self.degree.get(e, 1))
            out.append(Path(str(split.item_ids[j - self.item_offset]), self.node_label(e),
                            row.rel_in, row.rel_out, strength))
        best: dict[tuple[str, str], Path] = {}
        for path in sorted(out, key=lambda p: -p.strength):
            best.setdefault((path.history_item, path.entity), path)
        return list(best.values())[:limit]

    def explain(self, users: list[str], k: int = 10, limit: int = 3) -> list[dict]:
        """Recommendations with their paths, as records."""
        user_index = dict(zip(users, self.run.user_index(users)))
        return self._records(self.run.recommend(users, k),
                             lambda row, item: self.paths(int(user_index[row.user]), item, limit))

    def explain_new(self, liked: list[str] = (), text: str | None = None, k: int = 10,
                    limit: int = 3) -> list[dict]:
        """Recommendations for a new user (liked items and/or profile text) with their paths from
        the liked items."""
        table = self.run.recommend_new(liked, text, k)
        table.insert(0, "user", "new")
        history = self.run.item_index(list(liked))
        return self._records(table, lambda row, item: self.paths_from(history, item, limit))

    def _records(self, table: pd.DataFrame, paths_of) -> list[dict]:
        """One record per recommendation row; ``paths_of(row, dense item)`` gives its paths."""
        item_index = pd.Index(self.run.split.item_ids.astype(str))
        records = []
        for row in table.itertuples():
            paths = paths_of(row, int(item_index.get_loc(str(row.item))))
            records.append({"user": row.user, "rank": row.rank, "item": row.item,
                            "title": self.titles.get(str(row.item)), "score": row.score,
                            "paths": [p.__dict__ | {"sentence": p.sentence(self.titles)} for p in paths]})
        return records


def faithfulness(run: TrainedRun, sample: int = 30, k: int = 10, seed: int = 0,
                 hub_share: float = 0.1) -> dict:
    """For a sample of users and their top-k items with at least one path: remove the history items
    of the item's paths from the user's training interactions, rebuild graph and model with the
    same parameters, and count how often the item's score drops."""
    from kgflow.registry import get_registry
    from kgflow.runs.runner import Prepared, build_graph, build_recommender

    explainer = Explainer(run, hub_share)
    split = run.split
    users = random.Random(seed).sample(range(split.n_users), min(sample, split.n_users))
    raw = [str(split.user_ids[u]) for u in users]
    checked = lowered = with_path = total = 0
    state = run.model.state_dict()
    registry = get_registry()
    item_index = pd.Index(split.item_ids.astype(str))
    for record in explainer.explain(raw, k=k):
        total += 1
        if not record["paths"]:
            continue
        with_path += 1
        user = int(run.user_index([record["user"]])[0])
        item = int(item_index.get_loc(str(record["item"])))
        drop = {p["history_item"] for p in record["paths"]}
        drop_idx = set(item_index.get_indexer(list(drop)).tolist())
        keep = ~((split.train.user == user) & np.isin(split.train.item, list(drop_idx)))
        if keep.all():
            continue
        reduced = replace(split, train=split.train.subset(keep))
        prepared = Prepared(run.prepared.data, reduced)  # type: ignore[attr-defined]
        graph = build_graph(run.loaded, prepared, registry)
        model = build_recommender(run.loaded, prepared, graph, registry, training=False)
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in state.items() if k in own and own[k].shape == v.shape},
                              strict=False)
        model.eval()
        with torch.no_grad():
            for module in model.modules():
                refresh = getattr(module, "after_train_epoch", None)
                if callable(refresh) and module is not model:
                    refresh()
            emb = model()
            after = float(model.score(emb, torch.tensor([user]), torch.tensor([item]))[0])
        checked += 1
        lowered += after < record["score"]
    return {"users": len(users), "recommendations": total, "with_path": with_path,
            "share_with_path": with_path / max(total, 1), "checked": checked, "score_lowered": lowered,
            "share_lowered": lowered / max(checked, 1)}

