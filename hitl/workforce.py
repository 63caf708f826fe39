"""HITers and workforces: who answers, and how answers come back.

A workforce takes assignments (item, HITer) and yields answers (item, HITer, label,
seconds on task) in chunks; the engine commits each chunk to the store before it asks
for the next, so an answer is never acknowledged before it is durable.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import ConfigError, ValidationError


@dataclass(frozen=True)
class HITer:
    """One human annotator.

    Parameters
    ----------
    id : str
    country : str
        ISO 3166 alpha-2 code of where the HITer works (data residency).
    skills : frozenset of str
        Task types the HITer is qualified for.
    hourly_min_wage : float
        Local legal minimum wage per hour, in ``currency``.
    currency : str
    start_date : datetime.date
        First day on the platform (tenure is counted from it).

    Examples
    --------
    >>> HITer("h1", "TG", hourly_min_wage=0.45, currency="XOF").country
    'TG'
    """

    id: str
    country: str
    skills: frozenset = field(default_factory=frozenset)
    hourly_min_wage: float = 1.0
    currency: str = "USD"
    start_date: _dt.date = field(default_factory=lambda: _dt.date(2026, 1, 1))

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValidationError(f"is {self.id!r}", field="HITer.id", expected="a non-empty string")
        c = self.country
        if not (isinstance(c, str) and len(c) == 2 and c.isalpha() and c.isupper()):
            raise ValidationError(f"is {c!r}", item=self.id, field="country", expected="an ISO 3166 alpha-2 code such as 'TG'")
        if not (self.hourly_min_wage > 0):
            raise ValidationError(f"is {self.hourly_min_wage!r}", item=self.id, field="hourly_min_wage", expected="a positive amount")
        object.__setattr__(self, "skills", frozenset(self.skills))


@dataclass
class Answers:
    """A chunk of answers: parallel arrays over the pool's item positions and the workforce's HITer positions."""

    item: np.ndarray
    worker: np.ndarray
    label: np.ndarray
    seconds: np.ndarray

    def __len__(self) -> int:
        return len(self.item)


@runtime_checkable
class Workforce(Protocol):
    """Anything that turns assignments into answers.

    ``hiters`` lists the people; ``collect(items, workers, item_ids)`` yields
    :class:`Answers` chunks for the given assignments (positions into the pool and
    into ``hiters``), in any order, possibly fewer than asked (people leave).
    """

    hiters: Sequence[HITer]

    def collect(self, items: np.ndarray, workers: np.ndarray, item_ids: np.ndarray) -> Iterator[Answers]: ...


# name: (share of the crowd, accuracy range, mean seconds per task)
_PROFILES = {
    "realistic": [
        ("good", 0.45, (0.90, 0.98), 9.0),
        ("average", 0.35, (0.75, 0.90), 11.0),
        ("careless", 0.15, (0.55, 0.75), 5.0),
        ("spammer", 0.05, None, 2.0),
    ],
    "experts": [("good", 1.0, (0.95, 0.995), 12.0)],
    "noisy": [
        ("good", 0.2, (0.85, 0.95), 9.0),
        ("average", 0.4, (0.65, 0.85), 10.0),
        ("careless", 0.3, (0.45, 0.65), 5.0),
        ("spammer", 0.1, None, 2.0),
    ],
}

# Hourly minimum wages used by the simulated crowd, in USD at 2025 exchange rates,
# rounded; only to give simulated pay a realistic spread (the impact ledger takes a
# user-supplied, sourced table).
_SIM_WAGES = {"TG": 0.30, "MG": 0.25, "CM": 0.30, "KE": 0.60, "UG": 0.20, "GH": 0.45, "FR": 11.88, "IN": 0.55}


class SimulatedCrowd:
    """Simulated HITers with per-worker confusion matrices, for tests and benchmarks.

    Each answer is a pure function of ``(random_state, item, worker)`` (a counter-based
    hash, vectorised), so asking the same HITer the same item again -- after a crash,
    say -- gives the same answer and the same time on task.

    Parameters
    ----------
    hiters : sequence of HITer
    accuracy : array of shape (n_hiters,)
        Probability that a HITer gives the true label. Errors are spread evenly over
        the other classes, except for spammers (``accuracy`` NaN), who answer
        uniformly at random whatever the item.
    truth : array of int, shape (n_items,)
        The true class index of each pool item (the simulation's ground truth).
    n_classes : int
    seconds : array of shape (n_hiters,), optional
        Mean time on task per HITer (log-normal around it); default 10 s.
    latency : float
        Real seconds to sleep per answer (to simulate people, e.g. in crash tests).
    chunk_size : int
        Answers per yielded chunk.
    max_seconds : float
        Longest time on task (a task's time limit).
    random_state : int

    Examples
    --------
    >>> import numpy as np
    >>> crowd = SimulatedCrowd.from_profile("experts", n=3, truth=np.array([0, 1, 2]), n_classes=3, random_state=0)
    >>> chunk = next(crowd.collect(np.array([0, 1, 2]), np.array([0, 1, 2]), None))
    >>> chunk.label.shape
    (3,)
    """

    def __init__(
        self,
        hiters: Sequence[HITer],
        accuracy: Sequence[float],
        truth: Sequence[int],
        n_classes: int,
        *,
        seconds: Sequence[float] | None = None,
        latency: float = 0.0,
        chunk_size: int = 64,
        max_seconds: float = 600.0,
        random_state: int = 0,
    ) -> None:
        self.hiters = list(hiters)
        self.max_seconds = float(max_seconds)
        self.accuracy = np.asarray(accuracy, dtype=np.float64)
        self.truth = np.asarray(truth)
        self.n_classes = int(n_classes)
        self.seconds = np.full(len(self.hiters), 10.0) if seconds is None else np.asarray(seconds, dtype=np.float64)
        self.latency = float(latency)
        self.chunk_size = int(chunk_size)
        self.random_state = int(random_state)
        if len(self.accuracy) != len(self.hiters) or len(self.seconds) != len(self.hiters):
            raise ConfigError("accuracy and seconds need one entry per HITer", field="accuracy")
        if self.n_classes < 2:
            raise ConfigError(f"is {self.n_classes}", field="n_classes", expected="at least 2")
        if not np.issubdtype(self.truth.dtype, np.integer) or self.truth.ndim != 1:
            raise ValidationError(f"has dtype {self.truth.dtype}", field="truth", expected="a 1-d array of class indices")
        if len(self.truth) and (self.truth.min() < 0 or self.truth.max() >= self.n_classes):
            raise ValidationError("holds a class outside the label set", field="truth", expected=f"indices in [0, {self.n_classes})")
        ok = np.isnan(self.accuracy) | ((self.accuracy >= 0) & (self.accuracy <= 1))
        if not ok.all():
            w = int(np.argmin(ok))
            raise ConfigError(f"is {self.accuracy[w]}", item=self.hiters[w].id, field="accuracy", expected="a probability or NaN (spammer)")

    @classmethod
    def from_profile(
        cls,
        profile: str,
        n: int,
        *,
        truth: Sequence[int],
        n_classes: int,
        countries: Sequence[str] = ("TG", "MG", "CM", "KE"),
        random_state: int = 0,
        **kwargs,
    ) -> "SimulatedCrowd":
        """A crowd of ``n`` HITers drawn from a named profile: ``realistic``, ``experts`` or ``noisy``.

        ``realistic`` mixes good (45%), average (35%), careless (15%) HITers and spammers (5%),
        spread round-robin over ``countries``.
        """
        if profile not in _PROFILES:
            raise ConfigError(f"is {profile!r}", field="profile", expected=f"one of {sorted(_PROFILES)}")
        if n < 1:
            raise ConfigError(f"is {n}", field="n", expected="at least one HITer")
        rng = np.random.default_rng(random_state)
        kinds = _PROFILES[profile]
        shares = np.array([k[1] for k in kinds])
        counts = np.floor(shares * n).astype(int)
        counts[0] += n - counts.sum()
        accuracy, seconds, names = [], [], []
        for (kind, _, acc_range, sec), c in zip(kinds, counts):
            if acc_range is None:
                accuracy += [np.nan] * c
            else:
                accuracy += list(rng.uniform(*acc_range, size=c))
            seconds += list(sec * rng.uniform(0.7, 1.3, size=c))
            names += [kind] * c
        order = rng.permutation(n)
        hiters = []
        for j in range(n):
            country = countries[j % len(countries)]
            start = _dt.date(2025, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 600)))
            hiters.append(HITer(f"hiter-{j:03d}", country, hourly_min_wage=_SIM_WAGES.get(country, 1.0), start_date=start))
        crowd = cls(
            hiters, np.array(accuracy)[order], truth, n_classes, seconds=np.array(seconds)[order],
            random_state=random_state, **kwargs,
        )
        crowd.kinds = [names[i] for i in order]
        return crowd

    @classmethod
    def from_accuracies(
        cls,
        accuracies: Sequence[float],
        n: int,
        *,
        truth: Sequence[int],
        n_classes: int,
        binary: bool = True,
        countries: Sequence[str] = ("TG", "MG", "CM", "KE"),
        random_state: int = 0,
        **kwargs,
    ) -> "SimulatedCrowd":
        """A crowd of ``n`` HITers whose accuracies are drawn from measured ones.

        ``accuracies`` are per-worker accuracies measured on real crowd data (e.g. on
        gold tasks). When they were measured on two-class tasks (``binary``), each is
        carried to ``n_classes`` classes by keeping its skill above chance: a worker
        halfway between chance and perfect on two classes is halfway on ``n_classes``
        too (below-chance workers become chance-level ones).

        Examples
        --------
        >>> import numpy as np
        >>> crowd = SimulatedCrowd.from_accuracies([0.5, 1.0], 2, truth=np.zeros(3, int), n_classes=5)
        >>> sorted(np.round(crowd.accuracy, 2).tolist()) in ([0.2, 1.0], [0.2, 0.2], [1.0, 1.0])
        True
        """
        acc = np.asarray(accuracies, dtype=np.float64)
        if acc.ndim != 1 or len(acc) == 0 or not np.isfinite(acc).all() or (acc < 0).any() or (acc > 1).any():
            raise ConfigError("need a non-empty list of probabilities", field="accuracies")
        rng = np.random.default_rng(random_state)
        drawn = rng.choice(acc, size=n, replace=True)
        if binary:
            chance = 1.0 / n_classes
            drawn = chance + np.clip((drawn - 0.5) / 0.5, 0.0, 1.0) * (1.0 - chance)
        seconds = 10.0 * rng.uniform(0.7, 1.3, size=n)
        hiters = []
        for j in range(n):
            country = countries[j % len(countries)]
            start = _dt.date(2025, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 600)))
            hiters.append(HITer(f"hiter-{j:03d}", country, hourly_min_wage=_SIM_WAGES.get(country, 1.0), start_date=start))
        return cls(hiters, drawn, truth, n_classes, seconds=seconds, random_state=random_state, **kwargs)

    @property
    def n_items(self) -> int:
        """Items the simulation knows the truth of: a project's pool must have exactly these."""
        return len(self.truth)

    def answer(self, items: np.ndarray, workers: np.ndarray) -> Answers:
        """The answers of ``workers[j]`` on ``items[j]``, all at once (deterministic)."""
        items = np.asarray(items, dtype=np.int64)
        workers = np.asarray(workers, dtype=np.int64)
        u = _uniforms(self.random_state, items, workers, 3)
        truth = self.truth[items]
        acc = self.accuracy[workers]
        spam = np.isnan(acc)
        k = self.n_classes
        correct = ~spam & (u[0] < np.nan_to_num(acc))
        # A wrong answer is one of the k-1 other classes, evenly.
        other = (truth + 1 + np.minimum((u[1] * (k - 1)).astype(np.int64), k - 2)) % k
        uniform = np.minimum((u[1] * k).astype(np.int64), k - 1)
        label = np.where(spam, uniform, np.where(correct, truth, other))
        # Log-normal time on task, median at the HITer's mean, clipped to sane bounds.
        z = np.sqrt(-2.0 * np.log(np.maximum(u[2], 1e-12))) * np.cos(2 * np.pi * u[1])
        seconds = np.clip(self.seconds[workers] * np.exp(0.35 * z), min(1.0, self.max_seconds), self.max_seconds)
        return Answers(items, workers, label.astype(np.int64), seconds)

    def collect(self, items: np.ndarray, workers: np.ndarray, item_ids: np.ndarray | None = None) -> Iterator[Answers]:
        items = np.asarray(items, dtype=np.int64)
        workers = np.asarray(workers, dtype=np.int64)
        for start in range(0, len(items), self.chunk_size):
            sl = slice(start, start + self.chunk_size)
            chunk = self.answer(items[sl], workers[sl])
            if self.latency:
                time.sleep(self.latency * len(chunk))
            yield chunk


def _uniforms(seed: int, items: np.ndarray, workers: np.ndarray, n_streams: int) -> np.ndarray:
    """Uniforms in [0, 1) that depend only on (seed, item, worker, stream): splitmix64, vectorised."""
    with np.errstate(over="ignore"):
        base = (
            np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
            ^ items.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
            ^ workers.astype(np.uint64) * np.uint64(0x94D049BB133111EB)
        )
        out = np.empty((n_streams, len(items)), dtype=np.float64)
        for s in range(n_streams):
            z = base + np.uint64(s + 1) * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            out[s] = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return out
