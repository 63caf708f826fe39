"""The classifier as one more annotator: its probabilities as a prior in every aggregator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hitl.aggregation import GLAD, MACE, DawidSkene, MajorityVote, OneCoinDawidSkene, Wawa

EM_METHODS = [DawidSkene, OneCoinDawidSkene, GLAD, MACE]


def simulate_model_and_crowd(n_items=4000, k=3, n_workers=40, per_item=1, concentration=0.6, seed=0):
    """A calibrated classifier and a crowd of mixed accuracy.

    Each item's model probabilities are a Dirichlet draw and its true class is drawn
    from them, so the model is calibrated by construction (accuracy = mean top
    probability). Each worker is right with their own probability; a wrong answer is
    a uniform pick among the other classes.
    """
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.full(k, concentration), size=n_items)
    truth = (rng.random(n_items)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1)
    truth = np.minimum(truth, k - 1)
    acc = rng.uniform(0.55, 0.9, n_workers)
    task = np.repeat(np.arange(n_items), per_item)
    worker = np.concatenate([rng.choice(n_workers, per_item, replace=False) for _ in range(n_items)])
    right = rng.random(task.size) < acc[worker]
    label = np.where(right, truth[task], (truth[task] + rng.integers(1, k, task.size)) % k)
    return task, worker, label, proba, truth


@pytest.mark.parametrize("cls", EM_METHODS)
def test_prior_beats_model_alone_and_humans_alone_at_one_answer_per_item(cls):
    task, worker, label, proba, truth = simulate_model_and_crowd()
    model_acc = (proba.argmax(axis=1) == truth).mean()
    humans_acc = (cls().fit(task, worker, label, n_tasks=len(truth)).labels_ == truth).mean()
    mv_acc = (MajorityVote().fit(task, worker, label).labels_ == truth).mean()
    both_acc = (cls().fit(task, worker, label, prior=proba).labels_ == truth).mean()
    # the two sources are of similar quality, so the test is not won by one of them alone
    assert abs(model_acc - mv_acc) < 0.1
    assert both_acc > model_acc + 0.02
    assert both_acc > max(humans_acc, mv_acc) + 0.02


def test_prior_helps_at_three_answers_too():
    task, worker, label, proba, truth = simulate_model_and_crowd(n_items=2000, per_item=3, seed=1)
    alone = (DawidSkene().fit(task, worker, label).labels_ == truth).mean()
    both = (DawidSkene().fit(task, worker, label, prior=proba).labels_ == truth).mean()
    assert both > alone


@pytest.mark.parametrize("cls", [MajorityVote, Wawa, *EM_METHODS])
def test_confident_prior_decides_when_answers_are_split(cls):
    # two workers disagree on every task; the prior breaks the tie
    task = np.repeat(np.arange(50), 2)
    worker = np.tile([0, 1], 50)
    label = np.tile([0, 1], 50)
    prior = np.tile([[0.1, 0.9]], (50, 1))
    prior[::2] = [0.9, 0.1]
    agg = cls().fit(task, worker, label, prior=prior)
    assert (agg.labels_ == prior.argmax(axis=1)).all()


@pytest.mark.parametrize("cls", EM_METHODS)
def test_prior_through_dataframe_front_door(cls):
    task, worker, label, proba, truth = simulate_model_and_crowd(n_items=600, seed=3)
    names = np.array(["a", "b", "c"])
    df = pd.DataFrame({"task": [f"item{i}" for i in task], "worker": [f"w{j}" for j in worker], "label": names[label]})
    prior = pd.DataFrame(proba[:, ::-1], index=[f"item{i}" for i in range(600)], columns=["c", "b", "a"])
    by_frame = cls().fit_predict(df, prior=prior)
    agg = cls().fit(df, prior=prior)
    # the same fit through arrays, with rows and columns in the fitted order
    order = [int(s[4:]) for s in agg.task_ids_]
    by_array = cls().fit(
        agg.task_ids_.get_indexer(df["task"]), agg.worker_ids_.get_indexer(df["worker"]),
        agg.classes_.get_indexer(df["label"]), prior=proba[order],
    )
    assert (by_frame.to_numpy() == names[by_array.labels_]).all()
