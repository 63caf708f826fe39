"""Shared machinery of the aggregators: input checks and the DataFrame front door.

Every aggregator works on dense integer arrays ``(task, worker, label)``. The
DataFrame front door (columns ``task, worker, label``, any hashable ids) factorises
the ids once and hands the arrays to the same code.

One vote per (task, worker), for every method and everywhere in ``hitl``: a worker who
answers the same task twice with the same label has given one answer, not two; twice
with different labels is a :class:`hitl.errors.ConflictingAnswerError` unless
``duplicates="last"`` asks to keep the last answer in input order (for platforms where a
worker may revise an answer). The rule is applied once, in :meth:`BaseAggregator.fit`,
on the integer arrays both front doors build, by one O(n) compiled pass.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..errors import ConfigError, ConflictingAnswerError, NotFittedError, ValidationError
from ._kernels import pair_repeats, row_argmax

__all__ = ["BaseAggregator", "check_answers", "check_prior", "dedupe_answers", "one_vote_arrays", "DUPLICATE_RULES",
           "check_fit_memory", "memory_limit_bytes"]

_COLUMNS = ("task", "worker", "label")

#: The values of ``duplicates=``: refuse conflicting repeats, or keep each worker's last answer.
DUPLICATE_RULES = ("refuse", "last")

# Where the memory of the machine cannot be read, fits are refused above this size.
_FALLBACK_MEMORY = 64 * 2**30


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


def _check_rule(duplicates: Any) -> str:
    if duplicates not in DUPLICATE_RULES:
        raise ConfigError(f"is {duplicates!r}", field="duplicates", expected="'refuse' or 'last'")
    return duplicates


def _py(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, so messages read ``3``, not ``np.int64(3)``."""
    return value.item() if isinstance(value, np.generic) else value


def _row_name(index: pd.Index | None, i: int) -> str:
    """How an answer is named in messages: its line in a file, its row label, or its position."""
    if index is None:
        return f"answer {i}"
    if index.name == "line":  # frames from read_answers_csv: 1-based physical lines of the file
        return f"line {index[i]}"
    return f"row {_py(index[i])!r}"


def _one_vote_per_pair(
    t: np.ndarray, w: np.ndarray, y: np.ndarray, nt: int, nw: int, duplicates: str,
    name: Callable[[str, int, np.ndarray], Any], index: pd.Index | None,
) -> tuple[np.ndarray | None, int]:
    """Apply the one-vote rule to integer answers: the mask of answers to keep (None: all) and
    how many it drops. ``name(kind, i, codes)`` gives the id or label value of answer ``i``."""
    keep, n_dropped, n_pairs, first = pair_repeats(t, w, y, nt, nw)
    if first is not None and duplicates == "refuse":
        a, b = first
        more = f"; {n_pairs - 1} more (task, worker) pair(s) conflict" if n_pairs > 1 else ""
        task_id = name("task", a, t)
        raise ConflictingAnswerError(
            f"worker {name('worker', a, w)!r} answered task {task_id!r} twice with different labels: "
            f"{name('label', a, y)!r} ({_row_name(index, a)}) and {name('label', b, y)!r} "
            f"({_row_name(index, b)}){more}",
            item=task_id, field="label",
            expected="one answer per (task, worker); duplicates='last' (hitl aggregate --duplicates last) "
                     "keeps each worker's last answer",
        )
    return keep, n_dropped


def one_vote_arrays(task: np.ndarray, worker: np.ndarray, label: np.ndarray, n_tasks: int, n_workers: int,
                    duplicates: str = "refuse") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one-vote rule on checked integer arrays (see :func:`dedupe_answers`): the answers kept.

    Messages name an answer by its position in the arrays.

    Examples
    --------
    >>> import numpy as np
    >>> t, w, y = one_vote_arrays(np.array([0, 0, 1]), np.array([0, 0, 0]), np.array([1, 1, 0]), 2, 1)
    >>> t.tolist(), w.tolist(), y.tolist()
    ([0, 1], [0, 0], [1, 0])
    """
    keep, _ = _one_vote_per_pair(task, worker, label, n_tasks, n_workers, _check_rule(duplicates),
                                 lambda kind, i, codes: int(codes[i]), None)
    return (task, worker, label) if keep is None else (task[keep], worker[keep], label[keep])


def _frame_codes(data: pd.DataFrame) -> tuple[np.ndarray, pd.Index, np.ndarray, pd.Index]:
    """Check a ``task, worker, label`` frame and factorise its task and worker ids."""
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
    return t, task_ids, w, worker_ids


def dedupe_answers(answers: pd.DataFrame, duplicates: str = "refuse") -> pd.DataFrame:
    """Apply the one-vote-per-(task, worker) rule to a ``task, worker, label`` frame.

    Identical repeats are dropped (the last copy stays); conflicting repeats (same task
    and worker, different labels) are refused, or with ``duplicates="last"`` only the
    last answer in row order is kept. Rows keep their order and their index, so a frame
    from :func:`hitl.aggregation.read_answers_csv` still names file lines.

    Parameters
    ----------
    answers : DataFrame
        Columns ``task, worker, label`` (others are kept).
    duplicates : {"refuse", "last"}, default "refuse"

    Returns
    -------
    DataFrame
        ``answers`` itself when no (task, worker) pair repeats, else the kept rows.

    Raises
    ------
    hitl.errors.ConflictingAnswerError
        With ``duplicates="refuse"``, naming the task, the worker, the two labels and
        their rows (lines, for a frame read from a CSV file).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"task": ["a", "a", "a"], "worker": ["x", "x", "y"], "label": ["1", "1", "0"]})
    >>> dedupe_answers(df).index.tolist()
    [1, 2]
    >>> df.loc[1, "label"] = "0"
    >>> dedupe_answers(df)
    Traceback (most recent call last):
    ...
    hitl.errors.ConflictingAnswerError: item 'a', field 'label': worker 'x' answered task 'a' twice ...
    >>> dedupe_answers(df, duplicates="last")["label"].tolist()
    ['0', '0']
    """
    rule = _check_rule(duplicates)
    t, task_ids, w, worker_ids = _frame_codes(answers)
    y, classes = _factorize(answers["label"])
    ids = {"task": task_ids, "worker": worker_ids, "label": classes}

    def name(kind: str, i: int, codes: np.ndarray) -> Any:
        return _py(ids[kind][int(codes[i])])

    keep, _ = _one_vote_per_pair(t, w, y, len(task_ids), len(worker_ids), rule, name, answers.index)
    return answers if keep is None else answers[keep]


def memory_limit_bytes() -> int:
    """Memory this process may use: the machine's physical memory, or a container's lower limit.

    Falls back to 64 GiB where neither can be read.
    """
    limit = None
    try:
        limit = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            value = int(Path(path).read_text().strip())
        except (OSError, ValueError):  # absent, unreadable, or "max" (no limit)
            continue
        limit = value if limit is None else min(limit, value)
    return limit if limit and limit > 0 else _FALLBACK_MEMORY


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover - unreachable


def check_fit_memory(n_bytes: float, n_classes: int, what: str) -> None:
    """Refuse a computation whose arrays alone would not fit in this machine's memory.

    The rule: when the main arrays need more than :func:`memory_limit_bytes`, the work
    could only end in a MemoryError (or in swapping for hours), so it is refused up
    front with a :class:`hitl.errors.ConfigError` naming ``n_classes``, the usual
    culprit (the arrays grow with its square), and the size it would take.

    Examples
    --------
    >>> check_fit_memory(10**20, 10**7, "confusion matrices")
    Traceback (most recent call last):
    ...
    hitl.errors.ConfigError: field 'n_classes': is 10000000: confusion matrices would need about ...
    """
    limit = memory_limit_bytes()
    if n_bytes > limit:
        raise ConfigError(
            f"is {n_classes}: {what} would need about {_fmt_bytes(n_bytes)}, more than the "
            f"{_fmt_bytes(limit)} of memory this machine has",
            field="n_classes", expected="the number of label values actually used",
        )


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
        duplicates: str = "refuse",
    ) -> "BaseAggregator":
        """Fit on answers given as integer arrays or as a DataFrame.

        One vote per (task, worker): identical repeats count once; repeats with
        different labels are refused, or resolved by ``duplicates="last"``.

        Parameters
        ----------
        task : array-like of int, or DataFrame
            Task id of each answer, or a DataFrame with columns ``task, worker, label``
            (ids of any hashable type; the other two arguments are then omitted).
        worker, label : array-like of int
            Worker id and given label of each answer (array form only).
        n_tasks, n_workers, n_classes : int, optional
            Sizes; default to ``max + 1`` (array form only), counted over every answer given.
        prior : array-like of shape (n_tasks, n_classes) or DataFrame, optional
            The classifier's per-task probabilities, used as one more annotator. With a
            DataFrame of answers, pass a DataFrame indexed by task id with one column per
            label value (tasks absent from it get a flat prior).
        duplicates : {"refuse", "last"}, default "refuse"
            What to do when a worker answered a task twice with different labels: raise
            :class:`hitl.errors.ConflictingAnswerError`, or keep the last answer in input
            order (a platform that lets workers revise). ``n_duplicates_`` counts the
            answers dropped.

        Returns
        -------
        self

        Raises
        ------
        hitl.errors.ConflictingAnswerError
            A conflicting repeat under ``duplicates="refuse"``: names the task, the worker,
            the two labels and their positions (rows; lines for a frame read from a CSV).
        hitl.errors.ConfigError
            When the fit's arrays could not fit in memory (see :func:`check_fit_memory`).

        Examples
        --------
        >>> import numpy as np
        >>> from hitl.aggregation import MajorityVote
        >>> t, w, y = [0, 0, 0, 0, 0], [0, 0, 0, 1, 2], [1, 1, 1, 0, 0]
        >>> MajorityVote().fit(t, w, y).labels_  # worker 0's three "1"s are one vote
        array([0])
        >>> MajorityVote().fit([0, 0, 0], [0, 0, 1], [1, 0, 1])
        Traceback (most recent call last):
        ...
        hitl.errors.ConflictingAnswerError: item 0, field 'label': worker 0 answered task 0 twice ...
        >>> MajorityVote().fit([0, 0, 0], [0, 0, 1], [1, 0, 0], duplicates="last").labels_
        array([0])
        """
        rule = _check_rule(duplicates)
        t, w, y, nt, nw, k, prior = self._answers(task, worker, label, n_tasks, n_workers, n_classes, prior)
        index = task.index if isinstance(task, pd.DataFrame) else None
        keep, self.n_duplicates_ = _one_vote_per_pair(t, w, y, nt, nw, rule, self._id_of, index)
        if keep is not None:
            t, w, y = t[keep], w[keep], y[keep]
        n_bytes, what = self._fit_bytes(len(t), nt, nw, k)
        check_fit_memory(n_bytes, k, what)
        p = None if prior is None else check_prior(prior, nt, k)
        self.n_tasks_, self.n_workers_, self.n_classes_ = nt, nw, k
        self._fit_arrays(t, w, y, nt, nw, k, p)
        self.posteriors_ = np.ascontiguousarray(self.posteriors_, dtype=np.float64)
        self.labels_ = row_argmax(self.posteriors_)
        return self

    def _answers(self, task, worker, label, n_tasks, n_workers, n_classes, prior):
        """The integer arrays and sizes from either front door (and the prior, aligned)."""
        if isinstance(task, pd.DataFrame):
            if worker is not None or label is not None:
                raise ValidationError(
                    "worker/label arrays given together with a DataFrame", field="worker", expected="a DataFrame alone"
                )
            return self._from_frame(task, prior)
        if worker is None or label is None:
            raise ValidationError("missing", field="worker" if worker is None else "label",
                                  expected="task, worker and label arrays, or one DataFrame")
        t, w, y, nt, nw, k = check_answers(task, worker, label, n_tasks=n_tasks, n_workers=n_workers,
                                           n_classes=n_classes)
        self.task_ids_ = self.worker_ids_ = self.classes_ = None
        return t, w, y, nt, nw, k, prior

    def _id_of(self, kind: str, i: int, codes: np.ndarray) -> Any:
        """The task id, worker id or label value of answer ``i`` (the integer itself for arrays)."""
        ids = {"task": self.task_ids_, "worker": self.worker_ids_, "label": self.classes_}[kind]
        return int(codes[i]) if ids is None else _py(ids[int(codes[i])])

    # Copies of the (n_workers, k, k) float64 arrays alive at once during a fit; 0 for
    # methods that build none (the vote counters build confusions_ only when asked).
    _worker_matrix_copies = 0

    def _fit_bytes(self, n_answers: int, n_tasks: int, n_workers: int, n_classes: int) -> tuple[float, str]:
        """Rough bytes of the fit's main arrays, and what they are, for :func:`check_fit_memory`."""
        per_task = 4.0 * 8 * n_tasks * n_classes  # counts, posteriors, scores and a per-task prior
        per_task += 6.0 * 8 * n_answers  # the answer arrays, worker * k + label, the grouped copies
        per_worker = self._worker_matrix_copies * 8.0 * n_workers * n_classes * n_classes
        if per_worker > per_task:
            return per_task + per_worker, (f"{n_workers} worker(s)' {n_classes} x {n_classes} confusion matrices"
                                           f" ({self._worker_matrix_copies} float64 copies)")
        return per_task + per_worker, f"the {n_tasks} x {n_classes} posterior matrix (and its working copies)"

    def _fit_arrays(self, task, worker, label, n_tasks, n_workers, n_classes, prior) -> None:  # pragma: no cover
        raise NotImplementedError

    def _from_frame(self, data: pd.DataFrame, prior: Any):
        t, task_ids, w, worker_ids = _frame_codes(data)
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

    def fit_predict(self, data: pd.DataFrame, *, prior: Any = None, duplicates: str = "refuse") -> pd.Series:
        """Fit on a ``task, worker, label`` DataFrame and return each task's label.

        ``prior`` and ``duplicates`` are as in :meth:`fit`.

        Examples
        --------
        >>> import pandas as pd
        >>> from hitl.aggregation import MajorityVote
        >>> df = pd.DataFrame({"task": ["a", "a", "b"], "worker": ["x", "y", "x"], "label": ["cat", "cat", "dog"]})
        >>> MajorityVote().fit_predict(df).to_dict()
        {'a': 'cat', 'b': 'dog'}
        """
        return self.fit(data, prior=prior, duplicates=duplicates).predict_frame()

    def fit_predict_proba(self, data: pd.DataFrame, *, prior: Any = None,
                          duplicates: str = "refuse") -> pd.DataFrame:
        """Fit on a ``task, worker, label`` DataFrame and return the posterior of each task.

        ``prior`` and ``duplicates`` are as in :meth:`fit`.
        """
        return self.fit(data, prior=prior, duplicates=duplicates).predict_proba_frame()
