"""Curated -> insights: the business's monthly questions, per county and month where it fits. Plain DataFrame ->
DataFrame functions (no Dagster, no platform); the rules are documented in ``schemas.insights``.

Inputs: ``sold`` is curated.customer_orders (one row per customer and sold order), ``received`` is refined.orders
(every order, whatever its status), ``daily`` is curated.daily_sales, ``fact`` is curated.fact_sales.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ecommerce_lake.logic.counties import UNKNOWN
from ecommerce_lake.schemas import insights as schemas
from ecommerce_lake.schemas.spark import conform

TOTAL = "decimal(20,2)"


def _month(df: DataFrame) -> DataFrame:
    return df.withColumn("month", F.trunc("order_date", "month"))


def _share(num: str, den: str) -> F.Column:
    """num / den as a double; null when den is 0."""
    return F.when(F.col(den) > 0, F.col(num).cast("double") / F.col(den).cast("double"))


def _growth(df: DataFrame, keys: Sequence[str], months: int) -> DataFrame:
    """``df`` (keys, month, net_revenue_kes) with the revenue ``months`` earlier, as ``__rev_<months>``."""
    earlier = df.select(*keys, F.add_months("month", months).alias("month"),
                        F.col("net_revenue_kes").alias(f"__rev_{months}"))
    return df.join(earlier, [*keys, "month"], "left")


def _scorecard(sold: DataFrame, received: DataFrame, keys: Sequence[str]) -> DataFrame:
    """The order measures of ``schemas.insights._order_measures`` per ``keys`` and month (the customer measures
    come from :func:`_customers`). ``sold`` and ``received`` are already narrowed to the scope (known counties, or
    everything)."""
    scope = [*keys, "month"]
    sold = _month(sold)
    sales = sold.groupBy(*scope).agg(
        F.sum("net_revenue_kes").cast(TOTAL).alias("net_revenue_kes"),
        F.count(F.lit(1)).alias("orders"),
        F.sum(F.when(F.col("payment_method") == "mpesa", 1).otherwise(0)).alias("__mpesa"),
        F.sum(F.when(F.col("payment_method") == "cash_on_delivery", 1).otherwise(0)).alias("__cod"),
    )
    outcomes = _month(received).groupBy(*scope).agg(
        F.count(F.lit(1)).alias("orders_received"),
        F.sum(F.when(F.col("status") == "cancelled", 1).otherwise(0)).cast("long").alias("cancelled_orders"),
        F.sum(F.when(F.col("status") == "returned", 1).otherwise(0)).cast("long").alias("returned_orders"),
    )
    out = outcomes.join(sales, scope, "left")
    out = out.withColumns({
        "net_revenue_kes": F.coalesce("net_revenue_kes", F.lit(0).cast(TOTAL)),
        "orders": F.coalesce("orders", F.lit(0)).cast("long"),
    })
    out = _growth(_growth(out, keys, 1), keys, 12)
    return out.select(
        "*",
        F.when(F.col("orders") > 0, F.round(F.col("net_revenue_kes").cast("decimal(38,6)") / F.col("orders"), 2))
        .cast(TOTAL).alias("avg_order_value_kes"),
        _share("__mpesa", "orders").alias("mpesa_order_share"),
        _share("__cod", "orders").alias("cash_on_delivery_order_share"),
        (F.col("cancelled_orders") / F.col("orders_received")).alias("cancellation_rate"),
        (F.col("returned_orders") / F.col("orders_received")).alias("return_rate"),
        (F.when(F.col("__rev_1") > 0, F.col("net_revenue_kes").cast("double") / F.col("__rev_1").cast("double"))
         - 1).alias("revenue_mom_growth"),
        (F.when(F.col("__rev_12") > 0, F.col("net_revenue_kes").cast("double") / F.col("__rev_12").cast("double"))
         - 1).alias("revenue_yoy_growth"),
    )


def _customers(sold: DataFrame, everyone: DataFrame, keys: Sequence[str]) -> DataFrame:
    """Per ``keys`` and month: distinct customers, the new ones (first sold order ever in that month) and the
    repeat ones (two or more sold orders, anywhere, by the end of that month)."""
    per_month = _month(everyone).groupBy("customer_pseudonym", "month").agg(F.count(F.lit(1)).alias("__n"))
    history = Window.partitionBy("customer_pseudonym").orderBy("month").rowsBetween(
        Window.unboundedPreceding, Window.currentRow)
    per_month = per_month.select(
        "customer_pseudonym", "month",
        F.sum("__n").over(history).alias("__orders_so_far"),
        F.min("month").over(Window.partitionBy("customer_pseudonym")).alias("__first_month"),
    )
    seen = _month(sold).select(*keys, "month", "customer_pseudonym").distinct()
    return seen.join(per_month, ["customer_pseudonym", "month"]).groupBy(*keys, "month").agg(
        F.count(F.lit(1)).alias("customers"),
        F.sum(F.when(F.col("__first_month") == F.col("month"), 1).otherwise(0)).cast("long").alias("new_customers"),
        F.sum(F.when(F.col("__orders_so_far") >= 2, 1).otherwise(0)).alias("__repeat"),
    )


def _with_customers(card: DataFrame, customers: DataFrame, keys: Sequence[str]) -> DataFrame:
    out = card.join(customers, [*keys, "month"], "left").withColumns({
        "customers": F.coalesce("customers", F.lit(0)).cast("long"),
        "new_customers": F.coalesce("new_customers", F.lit(0)).cast("long"),
    })
    return out.withColumns({
        "returning_customers": F.col("customers") - F.col("new_customers"),
        "repeat_customer_share": _share("__repeat", "customers"),
    })


def county_scorecard(sold: DataFrame, received: DataFrame, counties: DataFrame) -> DataFrame:
    known = F.col("county_code") != UNKNOWN
    keys = ["county_code"]
    card = _with_customers(_scorecard(sold.where(known), received.where(known), keys),
                           _customers(sold.where(known), sold, keys), keys)
    by_month = Window.partitionBy("month")
    card = card.withColumns({
        "revenue_rank": F.rank().over(by_month.orderBy(F.col("net_revenue_kes").desc())),
        "orders_rank": F.rank().over(by_month.orderBy(F.col("orders").desc())),
    })
    people = counties.select("county_code", "county_name", "population_2019")
    card = card.join(F.broadcast(people), "county_code", "left").withColumns({
        "orders_per_1000_residents": F.col("orders") * 1000.0 / F.col("population_2019"),
        "customers_per_1000_residents": F.col("customers") * 1000.0 / F.col("population_2019"),
    })
    return conform(card, schemas.county_scorecard)


def national_monthly(sold: DataFrame, received: DataFrame) -> DataFrame:
    card = _with_customers(_scorecard(sold, received, []), _customers(sold, sold, []), [])
    return conform(card, schemas.national_monthly)


def category_mix(daily: DataFrame) -> DataFrame:
    per = (
        _month(daily.where(F.col("county_code") != UNKNOWN))
        .groupBy("county_code", "month", "category")
        .agg(F.first("county_name").alias("county_name"),
             F.sum("net_revenue_kes").cast(TOTAL).alias("net_revenue_kes"),
             F.sum("units").cast("long").alias("units"))
    )
    county_month = Window.partitionBy("county_code", "month")
    total = F.sum("net_revenue_kes").over(county_month)
    out = per.withColumns({
        "share_of_county_revenue": F.when(total > 0, F.col("net_revenue_kes").cast("double") / total.cast("double"))
        .otherwise(F.lit(0.0)),
        "rank_in_county": F.row_number().over(
            county_month.orderBy(F.col("net_revenue_kes").desc(), F.col("category").asc())),
    })
    return conform(out, schemas.category_mix)


def top_products_monthly(daily: DataFrame, products: DataFrame, n: int = schemas.TOP_PRODUCTS_PER_MONTH) -> DataFrame:
    per = (
        _month(daily.where(F.col("county_code") != UNKNOWN))
        .groupBy("county_code", "month", "product_id")
        .agg(F.first("county_name").alias("county_name"), F.first("category").alias("category"),
             F.sum("net_revenue_kes").cast(TOTAL).alias("net_revenue_kes"),
             F.sum("units").cast("long").alias("units"))
    )
    rank = F.row_number().over(Window.partitionBy("county_code", "month").orderBy(
        F.col("net_revenue_kes").desc(), F.col("product_id").asc()))
    top = per.withColumn("rank", rank).where(F.col("rank") <= n)
    out = top.join(F.broadcast(products.select("product_id", "product_name")), "product_id", "left")
    return conform(out, schemas.top_products_monthly)


def price_band_column(price: str = "unit_price_kes") -> tuple[F.Column, F.Column]:
    """(label, position) of a unit price's band (``schemas.insights.PRICE_BANDS``)."""
    label, order = None, None
    for i, (name, floor) in reversed(list(enumerate(schemas.PRICE_BANDS, start=1))):
        cond = F.col(price) >= floor
        label = F.when(cond, F.lit(name)) if label is None else label.when(cond, F.lit(name))
        order = F.when(cond, F.lit(i)) if order is None else order.when(cond, F.lit(i))
    return label, order


def price_bands(fact: DataFrame) -> DataFrame:
    label, order = price_band_column()
    per = (
        _month(fact).withColumns({"price_band": label, "band_order": order})
        .groupBy("month", "category", "price_band", "band_order")
        .agg(F.count(F.lit(1)).alias("lines"), F.sum("quantity").cast("long").alias("units"),
             F.sum("net_revenue_kes").cast(TOTAL).alias("net_revenue_kes"))
    )
    category_units = F.sum("units").over(Window.partitionBy("month", "category"))
    out = per.withColumn("share_of_category_units", F.col("units") / category_units)
    return conform(out, schemas.price_bands)
