"""Query-by-committee: vote entropy and KL divergence to the consensus.

A committee is anything that yields one probability matrix per member:

- a ``hitl.models.Committee`` (``predict_proba_members(X) -> (m, n, k)``),
- a modAL ``Committee`` (``vote_proba(X) -> (n, m, k)``),
- any object with fitted members in ``members_`` or modAL-style ``learner_list``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, EmptyPoolError, ValidationError
from ._core import Selection, check_n_instances, raise_bad_row, top_k

__all__ = [
    "vote_entropy",
    "kl_to_consensus",
    "vote_entropy_scores",
    "kl_to_consensus_scores",
    "member_proba",
]


def member_proba(committee: Any, X: Any) -> np.ndarray:
    """Probabilities of every member on ``X``, shape ``(n_members, n, k)``.

    Examples
    --------
    >>> import numpy as np
    >>> class TwoMembers:
    ...     def predict_proba_members(self, X):
    ...         return np.stack([np.tile([0.9, 0.1], (len(X), 1)), np.tile([0.2, 0.8], (len(X), 1))])
    >>> member_proba(TwoMembers(), np.zeros((3, 1))).shape
    (2, 3, 2)
    """
    if committee is None:
        raise ConfigError("is None", field="model", expected="a committee of models")
    if hasattr(committee, "predict_proba_members"):
        M = np.asarray(committee.predict_proba_members(X))
    elif hasattr(committee, "vote_proba") and hasattr(committee, "learner_list"):
        # modAL aligns the members' class columns itself; its layout is (n, members, k).
        M = np.asarray(committee.vote_proba(X)).transpose(1, 0, 2)
    else:
        members = getattr(committee, "members_", None)
        if members is None:
            members = getattr(committee, "learner_list", None)
        if members is None:
            raise ConfigError(
                f"{type(committee).__name__} is not a committee",
                field="model",
                expected="predict_proba_members, a modAL Committee, members_ or learner_list",
            )
        if len(members) == 0:
            raise ConfigError("has no members", field="model", expected="at least one fitted member")
        M = np.stack([np.asarray(m.predict_proba(X)) for m in members])
    return check_member_proba(M)


def check_member_proba(M: Any, field: str = "member_proba") -> np.ndarray:
    """Validate a ``(n_members, n, k)`` probability array."""
    M = np.asarray(M)
    if M.ndim != 3:
        raise ValidationError(f"has shape {M.shape}", field=field, expected="(n_members, n, k)")
    if M.shape[1] == 0:
        raise EmptyPoolError("no candidates to select from", field=field, expected="at least one unlabeled item")
    if M.shape[0] == 0 or M.shape[2] == 0:
        raise ValidationError(f"has shape {M.shape}", field=field, expected="at least one member and one class")
    if not np.issubdtype(M.dtype, np.floating):
        M = M.astype(np.float64)
    lo = M.min()
    if not (np.isfinite(lo) and lo >= 0 and np.isfinite(M.max())):
        # Name the candidate (second axis), whichever member holds the bad value.
        raise_bad_row(M.transpose(1, 0, 2).reshape(M.shape[1], -1), field)
    return M


def _xlogx(p: np.ndarray) -> np.ndarray:
    out = np.zeros_like(p, dtype=np.float64)
    pos = p > 0
    out[pos] = p[pos] * np.log(p[pos])
    return out


def vote_entropy_scores(member_proba: Any) -> np.ndarray:
    """Entropy of the members' hard votes (each member votes for its most probable class).

    The same measure as ``modAL.disagreement.vote_entropy``.

    Examples
    --------
    >>> import numpy as np
    >>> M = np.array([[[0.9, 0.1], [0.9, 0.1]], [[0.8, 0.2], [0.1, 0.9]]])   # 2 members, 2 items
    >>> vote_entropy_scores(M).round(4).tolist()
    [0.0, 0.6931]
    """
    M = check_member_proba(member_proba)
    n_members, n, k = M.shape
    votes = M.argmax(axis=2)  # (members, n)
    # Count votes per (item, class) with one bincount over flat indices.
    flat = (np.arange(n)[None, :] * k + votes).ravel()
    counts = np.bincount(flat, minlength=n * k).reshape(n, k)
    p = counts / n_members
    return 0.0 - _xlogx(p).sum(axis=1)


def kl_to_consensus_scores(member_proba: Any, reduce: str = "mean", temperature: float = 1.0) -> np.ndarray:
    """KL divergence of each member from the consensus (mean) distribution.

    ``reduce="mean"`` averages over members (McCallum & Nigam, 1998);
    ``reduce="max"`` takes the largest, as ``modAL.disagreement.KL_max_disagreement``.
    ``temperature`` below 1 sharpens each member's distribution first
    (``p ** (1 / temperature)``, renormalised), which moves the measure from
    soft disagreement toward disagreement about the winning class; 1 leaves
    the members as they are.

    Examples
    --------
    >>> import numpy as np
    >>> M = np.array([[[0.5, 0.5], [0.9, 0.1]], [[0.5, 0.5], [0.1, 0.9]]])
    >>> kl_to_consensus_scores(M).round(4).tolist()
    [0.0, 0.3681]
    """
    if reduce not in ("mean", "max"):
        raise ConfigError(f"is {reduce!r}", field="reduce", expected="'mean' or 'max'")
    numeric = isinstance(temperature, (int, float, np.integer, np.floating))
    if not (numeric and np.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"is {temperature!r}", field="temperature", expected="a positive number")
    M = check_member_proba(member_proba)
    if temperature != 1.0:
        M = _sharpen(M, float(temperature))
    consensus = M.mean(axis=0)  # (n, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(M) - np.log(consensus)[None]
        terms = np.where(M > 0, M * log_ratio, 0.0)
    kl = terms.sum(axis=2)  # (members, n)
    kl = np.maximum(kl, 0.0)  # rounding can leave -1e-17
    return kl.mean(axis=0) if reduce == "mean" else kl.max(axis=0)


def _sharpen(M: np.ndarray, temperature: float) -> np.ndarray:
    # Scale by the row maximum first so that p ** (1 / T) cannot underflow the whole row.
    top = M.max(axis=2, keepdims=True)
    S = (M / np.where(top > 0, top, 1.0)) ** (1.0 / temperature)
    total = S.sum(axis=2, keepdims=True)
    return S / np.where(total > 0, total, 1.0)


def _select_vote_entropy(
    proba: np.ndarray, n: int, *, X: Any = None, model: Any = None, random_state: Any = None, **_: Any
) -> Selection:
    return top_k(vote_entropy_scores(_members_for_select(proba, X, model)), n, random_state)


def _select_kl(
    proba: np.ndarray, n: int, *, X: Any = None, model: Any = None, reduce: str = "mean",
    temperature: float = 1.0, random_state: Any = None, **_: Any,
) -> Selection:
    M = _members_for_select(proba, X, model)
    return top_k(kl_to_consensus_scores(M, reduce=reduce, temperature=temperature), n, random_state)


def _members_for_select(proba: np.ndarray, X: Any, model: Any) -> np.ndarray:
    if X is None:
        raise ConfigError("is None", field="X", expected="candidate features, which the committee members score")
    M = member_proba(model, X)
    if M.shape[1] != proba.shape[0]:
        raise ValidationError(
            f"committee scored {M.shape[1]} rows for {proba.shape[0]} candidates", field="model", expected="one per candidate"
        )
    return M


def vote_entropy(committee: Any, X: Any, n_instances: int = 1, random_state: Any = None, **_: Any) -> Selection:
    """Pick the items whose members' votes are most evenly split.

    Same picks as ``modAL.disagreement.vote_entropy_sampling`` (ties aside).

    Parameters
    ----------
    committee : committee
        See the module docstring for what counts as one.
    X : array-like of shape (n, d)
    n_instances : int
    random_state : int, optional
        Vote entropy takes few distinct values, so ties are common: with a
        seed they are ordered at random, without one by index.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 2)); y = (X[:, 0] > 0).astype(int)
    >>> class Members:  # any object with fitted ``members_``
    ...     members_ = [LogisticRegression().fit(X[:20], y[:20]), DecisionTreeClassifier(random_state=0).fit(X[:20], y[:20])]
    >>> vote_entropy(Members(), X[20:], n_instances=3).indices.shape
    (3,)
    """
    n = check_n_instances(n_instances)
    _check_pool(X)
    return top_k(vote_entropy_scores(member_proba(committee, X)), n, random_state)


def kl_to_consensus(
    committee: Any,
    X: Any,
    n_instances: int = 1,
    reduce: str = "mean",
    random_state: Any = None,
    temperature: float = 1.0,
    **_: Any,
) -> Selection:
    """Pick the items where members disagree most with their consensus (KL divergence).

    With ``reduce="max"`` the same picks as ``modAL.disagreement.max_disagreement_sampling``.
    ``temperature`` as in :func:`kl_to_consensus_scores`; other parameters as
    in :func:`vote_entropy`.

    Examples
    --------
    >>> import numpy as np
    >>> class TwoMembers:
    ...     def predict_proba_members(self, X):
    ...         a = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    ...         b = np.array([[0.5, 0.5], [0.1, 0.9], [0.6, 0.4]])
    ...         return np.stack([a, b])
    >>> kl_to_consensus(TwoMembers(), np.zeros((3, 1)), n_instances=1).indices.tolist()
    [1]
    """
    n = check_n_instances(n_instances)
    _check_pool(X)
    M = member_proba(committee, X)
    return top_k(kl_to_consensus_scores(M, reduce=reduce, temperature=temperature), n, random_state)


def _check_pool(X: Any) -> None:
    size = X.shape[0] if hasattr(X, "shape") else len(X)
    if size == 0:
        raise EmptyPoolError("no candidates to select from", field="X", expected="at least one unlabeled item")
