"""Local minimum wages: a user-supplied table, every figure with its source and date.

The table is a CSV (or DataFrame, or list of dicts) with the columns

``country``
    ISO 3166 alpha-2 code.
``currency``
    ISO 4217 code of the wage.
``hourly_wage``
    Legal (or reference) minimum wage per hour, as a decimal string.
``source``
    Where the figure comes from (decree, gazette, government page), by name.
``date``
    When the figure took effect: ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY``.
``units_per_usd`` (optional)
    Units of ``currency`` for one US dollar, to settle in one currency.
``fx_date``, ``notes`` (optional)

A country may have several rows (its history); a look-up takes the newest row in
force on the date asked. The table shipped with the package
(``hitl/data/minimum_wages.csv``, :meth:`WageTable.example`) is an example whose
rows say where each figure comes from and which ones are approximate; supply your
own for real payments.
"""

from __future__ import annotations

import csv
import datetime as _dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..errors import ConfigError, DataFormatError

REQUIRED = ("country", "currency", "hourly_wage", "source", "date")
OPTIONAL = ("units_per_usd", "fx_date", "notes")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


@dataclass(frozen=True)
class Wage:
    """One row of a :class:`WageTable`."""

    country: str
    currency: str
    hourly_wage: Decimal
    source: str
    date: str
    units_per_usd: Decimal | None = None
    fx_date: str = ""
    notes: str = ""

    @property
    def effective(self) -> _dt.date:
        """First day the figure is in force (``2024`` reads as 2024-01-01)."""
        return _parse_date(self.date)


class WageTable:
    """Hourly minimum wages by country, with their sources, and exchange rates to settle in.

    Parameters
    ----------
    rows : path to a CSV, DataFrame, or iterable of mappings
        See the module docstring for the columns. Every row needs a source and a date.

    Examples
    --------
    >>> table = WageTable([{"country": "TG", "currency": "XOF", "hourly_wage": "302.88",
    ...                     "source": "SMIG decree", "date": "2023-01-01", "units_per_usd": "577"}])
    >>> table.lookup("TG").hourly_wage
    Decimal('302.88')
    >>> table.hourly_in("TG", "USD")   # 302.88 / 577 USD an hour, exactly
    Fraction(7572, 14425)
    """

    def __init__(self, rows: str | Path | pd.DataFrame | Iterable[Mapping[str, Any]]) -> None:
        self.path: str | None = None
        if isinstance(rows, (str, Path)):
            self.path = str(rows)
            records = _read_csv(Path(rows))
        elif isinstance(rows, pd.DataFrame):
            records = rows.astype(object).where(rows.notna(), None).to_dict("records")
        else:
            records = [dict(r) for r in rows]
        self.rows: list[Wage] = [_parse_row(r, n) for n, r in enumerate(records, start=2 if self.path else 0)]
        if not self.rows:
            raise DataFormatError("has no rows", item=self.path, field="wages", expected="at least one country")
        by_key: dict[tuple[str, str], int] = {}
        for n, w in enumerate(self.rows):
            key = (w.country, w.date)
            if key in by_key:
                raise DataFormatError(f"repeats country {w.country} for date {w.date}", item=f"row {n}", field="date",
                                      expected="one figure per country and date")
            by_key[key] = n
        self._rates = self._collect_rates()

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_csv(cls, path: str | Path) -> "WageTable":
        return cls(path)

    @classmethod
    def example(cls) -> "WageTable":
        """The example table shipped with ``hitl`` (approximate rows say so in ``notes``)."""
        ref = resources.files("hitl").joinpath("data/minimum_wages.csv")
        with resources.as_file(ref) as path:
            table = cls(path)
        table.path = "hitl/data/minimum_wages.csv"
        return table

    @classmethod
    def coerce(cls, wages: "WageTable | str | Path | pd.DataFrame | Iterable | None") -> "WageTable":
        """``None`` -> the example table; a path, frame or rows -> a table."""
        if wages is None:
            return cls.example()
        if isinstance(wages, WageTable):
            return wages
        return cls(wages)

    # -- look-ups --------------------------------------------------------------------
    def countries(self) -> list[str]:
        return sorted({w.country for w in self.rows})

    def lookup(self, country: str, on: _dt.date | None = None) -> Wage | None:
        """The newest row for ``country`` in force on ``on`` (default: the newest row); None if unknown."""
        rows = [w for w in self.rows if w.country == country]
        if not rows:
            return None
        if on is not None:
            in_force = [w for w in rows if w.effective <= on]
            if not in_force:  # a date older than every figure still gets the oldest one
                return min(rows, key=lambda w: w.effective)
            rows = in_force
        return max(rows, key=lambda w: w.effective)

    def units_per_usd(self, currency: str) -> Fraction | None:
        """Units of ``currency`` for one USD (exact), or None when the table has no rate for it."""
        if currency == "USD":
            return Fraction(1)
        return self._rates.get(currency)

    def convert(self, amount: Fraction, currency: str, to: str, *, item: Any = None) -> Fraction:
        """Convert an exact amount between currencies through the table's USD rates."""
        if currency == to:
            return Fraction(amount)
        src, dst = self.units_per_usd(currency), self.units_per_usd(to)
        for cur, rate in ((currency, src), (to, dst)):
            if rate is None:
                raise ConfigError(f"has no exchange rate for {cur}", item=item, field="units_per_usd",
                                  expected=f"a units_per_usd value for {cur} in the wage table")
        return Fraction(amount) / src * dst

    def hourly_in(self, country: str, currency: str, on: _dt.date | None = None) -> Fraction | None:
        """The hourly minimum wage of ``country`` in ``currency`` (exact), or None if the country is unknown."""
        w = self.lookup(country, on)
        if w is None:
            return None
        return self.convert(Fraction(w.hourly_wage), w.currency, currency, item=country)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{**w.__dict__, "hourly_wage": str(w.hourly_wage),
                              "units_per_usd": None if w.units_per_usd is None else str(w.units_per_usd)} for w in self.rows])

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"WageTable({len(self.rows)} rows, countries={self.countries()})"

    # -- internals -------------------------------------------------------------------
    def _collect_rates(self) -> dict[str, Fraction]:
        rates: dict[str, tuple[_dt.date, Fraction]] = {}
        for w in self.rows:
            if w.units_per_usd is None:
                continue
            when = _parse_date(w.fx_date) if w.fx_date else w.effective
            if w.currency not in rates or when >= rates[w.currency][0]:
                rates[w.currency] = (when, Fraction(w.units_per_usd))
        return {c: r for c, (_, r) in rates.items()}


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataFormatError("does not exist", item=str(path), field="wages", expected="a CSV file of minimum wages")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFormatError(f"has no column {missing[0]!r}", item=str(path), field=missing[0],
                                  expected=f"the columns {', '.join(REQUIRED)}")
        return list(reader)


def _text(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    return "" if value is None else str(value).strip()


def _parse_row(record: Mapping[str, Any], n: int) -> Wage:
    where = f"row {n}"
    for key in REQUIRED:
        if not _text(record, key):
            raise DataFormatError("is empty", item=where, field=key,
                                  expected="a value (every figure needs its country, currency, amount, source and date)")
    country, currency = _text(record, "country").upper(), _text(record, "currency").upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise DataFormatError(f"is {country!r}", item=where, field="country", expected="an ISO 3166 alpha-2 code")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise DataFormatError(f"is {currency!r}", item=where, field="currency", expected="an ISO 4217 code such as 'XOF'")
    wage = _decimal(record, "hourly_wage", where)
    date = _text(record, "date")
    if not _DATE.match(date):
        raise DataFormatError(f"is {date!r}", item=where, field="date", expected="YYYY-MM-DD, YYYY-MM or YYYY")
    _parse_date(date, where)
    rate = _decimal(record, "units_per_usd", where) if _text(record, "units_per_usd") else None
    fx_date = _text(record, "fx_date")
    if fx_date:
        if not _DATE.match(fx_date):
            raise DataFormatError(f"is {fx_date!r}", item=where, field="fx_date", expected="YYYY-MM-DD, YYYY-MM or YYYY")
        _parse_date(fx_date, where)
    return Wage(country, currency, wage, _text(record, "source"), date, rate, fx_date, _text(record, "notes"))


def _decimal(record: Mapping[str, Any], key: str, where: str) -> Decimal:
    raw = record.get(key)
    text = repr(float(raw)) if isinstance(raw, float) else _text(record, key).replace(",", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise DataFormatError(f"is {raw!r}", item=where, field=key, expected="a decimal number") from None
    if not value.is_finite() or value <= 0:
        raise DataFormatError(f"is {raw!r}", item=where, field=key, expected="a positive amount")
    return value


def _parse_date(text: str, where: str | None = None) -> _dt.date:
    parts = [int(p) for p in text.split("-")] + [1, 1]
    try:
        return _dt.date(parts[0], parts[1], parts[2])
    except ValueError:
        raise DataFormatError(f"is {text!r}", item=where, field="date", expected="a real calendar date") from None
