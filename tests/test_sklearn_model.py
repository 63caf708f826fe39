import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from hitl.errors import NotFittedError, ValidationError
from hitl.models import SklearnModel


def test_unseen_classes_get_zero_probability(blobs):
    X, y = blobs
    m = SklearnModel(LogisticRegression(), n_classes=5).fit(X[y < 2], y[y < 2])
    p = m.predict_proba(X)
    assert p.shape == (300, 5)
    assert np.allclose(p.sum(1), 1) and (p[:, 2:] == 0).all()
    assert (m.predict(X[y == 0]) == 0).mean() > 0.9


def test_single_class_is_a_constant_prediction(blobs):
    X, _ = blobs
    m = SklearnModel(LogisticRegression(), n_classes=3).fit(X[:5], np.full(5, 2))
    assert m.predict_proba(X[:4]).tolist() == [[0, 0, 1]] * 4


def test_refit_does_not_leak_state(blobs):
    X, y = blobs
    m = SklearnModel(LogisticRegression(), n_classes=3)
    first = m.fit(X, y).predict_proba(X)
    m.fit(X[:3], np.array([1, 1, 1]))
    assert m.fit(X, y).predict_proba(X) == pytest.approx(first)


@pytest.mark.parametrize("y, field", [
    (np.array([0.0, 1.0, 1.0]), "y"),
    (np.array([0, -1, 1]), "y"),
    (np.array([0, 1, 7]), "y"),
    (np.array([0, 1]), "y"),
    (np.zeros((3, 1), dtype=int), "y"),
])
def test_bad_labels(y, field):
    with pytest.raises(ValidationError) as err:
        SklearnModel(LogisticRegression(), n_classes=3).fit(np.zeros((3, 2)), y)
    assert err.value.field == field


def test_not_fitted():
    with pytest.raises(NotFittedError):
        SklearnModel(LogisticRegression()).predict_proba(np.zeros((1, 2)))
