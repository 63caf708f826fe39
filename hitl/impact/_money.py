"""Exact money: integer micro-units, exact fractions, and the revenue split.

Every amount the ledger writes is an integer number of *micros* (millionths of the
settlement currency's unit: 1 USD = 1,000,000 micros). A 10-second task paid at three
times a minimum wage of 0.50 USD an hour is worth 0.4 US cents, so whole cents would
round the fair-pay multiple by up to 2x; micros keep it within 0.1%. Ratios (wages,
exchange rates, shares, multiples) are :class:`fractions.Fraction`, so no floating
point ever enters an amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError

MICROS = 1_000_000
PARTIES = ("hiter", "platform", "programme")
# Who receives a leftover micro first when remainders tie: the HITer, then the programme.
_TIE_PRIORITY = {"hiter": 0, "programme": 1, "platform": 2}


def to_fraction(value: Any, *, field: str = "amount") -> Fraction:
    """An exact fraction from an int, a decimal string, a Decimal, a Fraction or a float.

    A float is read through its shortest decimal form, so ``0.35`` is 7/20, not the
    binary number nearest to it.

    Examples
    --------
    >>> to_fraction(0.35), to_fraction("11.88"), to_fraction("1/3")
    (Fraction(7, 20), Fraction(297, 25), Fraction(1, 3))
    """
    if isinstance(value, Fraction):
        return value
    if isinstance(value, bool):
        raise ConfigError(f"is {value!r}", field=field, expected="a number")
    if isinstance(value, (int, np.integer)):
        return Fraction(int(value))
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise ConfigError(f"is {value!r}", field=field, expected="a finite number")
        return Fraction(Decimal(repr(float(value))))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ConfigError(f"is {value!r}", field=field, expected="a finite number")
        return Fraction(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return Fraction(Decimal(text)) if "/" not in text else Fraction(text)
        except (InvalidOperation, ValueError, ZeroDivisionError):
            raise ConfigError(f"is {value!r}", field=field, expected="a decimal number such as '11.88'") from None
    raise ConfigError(f"is a {type(value).__name__}", field=field, expected="a number")


def ceil_div(num: int, den: int) -> int:
    """``ceil(num / den)`` on Python integers (exact for any size)."""
    return -((-num) // den)


def ceil_fraction(x: Fraction) -> int:
    return ceil_div(x.numerator, x.denominator)


def format_money(micros: int, currency: str, decimals: int = 2) -> str:
    """``1234567`` micros -> ``'1.23 USD'`` (rounded half-even for display only).

    Examples
    --------
    >>> format_money(1_234_567, "USD"), format_money(4_375, "USD", 4)
    ('1.23 USD', '0.0044 USD')
    """
    value = (Decimal(int(micros)) / MICROS).quantize(Decimal(1).scaleb(-decimals))
    return f"{value:,} {currency}"


def micros_to_str(micros: int) -> str:
    """Exact decimal text of an amount: ``1234567`` -> ``'1.234567'``."""
    return str(Decimal(int(micros)).scaleb(-6))


@dataclass(frozen=True)
class Split:
    """How a client's price is shared: HITer, platform, support programme.

    Shares are exact fractions that sum to one. ``Split.parse`` accepts percentages
    ``(60, 35, 5)``, fractions ``(0.6, 0.35, 0.05)``, a mapping with the keys
    ``hiter``, ``platform``, ``programme``, or the text ``"60/35/5"``.

    Examples
    --------
    >>> s = Split.parse((60, 35, 5))
    >>> s.price_for(np.array([7]))            # the smallest price whose 60% covers 7
    array([12])
    >>> s.allocate(np.array([12])).tolist()   # 7.2 / 4.2 / 0.6: the leftover unit goes to the largest remainder
    [[7, 4, 1]]
    """

    hiter: Fraction
    platform: Fraction
    programme: Fraction

    @classmethod
    def parse(cls, spec: Any) -> "Split":
        if isinstance(spec, Split):
            return spec
        if isinstance(spec, str):
            spec = [p for p in spec.replace(",", "/").split("/") if p.strip()]
        if isinstance(spec, Mapping):
            unknown = set(spec) - set(PARTIES)
            if unknown or len(spec) != 3:
                raise ConfigError(f"has keys {sorted(spec)}", field="split", expected=f"exactly the keys {PARTIES}")
            values = [spec[p] for p in PARTIES]
        else:
            values = list(spec)
            if len(values) != 3:
                raise ConfigError(f"has {len(values)} shares", field="split", expected="three shares: HITer, platform, programme")
        shares = [to_fraction(v, field="split") for v in values]
        if any(s < 0 for s in shares):
            raise ConfigError(f"is {values}", field="split", expected="shares >= 0")
        total = sum(shares)
        if total == 100:
            shares = [s / 100 for s in shares]
        elif total != 1:
            raise ConfigError(f"sums to {float(total):g}", field="split", expected="shares summing to exactly 100 (percent) or 1")
        if shares[0] == 0:
            raise ConfigError("gives the HITer nothing", field="split", expected="a positive HITer share")
        den = np.lcm.reduce([s.denominator for s in shares])
        if den > 10**6:
            raise ConfigError(f"needs a denominator of {den}", field="split",
                              expected="shares with at most four decimals of a percent")
        return cls(*shares)

    @property
    def shares(self) -> tuple[Fraction, Fraction, Fraction]:
        return (self.hiter, self.platform, self.programme)

    def as_percent(self) -> dict[str, str]:
        return {p: _fraction_text(s * 100) for p, s in zip(PARTIES, self.shares)}

    def price_for(self, base: np.ndarray) -> np.ndarray:
        """The smallest integer price whose HITer share is at least ``base`` (vectorised, exact)."""
        base = np.asarray(base, dtype=np.int64)
        num, den = self.hiter.numerator, self.hiter.denominator
        _check_range(base, den, "price_for")
        return -((-base * den) // num)

    def allocate(self, price: np.ndarray) -> np.ndarray:
        """Split integer prices into (n, 3) integer lines that sum to each price exactly.

        Largest-remainder (Hamilton) apportionment: each party gets the floor of its
        exact share, and the one or two units left over go to the largest remainders,
        ties to the HITer first, then the programme.
        """
        price = np.asarray(price, dtype=np.int64)
        den = int(np.lcm.reduce([s.denominator for s in self.shares]))
        nums = np.array([int(s * den) for s in self.shares], dtype=np.int64)
        _check_range(price, den, "allocate")
        exact = price[:, None] * nums[None, :]
        lines = exact // den
        rem = exact % den
        left = price - lines.sum(axis=1)
        prio = np.array([2 - _TIE_PRIORITY[p] for p in PARTIES], dtype=np.int64)
        key = rem * 3 + prio[None, :]
        # rank 0 = largest key; the first `left` ranks get one more unit
        rank = np.argsort(np.argsort(-key, axis=1, kind="stable"), axis=1, kind="stable")
        lines += (rank < left[:, None]).astype(np.int64)
        return lines


def _check_range(values: np.ndarray, factor: int, what: str) -> None:
    if len(values) and (int(np.abs(values).max()) * int(factor) >= 2**62):
        raise ConfigError(f"amount too large for exact {what}", field="amount", expected="amounts below 10^12 units")


def _fraction_text(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    d = Decimal(x.numerator) / Decimal(x.denominator)
    return format(d.normalize(), "f") if Fraction(d) == x else f"{x.numerator}/{x.denominator}"
