"""Each strategy against a plain reference: modAL's own functions or a brute-force numpy version."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modAL.batch import uncertainty_batch_sampling
from modAL.density import information_density as modal_information_density
from modAL.disagreement import max_disagreement_sampling, vote_entropy_sampling
from modAL.models import ActiveLearner, Committee as ModalCommittee
from modAL.uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling
from scipy.stats import entropy as sp_entropy
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from hitl.errors import ConfigError, ValidationError
from hitl.strategies import (
    ProbaProxy,
    bald_scores,
    core_set,
    entropy_scores,
    information_density,
    kl_to_consensus,
    kl_to_consensus_scores,
    least_confident_scores,
    margin_scores,
    min_sq_distances,
    select,
    top_k,
    vote_entropy,
)
from hitl.strategies import uncertainty as unc
from hitl.strategies.diversity import _kmeanspp_dense, _kmeanspp_factored, gradient_embedding_factors


def softmax_pool(n: int, k: int, seed: int = 0, scale: float = 2.5, dtype=np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * scale
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(dtype)


# ----------------------------------------------------------------------------- large pools (fused path)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [3, 10])
def test_fused_path_equals_full_scoring(dtype, k) -> None:
    P = softmax_pool(100_000, k, seed=k, dtype=dtype)
    for name, scores_fn in (
        ("least_confident", least_confident_scores),
        ("margin", margin_scores),
        ("entropy", entropy_scores),
    ):
        fast = select(name, 500, proba=P)
        ref = top_k(scores_fn(P), 500)
        np.testing.assert_array_equal(fast.indices, ref.indices, err_msg=name)
        np.testing.assert_allclose(fast.scores, ref.scores, rtol=1e-12, err_msg=name)


def test_same_picks_as_modal_on_a_large_pool() -> None:
    P = softmax_pool(100_000, 10, seed=5)
    X = np.zeros((P.shape[0], 1))
    proxy = ProbaProxy(P)
    for name, theirs in (
        ("least_confident", uncertainty_sampling),
        ("margin", margin_sampling),
        ("entropy", entropy_sampling),
    ):
        ours = select(name, 1000, proba=P).indices
        their_idx, _ = theirs(proxy, X, n_instances=1000)
        assert set(ours.tolist()) == set(np.asarray(their_idx).tolist()), name


def test_entropy_pruning_keeps_rows_that_do_not_sum_to_one() -> None:
    # Unnormalised rows (sums up to 3) escape the bound and must still be scored exactly.
    P = softmax_pool(100_000, 6, seed=2)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(P), size=300, replace=False)
    P[rows] *= rng.uniform(1.0, 3.0, size=(300, 1))
    fast = select("entropy", 200, proba=P)
    ref = top_k(entropy_scores(P), 200)
    np.testing.assert_array_equal(fast.indices, ref.indices)


def test_entropy_tangent_bound_never_undercuts_the_entropy() -> None:
    slope, at = unc._entropy_tangents()
    rng = np.random.default_rng(1)
    # Near-uniform rows, spiky rows with many tiny values, exact zeros and rows summing past 1.
    P = np.concatenate([
        rng.dirichlet(np.full(10, 50.0), size=20_000),
        rng.dirichlet(np.full(10, 0.02), size=20_000),
        np.where(rng.random((5_000, 10)) < 0.5, 0.0, rng.random((5_000, 10))) * 1.5,
    ])
    b = np.minimum((P * len(at)).astype(np.int64), len(at) - 1)
    bound = (slope[b] * P + at[b]).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(P > 0, P * np.log(P), 0.0).sum(axis=1)
    assert (bound >= h).all()
    # Tight for probabilities (values above 1 share the last bucket's tangent: valid, looser).
    probs = (P <= 1.0).all(axis=1)
    assert (bound - h)[probs].max() < 10 / len(at)


@pytest.mark.parametrize("alpha", [50.0, 0.05])
def test_fused_entropy_exact_where_rows_crowd_the_threshold(alpha) -> None:
    # Near-uniform rows put thousands of entropies within the bounds' slack of the
    # cut; spiky rows put most mass in the first tangent bucket.
    P = np.random.default_rng(3).dirichlet(np.full(10, alpha), size=100_000)
    fast = select("entropy", 1000, proba=P)
    ref = top_k(entropy_scores(P), 1000)
    np.testing.assert_array_equal(fast.indices, ref.indices)


def test_fused_path_handles_massive_ties() -> None:
    P = np.full((100_000, 4), 0.25)
    P[::7] = [0.7, 0.1, 0.1, 0.1]
    for name in ("least_confident", "margin", "entropy"):
        sel = select(name, 100, proba=P)
        assert sel.indices.tolist() == [i for i in range(120) if i % 7][:100], name


@pytest.mark.parametrize("bad", [np.nan, -0.5, np.inf])
def test_fused_path_names_the_bad_row(bad) -> None:
    P = softmax_pool(90_000, 10, seed=3)
    P[77_777, 4] = bad
    for name in ("least_confident", "margin", "entropy"):
        with pytest.raises(ValidationError) as err:
            select(name, 100, proba=P)
        assert err.value.item == 77_777, name


def test_memmapped_pool_in_chunks(tmp_path) -> None:
    P = softmax_pool(100_000, 10, seed=4, dtype=np.float32)
    path = tmp_path / "proba.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=P.shape)
    mm[:] = P
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=P.shape)
    for name, fn in (("least_confident", unc._select_least_confident), ("margin", unc._select_margin), ("entropy", unc._select_entropy)):
        in_memory = select(name, 300, proba=P)
        chunked = fn(ro, 300, chunk_rows=30_000)
        np.testing.assert_array_equal(chunked.indices, in_memory.indices, err_msg=name)
    np.testing.assert_allclose(entropy_scores(ro, chunk_rows=33_333), entropy_scores(P))


def test_class_major_layout_gives_the_same_picks() -> None:
    P = softmax_pool(100_000, 10, seed=6)
    F = np.asfortranarray(P)
    for name in ("least_confident", "margin", "entropy"):
        np.testing.assert_array_equal(select(name, 200, proba=F).indices, select(name, 200, proba=P).indices)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    k=st.integers(1, 6),
    top=st.integers(1, 50),
    seed=st.integers(0, 10_000),
    quantum=st.sampled_from([0, 4, 16]),
)
def test_small_pools_match_numpy_reference(n, k, top, seed, quantum) -> None:
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(k, 0.5), size=n)
    if quantum:
        # Coarse dyadic values create many exact ties (exact in binary, so in any
        # summation order): ties must go to the lower index.
        P = np.round(P * quantum) / quantum
    s = np.sort(P, axis=1)
    refs = {
        "least_confident": 1.0 - s[:, -1],
        "margin": 1.0 - (s[:, -1] - (s[:, -2] if k > 1 else 0.0)),
        "entropy": np.array([sp_entropy(r) if r.sum() > 0 else 0.0 for r in P]) if quantum == 0 else None,
    }
    for name, ref in refs.items():
        if ref is None:
            continue
        sel = select(name, top, proba=P)
        m = min(top, n)
        expected = np.lexsort((np.arange(n), -ref))[:m]
        if quantum:
            np.testing.assert_array_equal(sel.indices, expected, err_msg=name)
        else:
            np.testing.assert_allclose(sel.scores, ref[expected], rtol=1e-9, atol=1e-12, err_msg=name)


# ----------------------------------------------------------------------------- committee


@pytest.fixture(scope="module")
def modal_committee():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    learners = [
        ActiveLearner(LogisticRegression(max_iter=500), X_training=X[:40], y_training=y[:40]),
        ActiveLearner(DecisionTreeClassifier(max_depth=3, random_state=0), X_training=X[:40], y_training=y[:40]),
        ActiveLearner(LogisticRegression(C=0.05, max_iter=500), X_training=X[10:50], y_training=y[10:50]),
    ]
    return ModalCommittee(learner_list=learners), X[50:]


def test_vote_entropy_matches_modal(modal_committee) -> None:
    committee, pool = modal_committee
    theirs, their_scores = vote_entropy_sampling(committee, pool, n_instances=pool.shape[0])
    ours = vote_entropy(committee, pool, n_instances=pool.shape[0])
    # Vote entropy takes few distinct values: compare the scores item by item.
    ref = np.empty(pool.shape[0])
    ref[np.asarray(theirs)] = their_scores
    np.testing.assert_allclose(ours.scores, ref[ours.indices], atol=1e-12)


def test_kl_max_matches_modal(modal_committee) -> None:
    committee, pool = modal_committee
    theirs, _ = max_disagreement_sampling(committee, pool, n_instances=20)
    ours = kl_to_consensus(committee, pool, n_instances=20, reduce="max")
    assert set(ours.indices.tolist()) == set(np.asarray(theirs).tolist())


def test_bald_reference() -> None:
    rng = np.random.default_rng(0)
    S = rng.dirichlet(np.ones(4), size=(8, 50))  # (samples, n, k)
    mean = S.mean(axis=0)
    ref = sp_entropy(mean.T) - np.mean([sp_entropy(s.T) for s in S], axis=0)
    np.testing.assert_allclose(bald_scores(S), ref, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- geometry


def test_information_density_matches_modal() -> None:
    X = np.random.default_rng(0).normal(size=(200, 5))
    np.testing.assert_allclose(information_density(X), modal_information_density(X), rtol=1e-9)
    np.testing.assert_allclose(
        information_density(X, metric="cosine"), modal_information_density(X, metric="cosine"), rtol=1e-9
    )


def test_min_sq_distances_brute_force() -> None:
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(300, 7)), rng.normal(size=(50, 7))
    ref = ((X[:, None, :] - Y[None]) ** 2).sum(-1).min(1)
    np.testing.assert_allclose(min_sq_distances(X, Y, block=64), ref, rtol=1e-9)


def test_core_set_is_greedy_k_center() -> None:
    rng = np.random.default_rng(1)
    X, L = rng.normal(size=(150, 3)), rng.normal(size=(10, 3))
    sel = core_set(None, X, n_instances=12, X_labeled=L)
    centers = list(L)
    for pick, score in zip(sel.indices, sel.scores):
        d = np.sqrt(((X[:, None] - np.array(centers)[None]) ** 2).sum(-1)).min(1)
        d[sel.indices[: len(centers) - len(L)]] = -1
        assert pick == int(np.argmax(d))
        assert score == pytest.approx(d[pick])
        centers.append(X[pick])


def test_core_set_in_proba_space_is_greedy_k_center_on_sqrt_proba() -> None:
    # Hellinger space: candidates at sqrt(p), labeled items at sqrt of the model's own predictions.
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    clf = LogisticRegression(max_iter=500).fit(X[:30], y[:30])
    pool, L = X[30:], X[:30]
    P = clf.predict_proba(pool)
    sel = select("core_set", 10, proba=P, X=pool, X_labeled=L, model=clf, space="proba")
    E, centers = np.sqrt(P), list(np.sqrt(clf.predict_proba(L)))
    for t, (pick, score) in enumerate(zip(sel.indices, sel.scores)):
        d = np.sqrt(((E[:, None] - np.array(centers)[None]) ** 2).sum(-1)).min(1)
        d[sel.indices[:t]] = -1
        assert pick == int(np.argmax(d))
        assert score == pytest.approx(d[pick])
        centers.append(E[pick])
    # The modAL-style form gives the same picks; features play no part.
    ours = core_set(clf, pool, n_instances=10, X_labeled=L, space="proba")
    np.testing.assert_array_equal(ours.indices, sel.indices)
    for X_other in (pool + 100.0, None):
        again = select("core_set", 10, proba=P, X=X_other, X_labeled=L, model=clf, space="proba")
        np.testing.assert_array_equal(again.indices, sel.indices)


def test_core_set_in_proba_space_needs_a_model_for_labeled_items() -> None:
    P = softmax_pool(50, 3)
    X = np.zeros((50, 2))
    with pytest.raises(ConfigError):
        select("core_set", 3, proba=P, X=X, X_labeled=np.zeros((4, 2)), space="proba")
    with pytest.raises(ConfigError):
        select("core_set", 3, proba=P, X=X, space="pixels")
    # No labeled items: plain k-center on sqrt(p), starting next to the mean.
    sel = select("core_set", 3, proba=P, space="proba")
    assert len(set(sel.indices.tolist())) == 3


def test_kl_temperature_sharpens_members_first() -> None:
    rng = np.random.default_rng(5)
    M = rng.dirichlet(np.ones(4), size=(3, 40))
    np.testing.assert_allclose(kl_to_consensus_scores(M, temperature=1.0), kl_to_consensus_scores(M))
    S = M**2 / (M**2).sum(axis=2, keepdims=True)
    np.testing.assert_allclose(kl_to_consensus_scores(M, temperature=0.5), kl_to_consensus_scores(S), rtol=1e-10)
    # Members that share their favourite class disagree less once sharpened; split favourites do not.
    agree = np.array([[[0.6, 0.4]], [[0.9, 0.1]]])
    split = np.array([[[0.6, 0.4]], [[0.4, 0.6]]])
    assert kl_to_consensus_scores(agree, temperature=0.25)[0] < kl_to_consensus_scores(agree)[0]
    assert kl_to_consensus_scores(split, temperature=0.25)[0] > kl_to_consensus_scores(split)[0]
    # Underflow-safe: tiny probabilities with a very low temperature stay finite.
    tiny = np.array([[[1e-200, 2e-200]], [[2e-200, 1e-200]]]) / 3e-200
    assert np.isfinite(kl_to_consensus_scores(tiny, temperature=0.01)).all()
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError):
            kl_to_consensus_scores(M, temperature=bad)


@pytest.mark.parametrize("n_labeled", [40, 1])
def test_ranked_batch_same_picks_as_modal(n_labeled) -> None:
    rng = np.random.default_rng(n_labeled)
    X = rng.normal(size=(800, 12))
    L = rng.normal(size=(n_labeled, 12))
    P = softmax_pool(800, 5, seed=n_labeled)
    theirs, _ = uncertainty_batch_sampling(ProbaProxy(P, X_training=L), X, n_instances=40)
    ours = select("ranked_batch", 40, proba=P, X=X, X_labeled=L)
    np.testing.assert_array_equal(ours.indices, theirs)


def test_ranked_batch_through_active_learner_matches_modal() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 4))
    y = (X[:, 0] > 0).astype(int)
    from hitl.strategies import ranked_batch

    ours = ActiveLearner(LogisticRegression(), query_strategy=ranked_batch, X_training=X[:20], y_training=y[:20])
    theirs = ActiveLearner(
        LogisticRegression(), query_strategy=uncertainty_batch_sampling, X_training=X[:20], y_training=y[:20]
    )
    np.testing.assert_array_equal(ours.query(X[20:], n_instances=25)[0], theirs.query(X[20:], n_instances=25)[0])


def test_badge_factored_equals_explicit_embedding() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    P = softmax_pool(120, 4, seed=1)
    A, B = gradient_embedding_factors(P, X)
    G = (A[:, :, None] * B[:, None, :]).reshape(120, -1)
    f = _kmeanspp_factored(A, B, 15, np.random.default_rng(3))
    d = _kmeanspp_dense(G, 15, np.random.default_rng(3))
    np.testing.assert_array_equal(f.indices, d.indices)
    np.testing.assert_allclose(f.scores, d.scores, rtol=1e-8, atol=1e-10)
    # The first seed is the largest gradient.
    assert f.indices[0] == int(np.argmax((G**2).sum(1)))


def test_badge_accepts_sparse_features() -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    Xd = rng.random((200, 30)) * (rng.random((200, 30)) < 0.2)
    P = softmax_pool(200, 3, seed=2)
    dense = select("badge", 10, proba=P, X=Xd, random_state=0)
    sparse = select("badge", 10, proba=P, X=sp.csr_matrix(Xd), random_state=0)
    np.testing.assert_array_equal(dense.indices, sparse.indices)


def test_cluster_margin_spreads_the_batch() -> None:
    # Two tight blobs of equally uncertain items: margin takes the 10 lowest
    # margins (all from one blob); cluster-margin takes from both.
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 0.01, size=(50, 2)), rng.normal(5, 0.01, size=(50, 2))])
    P = np.tile([0.5, 0.5], (100, 1))
    P[:50] = [0.5001, 0.4999]
    P[50:] = [0.51, 0.49]
    plain = select("margin", 10, proba=P)
    spread = select("cluster_margin", 2, proba=P, X=X, margin_multiple=50)
    assert (plain.indices < 50).all()
    assert sorted(i >= 50 for i in spread.indices) == [False, True]


@pytest.mark.parametrize("k", [3, 4, 5, 20])
def test_entropy_pruning_is_exact_on_mixed_rows(k) -> None:
    # Peaked, flat and two-peaked rows, rows off 1 on both sides of the slack,
    # and float32 rounding: the pruned selection must equal full scoring.
    rng = np.random.default_rng(k)
    n = 72_000
    parts = [rng.dirichlet(np.full(k, a), size=n // 6) for a in (0.05, 0.3, 1.0, 5.0)]
    two = rng.dirichlet(np.full(k, 0.05), size=n // 6)
    two[:, :2] = 0.5 * (two[:, :2] + two[:, :2].mean(axis=1, keepdims=True))
    parts.append(two)
    off = rng.dirichlet(np.full(k, 1.0), size=n // 6) * rng.choice([0.5, 0.9999, 1.00009, 1.0002, 1.7], size=(n // 6, 1))
    parts.append(off)
    P = np.vstack(parts)[rng.permutation(n // 6 * 6)]
    for dtype in (np.float64, np.float32):
        Q = P.astype(dtype)
        fast = select("entropy", 300, proba=Q)
        ref = top_k(entropy_scores(Q), 300)
        np.testing.assert_array_equal(fast.indices, ref.indices)
