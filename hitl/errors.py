"""Typed errors of ``hitl``.

Every error a user can cause derives from :class:`HitlError`. Messages name the
item and the field at fault and say what was expected, so a bad row in a pool of
millions is found without a debugger.
"""

from __future__ import annotations

from typing import Any


class HitlError(Exception):
    """Base class of every error raised on purpose by ``hitl``.

    Parameters
    ----------
    message : str
        What went wrong, in words.
    item : object, optional
        The item (id or position) at fault, when there is one.
    field : str, optional
        The field or argument at fault.
    expected : str, optional
        What would have been accepted.

    Examples
    --------
    >>> from hitl.errors import ValidationError
    >>> str(ValidationError("is NaN", item="img-7", field="features", expected="finite floats"))
    "item 'img-7', field 'features': is NaN (expected finite floats)"
    """

    def __init__(
        self,
        message: str,
        *,
        item: Any = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.item = item
        self.field = field
        self.expected = expected
        self.reason = message
        where = []
        if item is not None:
            where.append(f"item {item!r}")
        if field is not None:
            where.append(f"field {field!r}")
        text = (", ".join(where) + ": " if where else "") + message
        if expected is not None:
            text += f" (expected {expected})"
        super().__init__(text)


class ValidationError(HitlError, ValueError):
    """An input has the wrong shape, type or value."""


class PoolError(ValidationError):
    """A :class:`hitl.Pool` was given inconsistent items, features or metadata."""


class DataFormatError(ValidationError):
    """A file (CSV, JSON, crowd answer set) is malformed."""


class ConfigError(ValidationError):
    """A setting or argument is out of range or contradicts another."""


class NotFittedError(HitlError, AttributeError):
    """A model or aggregator was used before ``fit``."""


class EmptyPoolError(ValidationError):
    """A selection or prediction was asked of an empty pool."""


class StoreError(HitlError):
    """The project store is unusable (wrong schema, another project's file, ...)."""


class ConflictingAnswerError(ValidationError):
    """The same HITer answered the same item twice with different labels."""


class RoutingError(HitlError):
    """A task cannot be routed as asked (no eligible HITer, broken constraint)."""


class AnswersPending(HitlError):
    """A round's answers did not all arrive in time; run again later to go on."""


class BudgetExhausted(HitlError):
    """The budget (answers or money) does not allow another human answer."""


__all__ = [
    "HitlError",
    "ValidationError",
    "PoolError",
    "DataFormatError",
    "ConfigError",
    "NotFittedError",
    "EmptyPoolError",
    "StoreError",
    "ConflictingAnswerError",
    "RoutingError",
    "BudgetExhausted",
    "AnswersPending",
]
