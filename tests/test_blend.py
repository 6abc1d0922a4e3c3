"""benchmarks/blend.py, the score-blending check of docs/benchmarks.md: its end weights must give
each run's own reported figures, the chosen weight must be validation's best, and runs trained on
different splits must be refused."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BLEND = Path(__file__).resolve().parents[1] / "benchmarks" / "blend.py"
SYNTHETIC = """
kgflow: 1
name: blend-{name}
seed: {seed}
dataset:
  name: synthetic
  params: {{users: 60, items: 40, clusters: 2, interactions_per_user: 10}}
encoders:
  graph: {encoder}
train: {{epochs: 3, lr: 0.01, batch_size: 256}}
eval: {{ks: [10, 20]}}
"""


@pytest.fixture(scope="module")
def blend():
    spec = importlib.util.spec_from_file_location("blend", BLEND)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(invoke, write, tmp_path: Path, name: str, encoder: str, seed: int = 3) -> Path:
    out = tmp_path / name
    pipeline = write(f"{name}.yaml", SYNTHETIC.format(name=name, seed=seed, encoder=encoder))
    result = invoke("run", str(pipeline), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    return out


def test_end_weights_reproduce_each_run_and_validation_chooses(blend, invoke, write, tmp_path):
    ease = _run(invoke, write, tmp_path, "ease", "{name: ease, params: {l2: 5.0}}")
    mf = _run(invoke, write, tmp_path, "mf", "{name: mf, params: {dim: 8}}")
    lightgcn = _run(invoke, write, tmp_path, "lightgcn", "{name: lightgcn, params: {dim: 8, layers: 2}}")
    weights = blend.simplex(3, 4)
    assert len(weights) == 15 and all(sum(w) == pytest.approx(1.0) for w in weights)
    res = blend.blend_runs([ease, mf, lightgcn], weights)
    for run, weight in ((ease, (1.0, 0.0, 0.0)), (mf, (0.0, 1.0, 0.0)), (lightgcn, (0.0, 0.0, 1.0))):
        reported = json.loads((run / "metrics.json").read_text())
        for stage in ("valid", "test"):
            for key in ("ndcg@10", "recall@20"):
                assert res["weights"][weight][stage][key] == pytest.approx(reported[stage]["all"][key], abs=1e-5)
    valid = {w: r["valid"]["ndcg@10"] for w, r in res["weights"].items()}
    assert valid[res["chosen"]] == max(valid.values())
    # the models rank differently, so the mixes are not all one of the ends
    assert len({round(r["test"]["ndcg@10"], 6) for r in res["weights"].values()}) > 3


def test_runs_on_different_splits_are_refused(blend, invoke, write, tmp_path):
    first = _run(invoke, write, tmp_path, "ease", "{name: ease, params: {l2: 5.0}}")
    other = _run(invoke, write, tmp_path, "other", "{name: ease, params: {l2: 5.0}}", seed=4)
    with pytest.raises(SystemExit, match="different splits"):
        blend.blend_runs([first, other], blend.simplex(2, 1))
