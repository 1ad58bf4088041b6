"""Refined -> curated: the business tables analysts query. Plain DataFrame -> DataFrame functions.

Money is exact decimal throughout: line revenue is decimal(18,2); sums are decimal(20,2); ratios that are
money (average order value, revenue per 1,000 residents) are rounded half-up to the cent; shares are doubles.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ecommerce_lake.logic.counties import UNKNOWN
from ecommerce_lake.schemas.spark import conform
from ecommerce_lake.schemas import curated as schemas

SOLD_STATUSES = ("paid", "shipped", "delivered")
MONEY = "decimal(18,2)"
TOTAL = "decimal(20,2)"
UNKNOWN_CATEGORY = "Unknown"


def _sum_money(col: str) -> F.Column:
    return F.sum(col).cast(TOTAL)


def _div_money(num: F.Column, den: F.Column) -> F.Column:
    """num / den rounded half-up to the cent; null when den is 0."""
    return F.when(den != 0, F.round(num.cast("decimal(38,6)") / den, 2)).cast(TOTAL)


def fact_sales(
    order_items: DataFrame,
    orders: DataFrame,
    products: DataFrame,
    sold_statuses: Sequence[str] = SOLD_STATUSES,
) -> DataFrame:
    sold_orders = orders.where(F.col("status").isin(*sold_statuses)).select(
        "order_id", "order_date", "county_code", "county_name", "customer_pseudonym",
        "payment_method", "channel", F.col("status").alias("order_status"),
    )
    product_attrs = products.select("product_id", "category", "unit_cost_kes")
    lines = order_items.join(sold_orders, "order_id", "inner").join(F.broadcast(product_attrs), "product_id", "left")
    net = (F.col("quantity").cast("decimal(28,2)") * F.col("unit_price_kes") - F.col("discount_kes")).cast(MONEY)
    cost = (F.col("quantity").cast("decimal(28,2)") * F.col("unit_cost_kes")).cast(MONEY)
    out = lines.select(
        "order_id", "line_number", "order_date", "county_code", "county_name", "customer_pseudonym",
        "product_id",
        F.coalesce("category", F.lit(UNKNOWN_CATEGORY)).alias("category"),
        "quantity", "unit_price_kes", "discount_kes",
        net.alias("net_revenue_kes"),
        cost.alias("cost_kes"),
        "payment_method", "channel", "order_status",
    )
    return conform(out, schemas.fact_sales)


def daily_sales(fact: DataFrame) -> DataFrame:
    out = fact.groupBy("order_date", "county_code", "product_id").agg(
        F.first("county_name").alias("county_name"),
        F.first("category").alias("category"),
        F.sum("quantity").cast("long").alias("units"),
        _sum_money("net_revenue_kes").alias("net_revenue_kes"),
        F.countDistinct("order_id").alias("orders"),
        F.count(F.lit(1)).alias("lines"),
        F.sum("cost_kes").cast(TOTAL).alias("cost_kes"),
        F.sum(F.when(F.col("cost_kes").isNull(), 1).otherwise(0)).cast("long").alias("lines_without_cost"),
    )
    return conform(out, schemas.daily_sales)


def customer_orders(fact: DataFrame) -> DataFrame:
    out = fact.groupBy("customer_pseudonym", "order_id").agg(
        F.first("order_date").alias("order_date"),
        F.first("county_code").alias("county_code"),
        F.first("payment_method").alias("payment_method"),
        _sum_money("net_revenue_kes").alias("net_revenue_kes"),
        F.sum("quantity").cast("long").alias("units"),
        F.count(F.lit(1)).alias("lines"),
    )
    return conform(out, schemas.customer_orders)


def county_monthly_kpis(orders: DataFrame, counties: DataFrame) -> DataFrame:
    """From curated.customer_orders (one row per sold order: county, date, revenue, units, payment method)."""
    names = counties.select("county_code", "county_name", "population_2019")
    with_month = orders.withColumn("month", F.trunc("order_date", "month"))
    national = with_month.groupBy("month").agg(_sum_money("net_revenue_kes").alias("national_net_revenue_kes"))
    agg = (
        with_month.where(F.col("county_code") != UNKNOWN)
        .groupBy("county_code", "month")
        .agg(
            _sum_money("net_revenue_kes").alias("net_revenue_kes"),
            F.count(F.lit(1)).alias("orders"),
            F.countDistinct("customer_pseudonym").alias("customers"),
            F.sum("units").cast("long").alias("units"),
            (F.sum(F.when(F.col("payment_method") == "mpesa", 1).otherwise(0)) / F.count(F.lit(1))).alias(
                "mpesa_order_share"),
        )
    )
    out = (
        agg.join(national, "month")
        .join(F.broadcast(names), "county_code", "left")
        .select(
            "county_code", "county_name", "month", "net_revenue_kes", "orders", "customers", "units",
            _div_money(F.col("net_revenue_kes"), F.col("orders")).alias("avg_order_value_kes"),
            _div_money(F.col("net_revenue_kes") * 1000, F.col("population_2019")).alias(
                "revenue_per_1000_residents_kes"
            ),
            "national_net_revenue_kes",
            F.when(F.col("national_net_revenue_kes") > 0,
                   F.col("net_revenue_kes").cast("double") / F.col("national_net_revenue_kes").cast("double"))
            .otherwise(F.lit(0.0)).alias("share_of_national_revenue"),
            "mpesa_order_share",
        )
    )
    return conform(out, schemas.county_monthly_kpis)


def payment_method_mix(orders: DataFrame, counties: DataFrame) -> DataFrame:
    """From curated.customer_orders: per known county, month and payment method, the sold orders and their net
    revenue, and their shares of the county's month."""
    by_method = (
        orders.where(F.col("county_code") != UNKNOWN)
        .withColumn("month", F.trunc("order_date", "month"))
        .groupBy("county_code", "month", "payment_method")
        .agg(F.count(F.lit(1)).alias("orders"), _sum_money("net_revenue_kes").alias("net_revenue_kes"))
    )
    month = Window.partitionBy("county_code", "month")
    county_orders, county_revenue = F.sum("orders").over(month), F.sum("net_revenue_kes").over(month)
    out = by_method.join(F.broadcast(counties.select("county_code", "county_name")), "county_code", "left").select(
        "county_code", "county_name", "month", "payment_method", "orders", "net_revenue_kes",
        (F.col("orders") / county_orders).alias("order_share"),
        F.when(county_revenue > 0, F.col("net_revenue_kes").cast("double") / county_revenue.cast("double"))
        .otherwise(F.lit(0.0)).alias("revenue_share"),
    )
    return conform(out, schemas.payment_method_mix)


def category_share_by_county(daily: DataFrame) -> DataFrame:
    per = (
        daily.where(F.col("county_code") != UNKNOWN)
        .groupBy("county_code", "category")
        .agg(F.first("county_name").alias("county_name"), _sum_money("net_revenue_kes").alias("net_revenue_kes"))
    )
    total = F.sum("net_revenue_kes").over(Window.partitionBy("county_code"))
    out = per.withColumn(
        "share_of_county_revenue",
        F.when(total > 0, F.col("net_revenue_kes").cast("double") / total.cast("double")).otherwise(F.lit(0.0)),
    )
    return conform(out, schemas.category_share_by_county)


def top_products_by_county(daily: DataFrame, products: DataFrame, n: int = 10) -> DataFrame:
    per = (
        daily.where(F.col("county_code") != UNKNOWN)
        .groupBy("county_code", "product_id")
        .agg(
            F.first("county_name").alias("county_name"),
            F.first("category").alias("category"),
            _sum_money("net_revenue_kes").alias("net_revenue_kes"),
            F.sum("units").cast("long").alias("units"),
        )
    )
    rank = F.row_number().over(
        Window.partitionBy("county_code").orderBy(F.col("net_revenue_kes").desc(), F.col("product_id").asc())
    )
    top = per.withColumn("rank", rank).where(F.col("rank") <= n)
    names = products.select("product_id", "product_name")
    out = top.join(F.broadcast(names), "product_id", "left")
    return conform(out, schemas.top_products_by_county)


def product_performance(daily: DataFrame, products: DataFrame) -> DataFrame:
    """From curated.daily_sales: an order has one day and one county, so summing daily distinct orders per
    (day, county) gives each product's distinct orders."""
    sold = daily.groupBy("product_id").agg(
        F.sum("units").cast("long").alias("units"),
        _sum_money("net_revenue_kes").alias("net_revenue_kes"),
        F.sum("orders").cast("long").alias("orders"),
        F.countDistinct(F.when(F.col("county_code") != UNKNOWN, F.col("county_code"))).alias("counties_reached"),
        F.sum("cost_kes").cast(TOTAL).alias("__cost"),
        F.sum("lines_without_cost").alias("__cost_missing"),
    )
    catalog = products.select("product_id", "product_name", "category", "unit_cost_kes")
    joined = catalog.join(sold, "product_id", "full_outer")
    units = F.coalesce("units", F.lit(0)).cast("long")
    revenue = F.coalesce("net_revenue_kes", F.lit(0)).cast(TOTAL)
    # the margin is known when the product's unit cost is known for every line sold
    cost_known = F.when(F.col("units").isNull(), F.col("unit_cost_kes").isNotNull()).otherwise(
        F.col("__cost_missing") == 0)
    cost = F.when(F.col("units").isNull(), F.lit(0)).otherwise(F.col("__cost")).cast(TOTAL)
    margin = F.when(cost_known, (revenue - cost).cast(TOTAL))
    out = joined.select(
        "product_id",
        "product_name",
        F.coalesce("category", F.lit(UNKNOWN_CATEGORY)).alias("category"),
        units.alias("units"),
        revenue.alias("net_revenue_kes"),
        F.coalesce("orders", F.lit(0)).cast("long").alias("orders"),
        F.coalesce("counties_reached", F.lit(0)).cast("long").alias("counties_reached"),
        _div_money(revenue, units).alias("avg_selling_price_kes"),
        margin.alias("gross_margin_kes"),
        F.when(cost_known & (revenue > 0), margin.cast("double") / revenue.cast("double")).alias("gross_margin_pct"),
    )
    return conform(out, schemas.product_performance)
