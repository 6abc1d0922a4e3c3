"""Configuration: safe loading, line numbers, strictness, overrides, extends, error messages."""
from __future__ import annotations

import pytest

from kgflow.config import load_pipeline
from kgflow.config.compose import apply_overrides
from kgflow.config.yaml_loader import load_yaml_text
from kgflow.errors import ConfigError

from conftest import TINY


def errors_of(path, *overrides) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, overrides)
    return [issue.render() for issue in info.value.issues]


def test_valid_pipeline_loads(tiny_pipeline):
    loaded = load_pipeline(tiny_pipeline)
    assert loaded.config.encoders["graph"].parsed.layers == 2
    assert loaded.config.dataset.parsed.users == 60
    assert loaded.name == "tiny"


def test_typo_in_params_reports_line_path_and_suggestion(write):
    path = write("p.yaml", TINY.replace("{dim: 8, layers: 2}", "{dim: 8, layres: 2}"))
    [msg] = errors_of(path)
    assert f"{path}:10" in msg
    assert "encoders.graph.params.layres" in msg
    assert "did you mean 'layers'" in msg


def test_typo_in_core_block_and_all_errors_at_once(write):
    text = TINY.replace("  epochs: 3", "  epocs: 3").replace("  lr: 0.01", "  lr: fast")
    path = write("p.yaml", text)
    msgs = errors_of(path)
    assert len(msgs) == 2
    joined = "\n".join(msgs)
    assert "train.epocs" in joined and "did you mean 'epochs'" in joined
    assert "train.lr" in joined and "'fast'" in joined


def test_unknown_component_lists_valid_names_with_package(write):
    path = write("p.yaml", TINY.replace("name: lightgcn", "name: lightgnc"))
    [msg] = errors_of(path)
    assert "encoders.graph.name" in msg
    assert "did you mean 'lightgcn'" in msg
    assert "mf (kgflow)" in msg
    assert f"{path}:9" in msg


def test_wrong_type_reports_value(write):
    path = write("p.yaml", TINY.replace("  epochs: 3", "  epochs: [3]"))
    [msg] = errors_of(path)
    assert "train.epochs" in msg and "[3]" in msg


def test_ratios_must_sum_to_one(write):
    path = write("p.yaml", TINY + "split: {method: random, ratios: [0.8, 0.1, 0.2]}\n")
    [msg] = errors_of(path)
    assert "split.ratios" in msg and "sum to 1" in msg


def test_missing_version_key(write):
    path = write("p.yaml", TINY.replace("kgflow: 1\n", ""))
    [msg] = errors_of(path)
    assert "kgflow: 1" in msg


def test_not_a_mapping(write):
    path = write("p.yaml", "- just\n- a list\n")
    [msg] = errors_of(path)
    assert "mapping" in msg and f"{path}:1" in msg


def test_python_tag_is_refused_without_running_anything(write, tmp_path):
    marker = tmp_path / "pwned"
    path = write("p.yaml", TINY + f"description: !!python/object/apply:os.system ['touch {marker}']\n")
    [msg] = errors_of(path)
    assert "tag not allowed" in msg and f"{path}:{len(TINY.strip().splitlines()) + 1}" in msg
    assert not marker.exists()


def test_duplicate_key_is_an_error(write):
    path = write("p.yaml", TINY + "seed: 4\n")
    [msg] = errors_of(path)
    assert "duplicate key 'seed'" in msg


def test_set_overrides_and_expands_short_forms(tiny_pipeline):
    loaded = load_pipeline(tiny_pipeline, ["train.epochs=5", "encoders.graph.params.layers=1",
                                           "objective.loss.name=bce"])
    assert loaded.config.train.epochs == 5
    assert loaded.config.encoders["graph"].parsed.layers == 1
    assert loaded.config.objective.loss.name == "bce"


def test_set_typo_points_at_the_override(tiny_pipeline):
    [msg] = errors_of(tiny_pipeline, "encoders.graph.params.layres=2")
    assert "--set encoders.graph.params.layres=2" in msg and "did you mean 'layers'" in msg


def test_extends_merges_and_keeps_child_lines(write):
    write("base.yaml", TINY)
    child = write("child.yaml", """
        kgflow: 1
        extends: base.yaml
        name: child
        train:
          epochs: 7
          batch_szie: 3
        """)
    with pytest.raises(ConfigError) as info:
        load_pipeline(child)
    [issue] = info.value.issues
    assert issue.file == str(child) and issue.line == 6
    fixed = write("child.yaml", "kgflow: 1\nextends: base.yaml\nname: child\ntrain: {epochs: 7}\n")
    loaded = load_pipeline(fixed)
    assert loaded.config.train.epochs == 7 and loaded.config.train.lr == 0.01
    assert loaded.config.name == "child"


def test_extends_cycle(write):
    write("a.yaml", "kgflow: 1\nextends: b.yaml\n")
    b = write("b.yaml", "kgflow: 1\nextends: a.yaml\n")
    [msg] = errors_of(b)
    assert "cycle" in msg


def test_early_stopping_metric_must_be_computed(write):
    path = write("p.yaml", TINY.replace("  batch_size: 256",
                                        "  batch_size: 256\n  early_stopping: {metric: ndcg@50}"))
    [msg] = errors_of(path)
    assert "train.early_stopping.metric" in msg and "ndcg@10" in msg


def test_trainer_passthrough_is_checked(write):
    path = write("p.yaml", TINY + "trainer: {acelerator: cpu, max_epochs: 3}\n")
    msgs = "\n".join(errors_of(path))
    assert "did you mean 'accelerator'" in msgs
    assert "'max_epochs' is set by kgflow" in msgs and "train.epochs" in msgs


def test_yaml_positions():
    located = load_yaml_text("a:\n  b: 1\n  c:\n    - x\n    - y\n", "f.yaml")
    assert located.where(("a", "b")) == ("f.yaml", 2)
    assert located.where(("a", "c", 1)) == ("f.yaml", 5)
    assert located.where(("a", "zzz")) == ("f.yaml", 1)


def test_override_parsing_types():
    located = load_yaml_text("x: {y: 1}\n", "f.yaml")
    out = apply_overrides(located, ["x.y=2.5", "x.z=[1, 2]", "w=null"])
    assert out.data == {"x": {"y": 2.5, "z": [1, 2]}, "w": None}


def test_requires_fails_fast_with_the_pip_command(write):
    path = write("p.yaml", TINY + "requires: ['kgflow-no-such-plugin>=0.3', 'pydantic>=1']\n")
    [msg] = errors_of(path)
    assert "requires kgflow-no-such-plugin>=0.3, but it is not installed" in msg
    assert "pip install 'kgflow-no-such-plugin>=0.3'" in msg
    path = write("p.yaml", TINY + "requires: ['pydantic<1']\n")
    [msg] = errors_of(path)
    assert "is installed" in msg


def test_extends_switching_component_replaces_its_params(write):
    write("base.yaml", TINY)
    child = write("child.yaml", "kgflow: 1\nextends: base.yaml\nencoders: {graph: {name: mf, params: {dim: 4}}}\n")
    loaded = load_pipeline(child)
    assert loaded.config.encoders["graph"].name == "mf"
    assert loaded.config.encoders["graph"].parsed.dim == 4


# -- mistakes that used to surface only when the model was built --------------------------------
@pytest.mark.parametrize("encoders, extra, expected", [
    ("graph: {name: gat, params: {dim: 10, heads: 3}}", "",
     "encoders.graph.params: dim 10 must be divisible by heads 3"),
    ("graph: {name: kgat, params: {dim: 8}}", "",
     "encoder 'kgat' needs a graph with relations, but builder 'user_item' provides none"),
    ("graph: {name: lightgcn, params: {dim: 8}}", "fusion: content\n",
     "fusion 'content' does not use the encoders ['graph']"),
    ("graph: {name: lightgcn, params: {dim: 8}}", "fusion: feature\n",
     "fusion 'feature' needs an encoder under the role 'text'"),
    ("graph: {name: lightgcn, params: {dim: 8}}", "eval: {metrics: [ndcg, hitrate]}\n",
     "eval.metrics[1]: unknown metric 'hitrate'"),
])
def test_build_time_mistakes_are_found_by_validate(write, encoders, extra, expected):
    path = write("p.yaml", "kgflow: 1\ndataset: {name: synthetic, params: {users: 50, items: 30}}\n"
                           f"encoders:\n  {encoders}\n{extra}")
    assert any(expected in msg for msg in errors_of(path)), errors_of(path)


def test_top_layers_beyond_the_models_blocks_is_found_by_validate(write, tiny_bert):
    path = write("p.yaml", f"""kgflow: 1
dataset: {{name: synthetic, params: {{users: 50, items: 30}}}}
encoders:
  graph: {{name: lightgcn, params: {{dim: 8}}}}
  text: {{name: text, params: {{model: {tiny_bert}, freeze: top_layers, top_layers: 5}}}}
fusion: joint
""")
    [msg] = errors_of(path)
    assert "encoders.text.params.top_layers: top_layers: 5 but the model has 2 transformer blocks" in msg
    assert f"{path}:5" in msg


def test_three_independent_mistakes_are_reported_together(write):
    path = write("p.yaml", """kgflow: 1
dataset: {name: synthetic, params: {users: 50, items: 30}}
encoders:
  graph: {name: gat, params: {dim: 10, heads: 4}}
  text: {name: text}
eval: {metrics: [ndcg, recal]}
""")
    msgs = errors_of(path)
    joined = "\n".join(msgs)
    assert len(msgs) == 3, joined
    assert "dim 10 must be divisible by heads 4" in joined
    assert "unknown metric 'recal'" in joined
    assert "fusion 'none' does not use the encoders ['text']" in joined


def test_validate_reports_the_lightgcn_example_all_at_once(invoke, tmp_path):
    """The LightGCN pipeline with a parameter typo and two schema mistakes: all three reported."""
    from conftest import REPO

    text = (REPO / "pipelines" / "movielens-lightgcn.yaml").read_text()
    text = text.replace("layers: 3", "layres: 3").replace(
        "extends: protocols/", f"extends: {REPO / 'pipelines' / 'protocols'}/")
    path = tmp_path / "p.yaml"
    path.write_text(text + "train: {epochs: ten}\neval: {ks: [0]}\n")
    result = invoke("validate", str(path))
    assert result.exit_code == 2, result.output
    assert "3 problems" in result.output, result.output
    for fragment in ("encoders.graph.params.layres: unknown key 'layres'", "train.epochs",
                     "eval.ks"):
        assert fragment in result.output, result.output


def test_mistakes_in_three_layers_are_reported_together(write):
    """A schema mistake elsewhere no longer hides a component-parameter mistake, a trainer-argument
    mistake or an unknown metric: each layer is checked where its own part is well formed."""
    path = write("p.yaml", TINY.replace("{dim: 8, layers: 2}", "{dim: 8, layres: 2}")
                 .replace("  epochs: 3", "  epochs: ten")
                 + "trainer: {acelerator: cpu}\n")
    msgs = errors_of(path)
    joined = "\n".join(msgs)
    assert len(msgs) == 3, joined
    assert "train.epochs" in joined                                    # the pipeline schema
    assert "encoders.graph.params.layres: unknown key 'layres'" in joined  # a component's params
    assert "unknown lightning.Trainer argument 'acelerator'" in joined  # the trainer's arguments


def test_a_malformed_block_is_reported_once_and_others_still_checked(write):
    """A block that is itself malformed is reported by the schema only; the well-formed ones are
    still resolved (an unknown component name among them)."""
    path = write("p.yaml", TINY.replace("name: lightgcn", "name: lightgnc")
                 + "fusion: {name: none, parms: {}}\n")
    msgs = errors_of(path)
    joined = "\n".join(msgs)
    assert len(msgs) == 2, joined
    assert "fusion.parms: unknown key 'parms'" in joined
    assert "unknown encoder 'lightgnc'" in joined or "lightgnc" in joined


def test_a_run_that_fails_while_building_leaves_no_run_directory(invoke, write, tmp_path):
    """The model is built before the run directory is made: a component failing at build time
    (here a text model that cannot be loaded) leaves nothing, and an old run it was to replace
    stays as it was."""
    path = write("p.yaml", f"""kgflow: 1
dataset: {{name: synthetic, params: {{users: 50, items: 30, interactions_per_user: 8}}}}
encoders:
  graph: {{name: lightgcn, params: {{dim: 8}}}}
  text: {{name: text, params: {{model: {tmp_path / "no-such-model"}, cache: false}}}}
fusion: feature
train: {{epochs: 1}}
""")
    out = tmp_path / "run"
    result = invoke("run", str(path), "--out", str(out), "--no-progress")
    assert result.exit_code == 2 and "cannot load the text model" in result.output
    assert not out.exists()
    good = write("good.yaml", TINY)
    assert invoke("run", str(good), "--out", str(out), "--no-progress").exit_code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    result = invoke("run", str(path), "--out", str(out), "--no-progress", "--overwrite")
    assert result.exit_code == 2
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    import json

    assert json.loads((out / "run.json").read_text())["state"] == "finished"
