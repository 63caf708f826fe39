"""One vote per (task, worker), in every method, and absurd sizes refused before any allocation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hitl.aggregation import (
    GLAD,
    MACE,
    DawidSkene,
    MajorityVote,
    OneCoinDawidSkene,
    Wawa,
    dedupe_answers,
    gold_accuracy,
    worker_accuracy,
)
from hitl.aggregation._kernels import pair_repeats
from hitl.errors import ConfigError, ConflictingAnswerError

METHODS = [MajorityVote, Wawa, DawidSkene, OneCoinDawidSkene, GLAD, MACE]


def crowd(n_tasks=40, seed=0):
    """Three honest workers, mostly right, on every task (truth alternates yes/no)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_tasks):
        truth = "yes" if i % 2 else "no"
        for w in ("ann", "ben", "cat"):
            right = rng.random() < 0.85
            rows.append((f"t{i}", w, truth if right else ("no" if truth == "yes" else "yes")))
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


@pytest.mark.parametrize("cls", METHODS)
def test_ten_identical_repeats_are_one_vote(cls):
    # Item B: ten "w_evil, yes" rows must not outvote three honest "no".
    honest = crowd()
    evil = pd.DataFrame({"task": ["t0"] * 10, "worker": ["w_evil"] * 10, "label": ["yes"] * 10})
    honest_t0 = pd.DataFrame({"task": ["t0"] * 3, "worker": ["h1", "h2", "h3"], "label": ["no"] * 3})
    data = pd.concat([honest, honest_t0, evil], ignore_index=True)
    model = cls().fit(data)
    assert model.predict_frame()["t0"] == "no"
    assert model.n_duplicates_ == 9
    # exactly what the same method gives on the de-duplicated answers
    once = pd.concat([honest, honest_t0, evil.iloc[:1]], ignore_index=True)
    np.testing.assert_allclose(model.posteriors_, cls().fit(once).posteriors_, atol=1e-12)


@pytest.mark.parametrize("cls", METHODS)
def test_conflicting_repeat_is_refused_naming_task_worker_and_labels(cls):
    data = pd.concat([crowd(), pd.DataFrame({"task": ["t3"], "worker": ["ben"], "label": ["maybe"]})],
                     ignore_index=True)
    first = data.index[(data["task"] == "t3") & (data["worker"] == "ben")][0]
    with pytest.raises(ConflictingAnswerError) as info:
        cls().fit(data)
    msg = str(info.value)
    assert "'t3'" in msg and "'ben'" in msg and "'maybe'" in msg
    assert repr(data.loc[first, "label"]) in msg
    assert f"row {first}" in msg and f"row {len(data) - 1}" in msg
    with pytest.raises(ConflictingAnswerError, match=r"worker 0 answered task 0 .*: 1 \(answer 1\) and 0 \(answer 2\)"):
        cls().fit(np.array([0, 0, 0]), np.array([1, 0, 0]), np.array([1, 1, 0]))


@pytest.mark.parametrize("cls", METHODS)
def test_duplicates_last_keeps_the_last_answer_in_input_order(cls):
    base = crowd()
    # ben first says "yes" to t4, then revises to the truth, "no"; then ann repeats herself
    revised = pd.concat([
        pd.DataFrame({"task": ["t4"], "worker": ["ben"], "label": ["yes"]}),
        base,
        pd.DataFrame({"task": ["t4", "t5"], "worker": ["ben", "ann"], "label": ["no", base.iloc[15]["label"]]}),
    ], ignore_index=True)
    model = cls().fit(revised, duplicates="last")
    kept = revised.drop_duplicates(["task", "worker"], keep="last")
    assert model.n_duplicates_ == len(revised) - len(kept)
    np.testing.assert_allclose(model.posteriors_, cls().fit(kept).posteriors_, atol=1e-12)
    pd.testing.assert_series_equal(cls().fit_predict(revised, duplicates="last"), model.predict_frame())
    pd.testing.assert_frame_equal(cls().fit_predict_proba(revised, duplicates="last"), model.predict_proba_frame())
    with pytest.raises(ConflictingAnswerError):
        cls().fit_predict(revised)
    with pytest.raises(ConfigError, match="duplicates"):
        cls().fit(revised, duplicates="first")


def test_array_and_frame_paths_give_the_same_rule():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 50, 600)
    w = rng.integers(0, 20, 600)
    y = rng.integers(0, 3, 600)
    frame = pd.DataFrame({"task": t, "worker": w, "label": y})
    a = DawidSkene().fit(t, w, y, duplicates="last")
    b = DawidSkene().fit(frame, duplicates="last")
    assert a.n_duplicates_ == b.n_duplicates_ == int(frame.duplicated(["task", "worker"]).sum()) > 0
    np.testing.assert_allclose(a.posteriors_[b.task_ids_.to_numpy()], b.posteriors_, atol=1e-12)


@pytest.mark.parametrize("layout", ["grouped", "shuffled", "by_worker"])
def test_pair_repeats_matches_pandas(layout):
    rng = np.random.default_rng(2)
    n = 5000
    t = np.repeat(np.arange(n // 5), 5)
    w = rng.integers(0, 30, n)
    y = rng.integers(0, 2, n)
    order = {"grouped": np.arange(n), "shuffled": rng.permutation(n), "by_worker": np.argsort(w, kind="stable")}
    t, w, y = t[order[layout]], w[order[layout]], y[order[layout]]
    df = pd.DataFrame({"t": t, "w": w, "y": y})
    keep, n_dropped, n_pairs, first = pair_repeats(t, w, y, t.max() + 1, w.max() + 1)
    expected = ~df.duplicated(["t", "w"], keep="last").to_numpy()
    np.testing.assert_array_equal(keep, expected)
    assert n_dropped == int((~expected).sum())
    assert n_pairs == int((df.groupby(["t", "w"])["y"].nunique() > 1).sum())
    # the first conflict in input order: the first answer whose pair already has another label
    labels_so_far: dict = {}
    for i, key in enumerate(zip(t.tolist(), w.tolist())):
        seen = labels_so_far.setdefault(key, set())
        if seen - {int(y[i])}:
            break
        seen.add(int(y[i]))
    a, b = first
    assert b == i
    assert (t[a], w[a]) == (t[b], w[b]) and y[a] != y[b] and a < b


def test_pair_repeats_without_repeats_returns_none():
    keep, n_dropped, n_pairs, first = pair_repeats(np.array([0, 1, 0]), np.array([0, 0, 1]), np.array([1, 0, 0]),
                                                   2, 2)
    assert keep is None and n_dropped == 0 and n_pairs == 0 and first is None


def test_dedupe_answers_keeps_index_and_order():
    df = pd.DataFrame({"task": ["a", "b", "a", "a"], "worker": ["x", "x", "x", "y"], "label": ["1", "0", "1", "1"]},
                      index=[10, 11, 12, 13])
    assert dedupe_answers(df).index.tolist() == [11, 12, 13]
    unique = df.iloc[[1, 3]]
    assert dedupe_answers(unique) is unique  # nothing to drop: no copy
    df.loc[12, "label"] = "0"
    with pytest.raises(ConflictingAnswerError, match=r"'1' \(row 10\) and '0' \(row 12\)"):
        dedupe_answers(df)
    assert dedupe_answers(df, "last").loc[12, "label"] == "0"


def test_quality_functions_count_one_vote_per_pair():
    df = pd.DataFrame({"task": ["a", "a", "a", "b"], "worker": ["x", "x", "x", "x"], "label": ["1", "1", "1", "0"]})
    acc = gold_accuracy(df, pd.DataFrame({"task": ["a", "b"], "label": ["1", "1"]}))
    assert acc.loc["x", "n"] == 2 and acc.loc["x", "accuracy"] == 0.5
    wa = worker_accuracy([0, 0, 0, 1, 1], [0, 0, 1, 0, 1], [1, 1, 1, 0, 0], gold=[1, -1])
    assert wa.n.tolist() == [2, 2]
    with pytest.raises(ConflictingAnswerError):
        worker_accuracy([0, 0, 1], [0, 0, 0], [1, 0, 0], gold=[1, -1])


@pytest.mark.parametrize("cls", [DawidSkene, OneCoinDawidSkene, GLAD, MACE])
def test_absurd_n_classes_is_a_config_error_not_a_memory_error(cls):
    # Item C1: 10**7 classes means per-worker 10**7 x 10**7 matrices, petabytes.
    with pytest.raises(ConfigError, match=r"n_classes.*10000000.*would need about [\d.]+ PiB"):
        cls().fit(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([1, 1, 0]), n_classes=10**7)


def test_memory_rule_follows_the_limit(monkeypatch):
    import hitl.aggregation._base as base

    t, w, y = np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([1, 1, 0])
    DawidSkene().fit(t, w, y, n_classes=50)  # 2 x 50 x 50 x 8 bytes x 6: far below any machine
    monkeypatch.setattr(base, "memory_limit_bytes", lambda: 100_000)
    with pytest.raises(ConfigError, match="n_classes"):
        DawidSkene().fit(t, w, y, n_classes=50)
    MajorityVote().fit(t, w, y, n_classes=50)  # a vote holds no per-worker matrix
    assert base.memory_limit_bytes() == 100_000
    monkeypatch.undo()
    assert base.memory_limit_bytes() > 2**26
