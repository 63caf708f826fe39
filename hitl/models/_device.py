"""Shared plumbing of the torch-backed models: device choice, threads, precision, batching.

Everything here imports torch lazily so that ``import hitl.models`` works
without it; only code paths that really run a network pay for the import.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from ..errors import ConfigError, ValidationError


def require_torch() -> Any:
    """Import torch or say clearly how to get it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ConfigError(
            "needs PyTorch, which is not installed",
            field="torch",
            expected="`pip install 'hitl[torch]'`",
        ) from exc
    return torch


def resolve_device(device: Any = "auto") -> Any:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device`` into a device.

    ``"auto"`` picks CUDA when a GPU is visible, else the CPU.

    Examples
    --------
    >>> resolve_device("cpu").type
    'cpu'
    """
    torch = require_torch()
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"is {device!r}", field="device", expected='"auto", "cpu", "cuda" or "cuda:N"') from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"is {device!r} but no CUDA device is visible", field="device", expected='"auto" or "cpu"')
    return dev


@contextlib.contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Run the block with ``n_threads`` intra-op threads, then put the old setting back.

    On a small shared machine one thread is often faster than two, but the
    process-wide setting belongs to the user: it is changed for the call only.
    """
    if n_threads is None:
        yield
        return
    if not isinstance(n_threads, (int, np.integer)) or isinstance(n_threads, bool) or n_threads < 1:
        raise ConfigError(f"is {n_threads!r}", field="n_threads", expected="a positive integer or None")
    torch = require_torch()
    before = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast(device: Any, mode: Any = True) -> Any:
    """Mixed-precision context for ``mode``.

    ``True`` / ``"auto"``: autocast on CUDA (bfloat16 where the GPU has it, else
    float16), nothing on the CPU. ``"bf16"``: bfloat16 autocast on any device
    (worth it on CPUs with AVX-512 BF16 or AMX). ``False`` / ``None``: off.
    """
    torch = require_torch()
    if mode is None or mode is False:
        return contextlib.nullcontext()
    if mode == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if mode is True or mode == "auto":
        if device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=amp_dtype(device))
    raise ConfigError(f"is {mode!r}", field="mixed_precision", expected='True, False, "auto" or "bf16"')


def uses_fp16_scaling(device: Any, mode: Any) -> bool:
    """Whether ``mode`` runs float16 on ``device``, which needs gradient scaling."""
    torch = require_torch()
    return (mode is True or mode == "auto") and device.type == "cuda" and amp_dtype(device) == torch.float16


def amp_dtype(device: Any) -> Any:
    torch = require_torch()
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def to_device(array: np.ndarray, device: Any) -> Any:
    """Copy one host batch to ``device``; pinned and asynchronous when the device is a GPU."""
    torch = require_torch()
    t = torch.from_numpy(array)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


@contextlib.contextmanager
def seeded(random_state: Any, device: Any = None) -> Iterator[Any]:
    """Seed torch for the block only, leaving the caller's global RNG streams untouched.

    Yields a ``numpy.random.Generator`` drawn from the same seed for host-side
    shuffling, so one integer fixes a whole training run.
    """
    torch = require_torch()
    rng = np.random.default_rng(random_state)
    devices = [device] if device is not None and getattr(device, "type", "cpu") == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(rng.integers(0, 2**63 - 1)))
        yield rng


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def check_positive_int(value: Any, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"is {value!r}", field=field, expected=f"an integer >= {minimum}")
    return int(value)


def check_fraction(value: Any, field: str) -> float:
    if not isinstance(value, (int, float, np.floating)) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"is {value!r}", field=field, expected="a fraction in [0, 1)")
    return float(value)


def check_labels(y: Any, n_rows: int, n_classes: int | None) -> tuple[np.ndarray, int]:
    """Validate integer labels the way :class:`~hitl.models.SklearnModel` does; return ``(y, k)``."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValidationError(f"has shape {y.shape}", field="y", expected="a 1-d array of class indices")
    if len(y) == 0:
        raise ValidationError("is empty", field="y", expected="at least one labeled item")
    if len(y) != n_rows:
        raise ValidationError(f"has {len(y)} labels for {n_rows} rows", field="y", expected="one label per row of X")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValidationError(f"has dtype {y.dtype}", field="y", expected="integer class indices")
    if y.min() < 0:
        bad = int(np.argmin(y))
        raise ValidationError(f"is {int(y[bad])}", item=bad, field="y", expected="class indices >= 0")
    k = n_classes if n_classes is not None else int(y.max()) + 1
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"is {k!r}", field="n_classes", expected="a positive number of classes")
    if y.max() >= k:
        bad = int(np.argmax(y >= k))
        raise ValidationError(f"is {int(y[bad])}", item=bad, field="y", expected=f"class indices in [0, {k})")
    return y.astype(np.int64, copy=False), int(k)


def check_finite_batch(batch: np.ndarray, offset: int, field: str = "X") -> None:
    """Raise on the first non-finite row of a batch, naming its position in the whole input."""
    if batch.dtype.kind == "f" and not np.isfinite(batch).all():
        flat = batch.reshape(len(batch), -1)
        bad = int(np.argmax(~np.isfinite(flat).all(axis=1)))
        raise ValidationError("holds NaN or infinity", item=offset + bad, field=field, expected="finite features")


def split_holdout(
    y: np.ndarray, fraction: float, rng: np.random.Generator, min_size: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Random split ``(train_idx, holdout_idx)``, stratified so every class keeps a training row.

    Each class with at least two rows puts about ``fraction`` of them aside
    (at least one); a class with a single row stays wholly in training. Returns
    an empty holdout when fewer than ``min_size`` rows would be held out.
    """
    n = len(y)
    if fraction <= 0.0 or n < 2:
        return np.arange(n), np.empty(0, dtype=np.int64)
    perm = rng.permutation(n)
    ys = y[perm]
    order = np.argsort(ys, kind="stable")
    perm, ys = perm[order], ys[order]
    classes, starts, counts = np.unique(ys, return_index=True, return_counts=True)
    # Rank of each row inside its class (vectorised): position minus the class start.
    rank = np.arange(n) - np.repeat(starts, counts)
    n_hold = np.where(counts >= 2, np.maximum(1, np.round(fraction * counts)).astype(np.int64), 0)
    n_hold = np.minimum(n_hold, counts - 1)
    hold_mask = rank < np.repeat(n_hold, counts)
    holdout = np.sort(perm[hold_mask])
    if len(holdout) < min_size:
        return np.arange(n), np.empty(0, dtype=np.int64)
    return np.sort(perm[~hold_mask]), holdout


def n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


def take_rows(X: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array, sparse matrix, DataFrame/Series or list of texts."""
    idx = np.asarray(idx, dtype=np.int64)
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if hasattr(X, "shape") and hasattr(X, "__getitem__"):
        return X[idx]
    # A plain sequence (texts): one gather through an object array.
    arr = np.empty(len(X), dtype=object)
    arr[:] = list(X)
    return arr[idx].tolist()
