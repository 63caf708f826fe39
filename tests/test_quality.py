"""Quality control: worker accuracy from gold and from posteriors, intervals, spammer detection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hitl.aggregation import (
    DawidSkene,
    binomial_interval,
    detect_spammers,
    gold_accuracy,
    gold_prior,
    spammer_scores,
    worker_accuracy,
    worker_accuracy_from_gold,
    worker_accuracy_from_posteriors,
)
from hitl.errors import ConfigError, ValidationError


def crowd_with_gold(n_tasks=6000, k=4, n_workers=30, per_task=3, gold_share=0.5, n_spammers=0, seed=0):
    """Workers with known accuracy; a share of tasks is gold. Spammers answer uniformly at random."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_tasks)
    acc = rng.uniform(0.55, 0.95, n_workers)
    acc[:n_spammers] = 1.0 / k  # a uniform random answer is right 1/k of the time
    # uneven workloads: some workers answer much more than others
    share = rng.dirichlet(np.full(n_workers, 2.0))
    task = np.repeat(np.arange(n_tasks), per_task)
    worker = np.concatenate([rng.choice(n_workers, per_task, replace=False, p=share) for _ in range(n_tasks)])
    right = rng.random(task.size) < acc[worker]
    wrong = (truth[task] + rng.integers(1, k, task.size)) % k
    label = np.where(right, truth[task], wrong)
    spam = worker < n_spammers
    label[spam] = rng.integers(0, k, spam.sum())
    gold = np.where(rng.random(n_tasks) < gold_share, truth, -1)
    return task, worker, label, gold, truth, acc


def test_gold_accuracy_close_to_simulated_truth():
    task, worker, label, gold, truth, acc = crowd_with_gold()
    est = worker_accuracy_from_gold(task, worker, label, gold)
    many = est.n >= 50
    assert many.sum() >= 20
    err = np.abs(est.accuracy[many] - acc[many])
    # Sampling error of a proportion over n answers has sd sqrt(p(1-p)/n): about 0.06 at
    # n = 50, 0.02 at n = 400. So: small on average over workers with 50+ gold answers,
    # and within 0.05 for every worker with enough answers for that to be a fair ask.
    assert err.mean() < 0.03
    big = est.n >= 300
    assert big.sum() >= 5
    assert np.abs(est.accuracy[big] - acc[big]).max() < 0.05
    # within 0.05 in the large majority of workers with 50+ gold answers
    assert (err < 0.05).mean() >= 0.8


def test_gold_interval_covers_truth():
    covered = total = 0
    for seed in range(4):
        task, worker, label, gold, truth, acc = crowd_with_gold(n_tasks=3000, seed=seed)
        est = worker_accuracy_from_gold(task, worker, label, gold, confidence=0.95)
        has = est.n > 0
        covered += ((est.lower[has] <= acc[has]) & (acc[has] <= est.upper[has])).sum()
        total += has.sum()
    assert covered / total >= 0.88


def test_gold_accuracy_counts_and_missing_workers():
    est = worker_accuracy_from_gold([0, 1, 2, 0, 1], [0, 0, 0, 1, 1], [1, 0, 1, 1, 1], gold=[1, 1, -1], n_workers=3)
    assert est.n.tolist() == [2, 2, 0]
    assert est.correct.tolist() == [1.0, 2.0, 0.0]
    assert est.accuracy[:2].tolist() == [0.5, 1.0]
    assert np.isnan(est.accuracy[2]) and np.isnan(est.lower[2])


def test_posterior_accuracy_tracks_truth():
    task, worker, label, gold, truth, acc = crowd_with_gold(per_task=5, seed=2)
    ds = DawidSkene().fit(task, worker, label)
    est = worker_accuracy_from_posteriors(ds.posteriors_, task, worker, label)
    many = est.n >= 200
    assert np.abs(est.accuracy[many] - acc[many]).mean() < 0.03
    assert np.corrcoef(est.accuracy[many], acc[many])[0, 1] > 0.95
    assert (est.lower <= est.accuracy).all() and (est.accuracy <= est.upper).all()


def test_binomial_intervals():
    lo, hi = binomial_interval([0, 5, 10], [10, 10, 10])
    assert lo[0] == 0 and hi[2] == pytest.approx(1.0)
    assert lo[1] < 0.5 < hi[1]
    cl, ch = binomial_interval([0, 5, 10], [10, 10, 10], method="clopper-pearson")
    # the exact interval is the wider one; Clopper-Pearson 0/10 upper bound is 1 - 0.025**(1/10)
    assert ch[0] == pytest.approx(1 - 0.025 ** 0.1)
    assert (ch - cl >= hi - lo - 1e-12).all()
    lo, hi = binomial_interval([0], [0])
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    with pytest.raises(ConfigError):
        binomial_interval([1], [2], confidence=1.5)
    with pytest.raises(ConfigError):
        binomial_interval([1], [2], method="bayes")


def test_spammer_score_values():
    k = 4
    eye = np.eye(k)
    perfect = eye
    permuted = eye[[1, 2, 3, 0]]
    rank_one = np.tile([0.4, 0.3, 0.2, 0.1], (k, 1))
    p = 0.7
    uniform_err = p * eye + (1 - p) / (k - 1) * (1 - eye)
    s = spammer_scores(np.stack([perfect, permuted, rank_one, uniform_err]))
    np.testing.assert_allclose(s, [1.0, 1.0, 0.0, ((k * p - 1) / (k - 1)) ** 2], atol=1e-12)
    assert spammer_scores(perfect) == pytest.approx(1.0)
    with pytest.raises(ValidationError):
        spammer_scores(np.ones((3, 2, 3)))


def test_spammers_found_from_dawid_skene_confusions():
    task, worker, label, gold, truth, acc = crowd_with_gold(n_tasks=4000, n_spammers=4, per_task=3, seed=4)
    ds = DawidSkene().fit(task, worker, label)
    n_answers = np.bincount(worker, minlength=len(acc))
    flags = detect_spammers(ds.confusions_, n_answers)
    is_spammer = np.arange(len(acc)) < 4
    enough = n_answers >= 10
    assert flags[is_spammer & enough].all()
    assert not flags[~is_spammer].any()


def test_detect_spammers_needs_enough_answers():
    flat = np.full((2, 2, 2), 0.5)
    assert detect_spammers(flat, [100, 3]).tolist() == [True, False]
    with pytest.raises(ValidationError):
        detect_spammers(flat, [1, 2, 3])


def test_gold_accuracy_frame_with_string_ids():
    answers = pd.DataFrame({
        "task": ["t1", "t2", "t3", "t1", "t2"],
        "worker": ["ann", "ann", "ann", "bob", "bob"],
        "label": ["cat", "dog", "cat", "dog", "dog"],
    })
    gold = pd.DataFrame({"task": ["t1", "t2", "t9"], "label": ["cat", "dog", "cat"]})
    out = gold_accuracy(answers, gold)
    assert out.index.tolist() == ["ann", "bob"]
    assert out.loc["ann", "accuracy"] == 1.0 and out.loc["ann", "n"] == 2
    assert out.loc["bob", "accuracy"] == 0.5
    with pytest.raises(ValidationError):
        gold_accuracy(answers, pd.DataFrame({"task": ["t1"]}))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gold_anchored_accuracy_within_005_of_truth_for_every_worker(seed):
    # Gold as a 10% share of the work, as in practice: a worker with 50 gold answers
    # has about 500 answers in all. Gold alone is off by more than 0.05 for some of
    # them (sd 0.06 at 50 answers); gold plus the gold-anchored aggregation is
    # within 0.05 for every one.
    task, worker, label, gold, truth, acc = crowd_with_gold(n_tasks=20000, gold_share=0.1, seed=seed)
    from_gold = worker_accuracy_from_gold(task, worker, label, gold)
    many = from_gold.n >= 50
    assert many.sum() >= 20
    assert np.abs(from_gold.accuracy[many] - acc[many]).max() > 0.05  # the case for combining
    est = worker_accuracy(task, worker, label, gold)
    assert (est.n >= from_gold.n).all()
    err = np.abs(est.accuracy[many] - acc[many])
    assert err.max() < 0.05, (err.max(), np.flatnonzero(many)[err.argmax()])
    assert ((est.lower <= est.accuracy) & (est.accuracy <= est.upper)).all()


def test_gold_anchored_accuracy_beats_gold_alone_with_dawid_skene_too():
    task, worker, label, gold, truth, acc = crowd_with_gold(n_tasks=8000, gold_share=0.1, seed=5)
    g = worker_accuracy_from_gold(task, worker, label, gold)
    est = worker_accuracy(task, worker, label, gold, aggregator=DawidSkene())
    has = g.n > 0
    assert np.abs(est.accuracy[has] - acc[has]).mean() < 0.6 * np.abs(g.accuracy[has] - acc[has]).mean()


def test_gold_prior_pins_gold_and_checks_labels():
    prior = gold_prior([2, -1, 0], n_tasks=4, n_classes=3)
    assert prior.shape == (4, 3)
    np.testing.assert_allclose(prior.sum(axis=1), 1.0)
    assert prior[0].argmax() == 2 and prior[0, 2] > 0.999
    # non-gold rows: add-one smoothed gold class frequencies (1 + 1, 0 + 1, 1 + 1) / 5
    np.testing.assert_allclose(prior[1], [0.4, 0.2, 0.4])
    np.testing.assert_allclose(prior[3], prior[1])
    with pytest.raises(ValidationError, match="gold"):
        gold_prior([5], n_tasks=1, n_classes=3)
    with pytest.raises(ValidationError, match="gold"):
        gold_prior([0, 1, 0], n_tasks=2, n_classes=2)
    with pytest.raises(ValidationError, match="gold"):
        worker_accuracy([0, 1], [0, 0], [0, 1], gold=np.array([0.5, 1.0]))
