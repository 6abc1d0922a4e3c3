"""Bad data files, as a new user makes them: each is refused with exit 2, no traceback, the file's
name and (where one row is at fault) its line -- or, with ``preprocess.on_bad_rows: skip``, left out
and counted in the run report. Nothing is dropped without a word."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from kgflow.data.rows import clean_interactions
from kgflow.errors import DataError

HEADER = "customer,book,stars,ts\n"


def good_rows(users: int = 12, per_user: int = 8) -> list[str]:
    """Enough ratings (all >= 4) for every user to give train, validation and test rows."""
    return [f"c{u},b{(u * 3 + j) % 20},{4 + (j % 2)},{1000 + u * 100 + j}"
            for u in range(users) for j in range(per_user)]


def pipeline(folder: Path, extra: str = "", table: str = "ratings.csv",
             data_params: str = "") -> Path:
    path = folder / "pipeline.yaml"
    path.write_text(textwrap.dedent(f"""\
        kgflow: 1
        name: bad-data
        dataset:
          name: tabular
          params:
            name: shop
            interactions: {{path: {table}, user: customer, item: book, rating: stars, timestamp: ts}}
        {data_params}
        encoders:
          graph: {{name: mf, params: {{dim: 8}}}}
        train: {{epochs: 1, batch_size: 256, early_stopping: null}}
        eval: {{ks: [5]}}
        """) + extra)
    return path


def write_ratings(folder: Path, rows: list[str], header: str = HEADER) -> Path:
    path = folder / "ratings.csv"
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def run(invoke, folder: Path, pipe: Path, *extra: str):
    return invoke("run", str(pipe), "--out", str(folder / "run"), *extra)


def refused(result, *fragments: str) -> None:
    """Exit 2, a one-message error (no traceback), every fragment in it."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


# --- rows at fault: named with file and line ------------------------------------------------

@pytest.mark.parametrize("bad_row,reason", [
    ("c1,b3,,1100", "empty rating"),                       # an empty rating
    (",b3,5,1100", "empty user id"),                       # an empty user id
    ("c1", "empty item id"),                               # a user-only row
    ("c1,b3,5,99999999999999999999999", "timestamp overflows a 64-bit integer"),
    ("c1,b3,five,1100", "rating not a number"),
    ("c1,b3,5,inf", "timestamp not finite"),
])
def test_a_bad_csv_row_is_refused_with_its_line(invoke, tmp_path, bad_row, reason):
    rows = good_rows()
    rows.insert(4, bad_row)  # data line 5 is file line 6
    csv = write_ratings(tmp_path, rows)
    result = run(invoke, tmp_path, pipeline(tmp_path))
    refused(result, f"{csv}:6: bad interaction row: {reason}", "preprocess.on_bad_rows: skip")
    assert not (tmp_path / "run").exists()


def test_every_bad_row_is_counted_in_the_message(invoke, tmp_path):
    rows = good_rows()
    for at in (3, 9, 15):
        rows.insert(at, f"c1,b3,,{at}")
    write_ratings(tmp_path, rows)
    result = run(invoke, tmp_path, pipeline(tmp_path))
    refused(result, "ratings.csv:5:", "2 more bad row(s) (lines 11, 17)")


def test_skip_leaves_bad_rows_out_and_counts_them_in_the_report(invoke, tmp_path):
    rows = good_rows()
    rows[2:2] = ["c1,b3,,1100", ",b4,5,1101", "c2"]
    write_ratings(tmp_path, rows)
    pipe = pipeline(tmp_path, "preprocess: {on_bad_rows: skip}\n")
    result = run(invoke, tmp_path, pipe)
    assert result.exit_code == 0, result.output
    assert "3 bad interaction row(s) skipped" in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    skipped = metrics["data"]["skipped_rows"]
    assert skipped["count"] == 3
    # the user-only row lacks item, rating and timestamp: counted under each reason
    assert skipped["by_reason"] == {"empty user id": 1, "empty item id": 1, "empty rating": 2,
                                    "empty timestamp": 1}
    assert skipped["examples"][0].endswith("ratings.csv:4: empty rating")
    assert metrics["split"]["train"] + metrics["split"]["valid"] + metrics["split"]["test"] == len(good_rows())
    report = (tmp_path / "run" / "report.md").read_text()
    assert "3 bad interaction row(s) skipped (preprocess.on_bad_rows: skip)" in report


def test_a_clean_run_reports_no_skipped_rows(invoke, tmp_path):
    write_ratings(tmp_path, good_rows())
    result = run(invoke, tmp_path, pipeline(tmp_path))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["skipped_rows"]["count"] == 0


@pytest.mark.parametrize("column", ["customer", "book"])
def test_parquet_nulls_are_refused_not_dropped(invoke, tmp_path, column):
    frame = pd.DataFrame([r.split(",") for r in good_rows()], columns=HEADER.strip().split(","))
    frame["stars"] = frame["stars"].astype(float)
    frame["ts"] = frame["ts"].astype(int)
    frame.loc[7, column] = None
    frame.to_parquet(tmp_path / "ratings.parquet")
    pipe = pipeline(tmp_path, table="ratings.parquet")
    kind = "user" if column == "customer" else "item"
    refused(run(invoke, tmp_path, pipe), "ratings.parquet: interaction row 8", f"empty {kind} id")
    pipe = pipeline(tmp_path, "preprocess: {on_bad_rows: skip}\n", table="ratings.parquet")
    result = run(invoke, tmp_path, pipe)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]["skipped_rows"]["count"] == 1


def test_integer_ids_with_a_null_keep_their_text(tmp_path):
    """pandas makes an integer column with a null a float one: ids stay '12', not '12.0'."""
    from kgflow.data.recdata import RecData

    frame = pd.DataFrame({"user": [1.0, 2.0, None], "item": [10, 11, 12]})
    data = RecData(name="d", interactions=frame)
    assert data.interactions["user"].tolist() == ["1", "2", ""]


def test_a_third_party_datasets_rows_are_checked_too():
    frame = pd.DataFrame({"user": ["a", "b", "c"], "item": ["x", None, "z"],
                          "rating": [5.0, 4.0, float("nan")], "timestamp": float("nan")})
    with pytest.raises(DataError, match=r"interaction row 2: bad interaction row: empty item id"):
        clean_interactions(frame)
    clean, skipped = clean_interactions(frame, policy="skip")
    assert clean["user"].tolist() == ["a"] and skipped.by_reason == {"empty item id": 1,
                                                                     "empty rating": 1}


# --- data that leaves a part of the split empty ---------------------------------------------

def test_one_item_leaves_validation_and_test_empty(invoke, tmp_path):
    csv = write_ratings(tmp_path, [f"c{u},b0,5,{1000 + u}" for u in range(20)])
    refused(run(invoke, tmp_path, pipeline(tmp_path)), f"{csv}: split method 'random' leaves the "
            "validation set empty", "20 users have one interaction")


def test_one_interaction_per_user_is_an_error_at_split_time(invoke, tmp_path):
    write_ratings(tmp_path, [f"c{u},b{u % 7},5,{1000 + u}" for u in range(30)])
    refused(run(invoke, tmp_path, pipeline(tmp_path, "split: {method: leave_one_out}\n")),
            "leaves the validation set empty", "30 users have one interaction")


def test_two_interactions_per_user_leave_validation_empty(invoke, tmp_path):
    write_ratings(tmp_path, [f"c{u},b{(u + j) % 7},5,{1000 + u * 10 + j}"
                             for u in range(30) for j in range(2)])
    refused(run(invoke, tmp_path, pipeline(tmp_path)), "leaves the validation set empty",
            "30 have two", "a validation one from three on")


def test_an_empty_predefined_part_is_refused(invoke, tmp_path):
    folder = tmp_path / "split"
    folder.mkdir()
    head = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    (folder / "d.train.inter").write_text(head + "u1\ti1\t5\t1\nu1\ti2\t5\t2\n")
    (folder / "d.valid.inter").write_text(head + "u1\ti3\t5\t3\n")
    (folder / "d.test.inter").write_text(head)
    write_ratings(tmp_path, good_rows())
    pipe = pipeline(tmp_path, f"split: {{method: predefined, path: {folder}}}\n")
    refused(run(invoke, tmp_path, pipe), f"{folder / 'd.test.inter'}: has a header but no rows")


# --- whole files at fault: named -------------------------------------------------------------

def test_an_empty_or_header_only_file_is_named(invoke, tmp_path):
    csv = write_ratings(tmp_path, [], header="")
    refused(run(invoke, tmp_path, pipeline(tmp_path)), f"{csv}: the file is empty")
    csv = write_ratings(tmp_path, [])
    refused(run(invoke, tmp_path, pipeline(tmp_path)), f"{csv}: has a header but no rows")


def test_a_threshold_that_leaves_nothing_names_the_file_and_the_key(invoke, tmp_path):
    csv = write_ratings(tmp_path, [r.rsplit(",", 2)[0] + ",3," + r.rsplit(",", 1)[1]
                                   for r in good_rows()])
    refused(run(invoke, tmp_path, pipeline(tmp_path)), f"{csv}: no interactions are left after "
            "preprocessing", "preprocess.rating_threshold 4 keeps 0 (ratings range 3 to 3)")


ATOMIC_HEAD = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def atomic_folder(tmp_path: Path, text: str | None = None, raw: bytes | None = None,
                  links: str | None = None) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir(exist_ok=True)
    rows = "".join(f"u{u}\ti{(u * 3 + j) % 20}\t5\t{1000 + u * 100 + j}\n"
                   for u in range(12) for j in range(8))
    path = folder / "shop.inter"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(text if text is not None else ATOMIC_HEAD + rows, encoding="utf-8")
    if links is not None:
        (folder / "shop.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\n"
                                        "m.1\tgenre\tm.2\n")
        (folder / "shop.link").write_text("item_id:token\tentity_id:token\n" + links)
    return folder


def atomic_pipeline(tmp_path: Path, folder: Path, extra_params: str = "", extra: str = "") -> Path:
    path = tmp_path / "atomic.yaml"
    path.write_text(textwrap.dedent(f"""\
        kgflow: 1
        dataset: {{name: atomic, params: {{path: {folder}{extra_params}}}}}
        encoders:
          graph: {{name: mf, params: {{dim: 8}}}}
        train: {{epochs: 1, batch_size: 256, early_stopping: null}}
        eval: {{ks: [5]}}
        """) + extra)
    return path


def rows_text(tmp_path: Path) -> str:
    atomic_folder(tmp_path)
    return (tmp_path / "shop" / "shop.inter").read_text()


@pytest.mark.parametrize("encoding,edit,hint", [
    ("utf-16", lambda text: text, "UTF-16 byte-order mark: set encoding: utf-16"),
    ("latin-1", lambda text: text.replace("u3\t", "Jos\u00e9\t", 1), "set encoding: latin-1"),
])
def test_a_non_utf8_file_is_refused_with_its_offset_or_read_when_declared(invoke, tmp_path,
                                                                           encoding, edit, hint):
    raw = edit(rows_text(tmp_path)).encode(encoding)
    folder = atomic_folder(tmp_path, raw=raw)
    offset = next(i for i in range(len(raw)) if raw[i] >= 0x80)  # the first byte UTF-8 refuses
    line = raw[:offset].count(b"\n") + 1
    refused(run(invoke, tmp_path, atomic_pipeline(tmp_path, folder)),
            f"{folder / 'shop.inter'}:{line}: not valid utf-8 text: byte 0x{raw[offset]:02x} at "
            f"byte offset {offset}", hint)
    result = run(invoke, tmp_path, atomic_pipeline(tmp_path, folder, f", encoding: {encoding}"))
    assert result.exit_code == 0, result.output


def test_an_unknown_encoding_is_a_config_error_with_its_yaml_path(invoke, tmp_path):
    folder = atomic_folder(tmp_path)
    pipe = atomic_pipeline(tmp_path, folder, ", encoding: utf-9")
    result = invoke("validate", str(pipe))
    refused(result, "dataset.params.encoding", "unknown text encoding 'utf-9'")


def test_an_unreadable_file_is_named_not_a_traceback(invoke, tmp_path, monkeypatch):
    folder = atomic_folder(tmp_path)
    inter = folder / "shop.inter"
    original = Path.read_bytes

    def no_permission(self: Path) -> bytes:
        if self == inter:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    # as root (CI) a chmod would not stop the read: refuse it where the file is opened
    monkeypatch.setattr(Path, "read_bytes", no_permission)
    refused(run(invoke, tmp_path, atomic_pipeline(tmp_path, folder)),
            f"{inter}: cannot be read (permission denied)")


def test_links_to_unknown_items_name_the_link_file(invoke, tmp_path):
    folder = atomic_folder(tmp_path, links="nope\tm.1\n")
    pipe = atomic_pipeline(tmp_path, folder, extra="graph: collaborative_kg\n")
    refused(run(invoke, tmp_path, pipe), f"{folder / 'shop.link'}: the KG of dataset 'shop' links "
            "none of the", "1 name unknown items")
