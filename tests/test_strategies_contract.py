"""The contract every strategy keeps, through select() and as a modAL query_strategy."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from modAL.models import ActiveLearner, Committee as ModalCommittee
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from hitl.errors import ConfigError, EmptyPoolError, ValidationError
from hitl.strategies import STRATEGIES, Selection, select

N_CLASSES = 3


class ToyModel(BaseEstimator, ClassifierMixin):
    """A logistic regression with every optional capability of the model protocol.

    ``sample_proba`` perturbs the logits with seeded noise (a stand-in for MC
    dropout), ``grad_embed`` is the explicit last-layer gradient embedding and
    ``embed`` a fixed projection.
    """

    def __init__(self, noise: float = 1.0) -> None:
        self.noise = noise

    def fit(self, X, y):
        self.clf_ = LogisticRegression(max_iter=500).fit(X, y)
        self.classes_ = self.clf_.classes_
        return self

    def predict_proba(self, X):
        return self.clf_.predict_proba(X)

    def predict(self, X):
        return self.clf_.predict(X)

    def sample_proba(self, X, n_samples):
        rng = np.random.default_rng(0)
        logits = self.clf_.decision_function(X)
        noisy = logits[None] + self.noise * rng.normal(size=(n_samples,) + logits.shape)
        e = np.exp(noisy - noisy.max(axis=2, keepdims=True))
        return e / e.sum(axis=2, keepdims=True)

    def grad_embed(self, X):
        p = self.predict_proba(X)
        a = p.copy()
        a[np.arange(len(p)), p.argmax(1)] -= 1
        b = np.hstack([X, np.ones((len(X), 1))])
        return (a[:, :, None] * b[:, None, :]).reshape(len(X), -1)

    def embed(self, X):
        return np.asarray(X)[:, :2] * 2.0


class MembersCommittee:
    """Stand-in for hitl.models.Committee: fitted members_ and predict_proba_members."""

    def __init__(self, X, y, n_members: int = 4) -> None:
        rng = np.random.default_rng(1)
        self.members_ = []
        for _ in range(n_members):
            idx = rng.choice(len(y), size=len(y), replace=True)
            while len(np.unique(y[idx])) < N_CLASSES:
                idx = rng.choice(len(y), size=len(y), replace=True)
            self.members_.append(LogisticRegression(max_iter=500).fit(X[idx], y[idx]))

    def predict_proba_members(self, X):
        return np.stack([m.predict_proba(X) for m in self.members_])

    def predict_proba(self, X):
        return self.predict_proba_members(X).mean(axis=0)


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=2.0, size=(N_CLASSES, 4))
    y = rng.integers(0, N_CLASSES, size=400)
    X = centers[y] + rng.normal(size=(400, 4))
    labeled = np.arange(30)
    model = ToyModel().fit(X[labeled], y[labeled])
    committee = MembersCommittee(X[labeled], y[labeled])
    return X, y, labeled, model, committee


def _model_for(name, world):
    X, y, labeled, model, committee = world
    return committee if name in ("vote_entropy", "kl_to_consensus") else model


def _select(name, world, n, candidates, random_state=0, params=None):
    X, y, labeled, model, committee = world
    m = _model_for(name, world)
    return select(
        name,
        n,
        proba=m.predict_proba(X[candidates]),
        X=X[candidates],
        X_labeled=X[labeled],
        model=m,
        random_state=random_state,
        **(params or {}),
    )


ALL = sorted(STRATEGIES)
# Every strategy with its defaults, plus the non-default settings the label-cost benchmark runs.
CASES = [(name, {}) for name in ALL] + [("core_set", {"space": "proba"}), ("kl_to_consensus", {"temperature": 0.5})]
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in params.items()) for name, params in CASES]


def test_every_issue_strategy_is_registered() -> None:
    expected = {
        "random", "least_confident", "margin", "entropy", "vote_entropy", "kl_to_consensus", "bald",
        "density_weighted", "core_set", "badge", "cluster_margin", "ranked_batch",
    }
    assert expected <= set(STRATEGIES)


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_shapes_and_no_duplicates(name, params, world) -> None:
    X = world[0]
    candidates = np.arange(30, 400)
    for n in (1, 7, 25):
        sel = _select(name, world, n, candidates, params=params)
        assert isinstance(sel, Selection)
        assert sel.indices.dtype == np.int64 and sel.indices.ndim == 1
        assert sel.scores.dtype == np.float64 and sel.scores.shape == sel.indices.shape
        assert len(sel.indices) == n
        assert len(np.unique(sel.indices)) == n
        assert sel.indices.min() >= 0 and sel.indices.max() < len(candidates)
        assert np.isfinite(sel.scores).all()


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_deterministic_with_random_state(name, params, world) -> None:
    candidates = np.arange(30, 400)
    a = _select(name, world, 15, candidates, random_state=7, params=params)
    b = _select(name, world, 15, candidates, random_state=7, params=params)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_never_picks_labeled_items(name, params, world) -> None:
    # The engine's view: candidates are the pool minus the labeled items, and the
    # picks, mapped back through the candidate list, must all be unlabeled.
    X, y, labeled, model, committee = world
    rng = np.random.default_rng(3)
    extra_labeled = rng.choice(np.arange(30, 400), size=100, replace=False)
    all_labeled = np.union1d(labeled, extra_labeled)
    candidates = np.setdiff1d(np.arange(400), all_labeled)
    m = _model_for(name, world)
    sel = select(
        name, 40, proba=m.predict_proba(X[candidates]), X=X[candidates], X_labeled=X[all_labeled], model=m,
        random_state=0, **params,
    )
    picked = candidates[sel.indices]
    assert not np.isin(picked, all_labeled).any()


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_batch_larger_than_pool(name, params, world) -> None:
    candidates = np.arange(30, 42)
    sel = _select(name, world, 50, candidates, params=params)
    assert sorted(sel.indices.tolist()) == list(range(12))


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_empty_pool(name, params, world) -> None:
    X, y, labeled, model, committee = world
    with pytest.raises(EmptyPoolError):
        select(
            name, 3, proba=np.empty((0, N_CLASSES)), X=np.empty((0, 4)), X_labeled=X[labeled],
            model=_model_for(name, world), random_state=0, **params,
        )


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_nan_proba_is_rejected(name, params, world) -> None:
    X, y, labeled, model, committee = world
    P = model.predict_proba(X[30:100])
    P[5, 1] = np.nan
    with pytest.raises(ValidationError):
        select(name, 3, proba=P, X=X[30:100], X_labeled=X[labeled], model=_model_for(name, world), random_state=0,
               **params)


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_works_as_modal_query_strategy(name, params, world) -> None:
    X, y, labeled, model, committee = world
    fn = STRATEGIES[name][0]
    if params:
        fn = functools.partial(fn, **params)
    pool = X[30:]
    if name in ("vote_entropy", "kl_to_consensus"):
        learners = [
            ActiveLearner(LogisticRegression(max_iter=500), X_training=X[labeled][i::2], y_training=y[labeled][i::2])
            for i in range(2)
        ]
        learner = ModalCommittee(learner_list=learners, query_strategy=fn)
    else:
        learner = ActiveLearner(ToyModel(), query_strategy=fn, X_training=X[labeled], y_training=y[labeled])
    idx, rows = learner.query(pool, n_instances=5)
    assert len(idx) == 5 and len(set(np.asarray(idx).tolist())) == 5
    np.testing.assert_array_equal(rows, pool[idx])
    # n_instances=2 is the case where a bare index array would be mis-unpacked by modAL.
    idx, rows = learner.query(pool, n_instances=2)
    assert len(idx) == 2


def test_strategies_needing_more_than_proba_say_so(world) -> None:
    X, y, labeled, model, committee = world
    P = model.predict_proba(X[30:100])
    for name in ("vote_entropy", "kl_to_consensus", "bald", "core_set", "ranked_batch", "density_weighted"):
        with pytest.raises(ConfigError):
            select(name, 3, proba=P)  # no X, no model
    with pytest.raises(ConfigError):
        select("bald", 3, proba=P, X=X[30:100], model=LogisticRegression().fit(X[labeled], y[labeled]))
    with pytest.raises(ConfigError):
        select("vote_entropy", 3, proba=P, X=X[30:100], model=model)  # not a committee
