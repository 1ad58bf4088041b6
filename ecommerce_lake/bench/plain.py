"""The lake's raw -> refined -> curated build as one plain PySpark program: the same transformation functions
(``ecommerce_lake.logic``) and the same Delta writes as the assets, with no Dagster (no runs, steps, events,
IO manager or checks). The benchmark compares it with the lake built through Dagster to measure the
orchestration overhead (``ecommerce-lake bench --scales``)."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake import schemas
from ecommerce_lake.core.contract import BY_NAME
from ecommerce_lake.defs.keys import CURATED_KEYS, RAW_KEYS, REFINED_KEYS
from ecommerce_lake.defs.raw.checks import BATCH_TABLES, SALES
from ecommerce_lake.logic.curated import curate
from ecommerce_lake.logic.frames import Held
from ecommerce_lake.logic.refined import pii, refine
from ecommerce_lake.logic.raw.ingest import assign_days, batch_log, plan_ingest, read_raw
from ecommerce_lake.core.calendar import nairobi_today
from ecommerce_lake.defs.partitions import FIRST_DAY
from ecommerce_lake.platform.lake import MONTH_COLUMN
from ecommerce_lake.settings import Settings


def build(settings: Settings) -> dict[str, float]:
    """Build raw, refined and curated from every landing batch into an empty lake; seconds per table."""
    from ecommerce_lake.deployment import build_resources

    res = build_resources(settings)
    lake, landing = res["lake"], res["landing"]
    spark = lake.session()
    key = res["pseudonym"].key()
    keys = res["privacy_keys"].spark_keys()
    seconds: dict[str, float] = {}

    def write(df: DataFrame, asset_key: dg.AssetKey) -> None:
        """Written as the IO manager writes: a day-partitioned table (its schema names the day column) by month."""
        started = time.monotonic()
        day_column = schemas.day_column(schemas.BY_NAME[".".join(asset_key.path)])
        if day_column:
            df = df.withColumn(MONTH_COLUMN, F.trunc(F.col(day_column), "month"))
        lake.write(df, asset_key, partition_by=[MONTH_COLUMN] if day_column else [])
        seconds[asset_key.to_user_string()] = time.monotonic() - started

    plan = plan_ingest(landing, set())
    ingested_at = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    raw = {n: read_raw(spark, landing, BY_NAME[n], plan.accepted, ingested_at) for n in SALES}
    with Held() as held:
        with_days = {n: held(df) for n, df in assign_days(raw, plan.accepted, None, FIRST_DAY, nairobi_today()).items()}
        for n in SALES:
            write(with_days[n], RAW_KEYS[n])
    for n in BATCH_TABLES:
        df = read_raw(spark, landing, BY_NAME[n], plan.accepted, ingested_at)
        if n in schemas.raw.PERSONAL_FILES:  # as raw_ingest does: personal values encrypted
            df = pii.seal(df, schemas.encrypted_columns(schemas.raw.TABLES[n]), keys)
        write(df, RAW_KEYS[n])
    file_rows: dict[str, dict[str, int]] = {}
    for spec_name in BY_NAME:
        for row in lake.read(RAW_KEYS[spec_name]).groupBy("_batch_id").count().collect():
            file_rows.setdefault(row["_batch_id"], {})[f"{spec_name}.csv"] = int(row["count"])
    write(batch_log(spark, plan.new, file_rows, {}, ingested_at, "plain"), dg.AssetKey(["raw", "batch_log"]))

    write(refine.counties_table(spark), REFINED_KEYS["counties"])
    write(refine.refine_customers(lake.read(RAW_KEYS["customers"]), key, keys), REFINED_KEYS["customers"])
    write(refine.refine_products(lake.read(RAW_KEYS["products"])), REFINED_KEYS["products"])
    write(refine.refine_inventory(lake.read(RAW_KEYS["inventory"])), REFINED_KEYS["inventory"])
    days = lake.read(RAW_KEYS["orders"]).agg(F.min("_order_date"), F.max("_order_date")).collect()[0]
    inputs = refine.SalesInputs(
        orders=lake.read(RAW_KEYS["orders"]), order_items=lake.read(RAW_KEYS["order_items"]),
        payments=lake.read(RAW_KEYS["payments"]),
        customers=lake.read(REFINED_KEYS["customers"], columns=["customer_id", "county_code"]),
        refined_order_ids=None, start=days[0], end=days[1] + dt.timedelta(days=1), first_day=FIRST_DAY)
    with Held() as held:
        outputs = refine.refine_sales(inputs, key, held)
        for name in ("orders", "order_items", "payments", "sales_rejects"):
            write(outputs[name], REFINED_KEYS[name])
    write(refine.rejects({t: lake.read(RAW_KEYS[t]) for t in ("customers", "products", "inventory")}, keys),
          REFINED_KEYS["rejects"])

    products = lake.read(REFINED_KEYS["products"])
    fact = curate.fact_sales(
        lake.read(REFINED_KEYS["order_items"], columns=["order_id", "line_number", "product_id", "quantity",
                                                         "unit_price_kes", "discount_kes"]),
        lake.read(REFINED_KEYS["orders"], columns=["order_id", "order_date", "status", "county_code", "county_name",
                                                   "customer_pseudonym", "payment_method", "channel"]),
        products.select("product_id", "category", "unit_cost_kes"))
    write(fact, CURATED_KEYS["fact_sales"])
    fact = lake.read(CURATED_KEYS["fact_sales"])
    write(curate.daily_sales(fact), CURATED_KEYS["daily_sales"])
    write(curate.customer_orders(fact), CURATED_KEYS["customer_orders"])
    daily = lake.read(CURATED_KEYS["daily_sales"])
    counties = lake.read(REFINED_KEYS["counties"])
    customer_orders = lake.read(CURATED_KEYS["customer_orders"])
    write(curate.county_monthly_kpis(customer_orders, counties), CURATED_KEYS["county_monthly_kpis"])
    write(curate.payment_method_mix(customer_orders, counties), CURATED_KEYS["payment_method_mix"])
    write(curate.category_share_by_county(daily), CURATED_KEYS["category_share_by_county"])
    write(curate.top_products_by_county(daily, products.select("product_id", "product_name")),
          CURATED_KEYS["top_products_by_county"])
    write(curate.product_performance(daily, products), CURATED_KEYS["product_performance"])
    return seconds
