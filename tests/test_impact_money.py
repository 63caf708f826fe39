"""Exact money: the revenue split always sums to the price, and the HITer's line always covers the pay."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitl.errors import ConfigError
from hitl.impact import Split, format_money
from hitl.impact._money import to_fraction

# Splits with shares in hundredths of a percent, summing to exactly 100%.
splits = st.tuples(st.integers(1, 10_000), st.integers(0, 10_000)).filter(lambda t: t[0] + t[1] <= 10_000).map(
    lambda t: Split.parse((Fraction(t[0], 100), Fraction(t[1], 100), Fraction(10_000 - t[0] - t[1], 100))))


@settings(max_examples=300, deadline=None)
@given(split=splits, base=st.lists(st.integers(0, 10**9), min_size=1, max_size=50))
def test_split_lines_sum_to_the_price_and_cover_the_pay(split, base):
    base = np.array(base, dtype=np.int64)
    price = split.price_for(base)
    lines = split.allocate(price)
    assert lines.dtype == np.int64
    assert (lines.sum(axis=1) == price).all()
    assert (lines >= 0).all()
    assert (lines[:, 0] >= base).all()
    # The price is the smallest that covers the pay: one unit less and the HITer's exact share falls short.
    smaller = price[base > 0] - 1
    assert all(Fraction(int(p)) * split.hiter < int(b) for p, b in zip(smaller, base[base > 0]))
    # Each party's line is its exact share, rounded down or up (largest remainder moves at most one unit).
    for j, share in enumerate(split.shares):
        exact = [Fraction(int(p)) * share for p in price]
        assert all(e - 1 < line <= e + 1 for e, line in zip(exact, lines[:, j]))


def test_default_split_is_60_35_5_exactly():
    s = Split.parse((60, 35, 5))
    assert s.shares == (Fraction(3, 5), Fraction(7, 20), Fraction(1, 20))
    price = np.array([100, 12, 1, 7, 0])
    lines = s.allocate(price)
    assert lines.tolist() == [[60, 35, 5], [7, 4, 1], [1, 0, 0], [4, 3, 0], [0, 0, 0]]
    assert Split.parse((0.6, 0.35, 0.05)) == s == Split.parse("60/35/5") == Split.parse(
        {"hiter": 60, "platform": 35, "programme": 5})


@pytest.mark.parametrize("bad", [(60, 35, 4), (0.6, 0.35, 0.06), (0, 95, 5), (60, 45, -5), (60, 40), {"hiter": 100},
                                 "sixty/35/5"])
def test_a_split_that_is_not_exactly_100_percent_is_refused(bad):
    with pytest.raises(ConfigError) as err:
        Split.parse(bad)
    assert err.value.field == "split"


def test_exact_fractions_and_display():
    assert to_fraction(0.35) == Fraction(7, 20)
    assert to_fraction("302.88") == Fraction(30288, 100)
    assert format_money(1_234_567, "USD") == "1.23 USD"
    assert format_money(4_375, "USD", 4) == "0.0044 USD"
    with pytest.raises(ConfigError):
        to_fraction(float("nan"))
