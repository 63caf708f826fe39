"""Contract of the aggregators: arrays in, posteriors out, the DataFrame front door, checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hitl.aggregation import (
    GLAD,
    MACE,
    METHODS as BY_NAME,
    DawidSkene,
    MajorityVote,
    OneCoinDawidSkene,
    Wawa,
    ds_e_step,
    ds_m_step,
    ds_m_step_sums,
)
from hitl.errors import ConfigError, NotFittedError, ValidationError

METHODS = [MajorityVote, Wawa, DawidSkene, OneCoinDawidSkene, GLAD, MACE]
EM = [DawidSkene, OneCoinDawidSkene, GLAD, MACE]


def simulate(n_tasks=400, n_workers=30, k=3, per_task=5, seed=0, acc_range=(0.55, 0.95)):
    """Answers from workers of known per-worker accuracy; errors uniform over the other classes."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_tasks)
    acc = rng.uniform(*acc_range, n_workers)
    task = np.repeat(np.arange(n_tasks), per_task)
    worker = np.concatenate([rng.choice(n_workers, per_task, replace=False) for _ in range(n_tasks)])
    right = rng.random(task.size) < acc[worker]
    label = np.where(right, truth[task], (truth[task] + rng.integers(1, k, task.size)) % k)
    return task, worker, label, truth, acc


@pytest.mark.parametrize("cls", METHODS)
def test_posteriors_shape_sum_and_labels(cls):
    t, w, y, truth, _ = simulate()
    agg = cls().fit(t, w, y)
    assert agg.posteriors_.shape == (400, 3)
    assert agg.posteriors_.dtype == np.float64
    np.testing.assert_allclose(agg.posteriors_.sum(axis=1), 1.0, atol=1e-9)
    assert agg.labels_.dtype == np.int64
    np.testing.assert_array_equal(agg.labels_, agg.posteriors_.argmax(axis=1))
    assert (agg.labels_ == truth).mean() > 0.85
    assert agg.confusions_.shape == (30, 3, 3)
    np.testing.assert_allclose(agg.confusions_.sum(axis=2), 1.0, atol=1e-9)
    assert agg.class_prior_.shape == (3,)
    assert abs(agg.class_prior_.sum() - 1.0) < 1e-9


@pytest.mark.parametrize("cls", EM)
def test_em_methods_beat_majority_with_mixed_workers(cls):
    t, w, y, truth, _ = simulate(n_tasks=600, n_workers=20, per_task=3, acc_range=(0.35, 0.98), seed=3)
    mv = (MajorityVote().fit(t, w, y).labels_ == truth).mean()
    em = (cls().fit(t, w, y).labels_ == truth).mean()
    assert em > mv + 0.02


def test_method_names():
    assert set(BY_NAME) == {"mv", "wawa", "ds", "onecoin", "glad", "mace"}
    assert BY_NAME["ds"] is DawidSkene


def test_wawa_weights_follow_agreement():
    t, w, y, truth, acc = simulate(n_tasks=1000, n_workers=15, per_task=5, seed=8)
    skills = Wawa().fit(t, w, y).skills_
    assert np.corrcoef(skills, acc)[0, 1] > 0.9


def test_one_coin_and_glad_and_mace_worker_parameters():
    t, w, y, truth, acc = simulate(n_tasks=2000, n_workers=15, per_task=5, seed=9)
    oc = OneCoinDawidSkene().fit(t, w, y)
    assert np.abs(oc.skills_ - acc).max() < 0.06
    glad = GLAD().fit(t, w, y)
    assert np.corrcoef(glad.alphas_, acc)[0, 1] > 0.9
    assert glad.betas_.shape == (2000,) and (glad.betas_ > 0).all()
    mace = MACE().fit(t, w, y)
    assert np.corrcoef(mace.competence_, acc)[0, 1] > 0.9
    np.testing.assert_allclose(mace.spam_.sum(axis=1), 1.0)


def test_mace_finds_a_worker_who_always_gives_the_same_label():
    t, w, y, truth, acc = simulate(n_tasks=800, n_workers=10, per_task=5, seed=10)
    y = y.copy()
    y[w == 0] = 2
    mace = MACE().fit(t, w, y)
    assert mace.competence_[0] < 0.15
    assert mace.spam_[0].argmax() == 2
    assert mace.competence_[1:].min() > 0.3


@pytest.mark.parametrize("cls", EM)
def test_em_bad_settings(cls):
    with pytest.raises(ConfigError):
        cls(n_iter=0).fit([0, 1], [0, 0], [0, 1])
    with pytest.raises(ConfigError):
        cls(dtype="int8").fit([0, 1], [0, 0], [0, 1])


@pytest.mark.parametrize("cls", EM)
def test_float32_matches_float64(cls):
    t, w, y, truth, _ = simulate(seed=11)
    a = cls(dtype="float64").fit(t, w, y)
    b = cls(dtype="float32").fit(t, w, y)
    assert b.posteriors_.dtype == np.float64
    assert np.abs(a.posteriors_ - b.posteriors_).max() < 1e-3
    assert (a.labels_ == b.labels_).mean() > 0.99


def test_unsorted_answers_give_the_same_result():
    t, w, y, _, _ = simulate(seed=12)
    perm = np.random.default_rng(0).permutation(len(t))
    a = DawidSkene().fit(t, w, y)
    b = DawidSkene().fit(t[perm], w[perm], y[perm])
    np.testing.assert_allclose(a.posteriors_, b.posteriors_, atol=1e-9)


def test_many_answers_per_task_do_not_underflow():
    # 400 answers on each task: a product of likelihoods far below the float64 range
    t, w, y, truth, _ = simulate(n_tasks=30, n_workers=400, per_task=400, seed=13, acc_range=(0.3, 0.6))
    for cls in EM:
        agg = cls().fit(t, w, y)
        assert np.isfinite(agg.posteriors_).all()
        np.testing.assert_allclose(agg.posteriors_.sum(axis=1), 1.0, atol=1e-9)
        assert np.isfinite(agg.log_likelihood_).all()


def test_dawid_skene_recovers_worker_accuracy():
    t, w, y, truth, acc = simulate(n_tasks=2000, n_workers=20, per_task=5, seed=1)
    ds = DawidSkene().fit(t, w, y)
    diag = np.einsum("wjj->wj", ds.confusions_) @ ds.class_prior_
    assert np.abs(diag - acc).max() < 0.06


@pytest.mark.parametrize("cls", METHODS)
def test_deterministic(cls):
    t, w, y, _, _ = simulate(seed=5)
    a = cls().fit(t, w, y).posteriors_
    b = cls().fit(t, w, y).posteriors_
    np.testing.assert_array_equal(a, b)


def test_majority_vote_shares_and_ties():
    mv = MajorityVote().fit(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([2, 1, 0, 0]), n_classes=3)
    np.testing.assert_allclose(mv.posteriors_, [[0, 0.5, 0.5], [1, 0, 0]])
    assert mv.labels_.tolist() == [1, 0]  # tie goes to the smallest class index


def test_majority_vote_prior_is_one_more_vote():
    prior = np.array([[0.1, 0.9], [0.5, 0.5]])
    mv = MajorityVote().fit(np.array([0, 1]), np.array([0, 0]), np.array([0, 1]), prior=prior)
    np.testing.assert_allclose(mv.posteriors_, [[1.1 / 2, 0.9 / 2], [0.25, 0.75]])


@pytest.mark.parametrize("cls", METHODS)
def test_task_without_answer_gets_prior_or_uniform(cls):
    t, w, y = np.array([0, 0, 2]), np.array([0, 1, 0]), np.array([1, 1, 0])
    agg = cls().fit(t, w, y, n_tasks=4, n_classes=3)
    np.testing.assert_allclose(agg.posteriors_[1], [1 / 3] * 3)
    np.testing.assert_allclose(agg.posteriors_[3], [1 / 3] * 3)
    prior = np.array([[0.2, 0.5, 0.3], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8]])
    agg = cls().fit(t, w, y, n_tasks=4, n_classes=3, prior=prior)
    np.testing.assert_allclose(agg.posteriors_[1], prior[1], atol=1e-9)
    np.testing.assert_allclose(agg.posteriors_[3], prior[3], atol=1e-9)


def test_sizes_default_to_max_plus_one_and_can_be_larger():
    agg = DawidSkene().fit(np.array([0, 2]), np.array([1, 1]), np.array([0, 1]))
    assert agg.posteriors_.shape == (3, 2)
    agg = DawidSkene().fit(np.array([0, 2]), np.array([1, 1]), np.array([0, 1]), n_tasks=5, n_workers=4, n_classes=3)
    assert agg.posteriors_.shape == (5, 3)
    assert agg.confusions_.shape == (4, 3, 3)


@pytest.mark.parametrize("cls", METHODS)
def test_dataframe_front_door_with_string_ids(cls):
    t, w, y, truth, _ = simulate(n_tasks=100, seed=2)
    names = np.array(["cat", "dog", "eel"])
    df = pd.DataFrame({"task": [f"t{i:03d}" for i in t], "worker": [f"w{j}" for j in w], "label": names[y]})
    agg = cls()
    labels = agg.fit_predict(df)
    assert isinstance(labels, pd.Series)
    assert labels.index.name == "task"
    assert list(labels.index) == sorted(f"t{i:03d}" for i in range(100))
    assert list(agg.classes_) == ["cat", "dog", "eel"]
    assert len(agg.worker_ids_) == len(set(w))
    by_array = cls().fit(t, w, y).labels_
    assert (labels.to_numpy() == names[by_array]).all()
    proba = cls().fit_predict_proba(df)
    assert isinstance(proba, pd.DataFrame)
    assert list(proba.columns) == ["cat", "dog", "eel"]
    np.testing.assert_allclose(proba.to_numpy(), cls().fit(t, w, y).posteriors_)


def test_dataframe_prior_aligned_by_task_and_label():
    df = pd.DataFrame({"task": ["b", "a"], "worker": ["x", "x"], "label": ["no", "yes"]})
    prior = pd.DataFrame({"yes": [0.8, 0.3], "no": [0.2, 0.7]}, index=["a", "b"])
    proba = MajorityVote().fit_predict_proba(df, prior=prior)
    np.testing.assert_allclose(proba.loc["a", ["no", "yes"]].to_numpy(), [0.1, 0.9])
    np.testing.assert_allclose(proba.loc["b", ["no", "yes"]].to_numpy(), [0.85, 0.15])


def test_dataframe_checks():
    with pytest.raises(ValidationError, match="label"):
        MajorityVote().fit(pd.DataFrame({"task": [1], "worker": [2]}))
    with pytest.raises(ValidationError, match="no answers"):
        DawidSkene().fit(pd.DataFrame({"task": [], "worker": [], "label": []}))
    with pytest.raises(ValidationError, match="worker"):
        DawidSkene().fit(pd.DataFrame({"task": ["a", "b"], "worker": ["x", None], "label": [1, 0]}))


@pytest.mark.parametrize("cls", METHODS)
@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(task=[0, 1], worker=[0], label=[0, 1]), "task/worker/label"),
        (dict(task=[], worker=[], label=[]), "task/worker/label"),
        (dict(task=[0, -1], worker=[0, 0], label=[0, 1]), "task"),
        (dict(task=[0, 1], worker=[0, -3], label=[0, 1]), "worker"),
        (dict(task=[0, 1], worker=[0, 0], label=[0, 3], n_classes=3), "label"),
        (dict(task=[0, 5], worker=[0, 0], label=[0, 1], n_tasks=3), "task"),
        (dict(task=[0.5, 1], worker=[0, 0], label=[0, 1]), "task"),
        (dict(task=[0, 1], worker=[0, 0], label=[0, 1], prior=np.ones((3, 2))), "prior"),
        (dict(task=[0, 1], worker=[0, 0], label=[0, 1], prior=np.array([[0.5, 0.5], [np.nan, 1]])), "prior"),
        (dict(task=[0, 1], worker=[0, 0], label=[0, 1], prior=np.array([[0.5, 0.5], [-1, 2]])), "prior"),
    ],
)
def test_array_checks_name_the_field(cls, kwargs, field):
    kwargs = dict(kwargs)
    args = (kwargs.pop("task"), kwargs.pop("worker"), kwargs.pop("label"))
    with pytest.raises(ValidationError) as info:
        cls().fit(*args, **kwargs)
    assert info.value.field == field


def test_check_names_the_item():
    with pytest.raises(ValidationError) as info:
        DawidSkene().fit([0, 1, 2], [0, 0, 0], [0, 1, 7], n_classes=3)
    assert info.value.item == 2
    with pytest.raises(ValidationError) as info:
        DawidSkene().fit([0, 1], [0, 0], [0, 1], prior=np.array([[0.5, 0.5], [np.nan, 1]]))
    assert info.value.item == 1


def test_not_fitted():
    with pytest.raises(NotFittedError):
        DawidSkene().predict_frame()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sharded_em_steps_match_in_process(dtype):
    """E-step per shard of tasks + summed M-step statistics == the in-process fit."""
    t, w, y, _, _ = simulate(n_tasks=500, n_workers=25, per_task=4, seed=7)
    n_tasks, n_workers, k = 500, 25, 3
    n_iter = 15
    ref = DawidSkene(n_iter=n_iter, tol=-1.0, dtype=dtype).fit(t, w, y)
    shards = [np.flatnonzero(t % 3 == s) for s in range(3)]  # tasks split three ways
    post = MajorityVote().fit(t, w, y).posteriors_.astype(dtype)
    for _ in range(n_iter):
        sums = [ds_m_step_sums(post, t[i], w[i], y[i], n_workers) for i in shards]
        counts = sum(s[0] for s in sums)
        class_counts = sum(s[1] for s in sums)
        log_conf, log_prior = ds_m_step(counts, class_counts, ref.smoothing, ref.diagonal, dtype=dtype)
        new = np.zeros((n_tasks, k), dtype=dtype)
        for i in shards:
            p, _ = ds_e_step(log_conf, log_prior, t[i], w[i], y[i], n_tasks)
            rows = np.unique(t[i])
            new[rows] = p[rows]
        post = new
    tol = 1e-9 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(post, ref.posteriors_, atol=tol)
