"""Sampled-subgraph (mini-batch) training: the neighbour sampler, the encoders on subgraphs, and
the settings refused at validation."""
from __future__ import annotations

import json

import pytest
import torch

from kgflow.training.neighbors import NeighborSampler


def _star_and_chain():
    # node 0 hears from 1..20 (a hub); node 21 hears from 22; 22 hears from 23 and 24
    src = list(range(1, 21)) + [22, 23, 24]
    dst = [0] * 20 + [21, 22, 22]
    return torch.tensor([src, dst]), 25


def test_sampler_keeps_small_neighbourhoods_whole_and_caps_hubs():
    edge_index, n = _star_and_chain()
    sampler = NeighborSampler(edge_index, n, [5, 5])
    sub = sampler.sample(torch.tensor([0, 21]), torch.Generator().manual_seed(0))
    src, dst = sub.nodes[sub.edge_index[0]], sub.nodes[sub.edge_index[1]]
    # every sampled edge exists, and its edge id points at it
    assert torch.equal(edge_index[:, sub.edge_id], torch.stack([src, dst]))
    into_hub = (dst == 0).sum()
    assert 1 <= into_hub <= 5  # the hub keeps at most its fan-out
    # 21 has one in-neighbour (22), which has two (23, 24): all kept over two hops
    assert {(int(a), int(b)) for a, b in zip(src, dst) if b in (21, 22)} == {(22, 21), (23, 22), (24, 22)}
    assert torch.equal(sub.nodes[sub.seeds], torch.tensor([0, 21]))
    assert torch.equal(sub.nodes, torch.unique(sub.nodes))


def test_sampler_is_reproducible_and_one_hop_stops_at_one_hop():
    edge_index, n = _star_and_chain()
    sampler = NeighborSampler(edge_index, n, [-1])
    a = sampler.sample(torch.tensor([21, 21]), torch.Generator().manual_seed(3))
    assert a.edge_index.shape[1] == 1 and a.seeds.tolist() == [a.seeds[0]] * 2  # 22 -> 21 only
    hub = NeighborSampler(edge_index, n, [4])
    one = hub.sample(torch.tensor([0]), torch.Generator().manual_seed(1))
    two = hub.sample(torch.tensor([0]), torch.Generator().manual_seed(1))
    assert torch.equal(one.edge_id, two.edge_id)
    with pytest.raises(ValueError, match="fan-outs must be positive"):
        NeighborSampler(edge_index, n, [0])


@pytest.mark.parametrize("encoder", ["lightgcn", "simgcl", "xsimgcl", "gcn", "sage", "kgat", "kgin"])
def test_whole_neighbourhood_equals_full_graph_propagation(encoder):
    """With every neighbour kept (fan-out -1) and every node a seed, the sampled computation is
    the encoder's full-graph forward pass (LightGCN's reweighting included)."""
    from kgflow.config.validate import validate_located
    from kgflow.registry import get_registry
    from kgflow.runs.runner import build_graph, build_recommender, prepare
    from kgflow.testing import pipeline

    params = {"dim": 8, **({"layers": [8, 8]} if encoder == "kgat" else
                           {"hops": 2} if encoder == "kgin" else {"layers": 2})}
    extra = {"graph": "collaborative_kg"} if encoder in ("kgat", "kgin") else {}
    loaded = validate_located(pipeline({"encoders": {"graph": {"name": encoder, "params": params}}, **extra}),
                              "test.yaml")
    registry = get_registry()
    prepared = prepare(loaded, registry)
    graph = build_graph(loaded, prepared, registry)
    model = build_recommender(loaded, prepared, graph, registry).eval()
    if encoder == "kgat":
        model.encoder.after_train_epoch()  # a learned attention, not the uniform start
    edges = model.message_edges()
    edge_index, edge_id = edges if edges is not None else (graph.edge_index, None)
    sampler = NeighborSampler(edge_index, graph.num_nodes, [-1, -1], edge_id)
    everyone = torch.arange(graph.n_users + graph.n_items)
    sub = sampler.sample(everyone)
    with torch.no_grad():
        full = model()
        out = model.encoder.forward_sampled(sub.nodes, sub.edge_index, sub.edge_id)[sub.seeds]
    torch.testing.assert_close(out[:graph.n_users], full.user, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[graph.n_users:], full.item, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("encoder", ["lightgcn", "xsimgcl", "gcn", "sage", "gat", "kgat", "kgin"])
def test_sampled_training_runs_end_to_end(invoke, write, tmp_path, encoder):
    pipeline = write("sampled.yaml", f"""
        kgflow: 1
        name: sampled
        seed: 3
        dataset: {{name: synthetic, params: {{users: 80, items: 50, clusters: 2, interactions_per_user: 10}}}}
        graph: {"collaborative_kg" if encoder in ("kgat", "kgin") else "user_item"}
        encoders: {{graph: {{name: {encoder}, params: {{dim: 8, {"hops: 2" if encoder == "kgin" else "layers: [8, 8]" if encoder == "kgat" else "layers: 2"}}}}}}}
        train: {{epochs: 3, lr: 0.01, batch_size: 128, sampling: {{method: neighbor, fanouts: [4, 3]}}}}
        eval: {{ks: [5, 10]}}
        """)
    result = invoke("run", str(pipeline), "--out", str(tmp_path / "run"), "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["all"]["users"] > 0 and metrics["timing"]["epochs"] == 3


@pytest.mark.parametrize("setting, message", [
    ("train.sampling={method: neighbor, fanouts: [5]}", "1 fan-out(s) for encoder 'lightgcn' with 2 layer(s)"),
    ("train.sampling={method: neighbor, fanouts: [5, 0]}", "fanouts must be positive counts"),
    ("train.sampling={method: neighbor}", "needs fanouts"),
    ("encoders.graph={name: mf, params: {dim: 8}}", "2 fan-out(s) for encoder 'mf' with 0 layer(s)"),
    ("train.optimizer=sparse_adam", "optimizer sparse_adam runs in one process only"),
    ("fusion=content", "fusion 'content' (fusion) cannot train on sampled subgraphs"),
])
def test_bad_sampling_settings_are_refused(runner, tiny_pipeline, setting, message):
    from kgflow.cli import cli

    args = ["validate", str(tiny_pipeline), "--set", setting]
    if setting.startswith(("encoders", "fusion")):
        args += ["--set", "train.sampling={method: neighbor, fanouts: [5, 5]}"]
    if "sparse_adam" in setting:
        args += ["--set", "trainer={devices: 2, strategy: ddp, accelerator: cpu}"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_mf_on_its_batch_rows_with_sparse_adam_learns_like_dense_adam(invoke, write, tmp_path):
    """``fanouts: []`` + ``sparse_adam`` (a step touches only its batch's rows) reaches the
    quality of plain Adam on the same data and seed: it learns the planted clusters."""
    results = {}
    for mode, train in (("dense", ""), ("sparse", ", optimizer: sparse_adam, "
                                                  "sampling: {method: neighbor, fanouts: []}")):
        pipeline = write(f"mf-{mode}.yaml", f"""
            kgflow: 1
            name: mf-{mode}
            seed: 5
            dataset: {{name: synthetic, params: {{users: 200, items: 120, clusters: 4, interactions_per_user: 15}}}}
            encoders: {{graph: {{name: mf, params: {{dim: 16}}}}}}
            train: {{epochs: 30, lr: 0.02, batch_size: 256, early_stopping: null{train}}}
            eval: {{ks: [10]}}
            """)
        result = invoke("run", str(pipeline), "--out", str(tmp_path / mode), "--no-progress")
        assert result.exit_code == 0, result.output
        results[mode] = json.loads((tmp_path / mode / "metrics.json").read_text())["test"]["all"]["ndcg@10"]
    # 4 planted clusters of 30 items: ranking at random gives NDCG@10 around 0.1
    assert results["dense"] > 0.25, results
    assert abs(results["sparse"] - results["dense"]) < 0.05, results


def _fake_torch_sparse_neighbor_sample(colptr, row, seeds, num_neighbors, replace, directed):
    """torch-sparse's ``neighbor_sample`` contract in plain Python (the first ``k`` in-edges of
    each node, all for -1): seeds first in the node list, ``row``/``col`` local sender/receiver,
    ``edge`` positions in the CSC arrays."""
    nodes = [int(s) for s in seeds]
    index = {n: i for i, n in enumerate(nodes)}
    rows, cols, edges = [], [], []
    frontier = list(nodes)
    for k in num_neighbors:
        reached = []
        for dst in frontier:
            lo, hi = int(colptr[dst]), int(colptr[dst + 1])
            for e in range(lo, hi if k < 0 else min(hi, lo + k)):
                src = int(row[e])
                if src not in index:
                    index[src] = len(nodes)
                    nodes.append(src)
                    reached.append(src)
                rows.append(index[src])
                cols.append(index[dst])
                edges.append(e)
        frontier = reached
    as_long = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    return as_long(nodes), as_long(rows), as_long(cols), as_long(edges)


@pytest.fixture
def fake_torch_sparse(monkeypatch):
    """PyG's sampler running on a stand-in for torch-sparse's compiled op (neither pyg-lib nor
    torch-sparse installs everywhere): tests kgflow's use of PyG's sampler output."""
    import types

    import torch_geometric.typing as pyg_typing

    if pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE:
        pytest.skip("a real compiled backend is installed: test_pyg_backend_when_installed covers it")
    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SPARSE", True)
    monkeypatch.setattr(torch.ops, "torch_sparse",
                        types.SimpleNamespace(neighbor_sample=_fake_torch_sparse_neighbor_sample),
                        raising=False)


def _edge_set(sub):
    return {(int(a), int(b), int(e)) for a, b, e in
            zip(sub.nodes[sub.edge_index[0]], sub.nodes[sub.edge_index[1]], sub.edge_id)}


def test_pyg_sampler_output_becomes_the_same_subgraph(fake_torch_sparse):
    from kgflow.training.neighbors import (PygNeighborSampler, backend_name, compiled_backend,
                                           make_neighbor_sampler)

    edge_index, n = _star_and_chain()
    # the edge list in scrambled order, so PyG's CSC permutation matters
    perm = torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(0))
    scrambled = edge_index[:, perm]
    seeds = torch.tensor([21, 0, 21])
    ours = NeighborSampler(scrambled, n, [-1, -1], edge_id=perm).sample(seeds)
    assert compiled_backend() == "torch-sparse"
    # auto leaves torch-sparse alone (slower than kgflow's sampler on CPUs); pyg asks for it
    assert isinstance(make_neighbor_sampler(scrambled, n, [-1, -1], edge_id=perm), NeighborSampler)
    pyg = make_neighbor_sampler(scrambled, n, [-1, -1], edge_id=perm, backend="pyg")
    assert isinstance(pyg, PygNeighborSampler) and backend_name(pyg) == "pyg (torch-sparse)"
    theirs = pyg.sample(seeds, torch.Generator().manual_seed(0))
    assert torch.equal(theirs.nodes, ours.nodes)  # ascending, as kgflow's encoders expect
    assert _edge_set(theirs) == _edge_set(ours)
    assert torch.equal(theirs.nodes[theirs.seeds], seeds)
    # edge ids point at the full graph's edges
    assert torch.equal(edge_index[:, theirs.edge_id], theirs.nodes[theirs.edge_index])
    # fan-outs cap the hub; auto keeps kgflow's sampler for an encoder without layers
    capped = pyg.__class__(scrambled, n, [3]).sample(torch.tensor([0]))
    assert capped.edge_index.shape[1] == 3
    assert isinstance(make_neighbor_sampler(scrambled, n, []), NeighborSampler)
    assert isinstance(make_neighbor_sampler(scrambled, n, [2], backend="torch"), NeighborSampler)


def test_pyg_sampler_leaves_the_global_random_stream_alone(fake_torch_sparse):
    from kgflow.training.neighbors import PygNeighborSampler

    edge_index, n = _star_and_chain()
    sampler = PygNeighborSampler(edge_index, n, [2, 2])
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    sampler.sample(torch.tensor([0, 21]), torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(3), expected)


def test_pyg_backend_when_installed():
    """On a machine with pyg-lib or torch-sparse: the real compiled sampler, through kgflow."""
    from kgflow.training.neighbors import PygNeighborSampler, compiled_backend

    if compiled_backend() is None:
        pytest.skip("neither pyg-lib nor torch-sparse is installed")
    edge_index, n = _star_and_chain()
    sampler = PygNeighborSampler(edge_index, n, [5, 5])
    one = sampler.sample(torch.tensor([0, 21]), torch.Generator().manual_seed(3))
    two = sampler.sample(torch.tensor([0, 21]), torch.Generator().manual_seed(3))
    assert torch.equal(one.edge_id, two.edge_id)  # reproducible from the generator
    assert torch.equal(edge_index[:, one.edge_id], one.nodes[one.edge_index])
    assert int((one.nodes[one.edge_index[1]] == 0).sum()) == 5  # the hub keeps its fan-out
    whole = PygNeighborSampler(edge_index, n, [-1, -1]).sample(torch.tensor([0, 21]))
    ours = NeighborSampler(edge_index, n, [-1, -1]).sample(torch.tensor([0, 21]))
    assert _edge_set(whole) == _edge_set(ours)


def test_sampled_training_on_the_pyg_backend_end_to_end(fake_torch_sparse, invoke, write, tmp_path):
    pipeline = write("pyg.yaml", """
        kgflow: 1
        name: pyg
        seed: 3
        dataset: {name: synthetic, params: {users: 80, items: 50, clusters: 2, interactions_per_user: 10}}
        encoders: {graph: {name: lightgcn, params: {dim: 8, layers: 2}}}
        train: {epochs: 2, lr: 0.01, batch_size: 128, sampling: {method: neighbor, fanouts: [4, 3], backend: pyg}}
        eval: {ks: [5, 10]}
        """)
    result = invoke("run", str(pipeline), "--out", str(tmp_path / "run"), "--no-progress")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["sampler"] == "pyg (torch-sparse)"


def test_pyg_backend_without_a_compiled_sampler_is_refused(runner, tiny_pipeline):
    from kgflow.cli import cli
    from kgflow.training.neighbors import compiled_backend

    if compiled_backend() is not None:
        pytest.skip("a compiled backend is installed here")
    result = runner.invoke(cli, ["validate", str(tiny_pipeline), "--set",
                                 "train.sampling={method: neighbor, fanouts: [5, 5], backend: pyg}"])
    assert result.exit_code == 2, result.output
    assert "train.sampling.backend: sampling backend pyg needs pyg-lib or torch-sparse" in result.output
