"""The fair-pay ledger: exact split per line, nobody below the floor after top-ups, pay fixed once priced."""

import datetime as dt
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitl import HITer, Store
from hitl.errors import ConfigError, StoreError, ValidationError
from hitl.impact import MICROS, Ledger, WageTable

COUNTRIES = ("TG", "KE", "FR", "GH", "ZZ")  # ZZ is not in the table: paid from the HITer's own record


def make_store(n_items=30, hiters=None, rounds=(), item_types=None, allowed=None, path=":memory:", finish=True):
    """A store with answers laid down directly: ``rounds`` is a list of (items, workers, seconds) per round."""
    store = Store(path)
    store.ensure_project(fingerprint="impact-test", classes=[0, 1], config={})
    types = item_types or ["default"] * n_items
    store.add_items([f"i{j}" for j in range(n_items)], types, allowed or [None] * n_items)
    hiters = hiters or [HITer("h0", "TG"), HITer("h1", "KE"), HITer("h2", "FR")]
    store.add_workers(hiters)
    for r, (items, workers, seconds) in enumerate(rounds):
        items, workers = np.asarray(items, np.int64), np.asarray(workers, np.int64)
        store.begin_round(r, items=items, workers=workers)
        store.add_answers(r, items, workers, np.zeros(len(items), np.int64), np.asarray(seconds, float))
        if finish or r < len(rounds) - 1:
            store.finish_round(r, {})
    return store


@st.composite
def projects(draw, max_rounds=4):
    n_workers = draw(st.integers(1, 5))
    hiters = [HITer(f"h{w}", draw(st.sampled_from(COUNTRIES)), hourly_min_wage=draw(st.sampled_from([0.3, 1.0, 7.25])),
                    currency="USD") for w in range(n_workers)]
    n_items = 40
    rounds = []
    used = set()
    for _ in range(draw(st.integers(1, max_rounds))):
        n = draw(st.integers(1, 12))
        pairs = [(draw(st.integers(0, n_items - 1)), draw(st.integers(0, n_workers - 1))) for _ in range(n)]
        pairs = [p for p in dict.fromkeys(pairs) if p not in used]
        used.update(pairs)
        if not pairs:
            continue
        # From careless clicks to a slow, careful read: some fall far below the floor.
        secs = [draw(st.floats(0.5, 400.0, allow_nan=False)) for _ in pairs]
        rounds.append(([p[0] for p in pairs], [p[1] for p in pairs], secs))
    types = [draw(st.sampled_from(["box", "text"])) for _ in range(n_items)]
    return dict(n_items=n_items, hiters=hiters, rounds=rounds, item_types=types)


def _exact_seconds(store):
    rows = store._db.execute("SELECT worker, round, seconds FROM answers").fetchall()
    return pd.DataFrame(rows, columns=["worker", "round", "seconds"])


def _check_floor(store, ledger, by="round"):
    """Exact: per HITer and period, pay >= floor multiple x wage x time (time taken as the float stored, exactly)."""
    wages = {w: Fraction(h) for w, h in store._db.execute("SELECT worker, hourly_settled FROM ledger_wages")}
    lines = ledger.lines()
    ans = _exact_seconds(store)
    periods = ans.groupby(["worker", by]) if by else ans.groupby("worker")
    paid = lines.assign(key=lines["round"]).groupby(["worker", "key"] if by else "worker")["hiter_micros"].sum()
    for key, g in periods:
        w = key[0] if isinstance(key, tuple) else key
        seconds = sum(Fraction(s) for s in g["seconds"])
        floor = ledger.floor_multiple * wages[w] * seconds / 3600 * MICROS
        got = int(paid.get(key, 0))
        assert got >= floor, (key, got, float(floor))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=projects())
def test_every_transaction_splits_exactly_and_nobody_ends_below_the_floor(spec):
    store = make_store(**spec)
    ledger = Ledger.from_store(store)
    lines = ledger.lines()
    # One task line per answer, each split summing exactly to its price.
    assert len(lines[lines["kind"] == "task"]) == store.n_answers()
    parts = lines[["hiter_micros", "platform_micros", "programme_micros"]].to_numpy()
    assert (parts.sum(axis=1) == lines["price_micros"].to_numpy()).all()
    assert (lines["hiter_micros"] >= lines["base_micros"]).all()
    assert (lines["price_micros"] * 3 <= lines["hiter_micros"] * 5 + 5).all()  # HITer gets 60%, to a unit
    _check_floor(store, ledger)
    # Settling again owes nothing more.
    assert ledger.settle() == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=projects(), payer=st.sampled_from(["client", "platform"]))
def test_project_period_with_either_payer(spec, payer):
    store = make_store(**spec)
    ledger = Ledger(store, period="project", topup_payer=payer)
    assert ledger.settle() == 0  # the project period is still open
    owed = int(ledger.pending()["short"].sum())
    topped = ledger.settle(final=True)
    n_top = len(ledger.lines().query("kind == 'topup'"))
    # The HITer's line of a billed top-up may carry one more unit than owed (largest remainder).
    assert owed <= topped <= owed + (n_top if payer == "client" else 0)
    lines = ledger.lines()
    parts = lines[["hiter_micros", "platform_micros", "programme_micros"]].to_numpy()
    assert (parts.sum(axis=1) == lines["price_micros"].to_numpy()).all()
    if payer == "platform":
        top = lines[lines["kind"] == "topup"]
        assert (top["price_micros"] == 0).all() and (top["platform_micros"] == -top["hiter_micros"]).all()
    _check_floor(store, ledger, by=None)


def test_a_slow_hiter_is_topped_up_and_a_fast_one_is_not():
    # Same task type, round 0 at the default 10 s rate; h0 takes 60 s a task, h1 takes 5 s.
    store = make_store(rounds=[([0, 1, 2, 3], [0, 0, 1, 1], [60.0, 60.0, 5.0, 5.0])])
    ledger = Ledger.from_store(store)
    t = ledger.totals()
    assert t["topup_lines"] == 1
    per = ledger.hiters().set_index("hiter")
    assert per.loc["h0", "topup_micros"] > 0 and per.loc["h1", "topup_micros"] == 0
    assert per.loc["h0", "multiple_before_topups"] == pytest.approx(3 * 10 / 60, rel=1e-3)
    assert per.loc["h0", "multiple"] == pytest.approx(2.0, rel=1e-3)
    assert per.loc["h1", "multiple"] == pytest.approx(3 * 10 / 5, rel=1e-3)
    # The rate is a piece rate: each task pays 10 s x wage x 3, whatever the time taken.
    wage_tg = WageTable.example().hourly_in("TG", "USD")
    task = ledger.lines().query("kind == 'task' and hiter == 'h0'")["base_micros"]
    assert (task == -(-(wage_tg * 3 * 10 * MICROS / 3600).numerator // (wage_tg * 3 * 10 * MICROS / 3600).denominator)).all()


def test_posted_rate_is_the_median_of_earlier_rounds_per_task_type():
    types = ["box"] * 20 + ["text"] * 20
    r0 = (list(range(0, 6)) + list(range(20, 22)), [0] * 8, [4, 6, 8, 10, 12, 100, 30, 30])
    r1 = ([6, 7, 22], [0, 0, 0], [5, 5, 5])
    store = make_store(n_items=40, rounds=[r0, r1], item_types=types)
    ledger = Ledger.from_store(store, min_measurements=5)
    rates = ledger.rates().set_index(["round", "item_type"])["seconds"]
    assert rates[(0, "box")] == 10.0 and rates[(0, "text")] == 10.0  # no measurements yet: the default
    assert rates[(1, "box")] == 9.0  # median of 4, 6, 8, 10, 12, 100
    assert rates[(1, "text")] == 10.0  # only 2 measurements < 5: still the default
    assert ledger.rates()["measurements"].tolist() == [0, 0, 6, 0]


def test_pay_is_fixed_when_first_priced():
    store = make_store(rounds=[([0, 1], [0, 1], [9.0, 9.0])], finish=False)
    ledger = Ledger(store)
    store.add_workers([HITer("late", "TG")])
    store._db.execute("INSERT INTO assignments (item, worker, round, kind, created_at) VALUES (5, 3, 0, 'label', 0)")
    quoted = ledger.price(0, [5], [3])
    # Many slow answers later, the same (item, HITer) is priced again: same pay.
    assert (ledger.price(3, [5, 5], [3, 3]) == quoted).all()
    pay, price = ledger.quote(0, [5], [3])
    assert pay[0] == quoted[0] and price[0] * 3 >= pay[0] * 5
    # Looking without recording writes nothing, and recording later gives the same amounts.
    n_lines = store._db.execute("SELECT COUNT(*) FROM ledger_lines").fetchone()[0]
    look = ledger.quote(0, [6, 7], [3, 3], record=False)
    assert store._db.execute("SELECT COUNT(*) FROM ledger_lines").fetchone()[0] == n_lines
    assert all((a == b).all() for a, b in zip(look, ledger.quote(0, [6, 7], [3, 3])))
    assert store._db.execute("SELECT COUNT(*) FROM ledger_lines").fetchone()[0] == n_lines + 2
    # A quote counts in the spend as soon as it is assigned, but not in the totals until answered.
    before = ledger.totals()["task_lines"]
    ledger.sync()
    assert ledger.totals()["task_lines"] == before + 2
    assigned = set(store._db.execute("SELECT item, worker FROM assignments").fetchall())
    quotes = ledger.lines(quotes=True)
    on_assigned = [(i, w) in assigned for i, w in zip(quotes["item"], quotes["worker"])]
    assert not all(on_assigned)  # the looked-at then recorded quotes for items 6 and 7 were never assigned
    assert ledger.spent_micros() == quotes.loc[on_assigned, "price_micros"].sum()
    store.add_answers(0, np.array([5]), np.array([3]), np.array([1]), np.array([300.0]))
    assert ledger.totals()["task_lines"] == before + 3
    assert ledger.lines().query("hiter == 'late'")["hiter_micros"].iloc[0] == quoted[0]


def test_settle_only_closes_done_rounds_and_adds_only_what_is_owed():
    store = make_store(rounds=[([0], [0], [120.0]), ([1], [0], [120.0])], finish=False)
    ledger = Ledger(store)
    first = ledger.settle()
    assert first > 0 and len(ledger.pending()) == 1  # round 1 is still open
    store.finish_round(1, {})
    second = ledger.settle()
    assert second > 0 and ledger.settle() == 0
    top = ledger.lines().query("kind == 'topup'")
    assert top["period"].tolist() == ["round-0", "round-1"] and top["round"].tolist() == [0, 1]


def test_calendar_periods_close_when_they_end():
    store = make_store(rounds=[([0], [0], [120.0])])
    ledger = Ledger(store, period="week")
    assert ledger.settle() == 0
    assert ledger.settle(now=dt.datetime(2100, 1, 1).timestamp()) > 0
    assert ledger.lines().query("kind == 'topup'")["period"].str.contains("/").all()


def test_settings_are_recorded_and_checked(tmp_path):
    path = tmp_path / "p.db"
    make_store(rounds=[([0], [0], [10.0])], path=str(path)).close()
    Ledger(str(path), fair_multiple=4, split=(70, 25, 5))
    again = Ledger(str(path))
    assert again.fair_multiple == 4 and again.split.hiter == Fraction(7, 10)
    assert again.settings()["split"] == {"hiter": "70", "platform": "25", "programme": "5"}
    with pytest.raises(ConfigError) as err:
        Ledger(str(path), fair_multiple=3)
    assert err.value.field == "fair_multiple"
    with pytest.raises(StoreError):
        Ledger(str(tmp_path / "none.db"))
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("kwargs, field", [
    (dict(fair_multiple=1, floor_multiple=2), "fair_multiple"),
    (dict(fair_multiple=5), "fair_multiple"),
    (dict(floor_multiple=0, fair_multiple=1), "floor_multiple"),
    (dict(split=(50, 50, 1)), "split"),
    (dict(period="fortnight"), "period"),
    (dict(topup_payer="nobody"), "topup_payer"),
    (dict(currency="dollars"), "currency"),
    (dict(default_seconds=0), "default_seconds"),
])
def test_bad_settings(kwargs, field):
    with pytest.raises(ConfigError) as err:
        Ledger(make_store(), **kwargs)
    assert err.value.field == field


def test_bad_positions():
    store = make_store()
    ledger = Ledger(store)
    with pytest.raises(ValidationError) as err:
        ledger.price(0, [99], [0])
    assert (err.value.field, err.value.item) == ("items", 99)
    with pytest.raises(ValidationError) as err:
        ledger.price(0, [1], [7])
    assert err.value.field == "workers"
    with pytest.raises(ValidationError):
        ledger.price(0, [1, 2], [0])
    with pytest.raises(ValidationError):
        ledger.price(0, [0.5], [0])


def test_unknown_country_uses_the_record_and_needs_a_rate():
    store = make_store(hiters=[HITer("z", "ZZ", hourly_min_wage=2.0, currency="USD"),
                               HITer("y", "YY", hourly_min_wage=2.0, currency="ZAR")],
                       rounds=[([0, 1], [0, 1], [10.0, 10.0])])
    ledger = Ledger(store)
    pay = ledger.price(0, [0], [0])
    assert pay[0] == 2 * 3 * 10 * MICROS // 3600 + 1  # 2 USD/h x 3 x 10 s, rounded up
    assert "ZZ is not in the wage table" in ledger.wages_used()["source"].iloc[0]
    with pytest.raises(ConfigError, match="ZAR"):
        ledger.price(0, [1], [1])
    # With its own rate in a user table, it is paid.
    table = pd.concat([WageTable.example().to_frame(), pd.DataFrame([{
        "country": "ZA", "currency": "ZAR", "hourly_wage": "28.79", "source": "National Minimum Wage, 2025",
        "date": "2025-03-01", "units_per_usd": "18"}])])
    other = make_store(hiters=[HITer("y", "YY", hourly_min_wage=18.0, currency="ZAR")], rounds=[([0], [0], [10.0])])
    assert Ledger(other, WageTable(table)).price(0, [0], [0])[0] == 3 * 10 * MICROS // 3600 + 1  # 18 ZAR = 1 USD/h


def test_settlement_currency_other_than_usd():
    store = make_store(hiters=[HITer("f", "FR")], rounds=[([0], [0], [10.0])])
    ledger = Ledger.from_store(store, currency="EUR")
    # 11.88 EUR/h x 3 x 10 s = 0.099 EUR exactly; the exchange rate cancels out.
    assert ledger.lines()["base_micros"].tolist() == [99_000]
    assert ledger.lines()["currency"].tolist() == ["EUR"]


def test_sync_prices_imported_answers_once():
    store = make_store(rounds=[([0, 1, 2], [0, 1, 2], [8.0, 9.0, 10.0])])
    ledger = Ledger(store)
    assert ledger.sync() == 3 and ledger.sync() == 0
    before = ledger.lines()[["item", "worker", "hiter_micros"]]
    ledger2 = Ledger.from_store(store)
    pd.testing.assert_frame_equal(ledger2.lines()[["item", "worker", "hiter_micros"]], before)


def test_a_long_lived_ledger_settles_round_by_round_like_a_fresh_one():
    store = make_store(rounds=[([0, 1], [0, 1], [50.0, 5.0])], finish=False)
    ledger = Ledger(store)
    assert ledger.settle() == 0  # round 0 still open
    store.finish_round(0, {})
    first = ledger.settle()
    assert first > 0
    store.begin_round(1, items=np.array([2, 3]), workers=np.array([0, 2]))
    store.add_answers(1, np.array([2, 3]), np.array([0, 2]), np.zeros(2, np.int64), np.array([8.0, 90.0]))
    store.finish_round(1, {})
    # A late answer lands in round 0, already settled: its HITer is topped up again for that round.
    store._db.execute("INSERT INTO assignments (item, worker, round, kind, created_at) VALUES (4, 0, 0, 'label', 0)")
    store.add_answers(0, np.array([4]), np.array([0]), np.zeros(1, np.int64), np.array([200.0]))
    assert ledger.settle() > 0
    top = ledger.lines().query("kind == 'topup'")
    assert ((top["period"] == "round-0") & (top["worker"] == 0)).sum() == 2
    _check_floor(store, ledger)
    # A fresh ledger, looking at everything, finds nothing left owed.
    assert Ledger(store).settle() == 0
