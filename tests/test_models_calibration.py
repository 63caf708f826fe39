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


def test_temperature_recovers_the_scale_and_keeps_argmax():
    z, y = calibrated_sample(5000, 5, 1.5, 2)
    ts = TemperatureScaling().fit(3.0 * z, y)
    assert ts.temperature_ == pytest.approx(3.0, rel=0.1)
    Q = ts.predict_proba(3.0 * z)
    assert np.array_equal(Q.argmax(axis=1), z.argmax(axis=1))
    assert expected_calibration_error(Q, y) < 0.02
    under = TemperatureScaling().fit(0.5 * z, y)
    assert under.temperature_ < 0.7


def test_temperature_keeps_ruled_out_classes_at_zero():
    z, y = calibrated_sample(1000, 4, 2.0, 3)
    z[:, 3] = -np.inf
    y = np.minimum(y, 2)
    ts = TemperatureScaling().fit(z, y)
    assert np.all(ts.predict_proba(z)[:, 3] == 0.0)
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
    assert CalibratedModel(base, random_state=0).fit(X[:300], y[:300]).method_ == "temperature"


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
    assert m.method_ == "temperature" and m.calibrator_.temperature_ > 0
    assert len(m.models_) == 3  # the fold models predict together
    single = CalibratedModel(net, cv=2, ensemble=False, random_state=0).fit(X[:600], y[:600])
    assert len(single.models_) == 1
    P = m.predict_proba(X[1200:])
    assert expected_calibration_error(P, y[1200:]) <= 0.03
    # optional protocol methods pass through, with the map applied to MC samples
    S = m.sample_proba(X[:5], n_samples=4, random_state=0)
    assert S.shape == (4, 5, 10) and np.allclose(S.sum(axis=2), 1.0, atol=1e-5)
    assert m.embed(X[:3]).shape == (3, 32)
