"""Calibration: ECE, temperature / Platt / isotonic maps, and the CalibratedModel wrapper."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hitl.errors import ConfigError, NotFittedError, ValidationError
from hitl.models import (
    CalibratedModel,
    IsotonicCalibration,
    PlattScaling,
    SklearnModel,
    TemperatureScaling,
    expected_calibration_error,
    reliability_curve,
)


def calibrated_sample(n: int, k: int, scale: float, seed: int):
    """Logits and labels drawn from softmax(logits): calibrated by construction at ``scale``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * scale
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return z, np.minimum(y, k - 1)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_ece_by_hand():
    P = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    # bin of 0.9: accuracy 0.5 -> gap 0.4; bin of 0.6: accuracy 1.0 -> gap 0.4
    assert expected_calibration_error(P, y) == pytest.approx(0.4)
    assert expected_calibration_error(P, np.array([0, 0, 0, 1])) == pytest.approx(0.1)


def test_ece_small_when_calibrated_large_when_not():
    z, y = calibrated_sample(20_000, 4, 2.0, 0)
    assert expected_calibration_error(softmax(z), y) < 0.015
    assert expected_calibration_error(softmax(4 * z), y) > 0.1


def test_reliability_curve_counts():
    z, y = calibrated_sample(500, 3, 2.0, 1)
    c = reliability_curve(softmax(z), y, n_bins=10)
    assert c["count"].sum() == 500 and len(c["accuracy"]) == 10
    filled = c["count"] > 0
    assert np.all((c["confidence"][filled] > c["bin_upper"][filled] - 0.1 - 1e-12))


def test_ece_validates():
    with pytest.raises(ValidationError) as err:
        expected_calibration_error(np.array([[0.5, 0.5], [np.nan, 1.0]]), np.array([0, 1]))
    assert err.value.item == 1
    with pytest.raises(ValidationError, match="class indices"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([2]))
    with pytest.raises(ValidationError):
        expected_calibration_error(np.array([0.5, 0.5]), np.array([0, 1]))
    with pytest.raises(ValidationError):
        expected_calibration_error(np.array([[1.5, -0.5]]), np.array([0]))
    with pytest.raises(ConfigError):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([0]), n_bins=0)


@pytest.mark.parametrize("kw", [{}, {"flat": True}, {"loss": "brier"}])
def test_temperature_recovers_the_scale_and_keeps_argmax(kw):
    z, y = calibrated_sample(5000, 5, 1.5, 2)
    ts = TemperatureScaling(**kw).fit(3.0 * z, y)
    assert ts.temperature_ == pytest.approx(3.0, rel=0.1)
    Q = ts.predict_proba(3.0 * z)
    assert np.array_equal(Q.argmax(axis=1), z.argmax(axis=1))
    assert expected_calibration_error(Q, y) < 0.02
    under = TemperatureScaling(**kw).fit(0.5 * z, y)
    assert under.temperature_ < 0.7


def confidently_wrong_sample(n: int, seed: int, wrong: float = 0.02):
    """Calibrated logits (scale 3, 10 classes) made 4x over-confident; a share of labels is the least likely class."""
    z, y = calibrated_sample(n, 10, 3.0, seed)
    rng = np.random.default_rng(seed + 1000)
    flip = rng.random(n) < wrong
    y[flip] = z[flip].argmin(axis=1)
    return 4.0 * z, y


def test_plain_temperature_is_set_by_a_few_confident_mistakes_the_flat_share_is_not():
    # The log-likelihood of the few flipped labels is unbounded and pulls the plain T up, which leaves
    # every other row under-confident; the flat share prices those labels and T follows the bulk.
    Z, y = confidently_wrong_sample(5000, 5)
    Zt, yt = confidently_wrong_sample(5000, 6)
    plain = TemperatureScaling().fit(Z, y)
    flat = TemperatureScaling(flat=True).fit(Z, y)
    assert plain.flat_weight_ == 0.0 and 0.005 < flat.flat_weight_ < 0.05
    assert flat.temperature_ == pytest.approx(4.0, rel=0.1) and plain.temperature_ > flat.temperature_ + 0.3
    Q = flat.predict_proba(Zt)
    assert np.allclose(Q.sum(axis=1), 1.0) and np.array_equal(Q.argmax(axis=1), Zt.argmax(axis=1))
    e_flat = expected_calibration_error(Q, yt)
    e_plain = expected_calibration_error(plain.predict_proba(Zt), yt)
    assert e_flat < 0.025 and e_plain > 1.5 * e_flat
    # The plain fit leaves the bulk under-confident: accuracy above confidence in every well-filled bin
    # below 0.9 (the top bin holds the flipped labels).
    c = reliability_curve(plain.predict_proba(Zt), yt, n_bins=10)
    bulk = (c["count"] >= 200) & (c["bin_upper"] <= 0.9)
    assert bulk.sum() >= 3 and np.all(c["accuracy"][bulk] > c["confidence"][bulk])
    # The Brier score is bounded per row as well, and also lands near the true scale here.
    assert TemperatureScaling(loss="brier").fit(Z, y).temperature_ < plain.temperature_ - 0.3


def test_flat_share_vanishes_without_confident_mistakes():
    z, y = calibrated_sample(5000, 5, 1.5, 9)
    plain, flat = TemperatureScaling().fit(3.0 * z, y), TemperatureScaling(flat=True).fit(3.0 * z, y)
    assert flat.flat_weight_ < 1e-3
    assert flat.temperature_ == pytest.approx(plain.temperature_, rel=0.02)
    assert np.abs(flat.predict_proba(3.0 * z) - plain.predict_proba(3.0 * z)).max() < 5e-3


def test_temperature_gradients_match_finite_differences():
    from scipy.optimize import check_grad

    from hitl.models.calibration import _flat_temperature_nll, _temperature_brier, _temperature_nll

    Z, y = confidently_wrong_sample(800, 7)
    zy = Z[np.arange(len(y)), y]
    log_k = np.full(len(y), np.log(10.0))
    for f, args, points in ((_temperature_nll, (Z, y, zy), ([-0.5], [0.3], [1.4])),
                            (_temperature_brier, (Z, y, zy), ([-0.5], [0.3], [1.4])),
                            (_flat_temperature_nll, (Z, y, zy, log_k), ([0.3, -4.0], [1.4, -2.0], [-0.5, -8.0]))):
        for theta in points:
            x = np.array(theta, dtype=float)
            err = check_grad(lambda t: f(t, *args)[0], lambda t: f(t, *args)[1], x)
            assert err < 1e-5 * (1 + np.abs(f(x, *args)[1]).sum()), (f.__name__, theta)


def test_temperature_options_are_checked():
    z, y = calibrated_sample(100, 3, 1.0, 8)
    with pytest.raises(ConfigError):
        TemperatureScaling(loss="ece").fit(z, y)
    with pytest.raises(ConfigError):
        TemperatureScaling(loss="brier", flat=True).fit(z, y)
    with pytest.raises(ConfigError):
        TemperatureScaling(bounds=(2.0, 1.0)).fit(z, y)


@pytest.mark.parametrize("kw", [{}, {"flat": True}, {"loss": "brier"}])
def test_temperature_keeps_ruled_out_classes_at_zero(kw):
    z, y = calibrated_sample(1000, 4, 2.0, 3)
    z[:, 3] = -np.inf
    y = np.minimum(y, 2)
    y[:10] = z[:10, :3].argmin(axis=1)  # a few confident mistakes, so the flat share is not zero
    ts = TemperatureScaling(**kw).fit(z, y)
    assert np.isfinite(ts.temperature_)
    P = ts.predict_proba(z)
    assert np.all(P[:, 3] == 0.0) and np.allclose(P.sum(axis=1), 1.0)
    if kw.get("flat"):
        assert ts.flat_weight_ > 0 and P[:, :3].min() >= ts.flat_weight_ / 3 - 1e-12
    with pytest.raises(NotFittedError):
        TemperatureScaling().predict_proba(z)
    with pytest.raises(ValidationError):
        TemperatureScaling().fit(np.full((3, 2), np.nan), np.array([0, 1, 0]))


def test_platt_and_isotonic_reduce_ece_binary():
    z, y = calibrated_sample(6000, 2, 1.5, 4)
    P_over = softmax(4.0 * z)
    before = expected_calibration_error(P_over[3000:], y[3000:])
    for cal in (PlattScaling(), IsotonicCalibration()):
        Q = cal.fit(P_over[:3000], y[:3000]).predict_proba(P_over[3000:])
        assert np.allclose(Q.sum(axis=1), 1.0)
        assert expected_calibration_error(Q, y[3000:]) < before / 2


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    p = np.random.default_rng(0).permutation(len(y))
    return X[p], y[p]


def test_calibrated_sklearn_model_on_digits(digits):
    X, y = digits
    base = SklearnModel(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)))
    for method, cv in (("auto", 3), ("temperature", None), ("isotonic", 3)):
        m = CalibratedModel(base, method=method, cv=cv, random_state=0).fit(X[:1200], y[:1200])
        P = m.predict_proba(X[1200:])
        assert P.shape == (597, 10)
        assert np.allclose(P.sum(axis=1), 1.0)
        assert expected_calibration_error(P, y[1200:]) <= 0.03, method
        assert (P.argmax(axis=1) == y[1200:]).mean() > 0.93
    m = CalibratedModel(base, random_state=0).fit(X[:300], y[:300])
    assert m.method_ == "temperature-flat" and m.calibrator_.flat
    m = CalibratedModel(base, method="temperature", random_state=0).fit(X[:300], y[:300])
    assert m.method_ == "temperature" and not m.calibrator_.flat and m.calibrator_.flat_weight_ == 0.0


def test_plain_and_flat_temperature_share_the_fold_models(digits):
    # Same folds and models, only the map differs: same predicted labels; the flat share only adds.
    X, y = digits
    base = SklearnModel(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)))
    a = CalibratedModel(base, method="temperature-flat", cv=3, random_state=1).fit(X[:900], y[:900])
    b = CalibratedModel(base, method="temperature", cv=3, random_state=1).fit(X[:900], y[:900])
    assert np.array_equal(a.predict(X[900:]), b.predict(X[900:]))
    Pa, Pb = a.predict_proba(X[900:]), b.predict_proba(X[900:])
    w, T = a.calibrator_.flat_weight_, a.calibrator_.temperature_
    assert a.calibrator_.flat and 0.0 <= w < 0.5 and b.calibrator_.flat_weight_ == 0.0
    # the map is (1 - w) softmax(mean log-probability / T) + w / k, with the fold models' mean
    logs = np.mean([np.log(np.clip(m.predict_proba(X[900:]), 1e-300, None)) for m in a.models_], axis=0)
    assert np.allclose(Pa, (1 - w) * softmax(logs / T) + w / 10, atol=1e-6)
    assert np.allclose(Pb, softmax(logs / b.calibrator_.temperature_), atol=1e-6)
def test_auto_is_platt_for_two_classes(digits):
    X, y = digits
    keep = y < 2
    m = CalibratedModel(SklearnModel(LogisticRegression()), random_state=0).fit(X[keep], y[keep])
    assert m.method_ == "platt" and isinstance(m.calibrator_, PlattScaling)


def test_unseen_classes_stay_zero_and_columns_fixed(digits):
    X, y = digits
    keep = y != 7
    m = CalibratedModel(SklearnModel(LogisticRegression(max_iter=2000)), method="platt", n_classes=11,
                        cv=None, random_state=0).fit(X[keep][:600], y[keep][:600])
    P = m.predict_proba(X[:40])
    assert P.shape == (40, 11) and np.all(P[:, [7, 10]] == 0.0)


def test_too_few_labels_skip_the_map(digits):
    X, y = digits
    m = CalibratedModel(SklearnModel(LogisticRegression()), random_state=0).fit(X[:8], y[:8])
    assert m.calibrator_ is None
    assert m.predict_proba(X[:3]).shape == (3, int(y[:8].max()) + 1)
    m = CalibratedModel(SklearnModel(LogisticRegression()), cv=None, random_state=0).fit(X[:40], y[:40])
    assert m.calibrator_ is None  # a 20% hold-out of 40 labels is under min_calibration


def test_wrapper_errors_and_optional_methods(digits):
    X, y = digits
    with pytest.raises(NotFittedError):
        CalibratedModel(SklearnModel(LogisticRegression())).predict_proba(X[:2])
    with pytest.raises(ConfigError):
        CalibratedModel(SklearnModel(LogisticRegression()), method="beta").fit(X[:100], y[:100])
    with pytest.raises(ConfigError):
        CalibratedModel(SklearnModel(LogisticRegression()), cv=1).fit(X[:100], y[:100])
    with pytest.raises(ConfigError):
        CalibratedModel(SklearnModel(LogisticRegression()), cv=None, holdout=1.5).fit(X[:100], y[:100])
    m = CalibratedModel(LogisticRegression(max_iter=2000), cv=2, random_state=0).fit(X[:300], y[:300])  # bare estimator
    assert m.predict_proba(X[:2]).shape == (2, 10)
    assert not hasattr(m, "sample_proba") and not hasattr(m, "embed")


def test_calibrated_torch_model(digits):
    pytest.importorskip("torch")
    from hitl.models import TorchClassifier

    X, y = digits
    net = TorchClassifier(hidden=(32,), max_epochs=30, patience=4, random_state=0, device="cpu", n_threads=1)
    m = CalibratedModel(net, cv=3, random_state=0).fit(X[:1200], y[:1200])
    assert m.method_ == "temperature-flat" and m.calibrator_.temperature_ > 0
    assert len(m.models_) == 3  # the fold models predict together
    single = CalibratedModel(net, cv=2, ensemble=False, random_state=0).fit(X[:600], y[:600])
    assert len(single.models_) == 1
    P = m.predict_proba(X[1200:])
    assert expected_calibration_error(P, y[1200:]) <= 0.03
    # optional protocol methods pass through, with the map applied to MC samples
    S = m.sample_proba(X[:5], n_samples=4, random_state=0)
    assert S.shape == (4, 5, 10) and np.allclose(S.sum(axis=2), 1.0, atol=1e-5)
    assert m.embed(X[:3]).shape == (3, 32)
