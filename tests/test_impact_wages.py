"""The minimum-wage table: every shipped figure names its source and date; bad tables fail clearly."""

import csv
from fractions import Fraction
from importlib import resources

import pandas as pd
import pytest

from hitl.errors import ConfigError, DataFormatError
from hitl.impact import WageTable


def test_shipped_table_names_a_source_and_a_date_for_every_row():
    path = resources.files("hitl").joinpath("data/minimum_wages.csv")
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {"TG", "MG", "CM", "KE", "UG", "GH", "IN", "FR"} <= {r["country"] for r in rows}
    for r in rows:
        assert len(r["source"]) > 20, r  # a name, not a placeholder
        assert r["date"][:2] in ("19", "20"), r
        assert r["units_per_usd"], r
        # Figures derived or unsure say so.
        if r["country"] != "FR":
            assert "pprox" in r["notes"] or "/ 8 h" in r["notes"], r
    table = WageTable.example()
    assert len(table) == len(rows)
    for r in table.rows:
        assert r.hourly_wage > 0 and r.units_per_usd > 0


def test_conversion_is_exact_and_goes_through_usd():
    table = WageTable.example()
    tg = table.lookup("TG")
    assert tg.currency == "XOF"
    assert table.hourly_in("TG", "USD") == Fraction(tg.hourly_wage) / Fraction(tg.units_per_usd)
    fr_in_xof = table.hourly_in("FR", "XOF")
    assert fr_in_xof == Fraction("11.88") / Fraction("0.88") * 577
    assert table.convert(Fraction(5), "USD", "USD") == 5
    with pytest.raises(ConfigError, match="exchange rate for ZAR"):
        table.convert(Fraction(1), "ZAR", "USD")


def test_history_picks_the_row_in_force():
    table = WageTable(pd.DataFrame([
        {"country": "FR", "currency": "EUR", "hourly_wage": "11.65", "source": "decree 2023", "date": "2024-01-01"},
        {"country": "FR", "currency": "EUR", "hourly_wage": "11.88", "source": "decree 2024", "date": "2024-11-01"},
    ]))
    import datetime as dt

    assert str(table.lookup("FR").hourly_wage) == "11.88"
    assert str(table.lookup("FR", dt.date(2024, 6, 1)).hourly_wage) == "11.65"
    assert str(table.lookup("FR", dt.date(2020, 1, 1)).hourly_wage) == "11.65"  # older than every row: the oldest
    assert table.lookup("DE") is None


@pytest.mark.parametrize("row, field", [
    ({"country": "TG", "currency": "XOF", "hourly_wage": "302.88", "source": "", "date": "2023"}, "source"),
    ({"country": "TG", "currency": "XOF", "hourly_wage": "302.88", "source": "decree", "date": ""}, "date"),
    ({"country": "TG", "currency": "XOF", "hourly_wage": "302.88", "source": "decree", "date": "Jan 2023"}, "date"),
    ({"country": "TG", "currency": "XOF", "hourly_wage": "302.88", "source": "decree", "date": "2023-02-30"}, "date"),
    ({"country": "TG", "currency": "XOF", "hourly_wage": "-1", "source": "decree", "date": "2023"}, "hourly_wage"),
    ({"country": "TG", "currency": "XOF", "hourly_wage": "lots", "source": "decree", "date": "2023"}, "hourly_wage"),
    ({"country": "Togo", "currency": "XOF", "hourly_wage": "3", "source": "decree", "date": "2023"}, "country"),
    ({"country": "TG", "currency": "CFA", "hourly_wage": "3", "source": "decree", "date": "2023", "units_per_usd": "0"},
     "units_per_usd"),
])
def test_bad_rows_name_the_row_and_field(row, field):
    with pytest.raises(DataFormatError) as err:
        WageTable([row])
    assert err.value.field == field
    assert err.value.item == "row 0"


def test_bad_csv_files(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        WageTable(tmp_path / "missing.csv")
    p = tmp_path / "w.csv"
    p.write_text("country,currency,hourly_wage,date\nTG,XOF,3,2023\n")
    with pytest.raises(DataFormatError) as err:
        WageTable(p)
    assert err.value.field == "source"
    p.write_text("country,currency,hourly_wage,source,date\nTG,XOF,3,a,2023\nKE,KES,70,b,\n")
    with pytest.raises(DataFormatError) as err:
        WageTable(p)
    assert (err.value.item, err.value.field) == ("row 3", "date")  # line 3 of the file
    p.write_text("country,currency,hourly_wage,source,date\nTG,XOF,3,a,2023\nTG,XOF,4,b,2023\n")
    with pytest.raises(DataFormatError, match="repeats"):
        WageTable(p)
