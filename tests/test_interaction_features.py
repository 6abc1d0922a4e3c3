"""Interaction features: weights from a rating, value or repeat count (preprocess.weight) on graph
edges and in the loss, and multiple behaviours (preprocess.behaviors, below_threshold_as) as
auxiliary relations of the graph -- against hand-computed values and end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import assert_reported_metrics_reproduce
from kgflow.config.schema import InteractionWeight, Preprocess
from kgflow.data.behaviors import attach_auxiliary, auxiliary_interactions
from kgflow.data.preprocess import prepare_interactions
from kgflow.data.recdata import RecData, Split
from kgflow.data.weights import interaction_weights
from kgflow.errors import DataError, NotSupportedError
from kgflow.graph import EdgeBlock, assemble_graph
from kgflow.models import weighted_mean
from kgflow.plugin import LossContext, NoParams
from kgflow.training.module import check_weighted_loss
from kgflow_plugins.encoders.id_based import LightGCN, LightGCNParams, normalized_adjacency
from kgflow_plugins.objectives.losses import bpr


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


# -- weights -------------------------------------------------------------------------------

def test_clip_then_log1p_then_user_mean_by_hand():
    frame = _frame([("a", "x", 1.0, 0), ("a", "y", 3.0, 0), ("b", "x", 100.0, 0), ("b", "y", 7.0, 0)])
    user = np.array([0, 0, 1, 1])
    cfg = InteractionWeight(column="rating", clip=[None, 7], transform="log1p", normalize="user_mean")
    w = interaction_weights(frame, user, cfg)
    a = [math.log(2), math.log(4)]
    b = [math.log(8), math.log(8)]  # 100 clipped to 7
    expected = [a[0] / (sum(a) / 2), a[1] / (sum(a) / 2), 1.0, 1.0]
    assert w.tolist() == pytest.approx(expected)
    w = interaction_weights(frame, user, InteractionWeight(column="rating", normalize="user_max"))
    assert w.tolist() == pytest.approx([1 / 3, 1.0, 1.0, 0.07])
    assert b[0] == b[1]


def test_repeat_counts_become_weights_before_dedupe_keeps_one_row():
    frame = _frame([("a", "x", 1, 1), ("a", "x", 1, 2), ("a", "x", 1, 3), ("a", "y", 1, 4),
                    ("b", "x", 1, 5), ("b", "y", 1, 6), ("b", "y", 1, 7)])
    data = RecData("clicks", frame)
    cfg = Preprocess(rating_threshold=None, weight={"column": "count", "transform": "log1p"})
    inter = prepare_interactions(data, cfg)
    got = {(inter.user_ids[u], inter.item_ids[i]): w for u, i, w in zip(inter.user, inter.item, inter.weight)}
    assert got == pytest.approx({("a", "x"): math.log(4), ("a", "y"): math.log(2),
                                 ("b", "x"): math.log(2), ("b", "y"): math.log(3)})


def test_a_weight_that_is_not_positive_is_refused_with_the_row():
    frame = _frame([("a", "x", 0.0, 0), ("a", "y", 2.0, 0)])
    with pytest.raises(DataError, match=r"not positive, first user 'a', item 'x': 0.*clip"):
        interaction_weights(frame, np.array([0, 0]), InteractionWeight(column="rating"))


def test_a_missing_value_column_says_how_to_map_one():
    data = RecData("d", _frame([("a", "x", 5.0, 0), ("b", "x", 5.0, 0)]))
    with pytest.raises(DataError, match="no value values; map one with `value:`"):
        prepare_interactions(data, Preprocess(weight={"column": "value"}))


def test_weights_used_nowhere_are_a_config_error():
    with pytest.raises(ValueError, match="used nowhere"):
        InteractionWeight(column="rating", graph=False, loss=False)


# -- weighted graphs -----------------------------------------------------------------------

def test_weighted_blocks_keep_their_weight_both_ways_and_duplicates_keep_the_largest():
    blocks = [EdgeBlock("interact", np.array([0, 0, 1]), np.array([2, 2, 3]), np.array([1.0, 3.0, 2.0])),
              EdgeBlock("likes", np.array([1]), np.array([2]))]
    g = assemble_graph({"user": 2, "item": 2}, blocks, inverse_relations=False)
    edges = {(int(s), int(d)): float(w) for (s, d), w in zip(g.edge_index.T.tolist(), g.edge_weight)}
    assert edges == {(0, 2): 3.0, (1, 3): 2.0, (2, 0): 3.0, (3, 1): 2.0, (1, 2): 1.0, (2, 1): 1.0}


def test_weighted_normalisation_by_hand():
    # user 0 -- item 2 (weight 2), user 0 -- item 3 (weight 1), user 1 -- item 2 (weight 1)
    g = assemble_graph({"user": 2, "item": 2},
                       [EdgeBlock("interact", np.array([0, 0, 1]), np.array([2, 3, 2]),
                                  np.array([2.0, 1.0, 1.0]))], inverse_relations=False)
    adj = normalized_adjacency(g).to_dense()
    deg = {0: 3.0, 1: 1.0, 2: 3.0, 3: 1.0}
    assert adj[0, 2].item() == pytest.approx(2 / math.sqrt(deg[0] * deg[2]))
    assert adj[2, 1].item() == pytest.approx(1 / math.sqrt(deg[2] * deg[1]))
    assert adj[0, 3].item() == pytest.approx(1 / math.sqrt(deg[0] * deg[3]))
    assert adj[1, 3].item() == 0


def test_sampled_propagation_with_every_neighbour_equals_the_weighted_full_graph():
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 6, 30), rng.integers(6, 14, 30)
    g = assemble_graph({"user": 6, "item": 8}, [EdgeBlock("interact", src, dst, rng.uniform(0.2, 3, 30))],
                       inverse_relations=False)
    model = LightGCN(g, LightGCNParams(dim=4, layers=2))
    full = model.propagate(model.user.weight, model.item.weight)
    nodes = torch.arange(g.num_nodes)
    sampled = model.forward_sampled(nodes, g.edge_index, torch.arange(g.edge_index.shape[1]))
    assert torch.allclose(sampled[:6], full.user, atol=1e-6)
    assert torch.allclose(sampled[6:], full.item, atol=1e-6)


# -- weighted losses -----------------------------------------------------------------------

def test_weighted_bpr_by_hand():
    loss = bpr(NoParams(), LossContext(1))
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([[0.0], [1.0]])
    per = [-math.log(1 / (1 + math.exp(-2))), -math.log(1 / (1 + math.exp(1)))]
    assert loss(pos, neg).item() == pytest.approx(sum(per) / 2)
    assert loss(pos, neg, weight=torch.tensor([3.0, 1.0])).item() == pytest.approx((3 * per[0] + per[1]) / 4)
    assert weighted_mean(torch.tensor([1.0, 5.0]), None).item() == 3.0


def test_a_loss_without_weights_is_refused_when_the_loss_is_weighted():
    check_weighted_loss(bpr(NoParams(), LossContext(1)), "bpr")
    with pytest.raises(NotSupportedError, match="objective.loss 'plain' does not take per-positive weights"):
        check_weighted_loss(lambda pos, neg: (neg - pos).mean(), "plain")


# -- behaviours ------------------------------------------------------------------------------

def _shop() -> RecData:
    rows = [("a", "x", "buy"), ("a", "y", "buy"), ("a", "z", "click"), ("a", "x", "click"),
            ("b", "x", "buy"), ("b", "y", "buy"), ("b", "z", "buy"), ("b", "w", "cart"),
            ("c", "y", "buy"), ("c", "z", "buy"), ("c", "x", "click"), ("c", "q", "click")]
    frame = pd.DataFrame(rows, columns=["user", "item", "behavior"])
    return RecData("shop", frame)


def test_target_behaviour_is_what_is_split_and_others_join_its_ids():
    data = _shop()
    cfg = Preprocess(rating_threshold=None, behaviors={"target": ["buy"]})
    target = prepare_interactions(data, cfg)
    assert len(target) == 7 and list(target.item_ids) == ["x", "y", "z"]
    aux = auxiliary_interactions(data, cfg, target)
    pairs = {name: {(target.user_ids[u], target.item_ids[i]) for u, i in zip(p.user, p.item)}
             for name, p in aux.items()}
    # item w and q are bought by nobody: they have no node, so their rows are left out
    assert pairs == {"click": {("a", "z"), ("a", "x"), ("c", "x")}, "cart": set()}
    only_clicks = Preprocess(rating_threshold=None, behaviors={"target": ["buy"], "auxiliary": ["click"]})
    assert list(auxiliary_interactions(data, only_clicks, target)) == ["click"]


def test_auxiliary_pairs_that_are_held_out_targets_are_dropped():
    data = _shop()
    cfg = Preprocess(rating_threshold=None, behaviors={"target": ["buy"]})
    target = prepare_interactions(data, cfg)
    # user a (0) bought x (0) and y (1): put (a, x) in test
    is_test = (target.user == 0) & (target.item == 0)
    split = Split(target.subset(~is_test), target.subset(np.zeros(len(target), bool)), target.subset(is_test),
                  "random")
    split, dropped = attach_auxiliary(split, auxiliary_interactions(data, cfg, target))
    clicks = {(int(u), int(i)) for u, i in zip(split.auxiliary["click"].user, split.auxiliary["click"].item)}
    assert clicks == {(0, 2), (2, 0)} and dropped == {"click": 1, "cart": 0}


def test_unknown_behaviours_are_listed():
    with pytest.raises(DataError, match=r"names \['purchase'\].*behaviours are \['buy', 'cart', 'click'\]"):
        prepare_interactions(_shop(), Preprocess(rating_threshold=None, behaviors={"target": ["purchase"]}))
    frame = _frame([("a", "x", 5.0, 0)])
    with pytest.raises(DataError, match="no behavior column"):
        prepare_interactions(RecData("d", frame), Preprocess(behaviors={"target": ["buy"]}))


def test_ratings_below_the_threshold_become_the_watched_behaviour():
    frame = _frame([("a", "x", 5, 0), ("a", "y", 2, 0), ("b", "y", 4, 0), ("b", "x", 1, 0), ("b", "z", 3, 0)])
    data = RecData("ml", frame)
    cfg = Preprocess(rating_threshold=4, below_threshold_as="watched")
    target = prepare_interactions(data, cfg)
    aux = auxiliary_interactions(data, cfg, target)["watched"]
    got = {(target.user_ids[u], target.item_ids[i]) for u, i in zip(aux.user, aux.item)}
    assert got == {("a", "y"), ("b", "x")}  # z is liked by nobody: no node


# -- end to end ------------------------------------------------------------------------------

@pytest.fixture
def shop_pipeline(write, tmp_path):
    """A click / cart / buy log with dwell times: two taste groups, buys inside the group."""
    rng = np.random.default_rng(1)
    rows = []
    for u in range(50):
        group = u % 2
        for item in rng.choice(15, size=7, replace=False) + 15 * group:
            rows.append((f"u{u}", f"i{item}", "buy", float(rng.integers(20, 300))))
            rows.append((f"u{u}", f"i{item}", "click", float(rng.integers(5, 60))))
        for item in rng.choice(30, size=4, replace=False):
            rows.append((f"u{u}", f"i{item}", rng.choice(["click", "cart"]), float(rng.integers(1, 30))))
    pd.DataFrame(rows, columns=["user", "item", "event", "dwell"]).to_csv(tmp_path / "events.csv", index=False)
    return write("shop.yaml", """
        kgflow: 1
        name: shop
        seed: 5
        dataset:
          name: tabular
          params:
            interactions: {path: events.csv, user: user, item: item, behavior: event, value: dwell}
        preprocess:
          rating_threshold: null
          behaviors: {target: [buy]}
          weight: {column: value, clip: [null, 200], transform: log1p, normalize: user_mean, loss: true}
        encoders:
          graph:
            name: lightgcn
            params: {dim: 8, layers: 2}
        train: {epochs: 4, lr: 0.02, batch_size: 64}
        eval: {ks: [5, 10]}
        """)


def test_a_weighted_multi_behaviour_pipeline_runs_and_serves_what_it_reported(shop_pipeline, invoke, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", str(shop_pipeline), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "auxiliary behaviour click" in result.output and "interaction weights (value)" in result.output
    graph = json.loads((out / "graph.json").read_text())
    assert set(graph["edges"]) >= {"interact", "interact:cart", "interact:click"}
    assert "edge weights" in graph["stats"]
    stats = json.loads((out / "data" / "data.json").read_text())
    assert stats["auxiliary"] == ["cart", "click"] and stats["weighted"] is True
    # the saved run rebuilds the same weighted, multi-relation graph: served scores match
    assert_reported_metrics_reproduce(out, beats_random=False)


def test_an_encoder_that_ignores_edge_weights_refuses_them(shop_pipeline, write, invoke, tmp_path):
    pipe = write("sage.yaml", "kgflow: 1\nextends: shop.yaml\nencoders:\n  graph: {name: sage, params: {dim: 8}}\n")
    result = invoke("run", str(pipe), "--out", str(tmp_path / "sage"), "--no-progress")
    assert result.exit_code != 0
    assert "encoder 'sage' does not use edge weights" in result.output


def test_behaviour_options_are_refused_on_a_predefined_split(write, invoke, tmp_path):
    pipe = write("p.yaml", """
        kgflow: 1
        dataset: {name: synthetic, params: {users: 20, items: 10}}
        split: {method: predefined, path: nowhere}
        preprocess: {below_threshold_as: watched}
        encoders: {graph: {name: mf}}
        """)
    result = invoke("validate", str(pipe))
    assert result.exit_code != 0
    assert "p.yaml:4 preprocess.below_threshold_as" in result.output
    assert "predefined reads its parts as they are" in result.output


def test_on_a_split_by_time_later_auxiliary_events_are_dropped():
    rows = [("a", "x", "buy", 1), ("a", "y", "buy", 5), ("a", "z", "buy", 9), ("b", "w", "buy", 1),
            ("b", "v", "buy", 1), ("a", "z", "click", 2), ("a", "w", "click", 4), ("a", "w", "click", 7),
            ("a", "v", "click", 6)]
    data = RecData("shop", pd.DataFrame(rows, columns=["user", "item", "behavior", "timestamp"]))
    cfg = Preprocess(rating_threshold=None, behaviors={"target": ["buy"]})
    target = prepare_interactions(data, cfg)
    is_a, t = target.user == 0, target.timestamp
    train, valid, test = (is_a & (t < 5)) | ~is_a, is_a & (t == 5), is_a & (t == 9)
    split = Split(target.subset(train), target.subset(valid), target.subset(test), "leave_one_out")
    split, dropped = attach_auxiliary(split, auxiliary_interactions(data, cfg, target))
    clicks = sorted(target.item_ids[i] for i in split.auxiliary["click"].item)
    # z is a held-out target; w was first clicked (4) before a's first held-out buy (5); v (6) after
    assert clicks == ["w"] and dropped == {"click": 2}
    random = Split(target.subset(train), target.subset(valid), target.subset(test), "random")
    _, dropped = attach_auxiliary(random, auxiliary_interactions(data, cfg, target))
    assert dropped == {"click": 1}  # a random split has no future: only the held-out pair goes


def test_auxiliary_weights_weigh_their_edges_and_survive_the_run_directory(write, invoke, tmp_path):
    rng = np.random.default_rng(2)
    rows = [(f"u{u}", f"i{i}", float(rng.integers(1, 6)), 0.0) for u in range(40)
            for i in rng.choice(20, size=10, replace=False)]
    _frame(rows).to_csv(tmp_path / "ratings.csv", index=False)
    pipe = write("w.yaml", """
        kgflow: 1
        seed: 2
        dataset:
          name: tabular
          params: {interactions: {path: ratings.csv, user: user, item: item, rating: rating}}
        preprocess: {rating_threshold: 4, below_threshold_as: watched, auxiliary_weights: {watched: 0.25}}
        encoders: {graph: {name: lightgcn, params: {dim: 8, layers: 2}}}
        train: {epochs: 2, batch_size: 64}
        """)
    out = tmp_path / "run"
    result = invoke("run", str(pipe), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    from kgflow.inference import TrainedRun

    graph = TrainedRun.load(out).graph
    watched = graph.edge_type == graph.relation_names.index("interact:watched")
    assert set(graph.edge_weight[watched].tolist()) == {0.25}
    assert set(graph.edge_weight[~watched].tolist()) == {1.0}
    assert_reported_metrics_reproduce(out, beats_random=False)


def test_auxiliary_weights_must_name_an_auxiliary_behaviour():
    with pytest.raises(ValueError, match=r"names 'click', which is no auxiliary behaviour.*\['watched'\]"):
        Preprocess(below_threshold_as="watched", auxiliary_weights={"click": 0.5})
    with pytest.raises(ValueError, match="must be a positive number"):
        Preprocess(below_threshold_as="watched", auxiliary_weights={"watched": 0})
