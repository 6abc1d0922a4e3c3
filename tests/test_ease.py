"""EASE: the closed form against an independent derivation, a pipeline run end to end (no
training, served as built), and its size limits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kgflow_plugins.encoders.ease import ease_weights


def test_each_column_is_the_ridge_regression_of_that_item_on_the_others():
    """EASE's constrained problem splits by column: item j's weights are the ridge regression of
    X[:, j] on the other items' columns. Solved here one column at a time, with no inverse of
    the full Gram matrix."""
    user = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 4, 0])
    item = np.array([0, 1, 1, 2, 3, 0, 0, 3, 1, 2, 3, 0])  # (0, 0) twice: counts once
    l2 = 0.7
    x, b = ease_weights(user, item, 5, 4, l2)
    dense = np.zeros((5, 4))
    dense[user, item] = 1.0
    np.testing.assert_array_equal(x.numpy(), dense)
    for j in range(4):
        others = [k for k in range(4) if k != j]
        a = dense[:, others]
        w = np.linalg.solve(a.T @ a + l2 * np.eye(3), a.T @ dense[:, j])
        np.testing.assert_allclose(b.numpy()[others, j], w, rtol=1e-5, atol=1e-6)
        assert b[j, j] == 0.0


def test_scores_are_history_times_weights():
    x, b = ease_weights(np.array([0, 1, 1]), np.array([1, 0, 2]), 2, 3, 1.0)
    from kgflow_plugins.encoders.ease import EASE

    emb = EASE(x, b)()
    torch.testing.assert_close(emb.user @ emb.item.T, x @ b)


EASE_PIPELINE = """
kgflow: 1
name: ease
seed: 5
dataset: {name: synthetic, params: {users: 200, items: 120, clusters: 4, interactions_per_user: 15}}
encoders: {graph: {name: ease, params: {l2: 20.0}}}
eval: {ks: [10, 20]}
"""


def test_a_pipeline_builds_evaluates_and_serves_ease_without_training(invoke, write, tmp_path):
    from conftest import assert_reported_metrics_reproduce

    result = invoke("run", str(write("ease.yaml", EASE_PIPELINE)), "--out", str(tmp_path / "run"), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "no trainable parameters" in result.output
    assert not (tmp_path / "run" / "checkpoints" / "best.ckpt").exists()
    assert_reported_metrics_reproduce(tmp_path / "run")  # rebuilt from the split, it scores the same


@pytest.mark.parametrize("setting, message", [
    ("encoders.graph.params.max_items=50", "120 items exceed max_items 50"),
    ("encoders.graph.params.max_user_item_cells=1000", "exceed max_user_item_cells 1,000"),
    ("encoders.graph.params.l2=0", "l2"),
])
def test_too_large_or_bad_settings_are_refused_with_the_reason(invoke, write, tmp_path, setting, message):
    result = invoke("run", str(write("ease.yaml", EASE_PIPELINE)), "--out", str(tmp_path / "run"),
                    "--no-progress", "--set", setting)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "run" / "metrics.json").exists()
