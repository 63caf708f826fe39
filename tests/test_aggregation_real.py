"""The aggregators on the real crowd data sets (skipped when the data folder is absent)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hitl.aggregation import (
    METHODS,
    DawidSkene,
    MajorityVote,
    crowd_data_root,
    gold_accuracy,
    list_crowd_datasets,
    load_crowd_dataset,
)
from hitl.errors import ConflictingAnswerError, DataFormatError

REAL = list_crowd_datasets()
pytestmark = pytest.mark.skipif(not REAL, reason="crowd data folder absent (set HITL_CROWD_DATA)")
# sets on which crowd-kit's Dawid-Skene runs in a few seconds at most
SMALL = [n for n in ("bluebirds", "dog", "ducks", "face_sentiment", "rte", "temp", "web") if n in REAL]


def accuracy(labels: pd.Series, gold: pd.Series) -> float:
    return float((labels.reindex(gold.index).astype(str).to_numpy() == gold.to_numpy()).mean())


BIG = {"adult2", "product", "trec_rf10"}  # 25k-100k answers
# sets where a worker gave one task two different labels, and how many such (task, worker) pairs
CONFLICTING = {"adult2": 149, "trec_rf10": 277}


def rule(name: str) -> str:
    """Conflicting repeats are refused by default; these sets are loaded keeping the last answer."""
    return "last" if name in CONFLICTING else "refuse"


@pytest.fixture(scope="module")
def datasets():
    return {name: load_crowd_dataset(crowd_data_root() / name, duplicates=rule(name)) for name in REAL}


@pytest.fixture(scope="module")
def majority(datasets):
    return {name: accuracy(MajorityVote().fit_predict(d.answers), d.gold_in_answers) for name, d in datasets.items()}


def check_method_on_sets(key, names, datasets, majority):
    for name in names:
        d = datasets[name]
        gold = d.gold_in_answers
        agg = METHODS[key]()
        labels = agg.fit_predict(d.answers)
        assert len(labels) == d.answers["task"].nunique()
        np.testing.assert_allclose(agg.posteriors_.sum(axis=1), 1.0, atol=1e-9)
        # every method is far better than chance and within reach of majority vote
        assert accuracy(labels, gold) > max(1.0 / len(agg.classes_), majority[name] - 0.2), (name, key)


def test_loader_matches_the_index(datasets):
    index = pd.read_csv(crowd_data_root() / "INDEX.csv", dtype={"name": str})
    for row in index.itertuples():
        if row.name not in datasets:
            continue
        d = datasets[row.name]
        # one row per (task, worker): the repeats counted in the index are what the loader dropped
        assert d.n_duplicates == row.n_dup_pairs
        assert len(d.answers) + d.n_duplicates == row.n_answers
        assert not d.answers.duplicated(["task", "worker"]).any()
        assert d.answers["task"].nunique() == row.n_tasks
        assert d.answers["worker"].nunique() == row.n_workers
        assert sorted(d.answers["label"].unique()) == sorted(str(row.classes).split())
        assert len(d.gold_in_answers) == row.n_gold_in_answers


@pytest.mark.parametrize("name", sorted(CONFLICTING))
def test_sets_with_conflicting_repeats_are_refused_by_default(name):
    if name not in REAL:
        pytest.skip(f"{name} absent")
    with pytest.raises(ConflictingAnswerError, match=rf"twice with different labels: .* \(line \d+\) and .* "
                                                      rf"\(line \d+\); {CONFLICTING[name] - 1} more"):
        load_crowd_dataset(name)
    raw = pd.read_csv(crowd_data_root() / name / "answers.csv", dtype=str, keep_default_na=False)
    last = raw.drop_duplicates(["task", "worker"], keep="last")
    d = load_crowd_dataset(name, duplicates="last")
    # the last answer of each pair in file order, nothing else
    pd.testing.assert_frame_equal(d.answers.reset_index(drop=True), last.reset_index(drop=True))
    with pytest.raises(ConflictingAnswerError):
        DawidSkene().fit(raw)
    assert (DawidSkene().fit_predict(raw, duplicates="last") == DawidSkene().fit_predict(d.answers)).all()


def test_loader_by_bare_name_and_missing_folder(tmp_path):
    name = next(n for n in REAL if n not in CONFLICTING)
    assert load_crowd_dataset(name).name == name
    with pytest.raises(DataFormatError, match="folder not found"):
        load_crowd_dataset(tmp_path / "nope")


@pytest.mark.parametrize("key", list(METHODS))
def test_every_method_on_the_smaller_sets(datasets, majority, key):
    check_method_on_sets(key, [n for n in REAL if n not in BIG], datasets, majority)


@pytest.mark.slow
@pytest.mark.parametrize("key", list(METHODS))
def test_every_method_on_the_bigger_sets(datasets, majority, key):
    names = [n for n in REAL if n in BIG]
    if not names:
        pytest.skip("none of the bigger sets present")
    check_method_on_sets(key, names, datasets, majority)


def test_dawid_skene_matches_crowdkit_on_small_sets(datasets):
    ck = pytest.importorskip("crowdkit.aggregation")
    for name in SMALL:
        d = datasets[name]
        gold = d.gold_in_answers
        ours = accuracy(DawidSkene().fit_predict(d.answers), gold)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = accuracy(ck.DawidSkene(n_iter=100).fit_predict(d.answers), gold)
        assert ours >= theirs - 0.003, (name, ours, theirs)


def test_gold_accuracy_on_real_workers(datasets):
    d = datasets.get("rte") or next(iter(datasets.values()))
    acc = gold_accuracy(d.answers, d.gold)
    assert acc.index.name == "worker"
    assert len(acc) == d.answers["worker"].nunique()
    has = acc["n"] > 0
    assert has.any()
    assert ((acc.loc[has, "lower"] <= acc.loc[has, "accuracy"]) & (acc.loc[has, "accuracy"] <= acc.loc[has, "upper"])).all()
