"""Shared machinery of the aggregators: input checks and the DataFrame front door.

Every aggregator works on dense integer arrays ``(task, worker, label)``. The
DataFrame front door (columns ``task, worker, label``, any hashable ids) factorises
the ids once and hands the arrays to the same code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import NotFittedError, ValidationError
from ._kernels import row_argmax

__all__ = ["BaseAggregator", "check_answers", "check_prior"]

_COLUMNS = ("task", "worker", "label")


def _as_index_array(values: Any, field: str) -> np.ndarray:
    """Turn ``values`` into a 1-d int64 array, refusing what is not an integer id."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValidationError(f"has shape {arr.shape}", field=field, expected="a 1-d array of integer ids")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValidationError(f"is {arr[i]!r}", item=i, field=field, expected="an integer id")
        return arr.astype(np.int64)
    raise ValidationError(
        f"has dtype {arr.dtype}", field=field, expected="integer ids (use a DataFrame for other ids)"
    )


def _check_range(arr: np.ndarray, field: str, n: int | None) -> int:
    """Check ``0 <= arr < n`` and return ``n`` (``max + 1`` when ``n`` is None)."""
    if arr.size and arr.min() < 0:
        i = int(np.flatnonzero(arr < 0)[0])
        raise ValidationError(f"is negative ({arr[i]})", item=i, field=field, expected="ids >= 0")
    top = int(arr.max()) + 1 if arr.size else 0
    if n is None:
        return top
    n = int(n)
    if top > n:
        i = int(np.flatnonzero(arr >= n)[0])
        name = {"task": "n_tasks", "worker": "n_workers", "label": "n_classes"}[field]
        raise ValidationError(f"is {arr[i]}, not below {name}={n}", item=i, field=field, expected=f"ids in [0, {n})")
    return n


def check_answers(
    task: Any,
    worker: Any,
    label: Any,
    *,
    n_tasks: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, int]:
    """Validate an answer set given as three integer arrays.

    Parameters
    ----------
    task, worker, label : array-like of int
        One entry per answer; ids are dense integers starting at 0.
    n_tasks, n_workers, n_classes : int, optional
        Sizes; default to ``max + 1`` of the matching array.

    Returns
    -------
    task, worker, label : ndarray of int64
    n_tasks, n_workers, n_classes : int

    Raises
    ------
    hitl.errors.ValidationError
        On mismatched lengths, an empty answer set, negative ids or ids out of range.

    Examples
    --------
    >>> t, w, y, nt, nw, k = check_answers([0, 0, 1], [0, 1, 0], [1, 1, 0])
    >>> (nt, nw, k)
    (2, 2, 2)
    """
    t = _as_index_array(task, "task")
    w = _as_index_array(worker, "worker")
    y = _as_index_array(label, "label")
    if not (len(t) == len(w) == len(y)):
        raise ValidationError(
            f"lengths differ: task {len(t)}, worker {len(w)}, label {len(y)}",
            field="task/worker/label",
            expected="three arrays of equal length",
        )
    if len(t) == 0:
        raise ValidationError("no answers", field="task/worker/label", expected="at least one answer")
    nt = _check_range(t, "task", n_tasks)
    nw = _check_range(w, "worker", n_workers)
    k = _check_range(y, "label", n_classes)
    if k < 1:
        raise ValidationError("is below 1", field="n_classes", expected="at least one class")
    return t, w, y, nt, nw, k


def check_prior(prior: Any, n_tasks: int, n_classes: int) -> np.ndarray:
    """Validate a per-task probability matrix and return it row-normalised in float64.

    Raises
    ------
    hitl.errors.ValidationError
        When the shape is not ``(n_tasks, n_classes)``, a value is NaN, infinite or
        negative, or a row sums to zero.
    """
    p = np.asarray(prior, dtype=np.float64)
    if p.shape != (n_tasks, n_classes):
        raise ValidationError(
            f"has shape {p.shape}", field="prior", expected=f"shape ({n_tasks}, {n_classes}) (n_tasks, n_classes)"
        )
    bad = ~np.isfinite(p)
    if bad.any():
        i = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValidationError("is NaN or infinite", item=i, field="prior", expected="finite probabilities")
    if (p < 0).any():
        i = int(np.flatnonzero((p < 0).any(axis=1))[0])
        raise ValidationError("is negative", item=i, field="prior", expected="probabilities >= 0")
    s = p.sum(axis=1, keepdims=True)
    if (s <= 0).any():
        i = int(np.flatnonzero(s[:, 0] <= 0)[0])
        raise ValidationError("row sums to 0", item=i, field="prior", expected="a row with positive mass")
    return p / s


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Dense codes and uniques, sorted when the values can be ordered."""
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.dtype.kind in "iu" and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi <= 4 * arr.size + 1024:
            # Small non-negative integers (the usual case for ids already made dense):
            # presence table and cumulative sum, linear time, already sorted.
            present = np.bincount(arr, minlength=hi + 1) > 0
            remap = np.cumsum(present) - 1
            return remap[arr].astype(np.int64, copy=False), pd.Index(np.flatnonzero(present).astype(arr.dtype))
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # mixed types that do not compare: keep first-seen order
        codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64, copy=False), pd.Index(uniques)


class BaseAggregator:
    """Common front door of every aggregator.

    Subclasses implement ``_fit_arrays(task, worker, label, n_tasks, n_workers,
    n_classes, prior)`` and set ``posteriors_`` there; everything else (checks,
    DataFrame handling, ``labels_``, the ``fit_predict*`` methods) lives here.
    """

    # -- scikit-learn style parameter access ---------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def set_params(self, **params: Any) -> "BaseAggregator":
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValidationError(f"unknown parameter {key!r}", field=key, expected=f"one of {sorted(valid)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fitting -----------------------------------------------------------------
    def fit(
        self,
        task: Any,
        worker: Any = None,
        label: Any = None,
        *,
        n_tasks: int | None = None,
        n_workers: int | None = None,
        n_classes: int | None = None,
        prior: Any = None,
    ) -> "BaseAggregator":
        """Fit on answers given as integer arrays or as a DataFrame.

        Parameters
        ----------
        task : array-like of int, or DataFrame
            Task id of each answer, or a DataFrame with columns ``task, worker, label``
            (ids of any hashable type; the other two arguments are then omitted).
        worker, label : array-like of int
            Worker id and given label of each answer (array form only).
        n_tasks, n_workers, n_classes : int, optional
            Sizes; default to ``max + 1`` (array form only).
        prior : array-like of shape (n_tasks, n_classes) or DataFrame, optional
            The classifier's per-task probabilities, used as one more annotator. With a
            DataFrame of answers, pass a DataFrame indexed by task id with one column per
            label value (tasks absent from it get a flat prior).

        Returns
        -------
        self
        """
        if isinstance(task, pd.DataFrame):
            if worker is not None or label is not None:
                raise ValidationError(
                    "worker/label arrays given together with a DataFrame", field="worker", expected="a DataFrame alone"
                )
            t, w, y, nt, nw, k, prior = self._from_frame(task, prior)
        else:
            if worker is None or label is None:
                raise ValidationError("missing", field="worker" if worker is None else "label",
                                      expected="task, worker and label arrays, or one DataFrame")
            t, w, y, nt, nw, k = check_answers(
                task, worker, label, n_tasks=n_tasks, n_workers=n_workers, n_classes=n_classes
            )
            self.task_ids_ = self.worker_ids_ = self.classes_ = None
        p = None if prior is None else check_prior(prior, nt, k)
        self.n_tasks_, self.n_workers_, self.n_classes_ = nt, nw, k
        self._fit_arrays(t, w, y, nt, nw, k, p)
        self.posteriors_ = np.ascontiguousarray(self.posteriors_, dtype=np.float64)
        self.labels_ = row_argmax(self.posteriors_)
        return self

    def _fit_arrays(self, task, worker, label, n_tasks, n_workers, n_classes, prior) -> None:  # pragma: no cover
        raise NotImplementedError

    def _from_frame(self, data: pd.DataFrame, prior: Any):
        missing = [c for c in _COLUMNS if c not in data.columns]
        if missing:
            raise ValidationError(
                f"missing column(s) {', '.join(missing)}", field="data", expected="columns task, worker, label"
            )
        if len(data) == 0:
            raise ValidationError("no answers", field="data", expected="at least one row")
        for col in _COLUMNS:
            nulls = data[col].isna().to_numpy()
            if nulls.any():
                i = int(np.flatnonzero(nulls)[0])
                raise ValidationError("is missing", item=data.index[i], field=col, expected="a value in every row")
        t, task_ids = _factorize(data["task"])
        w, worker_ids = _factorize(data["worker"])
        if isinstance(prior, pd.DataFrame):
            labels = pd.concat([data["label"], pd.Series(prior.columns, dtype=object)], ignore_index=True)
            codes, classes = _factorize(labels)
            y = codes[: len(data)]
        else:
            y, classes = _factorize(data["label"])
        self.task_ids_, self.worker_ids_, self.classes_ = task_ids, worker_ids, classes
        nt, nw, k = len(task_ids), len(worker_ids), len(classes)
        if isinstance(prior, pd.DataFrame):
            if prior.isna().to_numpy().any():
                rows = prior.index[prior.isna().any(axis=1).to_numpy()]
                raise ValidationError("is NaN", item=rows[0], field="prior", expected="finite probabilities")
            aligned = prior.reindex(index=task_ids, columns=classes)
            # A task the classifier did not score gets a flat prior; a class it does not
            # know gets zero mass, except on those flat rows.
            unknown_rows = ~task_ids.isin(prior.index)
            aligned = aligned.to_numpy(dtype=np.float64, na_value=0.0)
            aligned[unknown_rows] = 1.0
            prior = aligned
        return t, w, y, nt, nw, k, prior

    # -- results -----------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "posteriors_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit first")

    def _task_index(self) -> pd.Index:
        ids = self.task_ids_ if getattr(self, "task_ids_", None) is not None else pd.RangeIndex(self.n_tasks_)
        return pd.Index(ids, name="task")

    def _class_index(self) -> pd.Index:
        cls = self.classes_ if getattr(self, "classes_", None) is not None else pd.RangeIndex(self.n_classes_)
        return pd.Index(cls, name="label")

    def predict_proba_frame(self) -> pd.DataFrame:
        """Posteriors as a DataFrame indexed by task id, one column per label value."""
        self._check_fitted()
        return pd.DataFrame(self.posteriors_, index=self._task_index(), columns=self._class_index())

    def predict_frame(self) -> pd.Series:
        """Most probable label of each task as a Series indexed by task id."""
        self._check_fitted()
        values = self._class_index().take(self.labels_)
        return pd.Series(np.asarray(values), index=self._task_index(), name="agg_label")

    def fit_predict(self, data: pd.DataFrame, *, prior: Any = None) -> pd.Series:
        """Fit on a ``task, worker, label`` DataFrame and return each task's label.

        Examples
        --------
        >>> import pandas as pd
        >>> from hitl.aggregation import MajorityVote
        >>> df = pd.DataFrame({"task": ["a", "a", "b"], "worker": ["x", "y", "x"], "label": ["cat", "cat", "dog"]})
        >>> MajorityVote().fit_predict(df).to_dict()
        {'a': 'cat', 'b': 'dog'}
        """
        return self.fit(data, prior=prior).predict_frame()

    def fit_predict_proba(self, data: pd.DataFrame, *, prior: Any = None) -> pd.DataFrame:
        """Fit on a ``task, worker, label`` DataFrame and return the posterior of each task."""
        return self.fit(data, prior=prior).predict_proba_frame()
