"""Real people as the engine's workforce: :class:`HumanWorkforce`.

A round posts its tasks to the :class:`~hitl.queue.TaskQueue` in the project's
store (what each item looks like: an image or a text, and the model's suggestion),
then waits for HITers to answer them through ``hitl serve`` (or for answers imported
from Label Studio), yielding what comes in to the engine. The web server commits each
answer itself; yielding it again to the engine is harmless, since storing an answer
twice is a no-op.

Typical use::

    people = HumanWorkforce(hiters, images=X_img)          # or texts=..., files=...
    project = LabelingProject(pool, model, workforce=people, store="labels.db", classes=names)
    people.bind(project)                                    # where the project does not do it itself
    tokens = people.issue_tokens()                          # give each HITer their token
    project.run(batch_size=20)                              # while `hitl serve labels.db` runs
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import ConfigError, DataFormatError, ValidationError
from .queue import TaskQueue
from .store import Store
from .workforce import Answers, HITer

MAX_FILE_BYTES = 20 * 1024 * 1024


from .errors import AnswersPending  # noqa: E402  (re-exported: the engine leaves a waiting round open)


class HumanWorkforce:
    """HITers answering through the task queue (``hitl serve``, or a Label Studio import).

    Parameters
    ----------
    hiters : sequence of HITer
    images : array, optional
        One image per pool item, ``images[i]`` of shape ``(h, w)``, ``(h, w, 3)``,
        ``(h, w, 4)``, or flat with ``image_shape``. ``uint8`` values are shown as they
        are; other numbers are scaled to the image's own range (or ``image_range``).
    texts : sequence of str, optional
        One text per pool item.
    files : sequence of paths, optional
        One PNG, JPEG, GIF or WebP file per pool item.
    image_shape : tuple, optional
        Shape of one image when ``images`` holds flat rows (e.g. ``(8, 8)``).
    image_range : (low, high), optional
        Values mapped to black and white; default the range of each image.
    store : Store, str or Path, optional
        The project's store; set by :meth:`bind` when not given.
    timeout : float, optional
        Seconds a round waits for its answers before :class:`AnswersPending` is raised
        (the round stays open); None waits until every answer is in.
    poll_interval : float, default 0.5
        Seconds between two looks at the store while waiting.
    lease_seconds : float, default 300
        How long a HITer holds a task before it is offered again.
    share_after : float, optional
        Seconds after which a task nobody took may go to another HITer allowed to see the
        item; None offers only tasks whose lease ran out.
    show_suggestions : bool, default True
        Show HITers the model's most probable label (never on audit or gold tasks).
    progress : bool, default True
        A progress bar while a round waits.

    Attributes
    ----------
    queue_ : TaskQueue, set once a store is known.
    n_classes : None (the label names come from the project).

    Examples
    --------
    >>> import numpy as np
    >>> people = HumanWorkforce([HITer("ann", "FR"), HITer("bob", "TG")], texts=["a cat", "a dog"], timeout=0)
    >>> [h.id for h in people.hiters]
    ['ann', 'bob']
    """

    def __init__(
        self,
        hiters: Sequence[HITer],
        *,
        images: Any = None,
        texts: Sequence[str] | None = None,
        files: Sequence[str | Path] | None = None,
        image_shape: tuple[int, ...] | None = None,
        image_range: tuple[float, float] | None = None,
        store: Store | str | Path | None = None,
        timeout: float | None = None,
        poll_interval: float = 0.5,
        lease_seconds: float = 300.0,
        share_after: float | None = None,
        show_suggestions: bool = True,
        progress: bool = True,
    ) -> None:
        self.hiters = list(hiters)
        if not self.hiters or not all(isinstance(h, HITer) for h in self.hiters):
            raise ConfigError("is empty or holds something else than HITer records", field="hiters",
                              expected="a non-empty sequence of hitl.HITer")
        ids = [h.id for h in self.hiters]
        if len(set(ids)) != len(ids):
            raise ConfigError("repeats a HITer id", field="hiters", expected="unique ids")
        given = [name for name, v in (("images", images), ("texts", texts), ("files", files)) if v is not None]
        if len(given) != 1:
            raise ConfigError(f"got {given or 'none'}", field="content", expected="exactly one of images, texts or files")
        self.images = images
        self.texts = texts
        self.files = files
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        self.image_range = image_range
        if timeout is not None and not timeout >= 0:
            raise ConfigError(f"is {timeout!r}", field="timeout", expected="seconds >= 0 or None")
        if not poll_interval > 0:
            raise ConfigError(f"is {poll_interval!r}", field="poll_interval", expected="a positive number of seconds")
        self.timeout = timeout
        self.poll_interval = float(poll_interval)
        self.lease_seconds = float(lease_seconds)
        self.share_after = share_after
        self.show_suggestions = bool(show_suggestions)
        self.progress = progress
        self.n_classes = None
        self.store = store
        self.queue_: TaskQueue | None = None

    # -- wiring ------------------------------------------------------------------------------
    def bind(self, project: Any) -> "HumanWorkforce":
        """Use ``project``'s store (called by the project, or by hand). Returns self."""
        n_items = getattr(getattr(project, "pool", None), "n_items", None)
        if n_items is not None and self.n_items != n_items:
            raise ConfigError(f"has {self.n_items} entries for a pool of {n_items} items", field=self._content_name,
                              expected="one entry per pool item, in pool order")
        self.store = project.store
        self.queue_ = None
        return self

    @property
    def _content_name(self) -> str:
        return next(name for name in ("images", "texts", "files") if getattr(self, name) is not None)

    @property
    def n_items(self) -> int:
        """Items this workforce can show (one entry of ``images``, ``texts`` or ``files`` each)."""
        content = getattr(self, self._content_name)
        try:
            return len(content)
        except TypeError:
            raise ConfigError(f"has no length ({type(content).__name__})", field=self._content_name,
                              expected="one entry per pool item") from None

    def _queue(self) -> TaskQueue:
        if self.queue_ is None:
            if self.store is None:
                raise ConfigError("is not set", field="store",
                                  expected="HumanWorkforce(store=...) or workforce.bind(project)")
            self.queue_ = TaskQueue(self.store)
            self.queue_.configure(lease_seconds=self.lease_seconds, share_after=self.share_after,
                                  show_suggestions=self.show_suggestions)
        return self.queue_

    def issue_tokens(self, hiter_ids: Sequence[str] | None = None, *, admin: bool = False) -> dict[str, str]:
        """New sign-in tokens: ``{hiter id: token}`` (and ``{"admin": token}`` with ``admin=True``).

        Only hashes are stored: hand each token to its HITer now, it cannot be shown again.
        The HITers must be registered in the store (the project does it when it is created).
        """
        return issue_tokens(self._queue().store, [h.id for h in self.hiters] if hiter_ids is None else hiter_ids,
                            admin=admin)

    # -- content -------------------------------------------------------------------------------
    def content(self, item: int) -> tuple[str, str, bytes]:
        """(kind, mime, body) of pool item ``item``, as the page shows it."""
        i = int(item)
        if self.texts is not None:
            text = self.texts[i]
            if not isinstance(text, str):
                raise ValidationError(f"is {type(text).__name__}", item=i, field="texts", expected="str")
            return "text", "text/plain", text.encode("utf-8")
        if self.files is not None:
            return ("image", *read_image_file(self.files[i], item=i))
        img = np.asarray(self.images[i])
        if self.image_shape is not None:
            try:
                img = img.reshape(self.image_shape)
            except ValueError:
                raise ValidationError(f"has {img.size} values", item=i, field="images",
                                      expected=f"an image of shape {self.image_shape}") from None
        return "image", "image/png", png_bytes(to_uint8(img, self.image_range, item=i))

    def post(self, items: np.ndarray) -> int:
        """Make items showable to HITers (idempotent). Returns how many were new."""
        q = self._queue()
        items = np.unique(np.asarray(items, dtype=np.int64))
        todo = items[~q.posted(items)]
        if len(todo) == 0:
            return 0
        return q.post(todo, [self.content(i) for i in todo.tolist()])

    # -- the Workforce protocol ---------------------------------------------------------------
    def collect(self, items: np.ndarray, workers: np.ndarray, item_ids: np.ndarray | None = None) -> Iterator[Answers]:
        """Post the assignments' items, then yield answers as HITers submit them.

        Stops when every assignment of these items is answered; raises
        :class:`AnswersPending` (after yielding what came in) when ``timeout`` passes first.
        """
        items = np.asarray(items, dtype=np.int64)
        workers = np.asarray(workers, dtype=np.int64)
        if len(items) != len(workers):
            raise ValidationError("items and workers differ in length", field="assignments")
        if len(items) == 0:
            return
        q = self._queue()
        self.post(items)
        store = q.store
        wpos = store.worker_positions([h.id for h in self.hiters])
        back = np.full(int(wpos.max()) + 1, -1, dtype=np.int64)  # store position -> workforce position
        back[wpos] = np.arange(len(wpos))
        rounds = store.rounds_of(items, wpos[workers]) or [-1]
        wanted = np.unique(items)
        seen_rowid = 0
        start = time.monotonic()
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc="answers", unit="answer", disable=not self.progress, leave=False)
        try:
            while True:
                # One consistent view: an answer committed between reading the answers and
                # counting what is left would otherwise be counted as in but never yielded.
                with store.snapshot():
                    rows = store.answers_since(seen_rowid, rounds)
                    left = int(np.isin(store.pending_items(rounds), wanted).sum())
                if rows:
                    seen_rowid = rows[-1][0]
                    arr = np.array([r[1:] for r in rows], dtype=np.float64)
                    it, wk = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
                    mine = np.isin(it, wanted) & np.isin(wk, wpos)
                    if mine.any():
                        wf = back[wk[mine]]
                        bar.update(int(mine.sum()))
                        yield Answers(it[mine], wf, arr[mine, 2].astype(np.int64), arr[mine, 3])
                if left == 0:
                    return
                if self.timeout is not None and time.monotonic() - start >= self.timeout:
                    raise AnswersPending(
                        f"{left} answer(s) still out after {self.timeout:g} s; the round stays open: "
                        "call project.step() or project.run() again to go on waiting", field="answers")
                time.sleep(self.poll_interval)
        finally:
            bar.close()


def issue_tokens(store: Store | str | Path, hiter_ids: Sequence[str], *, admin: bool = False) -> dict[str, str]:
    """Sign-in tokens for registered HITers, ``{hiter id: token}`` (plus ``"admin"`` if asked).

    Examples
    --------
    >>> from hitl.store import Store
    >>> store = Store(":memory:")
    >>> store.add_workers([HITer("ann", "FR")])
    >>> tokens = issue_tokens(store, ["ann"], admin=True)
    >>> sorted(tokens), tokens["ann"].startswith("hitl_")
    (['admin', 'ann'], True)
    """
    q = TaskQueue(store)
    out = {h: q.issue_token(h) for h in hiter_ids}
    if admin:
        out["admin"] = q.issue_token(admin=True)
    return out


# -- images ----------------------------------------------------------------------------------
def to_uint8(img: np.ndarray, value_range: tuple[float, float] | None = None, item: Any = None) -> np.ndarray:
    """An image as ``uint8`` (grayscale ``(h, w)`` or colour ``(h, w, 3|4)``)."""
    img = np.asarray(img)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)) or min(img.shape[:2]) < 1:
        raise ValidationError(f"has shape {img.shape}", item=item, field="images",
                              expected="(h, w), (h, w, 3) or (h, w, 4); pass image_shape for flat rows")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype == np.uint8:
        return img
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    if not (np.issubdtype(img.dtype, np.number)):
        raise ValidationError(f"has dtype {img.dtype}", item=item, field="images", expected="numbers")
    f = img.astype(np.float64)
    if not np.isfinite(f).all():
        raise ValidationError("holds NaN or infinity", item=item, field="images", expected="finite pixel values")
    lo, hi = (float(f.min()), float(f.max())) if value_range is None else map(float, value_range)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.rint((f - lo) * scale), 0, 255).astype(np.uint8)


def png_bytes(img: np.ndarray) -> bytes:
    """Encode a ``uint8`` image as PNG (no filter, zlib), without any imaging library."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w = img.shape[:2]
    color = {2: 0, 3: {3: 2, 4: 6}.get(img.shape[-1])}[img.ndim]
    rows = img.reshape(h, -1)
    raw = np.hstack([np.zeros((h, 1), np.uint8), rows]).tobytes()  # filter byte 0 before each row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
          (b"GIF89a", "image/gif"))


def sniff_image(data: bytes) -> str | None:
    """The image type of ``data`` from its first bytes (PNG, JPEG, GIF, WebP), or None."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def read_image_file(path: str | Path, item: Any = None) -> tuple[str, bytes]:
    """(mime, bytes) of an image file, checked by its content, not its name."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataFormatError(f"is {size} bytes", item=item, field="files", expected=f"at most {MAX_FILE_BYTES} bytes")
        data = p.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"cannot be read ({exc.strerror})", item=item, field="files", expected="a readable image file") from None
    mime = sniff_image(data)
    if mime is None:
        raise DataFormatError(f"{p.name} is not a PNG, JPEG, GIF or WebP image", item=item, field="files")
    return mime, data
