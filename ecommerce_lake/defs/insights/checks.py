"""Checks of the insight tables (besides their schema checks): each reconciles with the curated or refined table it
summarises, shares sum to one, and the top-five rule."""

from __future__ import annotations

import dagster as dg
from pyspark.sql import functions as F

from ecommerce_lake.defs.checks import CheckContext, TableCheck, TableChecks, table_check
from ecommerce_lake.defs.keys import CURATED_KEYS, INSIGHTS_KEYS, REFINED_KEYS
from ecommerce_lake.schemas import insights as schemas

KNOWN = "county_code != 0"  # a SQL predicate: a Column needs a live Spark session


def _total(df, column: str):
    return df.agg(F.coalesce(F.sum(column), F.lit(0)).cast("decimal(38,2)")).collect()[0][0]


def reconciles(table: str, source: dg.AssetKey, known_counties_only: bool, column: str = "net_revenue_kes",
               source_column: str | None = None, count: bool = False) -> TableCheck:
    """The total of ``column`` in insights ``table`` equals the total of ``source_column`` (or the row count, with
    ``count``) of ``source``, without the Unknown county when ``known_counties_only``."""
    what = "rows" if count else (source_column or column)
    name = f"{column}_reconciles_with_{'_'.join(source.path)}"

    @table_check(name, f"Total {column} of insights.{table} equals the {'number of' if count else 'total'} {what} "
                 f"of {'.'.join(source.path)}{' without the Unknown county' if known_counties_only else ''}.")
    def check(ctx: CheckContext) -> dg.AssetCheckResult:
        src = ctx.lake.read(source, columns=["county_code"] + ([] if count else [source_column or column]))
        if known_counties_only:
            src = src.where(KNOWN)
        expected = src.count() if count else _total(src, source_column or column)
        actual = _total(ctx.lake.read(INSIGHTS_KEYS[table], columns=[column]), column)
        if count:
            actual = int(actual)
        return dg.AssetCheckResult(passed=expected == actual, metadata={
            "expected": str(expected), "actual": str(actual), "source": ".".join(source.path)})

    return check


def shares_sum_to_one(table: str, share: str, by: list[str]) -> TableCheck:
    @table_check(f"{share}_sums_to_one", f"{share} sums to 1 within each ({', '.join(by)}) (within 1e-9) wherever "
                 "there is something to share.")
    def check(ctx: CheckContext) -> dg.AssetCheckResult:
        sums = ctx.lake.read(INSIGHTS_KEYS[table]).groupBy(*by).agg(F.sum(share).alias("total"))
        off = [r.asDict() for r in sums.where((F.abs(F.col("total") - 1) > 1e-9) & (F.col("total") != 0))
               .limit(5).collect()]
        return dg.AssetCheckResult(passed=not off, metadata={"sample_off": dg.MetadataValue.json(
            [{k: str(v) for k, v in r.items()} for r in off])})

    return check


@table_check("top_n_per_county_month", f"Each known county and month has min({schemas.TOP_PRODUCTS_PER_MONTH}, "
             "products it sold) rows with ranks 1..n.")
def top_n_per_county_month(ctx: CheckContext) -> dg.AssetCheckResult:
    sold = (ctx.lake.read(CURATED_KEYS["daily_sales"], columns=["county_code", "order_date", "product_id"])
            .where(KNOWN).withColumn("month", F.trunc("order_date", "month"))
            .groupBy("county_code", "month").agg(F.countDistinct("product_id").alias("products")))
    top = ctx.lake.read(INSIGHTS_KEYS["top_products_monthly"]).groupBy("county_code", "month").agg(
        F.count(F.lit(1)).alias("n"), F.max("rank").alias("max_rank"))
    n = F.coalesce("n", F.lit(0))
    bad = (sold.join(top, ["county_code", "month"], "full_outer")
           .where(~((n == F.least(F.lit(schemas.TOP_PRODUCTS_PER_MONTH), F.coalesce("products", F.lit(0))))
                    & (F.coalesce("max_rank", F.lit(0)) == n)))
           .limit(5).collect())
    return dg.AssetCheckResult(passed=not bad, metadata={"bad_county_months": dg.MetadataValue.json(
        [{k: str(v) for k, v in r.asDict().items()} for r in bad])})


ORDERS = CURATED_KEYS["customer_orders"]
CHECKS = {
    "county_scorecard": TableChecks(schemas.county_scorecard, [
        reconciles("county_scorecard", ORDERS, True),
        reconciles("county_scorecard", REFINED_KEYS["orders"], True, column="orders_received", count=True),
    ]),
    "national_monthly": TableChecks(schemas.national_monthly, [
        reconciles("national_monthly", ORDERS, False),
        reconciles("national_monthly", REFINED_KEYS["orders"], False, column="orders_received", count=True),
    ]),
    "category_mix": TableChecks(schemas.category_mix, [
        reconciles("category_mix", CURATED_KEYS["daily_sales"], True),
        shares_sum_to_one("category_mix", "share_of_county_revenue", ["county_code", "month"]),
    ]),
    "top_products_monthly": TableChecks(schemas.top_products_monthly, [top_n_per_county_month]),
    "price_bands": TableChecks(schemas.price_bands, [
        reconciles("price_bands", CURATED_KEYS["fact_sales"], False),
        shares_sum_to_one("price_bands", "share_of_category_units", ["month", "category"]),
    ]),
}
