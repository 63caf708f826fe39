"""Redundancy judged on the set of human labels, and the model prior calibrated on the audits."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import hitl
from hitl.errors import ConfigError
from hitl.models import SklearnModel


def _open(n):
    return np.ones(n, dtype=bool)


def test_a_set_that_meets_the_target_asks_nobody_again():
    r = hitl.Router(0.95, 0.95)
    post = np.r_[np.full(990, 0.999), np.full(10, 0.80)]  # 1.2 expected errors in 1,000, 50 allowed
    assert not r.needs_more_set(post, np.ones(1000, int), _open(1000)).any()
    # Judged item by item, the same ten would each be asked again.
    assert r.needs_more(post, np.ones(1000, int)).sum() == 10


def test_the_lowest_are_asked_first_and_never_one_at_the_target():
    r = hitl.Router(0.95, 0.95)
    rng = np.random.default_rng(0)
    post = rng.uniform(0.6, 0.99, 500)
    need = r.needs_more_set(post, np.ones(500, int), _open(500))
    assert need.any()
    assert not need[post >= 0.95].any()
    # Whatever is asked again is below whatever is not (among those below the target).
    assert post[need].max() <= post[~need & (post < 0.95)].min()
    # Enough of them that their expected errors cover the shortfall.
    errors = 1 - post
    excess = errors.sum() + 1.6449 * np.sqrt(np.sum(post * errors)) - 0.05 * len(post)
    assert errors[need].sum() >= excess > errors[need].sum() - errors[need].max()


def test_only_open_items_and_items_with_answers_left_are_asked():
    r = hitl.Router(0.95, 0.95, max_answers=2)
    post = np.full(100, 0.5)
    n = np.r_[np.full(50, 2), np.ones(50, int)]
    open_ = np.arange(100) % 2 == 0
    need = r.needs_more_set(post, n, open_)
    assert need.any() and not need[~open_].any() and not need[n >= 2].any()


def test_audits_keep_their_own_rule():
    r = hitl.Router(0.95, 0.95, audit_target=0.995, audit_max_answers=5)
    post = np.r_[np.full(99, 0.9999), 0.99]
    audit = np.r_[np.zeros(99, bool), True]
    # The set is far above its target, yet the audit below 0.995 gets another answer.
    assert r.needs_more_set(post, np.ones(100, int), _open(100), audit=audit).nonzero()[0].tolist() == [99]
    assert not r.needs_more_set(post, np.full(100, 5), _open(100), audit=audit).any()


def test_fixed_redundancy_ignores_posteriors():
    r = hitl.Router(answers_per_item=2)
    need = r.needs_more_set(np.full(4, 0.999), np.array([1, 2, 1, 1]), np.array([True, True, True, False]))
    assert need.tolist() == [True, False, True, False]


def test_bad_settings():
    with pytest.raises(ConfigError, match="redundancy"):
        hitl.Router(redundancy="crowd")
    X = np.zeros((10, 2), np.float32)
    crowd = hitl.SimulatedCrowd.from_profile("experts", 3, truth=np.zeros(10, int), n_classes=2)
    with pytest.raises(ConfigError, match="prior_mix"):
        hitl.LabelingProject(hitl.Pool(X), SklearnModel(LogisticRegression(), n_classes=2), workforce=crowd,
                             prior_mix="model", progress=False)


def _hard_pool(n, seed):
    # Three overlapping classes: a logistic model is right about 80% of the time.
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    return (centers[y] + rng.normal(0, 1.0, (n, 2))).astype(np.float32), y


def _run(X, y, seed, **router):
    crowd = hitl.SimulatedCrowd.from_profile("realistic", 20, truth=y, n_classes=3, countries=["TG", "KE"],
                                             random_state=seed)
    project = hitl.LabelingProject(
        hitl.Pool(X), SklearnModel(LogisticRegression(), n_classes=3), workforce=crowd, y_true=y,
        router=hitl.Router(0.95, 0.95, guarantee=False, auto_accept=1.0, random_state=seed, **router),
        prior_mix=0.1, random_state=seed, progress=False)
    project.run(batch_size=60)
    post, counts = project._posteriors()
    human = counts > 0
    return counts.sum(), post[human].max(1).mean(), np.mean(post[human].argmax(1) == y[human])


@pytest.mark.parametrize("seed", [0, 1])
def test_the_set_rule_meets_the_target_with_fewer_answers(seed):
    X, y = _hard_pool(900, seed)
    per_item, _, acc_item = _run(X, y, seed, redundancy="item")
    per_set, mean_post, acc_set = _run(X, y, seed, redundancy="set")
    # The item rule overshoots the target; the set rule spends less and lands near it.
    assert per_set < 0.9 * per_item
    assert acc_set >= 0.94 and acc_item >= acc_set - 0.005
    # What it stops on is the posteriors' own estimate of the set's accuracy: it must be honest.
    assert abs(mean_post - acc_set) < 0.02


class _Overconfident:
    """A logistic model whose probabilities are sharpened: sure of itself more often than right."""

    def __init__(self):
        self.inner = SklearnModel(LogisticRegression(), n_classes=3)

    def fit(self, X, y):
        self.inner.fit(X, y)
        return self

    def predict_proba(self, X):
        p = self.inner.predict_proba(X) ** 6
        return p / p.sum(axis=1, keepdims=True)


def test_the_model_prior_is_calibrated_on_the_audits():
    X, y = _hard_pool(1500, 2)
    crowd = hitl.SimulatedCrowd.from_profile("realistic", 20, truth=y, n_classes=3, countries=["TG"], random_state=2)
    project = hitl.LabelingProject(hitl.Pool(X), _Overconfident(), workforce=crowd, y_true=y,
                                   router=hitl.Router(0.95, 0.95, audit_size=150, random_state=0),
                                   prior_mix="audits", progress=False, random_state=2)
    for _ in range(8):
        project.step(batch_size=60)
    cal = project._prior_calibrator
    assert cal is not None and cal.temperature_ > 2.0  # it undoes most of the sharpening
    raw = project.model.predict_proba(X)
    stored_has, stored = project.store.priors(len(y), 3)
    # The calibrated prior is about as sure as the model is right (to within the sampling
    # error of 120 audits, sd ~0.035); the sharpened one is far surer.
    calibrated = cal.predict_proba(np.log(raw))
    acc = np.mean(raw.argmax(1) == y)
    assert abs(calibrated.max(1).mean() - acc) < 0.07 and raw.max(1).mean() - acc > 0.15
    # What the answers meet is that calibrated prior, not the sharpened one.
    assert np.allclose(stored[stored_has].sum(1), 1.0, atol=1e-4)
    assert stored[stored_has].max(1).mean() < raw[stored_has].max(1).mean() - 0.05


def test_the_bound_holds_for_the_items_left_to_accept():
    r = hitl.Router(0.95, 0.95)
    conf = np.linspace(0.5, 1.0, 400)
    correct = np.r_[np.arange(200) % 3 != 0, np.ones(200, bool)]
    plain = r.decide_threshold(conf, correct)
    assert plain.threshold is not None
    # The audits sample 4,000 items; nothing has left that population since: the same decision
    # (up to the rounding of the region's size estimated from the audits).
    everyone = np.linspace(0.5, 1.0, 4000)
    same = r.decide_threshold(conf, correct, candidate_confidence=everyone, audit_population=4000)
    assert same.threshold == plain.threshold and same.bound == pytest.approx(plain.bound, abs=1e-3)
    # Active learning has since sent most of the sure region to people: only 150 items are left
    # to accept, and the region's possible errors could all be among them.
    few = np.linspace(0.9, 1.0, 150)
    left = r.decide_threshold(conf, correct, candidate_confidence=few, audit_population=4000)
    assert left.threshold is None or left.threshold > plain.threshold
    assert left.bound is not None and left.bound < plain.bound
