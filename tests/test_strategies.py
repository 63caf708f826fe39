"""Uncertainty strategies, select(), and modAL interoperability."""

from __future__ import annotations

import numpy as np
import pytest
from modAL.models import ActiveLearner
from modAL.uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling
from sklearn.linear_model import LogisticRegression

from hitl.errors import ConfigError, EmptyPoolError, ValidationError
from hitl.strategies import (
    ProbaProxy,
    Selection,
    entropy,
    entropy_scores,
    least_confident,
    least_confident_scores,
    margin,
    margin_scores,
    random,
    select,
)

OURS_VS_MODAL = [
    (least_confident, uncertainty_sampling, "least_confident"),
    (margin, margin_sampling, "margin"),
    (entropy, entropy_sampling, "entropy"),
]


def dirichlet(n: int, k: int, seed: int = 0, alpha: float = 0.3) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.full(k, alpha), size=n)


# ----------------------------------------------------------------------------- scores


def test_scores_match_definitions() -> None:
    P = dirichlet(500, 7, seed=1)
    np.testing.assert_allclose(least_confident_scores(P), 1 - P.max(1))
    s = np.sort(P, axis=1)
    np.testing.assert_allclose(margin_scores(P), 1 - (s[:, -1] - s[:, -2]))
    from scipy.stats import entropy as sp_entropy

    np.testing.assert_allclose(entropy_scores(P), sp_entropy(P.T), rtol=1e-10, atol=1e-12)


def test_entropy_of_zero_probability_is_zero() -> None:
    assert entropy_scores(np.array([[1.0, 0.0, 0.0]]))[0] == 0.0


def test_single_class_margin() -> None:
    assert margin_scores(np.ones((3, 1))).tolist() == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- same picks as modAL


@pytest.mark.parametrize("ours, theirs, name", OURS_VS_MODAL)
@pytest.mark.parametrize("n, k, top", [(2_000, 10, 50), (300, 3, 1), (50, 2, 50)])
def test_same_picks_as_modal(ours, theirs, name, n, k, top) -> None:
    P = dirichlet(n, k, seed=n + k)
    proxy = ProbaProxy(P)
    X = np.zeros((n, 1))
    their_idx, _ = theirs(proxy, X, n_instances=top)
    our = ours(proxy, X, n_instances=top)
    assert set(our.indices.tolist()) == set(np.asarray(their_idx).tolist())
    via_select = select(name, top, proba=P)
    np.testing.assert_array_equal(via_select.indices, our.indices)
    via_foreign = select(theirs, top, proba=P)
    assert set(via_foreign.indices.tolist()) == set(our.indices.tolist())


@pytest.mark.parametrize("ours", [least_confident, margin, entropy])
def test_best_first_and_scores_descending(ours) -> None:
    P = dirichlet(1_000, 5, seed=3)
    sel = ours(ProbaProxy(P), np.zeros((1_000, 1)), n_instances=100)
    assert isinstance(sel, Selection)
    assert sel.indices.dtype == np.int64 and sel.scores.dtype == np.float64
    assert np.all(np.diff(sel.scores) <= 0)
    assert len(np.unique(sel.indices)) == 100


def test_ties_go_to_lower_index() -> None:
    P = np.tile([[0.5, 0.5]], (10, 1))
    P[3] = [0.9, 0.1]
    sel = select("least_confident", 4, proba=P)
    assert sel.indices.tolist() == [0, 1, 2, 4]


# ----------------------------------------------------------------------------- modAL ActiveLearner


@pytest.mark.parametrize("strategy", [least_confident, margin, entropy, random])
def test_works_as_modal_query_strategy(strategy) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)
    learner = ActiveLearner(LogisticRegression(), query_strategy=strategy, X_training=X[:10], y_training=y[:10])
    for n_instances in (1, 2, 5):
        idx, rows = learner.query(X[10:], n_instances=n_instances)
        assert len(idx) == n_instances
        np.testing.assert_array_equal(rows, X[10:][idx])
    if strategy is not random:
        idx, _ = learner.query(X[10:], n_instances=5)
        expected = select(strategy, 5, proba=learner.predict_proba(X[10:])).indices
        np.testing.assert_array_equal(idx, expected)


# ----------------------------------------------------------------------------- select() contract


def test_select_batch_larger_than_pool() -> None:
    P = dirichlet(7, 3)
    for name in ("random", "least_confident", "margin", "entropy"):
        sel = select(name, 100, proba=P, random_state=0)
        assert sorted(sel.indices.tolist()) == list(range(7))
        assert len(sel.scores) == 7


def test_select_zero_instances() -> None:
    sel = select("margin", 0, proba=dirichlet(5, 3))
    assert sel.indices.shape == (0,) and sel.scores.shape == (0,)


def test_random_is_deterministic_with_seed() -> None:
    P = dirichlet(1_000, 3)
    a = select("random", 20, proba=P, random_state=42).indices
    b = select(random, 20, proba=P, random_state=42).indices
    c = select("random", 20, proba=P, random_state=43).indices
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_foreign_strategy_with_random_tie_break_is_seeded() -> None:
    P = np.full((50, 2), 0.5)  # all tied: modAL shuffles with numpy's global generator

    def shuffled(classifier, X, n_instances=1):
        return margin_sampling(classifier, X, n_instances=n_instances, random_tie_break=True)

    a = select(shuffled, 5, proba=P, random_state=1).indices
    b = select(shuffled, 5, proba=P, random_state=1).indices
    np.testing.assert_array_equal(a, b)


def test_foreign_strategy_returning_bare_indices() -> None:
    def first_two(classifier, X, n_instances=1):
        return np.array([3, 3, 1, 0])

    sel = select(first_two, 2, proba=dirichlet(5, 2))
    assert sel.indices.tolist() == [3, 1]
    assert np.isnan(sel.scores).all()


def test_foreign_strategy_bad_indices() -> None:
    with pytest.raises(ValidationError):
        select(lambda c, X, n_instances=1: np.array([10]), 1, proba=dirichlet(5, 2))


@pytest.mark.parametrize("name", ["random", "least_confident", "margin", "entropy"])
def test_empty_pool(name) -> None:
    with pytest.raises(EmptyPoolError):
        select(name, 3, proba=np.empty((0, 4)))
    with pytest.raises(EmptyPoolError):
        select(name, 3, proba=np.empty((0, 4)), random_state=0)


def test_empty_pool_modal_form() -> None:
    with pytest.raises(EmptyPoolError):
        margin(ProbaProxy(np.empty((0, 3))), np.empty((0, 2)), n_instances=1)
    with pytest.raises(EmptyPoolError):
        random(None, np.empty((0, 2)), n_instances=1)


def test_bad_proba_is_named() -> None:
    P = dirichlet(10, 3)
    P[4, 1] = np.nan
    with pytest.raises(ValidationError) as err:
        select("margin", 2, proba=P)
    assert err.value.item == 4 and err.value.field == "proba"
    P = dirichlet(10, 3)
    P[6, 0] = -0.1
    with pytest.raises(ValidationError) as err:
        select("entropy", 2, proba=P)
    assert err.value.item == 6
    with pytest.raises(ValidationError):
        select("margin", 2, proba=np.ones(5))
    with pytest.raises(ValidationError):
        select("margin", 2, proba=np.ones((5, 0)))
    with pytest.raises(ValidationError):
        select("margin", 2, proba=dirichlet(5, 3), X=np.zeros((4, 2)))


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        select("no-such-strategy", 2, proba=dirichlet(5, 3))
    with pytest.raises(ConfigError):
        select("margin", -1, proba=dirichlet(5, 3))
    with pytest.raises(ConfigError):
        select("margin", 2.5, proba=dirichlet(5, 3))


def test_unknown_strategy_parameter_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        select("margin", 2, proba=dirichlet(5, 3), bata=2.0)
    assert "bata" in str(err.value)
    # Known hyper-parameters pass through.
    X = np.random.default_rng(0).normal(size=(5, 2))
    assert select("density_weighted", 2, proba=dirichlet(5, 3), X=X, beta=0.5).indices.shape == (2,)


def test_ties_with_a_seed_are_drawn_at_random_and_reproducibly() -> None:
    P = np.tile([[0.5, 0.5]], (1000, 1))  # every item tied
    a = select("margin", 10, proba=P, random_state=3).indices
    b = select("margin", 10, proba=P, random_state=3).indices
    c = select("margin", 10, proba=P, random_state=4).indices
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.max() > 100  # not the lowest indices
    # Strictly better items still come first, whatever the seed.
    Q = np.tile([[0.9, 0.1]], (1000, 1))
    Q[[17, 901, 444]] = [0.5, 0.5]
    assert sorted(select("margin", 3, proba=Q, random_state=1).indices.tolist()) == [17, 444, 901]


def test_vote_entropy_ties_do_not_follow_pool_order() -> None:
    # A pool sorted by class where every item gets the same vote entropy: a
    # seeded draw must not simply take the first rows (all one class).
    class Split:
        def predict_proba_members(self, X):
            n = len(X)
            return np.stack([np.tile([0.9, 0.1], (n, 1)), np.tile([0.1, 0.9], (n, 1))])

    X = np.zeros((400, 1))
    sel = select("vote_entropy", 20, proba=np.full((400, 2), 0.5), X=X, model=Split(), random_state=0)
    assert sel.indices.max() >= 200
