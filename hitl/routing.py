"""The router: machine label, or which HITers see an item.

Per item, the router either auto-accepts the machine label (the model is sure
enough) or sends the item to ``answers_per_item`` distinct HITers allowed to see it
(data residency), spreading work over the least-loaded people, within a budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, ValidationError


@dataclass(frozen=True)
class Budget:
    """Limits on what a project may buy.

    Parameters
    ----------
    answers : int, optional
        Most human answers, all rounds together (None: no limit).

    Examples
    --------
    >>> Budget(answers=500).remaining(answers_used=120)
    380
    """

    answers: int | None = None

    def __post_init__(self) -> None:
        if self.answers is not None and (not isinstance(self.answers, (int, np.integer)) or self.answers < 0):
            raise ConfigError(f"is {self.answers!r}", field="Budget.answers", expected="a whole number >= 0 or None")

    def remaining(self, answers_used: int) -> int | None:
        """Answers still allowed (None: unlimited)."""
        return None if self.answers is None else max(0, int(self.answers) - int(answers_used))


@dataclass
class Routing:
    """What the router decided for a batch: one row per assignment, plus items nobody may take."""

    items: np.ndarray
    workers: np.ndarray
    unroutable: np.ndarray


class Router:
    """Auto-accept confident machine labels; send the rest to eligible HITers.

    Parameters
    ----------
    auto_accept : float, default 0.95
        A machine label whose probability is at least this is accepted without a human.
        ``1.0`` or more turns auto-acceptance off.
    answers_per_item : int, default 1
        HITers asked per item sent to humans.
    random_state : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> r = Router(answers_per_item=2, random_state=0)
    >>> eligible = np.array([[True, True, False], [False, False, False]])
    >>> out = r.assign(np.array([10, 11]), eligible, load=np.zeros(3))
    >>> sorted(out.workers.tolist()), out.unroutable.tolist()
    ([0, 1], [11])
    """

    def __init__(self, auto_accept: float = 0.95, answers_per_item: int = 1, random_state: int | None = None) -> None:
        if not 0.0 < auto_accept:
            raise ConfigError(f"is {auto_accept}", field="auto_accept", expected="a probability threshold in (0, 1]")
        if int(answers_per_item) < 1:
            raise ConfigError(f"is {answers_per_item}", field="answers_per_item", expected="at least 1")
        self.auto_accept = float(auto_accept)
        self.answers_per_item = int(answers_per_item)
        self.random_state = random_state

    def accept_mask(self, proba: np.ndarray) -> np.ndarray:
        """Which machine labels are accepted as they are."""
        proba = np.asarray(proba)
        if proba.ndim != 2:
            raise ValidationError(f"has shape {proba.shape}", field="proba", expected="(n_items, n_classes)")
        if self.auto_accept >= 1.0:
            return np.zeros(len(proba), dtype=bool)
        return proba.max(axis=1) >= self.auto_accept

    def assign(self, items: np.ndarray, eligible: np.ndarray, load: np.ndarray,
               rng: np.random.Generator | None = None) -> Routing:
        """Pick up to ``answers_per_item`` distinct eligible HITers per item.

        Parameters
        ----------
        items : (m,) int array of item positions
        eligible : (m, n_workers) bool array, ``eligible[j, w]``: may HITer ``w`` take ``items[j]``
        load : (n_workers,) current number of assignments per HITer; the less loaded are preferred
        rng : numpy Generator for tie-breaking (default: from ``random_state``)
        """
        items = np.asarray(items, dtype=np.int64)
        eligible = np.asarray(eligible, dtype=bool)
        m = len(items)
        if eligible.shape[0] != m or eligible.ndim != 2:
            raise ValidationError(f"has shape {eligible.shape}", field="eligible", expected=f"({m}, n_workers)")
        n_workers = eligible.shape[1]
        rng = rng if rng is not None else np.random.default_rng(self.random_state)
        none = np.zeros(0, dtype=np.int64)
        if m == 0 or n_workers == 0:
            return Routing(none, none, items.copy())
        k = min(self.answers_per_item, n_workers)
        load = np.asarray(load, dtype=np.float64)
        # Random keys stretched by load: a HITer with twice the mean load is about half as
        # likely to be drawn, which spreads a batch without a loop over items.
        key = rng.random((m, n_workers)) * (1.0 + load / max(load.mean(), 1.0))[None, :]
        key[~eligible] = np.inf
        if k < n_workers:
            pick = np.argpartition(key, k - 1, axis=1)[:, :k]
        else:
            pick = np.broadcast_to(np.arange(n_workers), (m, n_workers))
        ok = np.isfinite(np.take_along_axis(key, pick, axis=1))
        rows = np.broadcast_to(np.arange(m)[:, None], pick.shape)
        routable = ok.any(axis=1)
        return Routing(items[rows[ok]], pick[ok].astype(np.int64), items[~routable])
