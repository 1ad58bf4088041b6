"""Curated layer: the analysts' tables, by the business rules in ``ecommerce_lake.schemas.curated``."""

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.defs.conditions import with_automation
from ecommerce_lake.defs.common import (
    CheckEnv, ExtraCheck, QualityResource, TableChecks, emit, key_of, table_asset,
)
from ecommerce_lake.defs.refined import REFINED_KEYS
from ecommerce_lake.logic import curate
from ecommerce_lake.partitions import DAILY, SINGLE_RUN
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.schemas import curated as schemas

CURATED_KEYS = {s.name.split(".")[1]: key_of(s) for s in schemas.ALL}
FACT = CURATED_KEYS["fact_sales"]
DAILY_SALES = CURATED_KEYS["daily_sales"]
PARTITION_COLUMN = {"fact_sales": "order_date", "daily_sales": "order_date", "customer_orders": "order_date"}


# ---- checks -------------------------------------------------------------------------------------------
REFINED_SOLD_REVENUE_SQL = """
SELECT CAST(COALESCE(SUM(CAST(i.quantity AS DECIMAL(28,2)) * i.unit_price_kes - i.discount_kes), 0)
            AS DECIMAL(38,2)) AS revenue,
       COUNT(*) AS lines
FROM {items} i JOIN {orders} o ON i.order_id = o.order_id
WHERE o.status IN ('paid', 'shipped', 'delivered')
"""


def _reconciles_with_refined(env: CheckEnv) -> dg.AssetCheckResult:
    spark = env.lake.session()
    env.read(REFINED_KEYS["order_items"], "order_date").createOrReplaceTempView("__recon_items")
    env.read(REFINED_KEYS["orders"], "order_date").createOrReplaceTempView("__recon_orders")
    expected = spark.sql(REFINED_SOLD_REVENUE_SQL.format(items="__recon_items", orders="__recon_orders")).collect()[0]
    actual = env.read(FACT, "order_date").agg(
        F.coalesce(F.sum("net_revenue_kes"), F.lit(0)).cast("decimal(38,2)").alias("revenue"),
        F.count(F.lit(1)).alias("lines"),
    ).collect()[0]
    return dg.AssetCheckResult(
        passed=expected["revenue"] == actual["revenue"] and expected["lines"] == actual["lines"],
        metadata={
            "scope": env.scope("order_date") or "whole table",
            "refined_sold_revenue_kes": str(expected["revenue"]),
            "fact_sales_revenue_kes": str(actual["revenue"]),
            "difference_kes": str(actual["revenue"] - expected["revenue"]),
            "refined_sold_lines": int(expected["lines"]),
            "fact_sales_lines": int(actual["lines"]),
        },
    )


def _unknown_county_share(env: CheckEnv) -> dg.AssetCheckResult:
    # the run's days (new data: a bad batch is not diluted by two years of history), the whole table otherwise
    row = env.read(FACT, "order_date", columns=["county_code", "net_revenue_kes"]).agg(
        F.sum("net_revenue_kes").alias("total"),
        F.sum(F.when(F.col("county_code") == 0, F.col("net_revenue_kes"))).alias("unknown"),
        F.count(F.lit(1)).alias("lines"),
        F.sum(F.when(F.col("county_code") == 0, 1).otherwise(0)).alias("unknown_lines"),
    ).collect()[0]
    total = float(row["total"] or 0)
    share = float(row["unknown"] or 0) / total if total else 0.0
    threshold = env.quality.unknown_county_warn_share
    return dg.AssetCheckResult(
        passed=share <= threshold,
        metadata={"unknown_revenue_share": dg.MetadataValue.float(round(share, 6)),
                  "threshold": dg.MetadataValue.float(threshold),
                  "unknown_lines": int(row["unknown_lines"] or 0), "lines": int(row["lines"]),
                  "scope": env.scope("order_date") or "whole table"},
    )


def _reconciles_with(table: str, source: str, known_counties_only: bool) -> ExtraCheck:
    """Total net revenue of ``table`` equals that of ``source`` (within this run's days when both are daily)."""
    key, source_key = CURATED_KEYS[table], CURATED_KEYS[source]
    both_daily = table in PARTITION_COLUMN and source in PARTITION_COLUMN

    def fn(env: CheckEnv) -> dg.AssetCheckResult:
        column = "order_date" if both_daily else None
        src = env.read(source_key, column, columns=["county_code", "net_revenue_kes"])
        if known_counties_only:
            src = src.where(F.col("county_code") != 0)
        expected = src.agg(F.coalesce(F.sum("net_revenue_kes"), F.lit(0)).cast("decimal(38,2)")).collect()[0][0]
        actual = env.read(key, column, columns=["net_revenue_kes"]).agg(
            F.coalesce(F.sum("net_revenue_kes"), F.lit(0)).cast("decimal(38,2)")
        ).collect()[0][0]
        return dg.AssetCheckResult(
            passed=expected == actual,
            metadata={"expected_kes": str(expected), "actual_kes": str(actual),
                      "difference_kes": str(actual - expected), "source": f"curated.{source}",
                      "scope": (env.scope(column) if column else None) or "whole table"},
        )

    return ExtraCheck(
        f"reconciles_with_{source}",
        f"Total net revenue of {table} equals {source}"
        + (" without the Unknown county" if known_counties_only else "") + ", to the cent.",
        fn, blocking=True,
    )


def _ten_per_county(env: CheckEnv) -> dg.AssetCheckResult:
    sold = (env.lake.read(DAILY_SALES, columns=["county_code", "product_id"]).where("county_code != 0")
            .groupBy("county_code").agg(F.countDistinct("product_id").alias("products")))
    top = env.lake.read(CURATED_KEYS["top_products_by_county"]).groupBy("county_code").agg(
        F.count(F.lit(1)).alias("n"), F.countDistinct("rank").alias("ranks"))
    bad = (sold.join(top, "county_code", "full_outer")
           .where(~((F.coalesce("n", F.lit(0)) == F.least(F.lit(10), F.coalesce("products", F.lit(0))))
                    & (F.coalesce("ranks", F.lit(0)) == F.coalesce("n", F.lit(0)))))
           .limit(5).collect())
    return dg.AssetCheckResult(passed=not bad, metadata={"bad_counties": dg.MetadataValue.json(
        [r.asDict() for r in bad])})


EXTRA = {
    "fact_sales": [
        ExtraCheck("reconciles_with_refined",
                   "fact_sales net revenue and line count equal refined sold-line revenue (to the cent) and count, "
                   "computed in SQL straight from refined order_items and orders (for the run's days).",
                   _reconciles_with_refined, blocking=True),
        ExtraCheck("unknown_county_share", "Share of sold net revenue whose county is Unknown, in the run's days "
                   "(the whole table in a full run); warns above the threshold "
                   "ECOMMERCE_LAKE_UNKNOWN_COUNTY_WARN_SHARE.", _unknown_county_share),
    ],
    "daily_sales": [_reconciles_with("daily_sales", "fact_sales", known_counties_only=False)],
    "customer_orders": [_reconciles_with("customer_orders", "fact_sales", known_counties_only=False)],
    "county_monthly_kpis": [_reconciles_with("county_monthly_kpis", "customer_orders", known_counties_only=True)],
    "category_share_by_county": [_reconciles_with("category_share_by_county", "daily_sales", known_counties_only=True)],
    "top_products_by_county": [
        ExtraCheck("ten_per_county", "Each known county has min(10, products it sold) rows with distinct ranks.",
                   _ten_per_county, blocking=True),
    ],
    "product_performance": [_reconciles_with("product_performance", "daily_sales", known_counties_only=False)],
}

CHECKS = {s.name.split(".")[1]: TableChecks(s, extra=EXTRA.get(s.name.split(".")[1], ()),
                                             partition_expr=PARTITION_COLUMN.get(s.name.split(".")[1]))
          for s in schemas.ALL}


def _in(key: dg.AssetKey, *columns: str) -> dg.AssetIn:
    return dg.AssetIn(key=key, metadata={"columns": list(columns)} if columns else None)


def _kw(table: str, **extra_metadata) -> dict:
    """``@multi_asset`` arguments of a curated table: its schema's key, docs and metadata, its checks, its
    partitions."""
    kw = table_asset(CHECKS[table], **extra_metadata)
    if table in PARTITION_COLUMN:
        kw.update(partitions_def=DAILY, backfill_policy=SINGLE_RUN)
    return kw


def _emit(table: str, context, lake, quality, compute):
    return emit(context, lake, quality, {table: compute}, [CHECKS[table]])


@dg.multi_asset(
    **_kw("fact_sales", partition_expr="order_date"),
    ins={
        "order_items": _in(REFINED_KEYS["order_items"], "order_id", "line_number", "product_id", "quantity",
                           "unit_price_kes", "discount_kes"),
        "orders": _in(REFINED_KEYS["orders"], "order_id", "order_date", "status", "county_code", "county_name",
                      "customer_pseudonym", "payment_method", "channel"),
        "products": _in(REFINED_KEYS["products"], "product_id", "category", "unit_cost_kes"),
    },
)
def fact_sales(context: dg.AssetExecutionContext, order_items: DataFrame, orders: DataFrame, products: DataFrame,
               lake: LakeResource, quality: QualityResource):
    yield from _emit("fact_sales", context, lake, quality, lambda: curate.fact_sales(order_items, orders, products))


@dg.multi_asset(**_kw("daily_sales", partition_expr="order_date"), ins={"fact": _in(FACT)})
def daily_sales(context: dg.AssetExecutionContext, fact: DataFrame, lake: LakeResource, quality: QualityResource):
    yield from _emit("daily_sales", context, lake, quality, lambda: curate.daily_sales(fact))


@dg.multi_asset(**_kw("customer_orders", partition_expr="order_date"), ins={"fact": _in(FACT)})
def customer_orders(context: dg.AssetExecutionContext, fact: DataFrame, lake: LakeResource,
                    quality: QualityResource):
    yield from _emit("customer_orders", context, lake, quality, lambda: curate.customer_orders(fact))


@dg.multi_asset(**_kw("county_monthly_kpis"),
                ins={"orders": _in(CURATED_KEYS["customer_orders"]), "counties": _in(REFINED_KEYS["counties"])})
def county_monthly_kpis(context: dg.AssetExecutionContext, orders: DataFrame, counties: DataFrame,
                        lake: LakeResource, quality: QualityResource):
    yield from _emit("county_monthly_kpis", context, lake, quality,
                     lambda: curate.county_monthly_kpis(orders, counties))


@dg.multi_asset(**_kw("category_share_by_county"), ins={"daily": _in(DAILY_SALES)})
def category_share_by_county(context: dg.AssetExecutionContext, daily: DataFrame, lake: LakeResource,
                             quality: QualityResource):
    yield from _emit("category_share_by_county", context, lake, quality,
                     lambda: curate.category_share_by_county(daily))


@dg.multi_asset(**_kw("top_products_by_county", zorder_by=["county_code"]),
                ins={"daily": _in(DAILY_SALES),
                     "products": _in(REFINED_KEYS["products"], "product_id", "product_name")})
def top_products_by_county(context: dg.AssetExecutionContext, daily: DataFrame, products: DataFrame,
                           lake: LakeResource, quality: QualityResource):
    yield from _emit("top_products_by_county", context, lake, quality,
                     lambda: curate.top_products_by_county(daily, products))


@dg.multi_asset(**_kw("product_performance"),
                ins={"daily": _in(DAILY_SALES), "products": _in(REFINED_KEYS["products"])})
def product_performance(context: dg.AssetExecutionContext, daily: DataFrame, products: DataFrame,
                        lake: LakeResource, quality: QualityResource):
    yield from _emit("product_performance", context, lake, quality,
                     lambda: curate.product_performance(daily, products))


ASSETS = with_automation([fact_sales, daily_sales, customer_orders, county_monthly_kpis, category_share_by_county,
                          top_products_by_county, product_performance])
defs = dg.Definitions(assets=ASSETS)
