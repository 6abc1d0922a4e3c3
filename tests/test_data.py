"""Data: atomic and tabular readers, preprocessing, splits, export/import, negative sampling."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kgflow.config.schema import KCore, Preprocess, SplitConfig
from kgflow.data.atomic import load_atomic_dataset, read_atomic
from kgflow.data.preprocess import kcore_filter, prepare_interactions
from kgflow.data.recdata import RecData
from kgflow.data.split import export_split, read_predefined, split_interactions
from kgflow.errors import DataError
from kgflow.training.sampling import NegativeSampler, in_sorted
from kgflow_plugins.datasets.synthetic import SyntheticParams, generate

INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def make_inter(rows):
    return INTER + "".join("\t".join(map(str, r)) + "\n" for r in rows)


def test_read_atomic_and_dataset(tmp_path):
    (tmp_path / "d.inter").write_text(make_inter([(1, 10, 5, 100), (1, 11, 3, 101), (2, 10, 4, 102)]))
    (tmp_path / "d.item").write_text("item_id:token\ttitle:token_seq\n10\tA \"quoted\" film\n11\tB\n")
    (tmp_path / "d.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\nm.1\tr\tm.2\n")
    (tmp_path / "d.link").write_text("item_id:token\tentity_id:token\n10\tm.1\n")
    data = load_atomic_dataset(tmp_path, "d").cleaned()
    assert len(data.interactions) == 3 and data.interactions["rating"].tolist() == [5.0, 3.0, 4.0]
    assert data.items.loc["10", "title"] == 'A "quoted" film'
    assert data.summary()["kg_triples"] == 1 and data.summary()["linked_items"] == 1


@pytest.mark.parametrize("content,expected", [
    ("user_id\titem_id:token\n1\t2\n", "d.inter:1: malformed header field 1"),
    ("user_id:token\titem_id:tokn\n1\t2\n", "unknown type 'tokn'"),
    (INTER + "1\t2\t5\t100\n1\t3\t5\n", "d.inter:3: row has 3 fields, fewer"),
    (INTER + "1\t2\t5\t100\n1\t3\t5\t100\textra\n", "d.inter:3: row has 5 fields"),
    (INTER + "1\t2\tfive\t100\n", "d.inter:2: field 'rating' must be a number, got 'five'"),
])
def test_malformed_atomic_files(tmp_path, content, expected):
    (tmp_path / "d.inter").write_text(content)
    with pytest.raises(DataError, match=expected.replace("(", r"\(")):
        read_atomic(tmp_path / "d.inter")


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_atomic_dataset(tmp_path, "nothing")


def synthetic(**kw):
    return generate(SyntheticParams(**kw))


def test_threshold_kcore_and_empty_after_filtering():
    data = synthetic(users=50, items=30)
    inter = prepare_interactions(data, Preprocess(rating_threshold=4))
    assert len(inter) == int((data.interactions["rating"] >= 4).sum())
    frame = pd.DataFrame({"user": list("aaabbc"), "item": list("xyzxyx")})
    kept = kcore_filter(frame, 2, 2)
    assert set(kept["user"]) == {"a", "b"} and set(kept["item"]) == {"x", "y"}
    with pytest.raises(DataError, match="no interactions are left after preprocessing"):
        prepare_interactions(data, Preprocess(rating_threshold=4, kcore=KCore(user=10_000)))


def test_random_split_ratios_disjoint_and_seeded():
    inter = prepare_interactions(synthetic(users=80, items=60, interactions_per_user=30),
                                 Preprocess(rating_threshold=None))
    split = split_interactions(inter, SplitConfig(ratios=[0.8, 0.1, 0.1]), seed=1)
    keys = [set(zip(p.user, p.item)) for p in (split.train, split.valid, split.test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert sum(map(len, keys)) == len(inter)
    per_user = np.bincount(inter.user)
    valid_per_user = np.bincount(split.valid.user, minlength=inter.n_users)
    assert (valid_per_user == np.floor(per_user * 0.1 + 1e-9)).all()
    again = split_interactions(inter, SplitConfig(), seed=1)
    other = split_interactions(inter, SplitConfig(), seed=2)
    assert split.fingerprint() == again.fingerprint() != other.fingerprint()


def test_small_users_still_get_a_test_item():
    frame = pd.DataFrame({"user": ["a"] * 5, "item": list("vwxyz"), "rating": 5.0, "timestamp": range(5)})
    inter = prepare_interactions(RecData("t", frame), Preprocess())
    split = split_interactions(inter, SplitConfig(), seed=0)
    assert (len(split.train), len(split.valid), len(split.test)) == (3, 1, 1)


def test_temporal_and_leave_one_out_use_time():
    inter = prepare_interactions(synthetic(users=40, items=30), Preprocess(rating_threshold=None))
    for method in ("temporal", "leave_one_out"):
        split = split_interactions(inter, SplitConfig(method=method), seed=0)
        last_train = pd.Series(split.train.timestamp).groupby(split.train.user).max()
        first_test = pd.Series(split.test.timestamp).groupby(split.test.user).min()
        common = last_train.index.intersection(first_test.index)
        assert (last_train[common] < first_test[common]).all()
    loo = split_interactions(inter, SplitConfig(method="leave_one_out"), seed=0)
    assert np.bincount(loo.test.user).max() == 1


def test_cold_items_never_in_training():
    inter = prepare_interactions(synthetic(users=60, items=50), Preprocess(rating_threshold=None))
    split = split_interactions(inter, SplitConfig(method="cold_items", cold_item_share=0.2), seed=0)
    assert len(split.cold_items) == 10
    assert not np.isin(split.train.item, split.cold_items).any()
    cold_valid = set(split.valid.item) & set(split.cold_items)
    cold_test = set(split.test.item) & set(split.cold_items)
    assert cold_test and not (cold_valid & cold_test)


def test_missing_timestamps_for_temporal_split():
    frame = pd.DataFrame({"user": ["a", "a"], "item": ["x", "y"], "rating": [5.0, 5.0]})
    inter = prepare_interactions(RecData("t", frame), Preprocess())
    with pytest.raises(DataError, match="no timestamp"):
        split_interactions(inter, SplitConfig(method="temporal"), seed=0)


def test_export_and_read_back_is_identical(tmp_path):
    data = synthetic(users=40, items=30)
    inter = prepare_interactions(data, Preprocess())
    split = split_interactions(inter, SplitConfig(), seed=0)
    folder = export_split(split, data, tmp_path)
    assert (folder / "synthetic.train.inter").read_text().startswith(INTER)
    back = read_predefined(tmp_path)
    assert back.fingerprint() == split.fingerprint()
    with pytest.raises(DataError, match="train.inter"):
        read_predefined(tmp_path / "nowhere")


def test_negative_sampler_avoids_positives():
    users = torch.tensor([0, 0, 0, 1])
    items = torch.tensor([0, 1, 2, 3])
    sampler = NegativeSampler(users, items, n_items=4)
    gen = torch.Generator().manual_seed(0)
    neg = sampler.sample(torch.tensor([0] * 200 + [1] * 200), 3, gen)
    assert (neg[:200] == 3).all()
    assert not (neg[200:] == 3).any()


def test_in_sorted_membership_by_binary_search():
    keys = torch.unique(torch.tensor([7, 3, 3, 12]))
    probe = torch.tensor([[3, 4], [12, 13]])
    assert in_sorted(keys, probe).tolist() == [[True, False], [True, False]]
    assert in_sorted(keys, torch.tensor([0, 100])).tolist() == [False, False]  # both ends
    assert not in_sorted(torch.tensor([], dtype=torch.long), torch.tensor([1])).any()


def test_negative_sampler_never_draws_excluded_items():
    users = torch.tensor([0, 1])
    items = torch.tensor([0, 1])
    sampler = NegativeSampler(users, items, n_items=6, exclude=torch.tensor([4, 5]))
    neg = sampler.sample(torch.tensor([0] * 300 + [1] * 300), 2, torch.Generator().manual_seed(0))
    assert set(neg[:300].flatten().tolist()) == {1, 2, 3}
    assert set(neg[300:].flatten().tolist()) == {0, 2, 3}
