"""kgflow as a library: a run from Python leaves the calling process as it was, reports through
``logging``, and the CLI starts without importing torch."""
from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from kgflow.errors import KgflowError, NotSupportedError

from conftest import REPO, TINY


def _loaded(write):
    from kgflow.config import load_pipeline

    return load_pipeline(write("tiny.yaml", TINY), [])


def test_help_starts_without_importing_torch():
    code = ("import sys\nfrom kgflow.cli import main\nsys.argv = ['kgflow', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "kgflow plugins" in done.stdout  # the help says where plugin commands are listed
    assert done.stdout.strip().endswith("NO-TORCH")


def test_a_run_from_python_leaves_the_callers_process_as_it_was(write, tmp_path, monkeypatch):
    from kgflow.runs import environment
    from kgflow.runs.runner import run_pipeline

    tuned = []
    monkeypatch.setattr(environment, "tune_allocator", lambda: tuned.append(True))
    warnings.simplefilter("default", DeprecationWarning)  # something of the caller's own
    filters = list(warnings.filters)
    logging.getLogger("lightning.pytorch").setLevel(logging.DEBUG)
    threads = torch.get_num_threads()
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    seed_env = os.environ.get("PL_GLOBAL_SEED")

    run_pipeline(_loaded(write), tmp_path / "run", progress=False)

    assert warnings.filters == filters
    assert logging.getLogger("lightning.pytorch").level == logging.DEBUG
    assert torch.get_num_threads() == threads
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
    assert os.environ.get("PL_GLOBAL_SEED") == seed_env
    assert not tuned  # the allocator is the CLI's to tune, not a library call's


def test_a_run_reports_through_logging(write, tmp_path, caplog):
    from kgflow.runs.runner import run_pipeline

    with caplog.at_level(logging.INFO, logger="kgflow"):
        run_pipeline(_loaded(write), tmp_path / "run", progress=False)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("kgflow")]
    assert any(m.startswith("data: synthetic") for m in messages), messages
    assert any(m.startswith("graph: ") for m in messages), messages


def test_the_cli_renders_the_log(invoke, tiny_pipeline, tmp_path):
    result = invoke("run", str(tiny_pipeline), "--out", str(tmp_path / "run"), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "data: synthetic" in result.output and "graph: " in result.output


def test_serving_turns_only_not_supported_into_a_message(write, tmp_path, monkeypatch):
    from kgflow.inference import TrainedRun
    from kgflow.runs.runner import run_pipeline

    run_pipeline(_loaded(write), tmp_path / "run", progress=False)
    served = TrainedRun.load(tmp_path / "run")
    item = str(served.split.item_ids[0])
    with pytest.raises(KgflowError, match="does not read text"):
        served.recommend_new(text="a profile")  # lightgcn cannot: a message, exit code 2

    def broken(*args, **kwargs):
        raise TypeError("a bug in a plugin")

    monkeypatch.setattr(served.model, "new_user", broken)
    with pytest.raises(TypeError, match="a bug in a plugin") as caught:
        served.recommend_new([item])
    assert not isinstance(caught.value, KgflowError)  # a genuine bug keeps its traceback
    assert issubclass(NotSupportedError, KgflowError)
