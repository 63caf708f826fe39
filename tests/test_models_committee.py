"""Committee: bagged or mixed members, fixed columns, member-wise probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

from hitl.errors import ConfigError, NotFittedError
from hitl.models import Committee, SklearnModel
from hitl.models.committee import _stratified_bootstrap


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    p = np.random.default_rng(0).permutation(len(y))
    return X[p], y[p]


def test_members_and_mean(digits):
    X, y = digits
    c = Committee(n_members=4, random_state=0).fit(X[:400], y[:400])
    S = c.predict_proba_members(X[400:450])
    assert S.shape == (4, 50, 10) and len(c.members_) == 4
    assert np.allclose(c.predict_proba(X[400:450]), S.mean(axis=0))
    assert (c.predict(X[400:]) == y[400:]).mean() > 0.9
    # bagging makes members disagree somewhere
    assert np.abs(S[0] - S[1]).max() > 1e-3


def test_deterministic(digits):
    X, y = digits
    a = Committee(n_members=3, random_state=7).fit(X[:200], y[:200]).predict_proba_members(X[:20])
    b = Committee(n_members=3, random_state=7).fit(X[:200], y[:200]).predict_proba_members(X[:20])
    assert np.array_equal(a, b)


def test_different_models_and_bare_estimators(digits):
    X, y = digits
    c = Committee([SklearnModel(LogisticRegression(max_iter=2000)), GaussianNB()], bagging=False,
                  n_classes=12).fit(X[:300], y[:300])
    S = c.predict_proba_members(X[:10])
    assert S.shape == (2, 10, 12) and np.all(S[:, :, 10:] == 0.0)


def test_stratified_bootstrap_keeps_class_counts():
    y = np.array([0] * 5 + [1] * 2 + [2] * 1)
    idx = _stratified_bootstrap(y, np.random.default_rng(0))
    assert np.array_equal(np.bincount(y[idx], minlength=3), [5, 2, 1])


def test_torch_members_differ_by_seed(digits):
    pytest.importorskip("torch")
    from hitl.models import TorchClassifier

    X, y = digits
    net = TorchClassifier(hidden=(16,), max_epochs=3, device="cpu", n_threads=1)
    c = Committee(net, n_members=2, bagging=False, random_state=0).fit(X[:200], y[:200])
    seeds = [m.random_state for m in c.members_]
    assert seeds[0] != seeds[1] and net.random_state is None
    S = c.predict_proba_members(X[:30])
    assert np.abs(S[0] - S[1]).max() > 1e-3


def test_errors(digits):
    X, y = digits
    with pytest.raises(NotFittedError):
        Committee().predict_proba(X[:3])
    with pytest.raises(ConfigError):
        Committee([]).fit(X[:30], y[:30])
    with pytest.raises(ConfigError):
        Committee(n_members=0).fit(X[:30], y[:30])
    with pytest.raises(ConfigError):
        Committee(["not a model"]).fit(X[:30], y[:30])
