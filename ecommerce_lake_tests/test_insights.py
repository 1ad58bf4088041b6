"""The insight tables against an independent computation, the DuckDB fast path of ``ecommerce-lake sql`` against
Spark, and every engine (delta-rs, DuckDB, Polars) reading every table (the dashboard in a browser is tested on the
forecast's lake, test_ml_forecast.py: it draws the forecast).

The insight tables get a lake of their own: thirteen months (so month-over-month and year-over-year growth, new and
returning customers are all exercised), delivered as monthly batches (one folder per month: the landing contract
allows any batch content, and thirteen batches ingest much faster than four hundred daily ones). The expected
figures are computed here in pandas and plain Python from the landing files (``oracle``), never from the lake."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import subprocess
import sys
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pandas as pd
import pytest

from ecommerce_lake.schemas import ALL, insights as insight_schemas, layer_of, table_of
from ecommerce_lake_tests import oracle

REPO = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "ecommerce-lake"
END = dt.date(2025, 11, 30)
# the spellings docs/landing-contract.md lists as recognised (anything else: unknown)
PAID_WITH = {"mpesa": "mpesa", "lipanampesa": "mpesa", "airtelmoney": "airtel_money", "card": "card",
             "visa": "card", "cashondelivery": "cash_on_delivery", "cod": "cash_on_delivery"}


def _monthly_batches(daily: Path, monthly: Path) -> None:
    """Concatenate the generator's daily batches into one batch per month (``YYYY-MM``), rows in arrival order."""
    by_month: dict[str, list[Path]] = defaultdict(list)
    for folder in sorted(p for p in daily.iterdir() if (p / "_SUCCESS").exists()):
        by_month[folder.name[:7]].append(folder)
    for month, folders in by_month.items():
        out = monthly / month
        out.mkdir(parents=True)
        for name in sorted({f.name for folder in folders for f in folder.glob("*.csv")}):
            with (out / name).open("w", encoding="utf-8", errors="surrogateescape", newline="") as target:
                header = None
                for folder in folders:
                    if not (folder / name).exists():
                        continue
                    # bytes as delivered (dirty rows included), a byte-order mark dropped: only a file's start may hold one
                    text = (folder / name).read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
                    first, _, rest = text.partition("\n")
                    columns = [c.strip().lower() for c in first.rstrip("\r").split(",")]
                    if header is None:
                        header = columns
                        target.write(first.rstrip("\r") + "\n")
                    if columns == header:
                        target.write(rest if rest.endswith("\n") or not rest else rest + "\n")
                        continue
                    # columns in another order, or other columns: rows re-ordered to the month's header (a ragged
                    # row stays as it was: ragged either way)
                    writer = csv.writer(target, lineterminator="\n")
                    for record in csv.reader(io.StringIO(rest, newline="")):
                        if len(record) != len(columns):
                            writer.writerow(record)
                            continue
                        values = dict(zip(columns, record, strict=True))
                        writer.writerow([values.get(c, "") for c in header])
        (out / "_SUCCESS").write_text("")


@pytest.fixture(scope="module")
def insights_lake(tmp_path_factory, engine_url, spark):
    from ecommerce_lake.generator.generate import GeneratorConfig, generate
    from ecommerce_lake.platform.dagster_storage import instance_yaml
    from ecommerce_lake.runner import execute
    from ecommerce_lake.settings import Settings

    home = tmp_path_factory.mktemp("insights_lake")
    settings = Settings(home=str(home), env="local", spark_remote=engine_url)
    daily = home / "daily"
    generate(GeneratorConfig(out=daily, seed=23, days=400, customers=250, products=30, lines=2500, dirty_rate=0.02,
                             end_date=END))
    _monthly_batches(daily, Path(settings.landing_root))
    dagster_home = home / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    # the lake beneath without its checks (they run on the shared test lake, test_lake.py), then the insights with
    # theirs
    lake = execute(settings, instance=instance, log_level="WARNING", checks=False,
                   selection="group:raw or group:refined or group:curated")
    assert lake.exit_code == 0 and lake.spark.startswith("engine sc://"), lake
    report = execute(settings, instance=instance, log_level="WARNING", selection="group:insights")
    assert report.exit_code == 0 and report.spark.startswith("engine sc://"), report
    landing = oracle.read_landing(Path(settings.landing_root))
    now = dt.datetime.now(dt.UTC)
    return SimpleNamespace(settings=settings, instance=instance, report=report, landing=landing, now=now,
                           table=lambda name: spark.read.format("delta").load(f"{settings.lake_root}/{name}"))


# ---- the oracle ------------------------------------------------------------------------------------------------
def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _month(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _months_before(month: dt.date, n: int) -> dt.date:
    index = month.year * 12 + month.month - 1 - n
    return dt.date(index // 12, index % 12 + 1, 1)


def _paid_with(text: str) -> str:
    return PAID_WITH.get(re.sub(r"[^a-z0-9]", "", (text or "").lower()), "unknown")


def _share(num, den):
    return None if not den else float(num) / float(den)


def _growth(revenue: Decimal, before: Decimal | None):
    return None if not before else float(revenue) / float(before) - 1


def expected_scorecards(landing, now) -> tuple[dict, dict]:
    """(county scorecard by (county_code, month), national month by (month,)), from the landing files."""
    fact = oracle.expected_fact_sales(landing, now)
    every = oracle.expected_orders(landing, now)
    method = dict(zip(every["order_id"], every["payment_method"], strict=True))
    sold: dict[str, dict] = {}
    for line in fact.itertuples(index=False):
        o = sold.setdefault(line.order_id, {"customer": line.customer_id, "month": _month(line.order_date),
                                            "county": line.county_code, "revenue": Decimal("0"),
                                            "paid_with": _paid_with(method[line.order_id])})
        o["revenue"] += line.net_revenue_kes
    first_month: dict[str, dt.date] = {}
    per_customer_month: dict[tuple, int] = defaultdict(int)
    for o in sold.values():
        first_month[o["customer"]] = min(first_month.get(o["customer"], o["month"]), o["month"])
        per_customer_month[(o["customer"], o["month"])] += 1

    def orders_so_far(customer: str, month: dt.date) -> int:
        return sum(n for (c, m), n in per_customer_month.items() if c == customer and m <= month)

    def card(received: pd.DataFrame, sold_orders: list[dict]) -> dict:
        revenue = sum((o["revenue"] for o in sold_orders), Decimal("0"))
        customers = {o["customer"] for o in sold_orders}
        month = received["month"].iloc[0]
        new = {c for c in customers if first_month[c] == month}
        n = len(sold_orders)
        return {
            "net_revenue_kes": revenue, "orders": n, "customers": len(customers),
            "avg_order_value_kes": _cents(revenue / n) if n else None,
            "new_customers": len(new), "returning_customers": len(customers) - len(new),
            "repeat_customer_share": _share(sum(orders_so_far(c, month) >= 2 for c in customers), len(customers)),
            "mpesa_order_share": _share(sum(o["paid_with"] == "mpesa" for o in sold_orders), n),
            "cash_on_delivery_order_share": _share(sum(o["paid_with"] == "cash_on_delivery" for o in sold_orders), n),
            "orders_received": len(received), "cancelled_orders": int((received["status"] == "cancelled").sum()),
            "returned_orders": int((received["status"] == "returned").sum()),
            "cancellation_rate": float((received["status"] == "cancelled").mean()),
            "return_rate": float((received["status"] == "returned").mean()),
        }

    every["month"] = every["order_date"].map(_month)
    national = {}
    for month, received in every.groupby("month"):
        national[(month,)] = card(received, [o for o in sold.values() if o["month"] == month])
    counties = {}
    for (code, month), received in every[every["county_code"] != 0].groupby(["county_code", "month"]):
        counties[(code, month)] = card(received, [o for o in sold.values()
                                                  if o["county"] == code and o["month"] == month])
    for table, scope in ((national, lambda k: ()), (counties, lambda k: k[:1])):
        for key, row in table.items():
            month = key[-1]
            for n, column in ((1, "revenue_mom_growth"), (12, "revenue_yoy_growth")):
                before = table.get((*scope(key), _months_before(month, n)))
                row[column] = _growth(row["net_revenue_kes"], before["net_revenue_kes"] if before else None)
    with (oracle.DATA / "kenya_counties.csv").open() as fh:
        population = {int(r["county_code"]): int(r["population_2019"]) for r in __import__("csv").DictReader(fh)}
    names = oracle.county_names()
    for (code, month), row in counties.items():
        same_month = [(r["net_revenue_kes"], r["orders"]) for (c, m), r in counties.items() if m == month]
        row["revenue_rank"] = 1 + sum(rev > row["net_revenue_kes"] for rev, _ in same_month)
        row["orders_rank"] = 1 + sum(n > row["orders"] for _, n in same_month)
        row["county_name"], row["population_2019"] = names[code], population[code]
        row["orders_per_1000_residents"] = row["orders"] * 1000 / population[code]
        row["customers_per_1000_residents"] = row["customers"] * 1000 / population[code]
    return counties, national


def expected_product_tables(landing, now) -> tuple[dict, dict, dict]:
    """(category_mix, top_products_monthly, price_bands) by their keys, from the landing files."""
    fact = oracle.expected_fact_sales(landing, now)
    products = {k[0]: w.values for k, w in oracle.fates(landing, "products", now)[1].items()}
    names = oracle.county_names()

    def category(product_id: str) -> str:
        return oracle.text(products[product_id], "category").lower().title() if product_id in products else "Unknown"

    fact["month"] = fact["order_date"].map(_month)
    fact["category"] = fact["product_id"].map(category)
    known = fact[fact["county_code"] != 0]
    mix, top = {}, {}
    for (code, month), rows in known.groupby(["county_code", "month"]):
        total = sum(rows["net_revenue_kes"], Decimal("0"))
        cats = [(cat, sum(r["net_revenue_kes"], Decimal("0")), int(r["quantity"].sum()))
                for cat, r in rows.groupby("category")]
        for rank, (cat, revenue, units) in enumerate(sorted(cats, key=lambda c: (-c[1], c[0])), start=1):
            mix[(code, month, cat)] = {"county_name": names[code], "net_revenue_kes": revenue, "units": units,
                                       "share_of_county_revenue": float(revenue) / float(total) if total else 0.0,
                                       "rank_in_county": rank}
        sold = [(pid, sum(r["net_revenue_kes"], Decimal("0")), int(r["quantity"].sum()))
                for pid, r in rows.groupby("product_id")]
        ranked = sorted(sold, key=lambda p: (-p[1], p[0]))[:insight_schemas.TOP_PRODUCTS_PER_MONTH]
        for rank, (pid, revenue, units) in enumerate(ranked, start=1):
            top[(code, month, rank)] = {
                "county_name": names[code], "product_id": pid, "category": category(pid), "net_revenue_kes": revenue,
                "units": units,
                "product_name": oracle.text(products[pid], "product_name") if pid in products else None}
    bands = {}

    def band(price: Decimal) -> tuple[str, int]:
        found = [(label, i) for i, (label, floor) in enumerate(insight_schemas.PRICE_BANDS, start=1) if price >= floor]
        return found[-1]

    fact["band"] = fact["unit_price_kes"].map(band)
    for (month, cat), rows in fact.groupby(["month", "category"]):
        units_all = int(rows["quantity"].sum())
        for (label, order), r in rows.groupby("band"):
            bands[(month, cat, label)] = {"band_order": order, "lines": len(r), "units": int(r["quantity"].sum()),
                                          "net_revenue_kes": sum(r["net_revenue_kes"], Decimal("0")),
                                          "share_of_category_units": int(r["quantity"].sum()) / units_all}
    return mix, top, bands


def _assert_same(table: str, got: dict, expected: dict) -> None:
    assert set(got) == set(expected), (table, sorted(set(got) ^ set(expected))[:10])
    for key, want in expected.items():
        row = got[key]
        for column, value in want.items():
            actual = row[column]
            if isinstance(value, float) and actual is not None:
                assert actual == pytest.approx(value, rel=1e-9, abs=1e-12), (table, key, column, actual, value)
            else:
                assert actual == value, (table, key, column, actual, value)


def _rows(lake, table: str, key: list[str]) -> dict:
    return {tuple(r[k] for k in key): r.asDict() for r in lake.table(f"insights/{table}").collect()}


# ---- the tests ---------------------------------------------------------------------------------------------------
def test_insight_tables_equal_the_oracle_both_ways(insights_lake):
    """Every insight table, every column, against the figures computed here from the landing files: the same keys
    in both directions and the same values (money to the cent, ratios within 1e-9)."""
    lake = insights_lake
    assert len(lake.landing.accepted) == 14  # October 2024 .. November 2025: one batch per month
    counties, national = expected_scorecards(lake.landing, lake.now)
    _assert_same("county_scorecard", _rows(lake, "county_scorecard", ["county_code", "month"]), counties)
    _assert_same("national_monthly", _rows(lake, "national_monthly", ["month"]), national)
    mix, top, bands = expected_product_tables(lake.landing, lake.now)
    _assert_same("category_mix", _rows(lake, "category_mix", ["county_code", "month", "category"]), mix)
    _assert_same("top_products_monthly", _rows(lake, "top_products_monthly", ["county_code", "month", "rank"]), top)
    _assert_same("price_bands", _rows(lake, "price_bands", ["month", "category", "price_band"]), bands)

    # the data exercise what the columns say: growth both ways, new and returning customers, cancellations
    yoy = [r["revenue_yoy_growth"] for r in national.values() if r["revenue_yoy_growth"] is not None]
    assert yoy and any(r["revenue_mom_growth"] is not None and r["revenue_mom_growth"] < 0 for r in national.values())
    assert sum(r["returning_customers"] for r in national.values()) > 0
    assert sum(r["new_customers"] for r in national.values()) > 0
    assert sum(r["cancelled_orders"] for r in national.values()) > 0
    assert len({r["price_band"] for r in lake.table("insights/price_bands").collect()}) >= 3
    # and their checks ran in the table's step and passed
    for table, name in (("county_scorecard", "net_revenue_kes_reconciles_with_curated_customer_orders"),
                        ("national_monthly", "orders_received_reconciles_with_refined_orders"),
                        ("category_mix", "share_of_county_revenue_sums_to_one"),
                        ("top_products_monthly", "top_n_per_county_month"),
                        ("price_bands", "value_rules")):
        key = dg.AssetCheckKey(dg.AssetKey(["insights", table]), name)
        record = lake.instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert record.evaluation is not None and record.evaluation.passed, (key, record)


def test_insights_refresh_by_automation_and_not_in_a_batch_run(insights_lake):
    """The insights read every month: a batch's run (``run --incremental``, the landing sensor's) leaves them out,
    and declarative automation refreshes them once the curated tables are in (the all-time tables' condition)."""
    from ecommerce_lake.definitions import build_defs
    from ecommerce_lake.defs.automation import ALL_TIME_CONDITION
    from ecommerce_lake.runner import execute

    graph = build_defs(insights_lake.settings).resolve_asset_graph()
    keys = [dg.AssetKey([layer_of(s), table_of(s)]) for s in insight_schemas.ALL] + [dg.AssetKey(["insights",
                                                                                                  "dashboard"])]
    for key in keys:
        assert graph.get(key).automation_condition.label == ALL_TIME_CONDITION.label, key
    before = {k: insights_lake.instance.get_latest_materialization_event(k).run_id for k in keys}
    report = execute(insights_lake.settings, instance=insights_lake.instance, log_level="WARNING", mode="incremental")
    assert report.exit_code == 0
    assert not [k for k in report.materialized if k.startswith("insights/")], report.materialized
    assert {k: insights_lake.instance.get_latest_materialization_event(k).run_id for k in keys} == before


def _duck_rows(catalog, name: str) -> list[tuple]:
    from ecommerce_lake.platform import duck

    return duck.query(catalog, f"SELECT * FROM {name}").fetchall()


def _normal(value):
    if isinstance(value, dt.datetime):  # Spark returns naive local instants, DuckDB UTC-aware ones
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    if isinstance(value, list):
        return tuple(value)
    return value


def _sorted(rows) -> list[tuple]:
    return sorted((tuple(_normal(v) for v in r) for r in rows), key=repr)


def test_sql_on_duckdb_answers_exactly_as_spark_on_every_curated_and_insight_table(insights_lake, spark):
    """``ecommerce-lake sql`` without Spark: every curated and insight table read through delta-rs + DuckDB under its
    catalog name equals Spark's reading of it, row for row and value for value; the command line answers the same
    query on both engines with the same figures, and reports its latency."""
    from ecommerce_lake.platform import duck

    lake = insights_lake
    names = [s.name for s in ALL if layer_of(s) in ("curated", "insights")]
    catalog = duck.connect(lake.settings.lake_root)
    assert set(names) <= set(catalog.tables)
    session_tz = dt.datetime.now().astimezone().tzinfo
    for name in names:
        layer, table = name.split(".")
        frame = spark.read.format("delta").load(f"{lake.settings.lake_root}/{layer}/{table}")
        expected = frame.collect()
        got = _duck_rows(catalog, name)
        assert len(got) == len(expected) > 0, name
        assert [c for c in frame.columns] == [d[0] for d in duck.query(catalog, f"SELECT * FROM {name}").description]

        def spark_row(r):
            return tuple(v.replace(tzinfo=session_tz) if isinstance(v, dt.datetime) else v for v in r)

        assert _sorted(got) == _sorted(spark_row(r) for r in expected), name

    # the command line, as `bench --suite sql` runs it: each query through DuckDB and through the engine, the same
    # answer; the latencies printed
    from ecommerce_lake.bench.sql import QUERIES, bench_sql

    env = {**os.environ, "ECOMMERCE_LAKE_HOME": lake.settings.home}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ECOMMERCE_LAKE_HOME", lake.settings.home)
        figures = bench_sql(repeat=1, engine_up=True)["figures"]
    assert set(figures) == set(QUERIES)
    for name, per in figures.items():
        assert per["same_answer"], name
        print(f"sql {name}: DuckDB {per['duckdb']['wall_s']} s (query {per['duckdb']['query_s']} s), engine "
              f"{per['spark_engine']['wall_s']} s (query {per['spark_engine']['query_s']} s)")
    refused = subprocess.run([str(EXE), "sql", "--engine", "duckdb", "delete from curated.fact_sales"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "read-only" in refused.stderr
    # the fast path cannot reach files or the network, whatever the query
    with pytest.raises(Exception, match="disabled"):
        duck.query(duck.connect(lake.settings.lake_root, "select 1"), "select * from read_csv('/etc/hostname')").fetchall()


def test_every_engine_reads_every_table(lake_run, settings, spark):
    """delta-rs, DuckDB (through delta-rs/Arrow) and Polars read every Delta table of the shared lake (every layer)
    with Spark's row count and column names, and the sums of its numeric columns; no table enables a feature
    those readers lack (deletion vectors, column mapping, type widening ...)."""
    import polars as pl
    from deltalake import DeltaTable

    from ecommerce_lake.platform import duck

    catalog = duck.connect(settings.lake_root)
    checked = 0
    for schema in ALL:
        layer, table = layer_of(schema), table_of(schema)
        path = f"{settings.lake_root}/{layer}/{table}"
        if not (Path(path) / "_delta_log").exists():
            continue
        checked += 1
        delta = DeltaTable(path)
        protocol = delta.protocol()
        assert protocol.min_reader_version <= 1 or not (set(protocol.reader_features or []) - {"timestampNtz"}), (
            schema.name, protocol)
        frame = spark.read.format("delta").load(path)
        numeric = [f.name for f in frame.schema.fields
                   if f.dataType.typeName() in ("integer", "long", "double", "decimal")][:3]
        expected = frame.selectExpr("count(*) as n", *[f"sum({c}) as {c}" for c in numeric]).collect()[0]
        arrow = delta.to_pyarrow_table()
        polars = pl.read_delta(path)
        duck_n = duck.query(catalog, f"SELECT count(*) FROM {schema.name}").fetchall()[0][0]
        assert arrow.num_rows == polars.height == duck_n == expected["n"], schema.name
        assert arrow.column_names == polars.columns == frame.columns, schema.name
        for column in numeric:
            want = expected[column]
            polars_sum = polars[column].sum()
            duck_sum = duck.query(catalog, f"SELECT sum({column}) FROM {schema.name}").fetchall()[0][0]
            if want is None:
                continue
            assert float(polars_sum) == pytest.approx(float(want), rel=1e-9), (schema.name, column)
            assert float(duck_sum) == pytest.approx(float(want), rel=1e-9), (schema.name, column)
    assert checked >= 30, checked
