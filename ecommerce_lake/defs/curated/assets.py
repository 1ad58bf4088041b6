"""Curated layer: the analysts' tables, by the business rules in ``ecommerce_lake.schemas.curated``."""

import dagster as dg
from pyspark.sql import DataFrame

from ecommerce_lake.defs.curated.checks import CHECKS, DAILY_SALES, FACT
from ecommerce_lake.defs.keys import CURATED_KEYS, REFINED_KEYS
from ecommerce_lake.defs.resources import QualityResource
from ecommerce_lake.defs.tables import emit, table_asset
from ecommerce_lake.logic.curated import curate
from ecommerce_lake.platform.lake import LakeResource


def _in(key: dg.AssetKey, *columns: str) -> dg.AssetIn:
    return dg.AssetIn(key=key, metadata={"columns": list(columns)} if columns else None)


def _kw(table: str) -> dict:
    """``@multi_asset`` arguments of a curated table: all from its schema (key, docs, metadata, partitions) and
    its checks."""
    return table_asset(CHECKS[table])


def _emit(table: str, context, lake, quality, compute):
    return emit(context, lake, quality, {table: compute}, [CHECKS[table]])


@dg.multi_asset(
    **_kw("fact_sales"),
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


@dg.multi_asset(**_kw("daily_sales"), ins={"fact": _in(FACT)})
def daily_sales(context: dg.AssetExecutionContext, fact: DataFrame, lake: LakeResource, quality: QualityResource):
    yield from _emit("daily_sales", context, lake, quality, lambda: curate.daily_sales(fact))


@dg.multi_asset(**_kw("customer_orders"), ins={"fact": _in(FACT)})
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


@dg.multi_asset(**_kw("top_products_by_county"),
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


@dg.multi_asset(**_kw("payment_method_mix"),
                ins={"orders": _in(CURATED_KEYS["customer_orders"], "county_code", "order_date", "payment_method",
                                   "net_revenue_kes"),
                     "counties": _in(REFINED_KEYS["counties"])})
def payment_method_mix(context: dg.AssetExecutionContext, orders: DataFrame, counties: DataFrame,
                       lake: LakeResource, quality: QualityResource):
    yield from _emit("payment_method_mix", context, lake, quality,
                     lambda: curate.payment_method_mix(orders, counties))


ASSETS = [fact_sales, daily_sales, customer_orders, county_monthly_kpis, category_share_by_county,
          top_products_by_county, product_performance, payment_method_mix]
