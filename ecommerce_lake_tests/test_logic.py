"""Business logic as plain functions on real Spark DataFrames (no Dagster), expectations written by hand."""

import datetime as dt
import hashlib
import hmac
import math
import re
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from ecommerce_lake.core.calendar import DEFAULT_FIRST_DAY
from ecommerce_lake.core.contract import LANDING_FILES
from ecommerce_lake.logic import counties, parsing
from ecommerce_lake.logic.frames import Held
from ecommerce_lake.logic.refined import pii

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "text, code",
    [
        ("Nairobi", 47), ("nairobi", 47), ("  NAIROBI  ", 47), ("Nairobi City", 47), ("Nairobi County", 47),
        ("Nairobi City County", 47), ("nairobi.", 47), ("Mombasa", 1), ("Taita Taveta", 6), ("Taita-Taveta", 6),
        ("taita  taveta", 6), ("Tharaka Nithi", 13), ("Tharaka-Nithi", 13), ("Elgeyo Marakwet", 28),
        ("Elgeyo-Marakwet", 28), ("Homa Bay", 43), ("Homa-Bay", 43), ("HomaBay", 43), ("Muranga", 21),
        ("Murang'a", 21), ("Murang’a County", 21), ("Trans Nzoia", 26), ("Trans-Nzoia", 26),
        ("Uasin Gishu", 27), ("County of Mombasa", 1),
        ("Eldoret", 27), ("Thika", 22), ("Ruiru", 22), ("Juja", 22), ("Kikuyu", 22), ("Limuru", 22),
        ("Malindi", 3), ("Watamu", 3), ("Kitale", 26), ("Nanyuki", 31), ("Naivasha", 32), ("Gilgil", 32),
        ("Molo", 32), ("Ukunda", 2), ("Diani", 2), ("Kitengela", 34), ("Ngong", 34), ("Ongata Rongai", 34),
        ("Athi River", 16), ("Mlolongo", 16), ("Voi", 6), ("Webuye", 39), ("Kimilili", 39),
        ("Atlantis", None), ("", None), ("N/A", None), ("Kampala", None),
    ],
)
def test_county_text_resolution(spark, text, code):
    df = spark.createDataFrame([(text,)], "county string")
    out = counties.resolve_county(df, "county", "c", spark).collect()[0]
    assert out["c_code"] == code


def test_every_reference_county_resolves_to_itself(spark):
    names = spark.createDataFrame([(c.name, c.code) for c in __import__("ecommerce_lake.core.reference",
                                                                         fromlist=["counties"]).counties()],
                                  "county string, expected int")
    out = counties.resolve_county(names, "county", "c", spark).collect()
    assert len(out) == 47 and all(r["c_code"] == r["expected"] for r in out)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2025-11-30T14:05:00+03:00", "2025-11-30T11:05:00"),
        ("2025-11-30T14:05:00", "2025-11-30T11:05:00"),        # no offset: Nairobi
        ("2025-11-30 14:05:00", "2025-11-30T11:05:00"),
        ("2025-11-30T11:05:00Z", "2025-11-30T11:05:00"),
        ("2025-11-30T14:05:00+0300", "2025-11-30T11:05:00"),
        ("2025-11-30T08:05:00-03:00", "2025-11-30T11:05:00"),
        ("2025-11-30T14:05", "2025-11-30T11:05:00"),
        ("2025-11-30T14:05:00.123456+03:00", "2025-11-30T11:05:00.123456"),
        ("  2025-11-30T14:05:00+03:00 ", "2025-11-30T11:05:00"),
        ("2025-02-30T10:00:00", None), ("yesterday", None), ("12/05/2024 10:00", None), ("2025-11-30", None),
        ("2025-11-30T25:00:00", None),
    ],
)
def test_timestamp_parsing(spark, text, expected):
    p = parsing.parse_timestamp(F.lit(text))
    row = spark.range(1).select(p.value.alias("v"), p.invalid.alias("bad")).collect()[0]
    if expected is None:
        assert row["v"] is None and row["bad"] is True
    else:
        assert row["v"] == dt.datetime.fromisoformat(expected) and row["bad"] is False


def test_nairobi_date_crosses_midnight(spark):
    ts = parsing.parse_timestamp(F.lit("2025-11-30T22:30:00Z")).value  # 01:30 on Dec 1st in Nairobi
    assert spark.range(1).select(parsing.nairobi_date(ts)).collect()[0][0] == dt.date(2025, 12, 1)


@pytest.mark.parametrize(
    "text, value, bad",
    [("1250", "1250.00", False), ("1250.5", "1250.50", False), ("-100.00", "-100.00", False), (" 7.25 ", "7.25", False),
     ("1,250.00", None, True), ("12.345", None, True), ("KES 300", None, True), ("", None, False), ("abc", None, True),
     ("99999999999999999999", None, True)],
)
def test_amount_parsing(spark, text, value, bad):
    p = parsing.parse_amount(F.lit(text))
    row = spark.range(1).select(p.value.cast("string").alias("v"), p.invalid.alias("bad")).collect()[0]
    assert row["v"] == value and row["bad"] is bad


def test_hmac_matches_python_hmac(spark):
    key = b"a-test-key-that-is-long-enough"
    values = ["C0000001", "customer:C0000001", "Zoë", "", "x" * 300]
    df = spark.createDataFrame([(v,) for v in values], "v string")
    got = [r[0] for r in df.select(pii.hmac_sha256_hex(F.col("v"), key)).collect()]
    assert got == [hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for v in values]
    long_key = b"k" * 100  # longer than the block: hashed first, as RFC 2104 says
    got = spark.range(1).select(pii.hmac_sha256_hex(F.lit("m"), long_key)).collect()[0][0]
    assert got == hmac.new(long_key, b"m", hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "phone, e164",
    [("0712345678", "+254712345678"), ("+254712345678", "+254712345678"), ("254712345678", "+254712345678"),
     ("0712 345 678", "+254712345678"), ("(0712) 345-678", "+254712345678"), ("712345678", "+254712345678"),
     ("0112345678", "+254112345678"), ("12345", None), ("+1 415 555 0100", None), ("", None)],
)
def test_phone_normalisation(spark, phone, e164):
    assert spark.range(1).select(pii.e164_kenya(F.lit(phone))).collect()[0][0] == e164


def test_generator_is_deterministic_and_follows_the_contract(tmp_path):
    from ecommerce_lake.generator.generate import GeneratorConfig, generate

    def run(out, seed):
        generate(GeneratorConfig(out=out, seed=seed, days=5, customers=50, products=20, lines=400,
                                 end_date=dt.date(2025, 6, 30)))
        return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file()}

    a, b, c = run(tmp_path / "a", 1), run(tmp_path / "b", 1), run(tmp_path / "c", 2)
    assert a == b and a != c
    assert sorted({k.split("/")[0] for k in a}) == [f"2025-06-{d}" for d in range(26, 31)]
    assert all(f"2025-06-{d}/_SUCCESS" in a for d in range(26, 31))
    import csv

    for spec in LANDING_FILES:
        for path in (tmp_path / "a").glob(f"*/{spec.filename}"):
            with path.open(encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh))
            assert set(spec.required) <= set(header), path


def test_landing_contract_doc_matches_the_contract():
    text = (REPO / "docs" / "landing-contract.md").read_text()
    for spec in LANDING_FILES:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {spec.filename} |"))
        cells = line.split("|")[2].strip().split(", ")
        assert [c.rstrip("*") for c in cells] == list(spec.columns) or \
            sorted(c.rstrip("*") for c in cells) == sorted(spec.columns), spec.filename
        assert sorted(c.rstrip("*") for c in cells if c.endswith("*")) == sorted(spec.required), spec.filename
    from ecommerce_lake.core.contract import REJECT_RULES

    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.M))
    assert documented == set(REJECT_RULES)


def test_data_dictionary_is_current():
    from ecommerce_lake.schemas.dictionary import TABLES_MD, render_tables_md

    assert (REPO / TABLES_MD).read_text() == render_tables_md(), "docs/tables.md is stale: run `ecommerce-lake docs`"


def test_rolling_forecast_features_match_pandas(spark):
    """The forecast's rolling features (from running sums) against plain pandas windows over a dense series, with
    gaps (days without sales) and zero days: the series' own rates, the product's across counties, the county's
    share of every sale, the national trend, and their floored logs."""
    import numpy as np
    import pandas as pd

    from ecommerce_lake.logic.ml import forecast as fc
    from ecommerce_lake.logic.refined.refine import counties_table

    rng = np.random.default_rng(7)
    as_of = dt.date(2026, 6, 30)
    days = [as_of - dt.timedelta(days=k) for k in range(260)]
    rows = []
    for product, county, p_sale in (("P1", 47, 0.65), ("P1", 1, 0.65), ("P2", 47, 0.65), ("P3", 30, 0.08)):
        for day in days:
            if rng.random() > p_sale:  # no sale that day: the series has a gap the grid fills with zeros
                continue
            units = int(rng.integers(1, 6))
            rows.append((day, county, product, "Phones", units, units * 99.5))
    daily = spark.createDataFrame(rows, "order_date date, county_code int, product_id string, category string, "
                                        "units long, net_revenue_kes double")
    p = fc.ForecastParams(train_days=56, origins=1)
    cols = ["mean_28", "mean_91", "nonzero_share_91", "product_mean_28", "product_mean_91", "county_share_91",
            "national_trend", *[f"log_{c}" for c in fc.LOG_RATES], *[f"dow_{k}" for k in range(2, 8)]]
    with Held() as held:
        table = fc.build_features(daily, counties_table(spark), as_of, p, held)
        got = table.frame.select("product_id", "county_code", "date", "day_of_week", *cols).toPandas()

    # pandas: a dense calendar per series, sums over the days d-118 .. d-28 (91) and d-55 .. d-28 (28)
    sales = pd.DataFrame(rows, columns=["date", "county_code", "product_id", "category", "units", "net"])
    cal = pd.date_range(as_of - dt.timedelta(days=400), as_of + dt.timedelta(days=28)).date
    dense = {}
    for (product, county), g in sales.groupby(["product_id", "county_code"]):
        s = g.set_index("date")["units"].reindex(cal, fill_value=0).astype(float)
        s.loc[s.index > as_of] = np.nan  # not known yet
        dense[(product, county)] = s
    product_units = {p_: sum(s for (pp, _), s in dense.items() if pp == p_) for p_ in ("P1", "P2", "P3")}
    county_units = {c: sum(s for (_, cc), s in dense.items() if cc == c) for c in (1, 30, 47)}
    national = sum(dense.values())

    def window(series, day, lo, hi):
        return series.loc[day - dt.timedelta(days=hi): day - dt.timedelta(days=lo)].sum()

    def log(value, floor):
        return math.log(max(0.0 if value is None or math.isnan(value) else value, floor))

    assert len(got) == 4 * len(set(got["date"]))
    checked = 0
    for r in got.itertuples():
        s = dense[(r.product_id, r.county_code)]
        u91, u28 = window(s, r.date, 28, 118), window(s, r.date, 28, 55)
        nz = (s.loc[r.date - dt.timedelta(days=118): r.date - dt.timedelta(days=28)] > 0).sum()
        pu = product_units[r.product_id]
        nat91, nat28 = window(national, r.date, 28, 118), window(national, r.date, 28, 55)
        share = window(county_units[r.county_code], r.date, 28, 118) / nat91 if nat91 else None
        trend = (nat28 / 28) / (nat91 / 91) if nat91 else None
        expected = {"mean_28": u28 / 28, "mean_91": u91 / 91, "nonzero_share_91": nz / 91,
                    "product_mean_28": window(pu, r.date, 28, 55) / 28,
                    "product_mean_91": window(pu, r.date, 28, 118) / 91,
                    "county_share_91": share, "national_trend": trend}
        for name, value in expected.items():
            assert getattr(r, name) == pytest.approx(value), (name, r)
            assert getattr(r, f"log_{name}", None) is None or getattr(r, f"log_{name}") == pytest.approx(
                log(value, fc.LOG_FLOOR[name])), (name, r)
        weekday = r.date.isoweekday()
        assert r.day_of_week == weekday
        assert [getattr(r, f"dow_{k}") for k in range(2, 8)] == [1.0 if weekday == k else 0.0 for k in range(2, 8)]
        checked += 1
    assert checked > 400
    # the sparse series' share of days with sales is small, and some of its windows hold no sale (log floor)
    sparse = got[got["product_id"] == "P3"]
    assert (sparse["mean_28"] == 0).any() and np.isclose(sparse["log_mean_28"], math.log(0.01)).any()


PLANNER_TIMESTAMPS = [
    "2025-11-30T14:05:00+03:00", "2025-11-30 14:05:00+03:00", "2025-11-30T14:05:00", "2025-11-30 14:05:00",
    "2025-11-30T22:30:00Z", "2025-11-30T23:59:59+0300", "2025-11-30T21:00:00-0300", "2025-11-30T01:00:00-03:00",
    "2025-11-30T14:05", "2025-11-30T23:30+03", "2025-11-30T23:30-03", "2025-11-30T14:05:00.123456+03:00",
    "2025-11-30T23:59:59.999999999", "  2025-11-30T14:05:00+03:00 ", "2025-12-01T00:30:00+03:00",
    "2025-11-30T20:59:59z", "2025-11-30T21:00:00+00:00", "2025-02-30T10:00:00", "2025-02-30T10:00:00+03:00",
    "2025-11-30T25:00:00", "2025-11-30T14:05:61+03:00", "2025-13-01 10:00:00", "yesterday", "12/05/2024 10:00",
    "2025-11-30", "", "   ",
]


def test_planner_days_agree_with_spark_parsing(spark):
    """The sensor's and runner's planner (pure Python) gives every timestamp shape the Nairobi date Spark's
    ingestion gives it, or none where Spark finds it unreadable: a disagreement would put rows outside the run's
    partitions (and the ingestion would refuse the run)."""
    from ecommerce_lake.logic.raw import plan

    df = spark.createDataFrame([(t,) for t in PLANNER_TIMESTAMPS], "text string")
    spark_days = {r["text"]: r["day"] for r in df.select(
        "text", parsing.nairobi_date(parsing.parse_timestamp(F.col("text")).value).alias("day")).collect()}
    python_days = {t: plan.nairobi_date(t) for t in PLANNER_TIMESTAMPS}
    assert python_days == spark_days
    assert python_days["2025-11-30T22:30:00Z"] == dt.date(2025, 12, 1)  # past midnight in Nairobi
    assert python_days["2025-11-30T21:00:00-0300"] == dt.date(2025, 12, 1)
    assert python_days["2025-11-30 14:05:00"] == dt.date(2025, 11, 30)
    assert python_days["2025-02-30T10:00:00+03:00"] is None and python_days["yesterday"] is None
    assert sum(d is not None for d in python_days.values()) == 17


def test_planner_reads_only_the_columns_asked_for():
    from ecommerce_lake.logic.raw.plan import read_rows

    text = "order_id,Customer_ID,order_ts\nO1,C1,2025-11-30T14:05:00\nO2,C2\nO3,C3,x,extra\n"
    every = read_rows(text)
    some = read_rows(text, ("order_id", "order_ts"))
    assert every.header == some.header == ["order_id", "customer_id", "order_ts"]
    assert [r[1] for r in some.records] == [{"order_id": "O1", "order_ts": "2025-11-30T14:05:00"},
                                            {"order_id": "O2", "order_ts": None},
                                            {"order_id": "O3", "order_ts": "x"}]
    assert [(r[0], r[2]) for r in some.records] == [(r[0], r[2]) for r in every.records] == [
        (1, False), (2, True), (3, True)]
    assert every.records[0][1]["customer_id"] == "C1"


PLANNER_CSVS = {  # (text, read by Arrow's reader?) – the csv module's reading is the reference for every one
    "plain": ("order_id,order_ts,x\nO1,2025-11-30T14:05:00,a\nO2,2025-11-30T23:30:00Z,b\n", True),
    "quoted": ('order_id,order_ts,x\n"O1","2025-11-30T14:05:00","a,b"\n"O""2",,"line\nbreak"\n', True),
    "crlf, no final newline": ("order_id,order_ts,x\r\nO1, 2025-11-30T14:05:00 ,a\r\nO2,,b", True),
    "names cased and padded": (" Order_ID ,ORDER_TS,x\nO1,2025-11-30T14:05:00,a\n", True),
    "column missing": ("order_id,x\nO1,a\n", True),
    "unicode": ("order_id,order_ts,x\nÖ1,2025-11-30T14:05:00,Wanjirũ\n", True),
    "header only": ("order_id,order_ts,x\n", True),
    "short record": ("order_id,order_ts,x\nO1,2025-11-30T14:05:00,a\nO2,2025-11-30\n", False),
    "long record": ("order_id,order_ts,x\nO1,2025-11-30T14:05:00,a,extra\nO2,,b\n", False),
    "blank line": ("order_id,order_ts,x\nO1,2025-11-30T14:05:00,a\n\nO2,,b\n", False),
    "one column": ("order_ts\n2025-11-30T14:05:00\n\n", False),
    "names repeated after trimming": ("order_id, order_id,order_ts\nO1,O2,2025-11-30T14:05:00\n", False),
    "empty file": ("", False),
}


@pytest.mark.parametrize("name", sorted(PLANNER_CSVS))
def test_planner_column_reader_agrees_with_the_csv_module(name):
    """The planner reads landing CSVs with Arrow's C++ reader when every record is as wide as the header, else
    with Python's csv module; both give what the csv module reads, record for record."""
    from ecommerce_lake.logic.raw.plan import _arrow_columns, read_columns, read_rows

    text, fast = PLANNER_CSVS[name]
    columns = ("order_id", "order_ts")
    records = read_rows(text, columns).records
    got = read_columns(text, columns)
    assert (_arrow_columns(text, columns) is not None) == fast
    assert got.rows == len(records)
    assert got.values == {c: [values.get(c) for _, values, _ in records] for c in columns}
    flags = [bad for _, _, bad in records]
    assert got.malformed == (flags if any(flags) else None)


def test_planner_days_of_a_column_agree_with_the_row_by_row_rules():
    """``_days`` (Arrow for the usual shapes, ``nairobi_date`` for the rest) = ``clamp_day(nairobi_date(ts))`` per
    record, and the arrival day for a malformed record."""
    from ecommerce_lake.core.calendar import DEFAULT_FIRST_DAY as first, clamp_day
    from ecommerce_lake.logic.raw.plan import _days, nairobi_date

    arrival, today = dt.date(2025, 12, 2), dt.date(2025, 12, 3)
    ts = [*PLANNER_TIMESTAMPS, None, "2022-06-01T10:00:00+03:00", "2099-01-01 00:00:00", "2025-12-01T23:59:59",
          "2025-12-01T24:00:00", "2025-12-01T23:60:00", "2025-12-01 00:00:00+03:00", "2025-12-01T00:00:00+03:00 "]
    expected = [clamp_day(nairobi_date(t), arrival, first, today) for t in ts]
    assert _days(ts, None, arrival, today, first) == expected
    assert expected[-8:] == [arrival, arrival, arrival, dt.date(2025, 12, 1), arrival, arrival,
                             dt.date(2025, 12, 1), dt.date(2025, 12, 1)]
    malformed = [i % 3 == 0 for i in range(len(ts))]
    assert _days(ts, malformed, arrival, today, first) == [arrival if m else d for d, m in zip(expected, malformed)]


def _row_by_row_days(landing, batches, existing_days):
    """The planner's rules (module docstring of ``ecommerce_lake.logic.raw.plan``) applied record by record with the
    csv module: the reference the column-at-a-time planner is compared with."""
    from ecommerce_lake.core.calendar import DEFAULT_FIRST_DAY as first, clamp_day, nairobi_today
    from ecommerce_lake.logic.raw.plan import nairobi_date, read_rows

    today, seen, result = nairobi_today(), {}, {}
    clean = lambda v: (v.strip() or None) if v is not None else None  # noqa: E731
    for batch in sorted(batches, key=lambda b: b.batch_id):
        names = {n.lower(): n for n in batch.files}
        rows = lambda f, cols: read_rows(landing.read_text(batch.batch_id, names[f]), cols).records if f in names else []  # noqa: E731
        arrival, days, order_days = batch.arrival_day, set(), {}
        orders, items = rows("orders.csv", ("order_id", "order_ts")), rows("order_items.csv", ("order_id",))
        referenced = {oid for _, v, _ in orders + items if (oid := clean(v.get("order_id")))}
        lake = existing_days({o for o in referenced if o not in seen})
        for _, v, bad in orders:
            day = arrival if bad else clamp_day(nairobi_date(v.get("order_ts")), arrival, first, today)
            days.add(day)
            if (oid := clean(v.get("order_id"))) is not None:
                order_days[oid] = day
        for oid in referenced:
            if oid in seen:
                days.add(seen[oid])
            elif oid in lake:
                days.add(clamp_day(lake[oid], arrival, first, today))
        for _, v, bad in items:
            oid = clean(v.get("order_id"))
            if bad or oid is None:
                days.add(arrival)
            elif oid in order_days:
                days.add(order_days[oid])
            elif oid in seen:
                days.add(seen[oid])
            elif oid in lake:
                days.add(clamp_day(lake[oid], arrival, first, today))
            else:
                days.add(arrival)
        for _, v, bad in rows("payments.csv", ("paid_ts",)):
            days.add(arrival if bad else clamp_day(nairobi_date(v.get("paid_ts")), arrival, first, today))
        seen.update(order_days)
        result[batch.batch_id] = (days, order_days)
    return result


def test_planner_days_of_batches_agree_with_the_row_by_row_rules(tmp_path):
    """Generated batches (dirty: re-sent rows, status updates of old orders, odd timestamps) and the handmade
    ones (a malformed record, a byte-order mark, columns reordered), planned in two halves so the second half
    finds the first half's orders in the "lake": the same days and order days as the row-by-row reference."""
    from ecommerce_lake.generator.generate import GeneratorConfig, generate
    from ecommerce_lake.logic.raw.plan import plan_days
    from ecommerce_lake.platform.landing import LandingResource
    from ecommerce_lake_tests.landing_fixtures import add_handmade_batches

    generate(GeneratorConfig(out=tmp_path, seed=3, days=30, customers=400, products=40, lines=6000, dirty_rate=0.05,
                             end_date=dt.date(2025, 11, 30)))
    add_handmade_batches(tmp_path)
    landing = LandingResource(root=str(tmp_path))
    batches = [b for b in landing.list_batches() if b.complete]
    first, second = batches[: len(batches) // 2], batches[len(batches) // 2:]
    lake: dict[str, dt.date] = {}
    lookup = lambda ids: {oid: lake[oid] for oid in ids if oid in lake}  # noqa: E731
    for half in (first, second):
        got = plan_days(landing, half, lookup, first_day=DEFAULT_FIRST_DAY)
        expected = _row_by_row_days(landing, half, lookup)
        assert {b: (p.days, p.order_days) for b, p in got.items()} == expected
        for p in got.values():
            lake.update(p.order_days)
    assert len(lake) > 1000 and any(len(p.days) > 1 for p in got.values())


def test_next_batch_continues_the_landing_zones_history(tmp_path):
    """`generate --next`: the day after the last batch, new ids after the highest delivered, only known (or newly
    signed-up) customers, known products at their latest list price, updates only of orders still open, and a
    batch the planner accepts. Checked against the landing files read with the csv module (oracle)."""
    import datetime as dt
    from decimal import Decimal

    from ecommerce_lake.generator.generate import GeneratorConfig, generate
    from ecommerce_lake.generator.next_day import NextConfig, generate_next
    from ecommerce_lake.logic.raw.plan import plan_new_batches
    from ecommerce_lake.platform.landing import LandingResource
    from ecommerce_lake_tests import oracle

    landing = tmp_path / "landing"
    generate(GeneratorConfig(out=landing, seed=3, days=6, customers=200, products=30, lines=1200,
                             end_date=dt.date(2025, 6, 10)))
    before = oracle.read_landing(landing)
    now = dt.datetime(2025, 7, 1, 9, 0, tzinfo=dt.UTC)
    summary = generate_next(NextConfig(landing=landing, now=now))
    assert summary.last_batch == "2025-06-11"  # the day after the last batch (well before "now")
    again = generate_next(NextConfig(landing=landing, now=now))
    assert again.last_batch == "2025-06-12"
    after = oracle.read_landing(landing)
    new = {name: [r for r in rows if r.batch == "2025-06-11"] for name, rows in after.rows.items()}

    def num(value: str, prefix: str) -> int:
        return int(value[len(prefix):]) if value.startswith(prefix) and value[len(prefix):].isdigit() else 0

    old_orders = {r.values["order_id"].strip() for r in before.rows["orders"]}
    old_max = max(num(o, "O") for o in old_orders)
    placed = [r.values for r in new["orders"] if r.values["order_id"] not in old_orders]
    updates = [r.values for r in new["orders"] if r.values["order_id"] in old_orders]
    assert placed and sorted(num(o["order_id"], "O") for o in placed) == list(
        range(old_max + 1, old_max + 1 + len(placed)))
    # updates: orders still open at the end of the history move on (shipped / delivered), nothing else changes
    latest = {}
    for r in before.rows["orders"]:
        latest[r.values["order_id"].strip()] = r.values
    assert updates
    for u in updates:
        was = latest[u["order_id"]]["status"].strip().lower()
        assert was in ("placed", "paid", "shipped") and u["status"] == {"placed": "shipped", "paid": "shipped",
                                                                        "shipped": "delivered"}[was]
        assert u["customer_id"] == latest[u["order_id"]]["customer_id"]
    known_customers = {r.values["customer_id"].strip() for r in before.rows["customers"]}
    signups = {r.values["customer_id"] for r in new.get("customers", [])}
    assert not signups & known_customers
    assert {o["customer_id"] for o in placed} <= known_customers | signups
    prices = {}
    for r in before.rows["products"]:
        try:
            prices[r.values["product_id"].strip()] = Decimal(r.values["list_price_kes"].strip())
        except ArithmeticError:
            continue
    lines = [r.values for r in new["order_items"]]
    assert {l["order_id"] for l in lines} == {o["order_id"] for o in placed}
    assert all(Decimal(l["unit_price_kes"]) == prices[l["product_id"]] for l in lines)
    old_payments = max(num(r.values["payment_id"], "PAY") for r in before.rows["payments"])
    assert min(num(r.values["payment_id"], "PAY") for r in new["payments"]) == old_payments + 1
    # the planner accepts it, for its own day and the days of the orders it updates
    found = plan_new_batches(LandingResource(root=str(landing)), set(before.accepted), lambda ids: {},
                             first_day=DEFAULT_FIRST_DAY, today=dt.date(2025, 6, 30))
    planned = {p.batch.batch_id: p for p in found.planned}
    assert planned["2025-06-11"].accepted and dt.date(2025, 6, 11) in planned["2025-06-11"].days
    # the planner's today is an argument, not the clock: days after it are clamped to it
    early = plan_new_batches(LandingResource(root=str(landing)), set(before.accepted), lambda ids: {},
                             first_day=DEFAULT_FIRST_DAY, today=dt.date(2025, 6, 10))
    assert max(next(p for p in early.planned if p.batch.batch_id == "2025-06-11").days) == dt.date(2025, 6, 10)


def test_the_only_windows_without_a_partition_rank_one_row_per_customer():
    """Spark moves a window without a partition into one partition and warns; that notice is silenced (engine,
    in-process Spark and the Connect client), so every such window must be one of the known small ones: the RFM
    quintiles over one row per customer. A new one has to be partitioned, or added here with the reason."""
    import re

    allowed = {("segments.py", "_quintile")}
    found = set()
    for path in (REPO / "ecommerce_lake").rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"Window\.orderBy\(", text):
            function = re.findall(r"^def (\w+)", text[:match.start()], flags=re.M)
            found.add((path.name, function[-1] if function else "<module>"))
    assert found == allowed, found


def test_batch_fingerprint_follows_content_and_redelivery_is_checked_only_when_asked(tmp_path):
    """A batch's fingerprint is the sha256 of its file names and bytes (computed here with hashlib, the oracle);
    the per-process digest memo notices a rewrite of the same size; ``check_redelivery=False`` (the sales step,
    which only needs new batches) does not digest ingested batches at all."""
    import os

    from ecommerce_lake.logic.raw.ingest import plan_ingest
    from ecommerce_lake.platform.landing import LandingResource

    batch = tmp_path / "2025-11-30"
    batch.mkdir()
    (batch / "customers.csv").write_bytes(b"customer_id,name\nC1,Amina\n")
    (batch / "_SUCCESS").write_bytes(b"")
    landing = LandingResource(root=str(tmp_path))

    def oracle() -> str:
        digest = hashlib.sha256()
        name = "customers.csv"
        digest.update(f"{name}\0{hashlib.sha256((batch / name).read_bytes()).hexdigest()}\n".encode())
        return "sha256:" + digest.hexdigest()

    (listed,) = landing.list_batches()
    first = landing.fingerprint(listed)
    assert first == oracle()
    assert plan_ingest(landing, {"2025-11-30": first}).redelivered == []
    (batch / "customers.csv").write_bytes(b"customer_id,name\nC1,Baraka\n")  # another content, another length
    st = (batch / "customers.csv").stat()
    os.utime(batch / "customers.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert landing.fingerprint(listed) == oracle() != first
    (changed,) = plan_ingest(landing, {"2025-11-30": first}).redelivered
    assert (changed.batch_id, changed.ingested_fingerprint, changed.fingerprint) == ("2025-11-30", first, oracle())
    quiet = plan_ingest(landing, {"2025-11-30": first}, check_redelivery=False)
    assert quiet.redelivered == [] and quiet.already_ingested == 1 and quiet.accepted == []


def test_event_contract_doc_matches_the_contract():
    from ecommerce_lake.core.events import EVENT_TYPES, FIELDS, REJECT_RULES, SCHEMA_VERSION

    text = (REPO / "docs" / "event-contract.md").read_text()
    rows = {m[0]: m[1:] for m in re.findall(r"^\| `([a-z_]+)` \| (\w+) \| (yes|no) \|", text, flags=re.M)}
    assert rows == {name: (kind, "yes" if required else "no") for name, (kind, required, _) in FIELDS.items()}
    rules = set(re.findall(r"^\| `([a-z_]+)` \| (?!string|number|integer)", text, flags=re.M)) - set(FIELDS)
    assert rules == set(REJECT_RULES)
    assert all(f"`{t}`" in text for t in EVENT_TYPES) and f"Schema version {SCHEMA_VERSION}" in text


def test_the_dashboard_of_a_lake_without_orders_says_so():
    """An empty lake (every batch rejected, say) gets a page saying there are no sales yet, not a failed run."""
    import pandas as pd

    from ecommerce_lake.logic.insights import dashboard

    empty = pd.DataFrame(columns=["month"])
    page, facts = dashboard.render(dashboard.DashboardData(
        national=empty, counties=empty, categories=empty, daily_units=pd.DataFrame(columns=["order_date", "units"]),
        forecast=None), dt.datetime(2026, 12, 5, tzinfo=dt.UTC))
    assert "No sales yet" in page and facts == {"month": "", "charts": [], "counties": 0}
    assert not any(f'id="chart-{c}"' in page for c in dashboard.CHARTS)
