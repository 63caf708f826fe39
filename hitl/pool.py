"""The pool of items to label: ids, features and per-item metadata."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from .errors import PoolError

_CHUNK = 1 << 16  # rows per finiteness check, so a memmapped pool is never loaded whole


class Pool:
    """Items to label: ids, a feature matrix and per-item metadata.

    Parameters
    ----------
    X : array-like of shape (n_items, n_features)
        Numeric features; a ``numpy.memmap`` is kept as it is (never copied).
    ids : sequence of str, optional
        Unique item ids; default ``"0"``, ``"1"``, ...
    allowed_countries : sequence, optional
        Data residency, per item: ``None`` (anywhere) or an iterable of ISO 3166 alpha-2
        country codes where HITers may see the item.
    item_types : sequence of str, optional
        The task type of each item (e.g. ``"digit"``); a skill of that name may be
        required to label it. Default: every item has type ``"default"``.

    Attributes
    ----------
    n_items : int
    ids : ndarray of str (object dtype)
    countries_ : list of str, the country codes named anywhere in ``allowed_countries``
    residency_ : ndarray of bool, shape (n_items, len(countries_) + 1)
        ``residency_[i, c]`` says whether item ``i`` may go to country ``countries_[c]``;
        the last column stands for every country not named and is ``True`` only for
        unrestricted items.

    Examples
    --------
    >>> import numpy as np
    >>> pool = Pool(np.zeros((3, 2)), ids=["a", "b", "c"], allowed_countries=[None, ["FR"], ["FR", "TG"]])
    >>> pool.may_go_to(["FR", "TG", "KE"]).astype(int).tolist()
    [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    """

    def __init__(
        self,
        X: Any,
        ids: Sequence[str] | None = None,
        *,
        allowed_countries: Sequence[Iterable[str] | None] | None = None,
        item_types: Sequence[str] | None = None,
    ) -> None:
        self.X = _check_features(X)
        n = self.X.shape[0]
        self.n_items = n
        self.ids = _check_ids(ids, n)
        self._index = {item_id: i for i, item_id in enumerate(self.ids.tolist())}
        self.allowed_countries = _check_countries(allowed_countries, self.ids)
        self.countries_ = sorted({c for allowed in self.allowed_countries if allowed for c in allowed})
        col = {c: j for j, c in enumerate(self.countries_)}
        residency = np.zeros((n, len(self.countries_) + 1), dtype=bool)
        for i, allowed in enumerate(self.allowed_countries):
            if allowed is None:
                residency[i, :] = True
            else:
                residency[i, [col[c] for c in allowed]] = True
        self.residency_ = residency
        self._country_col = col
        self.item_types = _check_types(item_types, self.ids)

    def __len__(self) -> int:
        return self.n_items

    def __repr__(self) -> str:
        restricted = int((~self.residency_[:, -1]).sum())
        return f"Pool(n_items={self.n_items}, n_features={self.X.shape[1]}, restricted={restricted})"

    def index_of(self, ids: str | Sequence[str]) -> np.ndarray | int:
        """Positions of item ids; raises :class:`PoolError` for an unknown id."""
        if isinstance(ids, str):
            return self._lookup(ids)
        return np.fromiter((self._lookup(i) for i in ids), dtype=np.int64)

    def _lookup(self, item_id: str) -> int:
        try:
            return self._index[item_id]
        except KeyError:
            raise PoolError("is not in the pool", item=item_id, field="ids") from None

    def may_go_to(self, worker_countries: Sequence[str], items: np.ndarray | None = None) -> np.ndarray:
        """Residency matrix: may item ``i`` be shown to a HITer in ``worker_countries[w]``?

        Returns a bool array of shape ``(len(items), len(worker_countries))`` (all items
        when ``items`` is None), built by indexing, with no loop over items.
        """
        cols = np.array([self._country_col.get(c, len(self.countries_)) for c in worker_countries], dtype=np.int64)
        rows = self.residency_ if items is None else self.residency_[np.asarray(items, dtype=np.int64)]
        return rows[:, cols]

    def features_fingerprint(self) -> str:
        """A short hash of the features (shape, dtype and every value), read in chunks.

        The store records it when a project is created and refuses to resume the project
        with other features: labels and priors stored for an item would then describe
        another item. Chunked, so a memmapped pool is never loaded whole.
        """
        import hashlib

        X = self.X
        h = hashlib.blake2b(digest_size=8)
        h.update(f"{X.dtype.str}{X.shape}".encode())
        for start in range(0, X.shape[0], _CHUNK):
            h.update(np.ascontiguousarray(X[start : start + _CHUNK]).tobytes())
        return h.hexdigest()

    def fingerprint(self) -> str:
        """A short hash of the ids, used by the store to refuse another project's file."""
        import hashlib

        h = hashlib.sha256()
        for item_id in self.ids.tolist():
            h.update(item_id.encode())
            h.update(b"\0")
        return h.hexdigest()[:16]


def _check_features(X: Any) -> np.ndarray:
    if isinstance(X, np.memmap):
        arr = X
    else:
        try:
            arr = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise PoolError(f"cannot be read as an array ({exc})", field="X", expected="a 2-d numeric array") from None
    if arr.ndim != 2:
        raise PoolError(f"has {arr.ndim} dimension(s), shape {arr.shape}", field="X", expected="a 2-d array (n_items, n_features)")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise PoolError(f"has dtype {arr.dtype}", field="X", expected="numbers (float or int)")
    if np.issubdtype(arr.dtype, np.floating):
        for start in range(0, arr.shape[0], _CHUNK):
            block = np.asarray(arr[start : start + _CHUNK])
            finite = np.isfinite(block)
            if not finite.all():
                r, c = np.argwhere(~finite)[0]
                raise PoolError(
                    f"holds {block[r, c]} in column {c}", item=int(start + r), field="X", expected="finite numbers"
                )
    return arr


def _check_ids(ids: Sequence[str] | None, n: int) -> np.ndarray:
    if ids is None:
        return np.array([str(i) for i in range(n)], dtype=object)
    ids_list = list(ids)
    if len(ids_list) != n:
        raise PoolError(f"has {len(ids_list)} ids for {n} rows of X", field="ids", expected="one id per row")
    for i, item_id in enumerate(ids_list):
        if not isinstance(item_id, (str, int, np.integer)) or isinstance(item_id, bool):
            raise PoolError(f"is {item_id!r} ({type(item_id).__name__})", item=i, field="ids", expected="str or int ids")
    arr = np.array([str(i) for i in ids_list], dtype=object)
    uniq, first, counts = np.unique(arr.astype(str), return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][0]
        where = np.flatnonzero(arr.astype(str) == dup)[:3].tolist()
        raise PoolError(f"is duplicated (rows {where})", item=str(dup), field="ids", expected="unique ids")
    return arr


def _check_countries(allowed: Sequence[Iterable[str] | None] | None, ids: np.ndarray) -> list[frozenset[str] | None]:
    n = len(ids)
    if allowed is None:
        return [None] * n
    allowed = list(allowed)
    if len(allowed) != n:
        raise PoolError(f"has {len(allowed)} entries for {n} items", field="allowed_countries", expected="one entry per item")
    out: list[frozenset[str] | None] = []
    for i, entry in enumerate(allowed):
        if entry is None:
            out.append(None)
            continue
        if isinstance(entry, str):
            entry = [entry]
        codes = frozenset(entry)
        for code in codes:
            if not (isinstance(code, str) and len(code) == 2 and code.isalpha() and code.isupper()):
                raise PoolError(
                    f"names country {code!r}", item=ids[i], field="allowed_countries",
                    expected="ISO 3166 alpha-2 codes such as 'FR'",
                )
        if not codes:
            raise PoolError("is empty: nobody could ever label it", item=ids[i], field="allowed_countries",
                            expected="None (anywhere) or at least one country")
        out.append(codes)
    return out


def _check_types(types: Sequence[str] | None, ids: np.ndarray) -> np.ndarray:
    n = len(ids)
    if types is None:
        return np.full(n, "default", dtype=object)
    types = list(types)
    if len(types) != n:
        raise PoolError(f"has {len(types)} entries for {n} items", field="item_types", expected="one entry per item")
    for i, t in enumerate(types):
        if not isinstance(t, str) or not t:
            raise PoolError(f"is {t!r}", item=ids[i], field="item_types", expected="a non-empty string")
    return np.array(types, dtype=object)
