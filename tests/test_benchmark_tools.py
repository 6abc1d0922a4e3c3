"""The equal-budget comparison with RecBole (benchmarks/tune_recbole.py): both systems must search
the same values with the same study seed, or the comparison in docs/benchmarks.md is not fair."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# kgflow pipeline key -> RecBole config key, per pair of spaces
PAIRS = {
    "lightgcn": ("LightGCN", {"objective.l2": "reg_weight", "encoders.graph.params.layers": "n_layers"}),
    "mf": ("BPR", {"train.lr": "learning_rate", "encoders.graph.params.dim": "embedding_size"}),
    "ease": ("EASE", {"encoders.graph.params.l2": "reg_weight"}),
}


@pytest.fixture(scope="module")
def tune_recbole():
    spec = importlib.util.spec_from_file_location("tune_recbole", BENCHMARKS / "tune_recbole.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("space", sorted(PAIRS))
def test_recbole_searches_the_same_values_in_the_same_order(tune_recbole, space):
    from kgflow.tuning.space import ParamSpec

    model, keys = PAIRS[space]
    ours = yaml.safe_load((BENCHMARKS / "spaces" / f"{space}.yaml").read_text())
    theirs = tune_recbole.load_space(model)
    for field in ("metric", "trials", "sampler", "seed"):
        assert theirs[field] == ours[field], field
    assert list(theirs["params"]) == [keys[k] for k in ours["params"]]  # order decides the draws
    for key, recbole_key in keys.items():
        assert theirs["params"][recbole_key] == ParamSpec.model_validate(ours["params"][key])


def test_the_same_study_seed_proposes_the_same_values_to_both(tune_recbole):
    from kgflow.tuning.space import ParamSpec
    from kgflow.tuning.study import suggest

    model, keys = PAIRS["lightgcn"]
    ours = yaml.safe_load((BENCHMARKS / "spaces" / "lightgcn.yaml").read_text())
    theirs = tune_recbole.load_space(model)

    def proposals(params: dict, names: list[str]) -> list[list]:
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=ours["seed"]), direction="maximize")
        seen = []

        def objective(trial):
            values = [suggest(trial, name, params[name]) for name in names]
            seen.append(values)
            return float(len(seen) % 3)  # any values: the proposals must not depend on the names

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study.optimize(objective, n_trials=ours["trials"])
        return seen

    kgflow_params = {k: ParamSpec.model_validate(v) for k, v in ours["params"].items()}
    assert proposals(kgflow_params, list(kgflow_params)) == proposals(theirs["params"], list(theirs["params"]))


def test_the_reference_tool_copy_takes_the_seed_and_overrides(tune_recbole, tmp_path):
    tool = tmp_path / "run_recbole.py"
    tool.write_text('x = {\n    "seed": 2020,\n}\nconfig = Config(config_dict=protocol(args.model, args.epochs, '
                    'ckpt_dir, args.stopping_step, args.split_dir))\n')
    copy = Path(tune_recbole.configurable_copy(str(tool), tmp_path))
    text = copy.read_text()
    assert 'int(os.environ.get("RB_SEED", "2020"))' in text
    assert 'json.loads(os.environ.get("RB_CONFIG", "{}"))' in text
    tool.write_text("a tool that changed\n")
    with pytest.raises(SystemExit, match="reference tool changed"):
        tune_recbole.configurable_copy(str(tool), tmp_path)


@pytest.mark.parametrize("space", sorted(p.stem for p in (BENCHMARKS / "spaces").glob("*.yaml")
                                         if not p.stem.startswith("recbole-")))
def test_every_kgflow_space_fits_the_pipeline_it_tunes(space):
    """The benchmark's spaces name keys of the shipped pipelines; a renamed key must fail here,
    not in the middle of a study."""
    from kgflow.config import load_pipeline
    from kgflow.tuning.space import load_space

    pipeline = load_pipeline(BENCHMARKS.parent / "pipelines" / f"movielens-{space}.yaml")
    assert load_space(BENCHMARKS / "spaces" / f"{space}.yaml", pipeline).config.params


@pytest.fixture(scope="module")
def ml1m():
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("ml1m_benchmark", BENCHMARKS / "ml1m.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCE_TOOL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "recbole" / "run_recbole.py"


def test_the_ml1m_copy_of_the_reference_tool_reads_movielens_1m(ml1m, tmp_path):
    """The reference tool is written for ML-100K: its copy must load ml-1m's interactions only,
    without the rating filter (kgflow's export holds the positives), and fail loudly if the tool
    changed so that an edit no longer applies."""
    tool = tmp_path / "run_recbole.py"
    tool.write_text('DATASET = "ml-100k"\nx = {\n    "seed": 2020,\n        "load_col": {\n'
                    '            "inter": ["user_id", "item_id", "rating", "timestamp"],\n'
                    '            "kg": ["head_id", "relation_id", "tail_id"],\n'
                    '            "link": ["item_id", "entity_id"],\n        },\n'
                    '        "val_interval": {"rating": "[4,inf)"},\n}\n'
                    'config = Config(config_dict=protocol(args.model, args.epochs, ckpt_dir, '
                    'args.stopping_step, args.split_dir))\n')
    text = Path(ml1m.recbole_tool(str(tool), tmp_path)).read_text()
    assert 'DATASET = "ml-1m"' in text and '"kg"' not in text and '"link"' not in text
    assert '"val_interval": None' in text and "RB_CONFIG" in text
    tool.write_text(tool.read_text().replace('"ml-100k"', '"other"'))
    with pytest.raises(SystemExit, match="reference tool changed"):
        ml1m.recbole_tool(str(tool), tmp_path)
    if REFERENCE_TOOL.is_file():  # the real one, where the workspace has it
        assert 'DATASET = "ml-1m"' in Path(ml1m.recbole_tool(str(REFERENCE_TOOL), tmp_path)).read_text()


def test_the_ml1m_summary_picks_each_split_s_variant_by_validation_only(ml1m, tmp_path):
    import json

    rows = [("kgflow", "ease", "l2=250", 1, 0.20, 0.30), ("kgflow", "ease", "l2=500", 1, 0.21, 0.10),
            ("kgflow", "ease", "l2=250", 2, 0.19, 0.10), ("kgflow", "ease", "l2=500", 2, 0.18, 0.30),
            ("kgflow", "ease", "l2=500", 1, 0.22, 0.05)]  # a rerun replaces the earlier record
    with (tmp_path / "results.jsonl").open("w") as fh:
        for system, model, variant, seed, valid, test in rows:
            fh.write(json.dumps({"system": system, "model": model, "variant": variant, "seed": seed,
                                 "valid": {"ndcg@10": valid}, "test": {"ndcg@10": test}}) + "\n")
    chosen = ml1m.chosen(tmp_path)[("kgflow", "ease")]
    assert chosen[1]["variant"] == "l2=500" and chosen[1]["test"]["ndcg@10"] == 0.05
    assert chosen[2]["variant"] == "l2=250"


def test_the_model_table_shows_further_metrics_and_group_gaps(tmp_path, capsys):
    import json

    spec = importlib.util.spec_from_file_location("models_benchmark", BENCHMARKS / "models.py")
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    for name, seed, ndcg, cov, f, m in (("a", 1, 0.20, 0.3, 0.18, 0.21), ("a", 2, 0.22, 0.5, 0.2, 0.25),
                                        ("b", 1, 0.25, 0.1, 0.2, 0.2), ("b", 2, 0.26, 0.2, 0.3, 0.2)):
        out = tmp_path / f"{name}-{seed}"
        out.mkdir()
        (out / "metrics.json").write_text(json.dumps({
            "test": {"all": {"ndcg@10": ndcg, "recall@20": 0.4, "coverage@10": cov}},
            "timing": {"seconds_per_epoch": 1.0}, "best_epoch": 3,
            "user_groups": {"test": {"gender": {"groups": {"F": {"ndcg@10": f}, "M": {"ndcg@10": m}}}}}}))
    models.table(tmp_path, ["a", "b"], [1, 2], "a", ["coverage@10", "gap:gender:ndcg@10"])
    rows = {line.split(" | ")[0]: line for line in capsys.readouterr().out.splitlines()}
    # b vs a: +0.05 and +0.04, mean +0.045, s.e. 0.005; coverage means 0.4 / 0.15; gaps 0.04 / 0.05
    assert "+0.0450 ± 0.0050 (2 splits)" in rows["| b"]
    assert rows["| a"].endswith(" 0.4000 | 0.0400 |") and rows["| b"].endswith(" 0.1500 | 0.0500 |")
