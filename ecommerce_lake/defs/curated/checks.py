"""Checks of the curated tables (besides their schema checks): every table reconciles with its source to the
cent, the unknown-county share, the top-ten rule."""

from __future__ import annotations

import dagster as dg
from pyspark.sql import functions as F

from ecommerce_lake.defs.checks import WARN, CheckContext, TableCheck, TableChecks, table_check
from ecommerce_lake.defs.keys import CURATED_KEYS, REFINED_KEYS
from ecommerce_lake.schemas import by_table, day_column
from ecommerce_lake.schemas import curated as schemas

SCHEMAS = by_table(schemas.ALL)
DAY_TABLES = tuple(t for t, s in SCHEMAS.items() if day_column(s))  # fact_sales, daily_sales, customer_orders
FACT = CURATED_KEYS["fact_sales"]
DAILY_SALES = CURATED_KEYS["daily_sales"]


REFINED_SOLD_REVENUE_SQL = """
SELECT CAST(COALESCE(SUM(CAST(i.quantity AS DECIMAL(28,2)) * i.unit_price_kes - i.discount_kes), 0)
            AS DECIMAL(38,2)) AS revenue,
       COUNT(*) AS lines
FROM {items} i JOIN {orders} o ON i.order_id = o.order_id
WHERE o.status IN ('paid', 'shipped', 'delivered')
"""


@table_check("reconciles_with_refined", "fact_sales net revenue and line count equal refined sold-line revenue (to "
             "the cent) and count, computed in SQL straight from refined order_items and orders (for the run's days).")
def reconciles_with_refined(ctx: CheckContext) -> dg.AssetCheckResult:
    spark = ctx.lake.session()
    ctx.read(REFINED_KEYS["order_items"], "order_date").createOrReplaceTempView("__recon_items")
    ctx.read(REFINED_KEYS["orders"], "order_date").createOrReplaceTempView("__recon_orders")
    expected = spark.sql(REFINED_SOLD_REVENUE_SQL.format(items="__recon_items", orders="__recon_orders")).collect()[0]
    actual = ctx.read(FACT, "order_date").agg(
        F.coalesce(F.sum("net_revenue_kes"), F.lit(0)).cast("decimal(38,2)").alias("revenue"),
        F.count(F.lit(1)).alias("lines"),
    ).collect()[0]
    return dg.AssetCheckResult(
        passed=expected["revenue"] == actual["revenue"] and expected["lines"] == actual["lines"],
        metadata={
            "scope": ctx.scope("order_date") or "whole table",
            "refined_sold_revenue_kes": str(expected["revenue"]),
            "fact_sales_revenue_kes": str(actual["revenue"]),
            "difference_kes": str(actual["revenue"] - expected["revenue"]),
            "refined_sold_lines": int(expected["lines"]),
            "fact_sales_lines": int(actual["lines"]),
        },
    )


@table_check("unknown_county_share", "Share of sold net revenue whose county is Unknown, in the run's days (the whole "
             "table in a full run); warns above the threshold ECOMMERCE_LAKE_UNKNOWN_COUNTY_WARN_SHARE.", severity=WARN)
def unknown_county_share(ctx: CheckContext) -> dg.AssetCheckResult:
    # the run's days (new data: a bad batch is not diluted by two years of history), the whole table otherwise
    row = ctx.read(FACT, "order_date", columns=["county_code", "net_revenue_kes"]).agg(
        F.sum("net_revenue_kes").alias("total"),
        F.sum(F.when(F.col("county_code") == 0, F.col("net_revenue_kes"))).alias("unknown"),
        F.count(F.lit(1)).alias("lines"),
        F.sum(F.when(F.col("county_code") == 0, 1).otherwise(0)).alias("unknown_lines"),
    ).collect()[0]
    total = float(row["total"] or 0)
    share = float(row["unknown"] or 0) / total if total else 0.0
    threshold = ctx.quality.unknown_county_warn_share
    return dg.AssetCheckResult(
        passed=share <= threshold,
        metadata={"unknown_revenue_share": dg.MetadataValue.float(round(share, 6)),
                  "threshold": dg.MetadataValue.float(threshold),
                  "unknown_lines": int(row["unknown_lines"] or 0), "lines": int(row["lines"]),
                  "scope": ctx.scope("order_date") or "whole table"},
    )


def reconciles_with(table: str, source: str, known_counties_only: bool) -> TableCheck:
    """Total net revenue of ``table`` equals that of ``source`` (within this run's days when both are daily)."""
    key, source_key = CURATED_KEYS[table], CURATED_KEYS[source]
    both_daily = table in DAY_TABLES and source in DAY_TABLES

    @table_check(f"reconciles_with_{source}", f"Total net revenue of {table} equals {source}"
                 + (" without the Unknown county" if known_counties_only else "") + ", to the cent.")
    def check(ctx: CheckContext) -> dg.AssetCheckResult:
        column = "order_date" if both_daily else None
        src = ctx.read(source_key, column, columns=["county_code", "net_revenue_kes"])
        if known_counties_only:
            src = src.where(F.col("county_code") != 0)
        expected = src.agg(F.coalesce(F.sum("net_revenue_kes"), F.lit(0)).cast("decimal(38,2)")).collect()[0][0]
        actual = ctx.read(key, column, columns=["net_revenue_kes"]).agg(
            F.coalesce(F.sum("net_revenue_kes"), F.lit(0)).cast("decimal(38,2)")
        ).collect()[0][0]
        return dg.AssetCheckResult(
            passed=expected == actual,
            metadata={"expected_kes": str(expected), "actual_kes": str(actual),
                      "difference_kes": str(actual - expected), "source": f"curated.{source}",
                      "scope": (ctx.scope(column) if column else None) or "whole table"},
        )

    return check


@table_check("ten_per_county", "Each known county has min(10, products it sold) rows with distinct ranks.")
def ten_per_county(ctx: CheckContext) -> dg.AssetCheckResult:
    sold = (ctx.lake.read(DAILY_SALES, columns=["county_code", "product_id"]).where("county_code != 0")
            .groupBy("county_code").agg(F.countDistinct("product_id").alias("products")))
    top = ctx.lake.read(CURATED_KEYS["top_products_by_county"]).groupBy("county_code").agg(
        F.count(F.lit(1)).alias("n"), F.countDistinct("rank").alias("ranks"))
    bad = (sold.join(top, "county_code", "full_outer")
           .where(~((F.coalesce("n", F.lit(0)) == F.least(F.lit(10), F.coalesce("products", F.lit(0))))
                    & (F.coalesce("ranks", F.lit(0)) == F.coalesce("n", F.lit(0)))))
           .limit(5).collect())
    return dg.AssetCheckResult(passed=not bad, metadata={"bad_counties": dg.MetadataValue.json(
        [r.asDict() for r in bad])})


@table_check("shares_sum_to_one", "The order shares, and the revenue shares of every county and month with revenue, "
             "sum to 1 (within 1e-9).")
def shares_sum_to_one(ctx: CheckContext) -> dg.AssetCheckResult:
    months = (ctx.lake.read(CURATED_KEYS["payment_method_mix"])
              .groupBy("county_code", "month")
              .agg(F.sum("order_share").alias("orders"), F.sum("revenue_share").alias("revenue"),
                   F.sum("net_revenue_kes").alias("kes")))
    off = months.where((F.abs(F.col("orders") - 1) > 1e-9)
                       | ((F.col("kes") > 0) & (F.abs(F.col("revenue") - 1) > 1e-9)))
    row = months.agg(F.count(F.lit(1)).alias("months")).collect()[0]
    bad = [r.asDict() for r in off.limit(5).collect()]
    return dg.AssetCheckResult(passed=not bad, metadata={
        "county_months": int(row["months"]), "sample_off": dg.MetadataValue.json([
            {k: str(v) for k, v in r.items()} for r in bad])})


CHECKS = {
    "fact_sales": TableChecks(schemas.fact_sales, [reconciles_with_refined, unknown_county_share]),
    "daily_sales": TableChecks(schemas.daily_sales, [reconciles_with("daily_sales", "fact_sales", False)]),
    "customer_orders": TableChecks(schemas.customer_orders, [reconciles_with("customer_orders", "fact_sales", False)]),
    "county_monthly_kpis": TableChecks(schemas.county_monthly_kpis,
                                       [reconciles_with("county_monthly_kpis", "customer_orders", True)]),
    "category_share_by_county": TableChecks(schemas.category_share_by_county,
                                            [reconciles_with("category_share_by_county", "daily_sales", True)]),
    "top_products_by_county": TableChecks(schemas.top_products_by_county, [ten_per_county]),
    "product_performance": TableChecks(schemas.product_performance,
                                       [reconciles_with("product_performance", "daily_sales", False)]),
    "payment_method_mix": TableChecks(schemas.payment_method_mix, [
        reconciles_with("payment_method_mix", "customer_orders", True), shares_sum_to_one]),
}
