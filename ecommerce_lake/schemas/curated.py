"""Curated tables: the analysts' interface. No personal data: customers appear only as pseudonyms.

Business rules: a line is *sold* when its order's current status is paid, shipped or delivered;
net_revenue_kes = quantity x unit_price_kes - discount_kes (exact decimal; shipping is not revenue);
order_date is the Africa/Nairobi date of order_ts; a product's category is its latest category ('Unknown'
when the product is unknown). County 0 ('Unknown') stays in fact_sales, daily_sales and national totals and
is left out of per-county tables, rankings and shares.
"""

from __future__ import annotations

import pandera.pyspark as pa

from ecommerce_lake.core.contract import CHANNELS, ORDER_STATUSES, PAYMENT_METHODS, UNKNOWN
from ecommerce_lake.schemas._base import (
    DATE,
    DOUBLE,
    HEX64,
    INT,
    LONG,
    MONEY,
    MONEY_TOTAL,
    STRING,
    column,
    table,
)

KNOWN_COUNTY = pa.Check.in_range(1, 47)
ANY_COUNTY = pa.Check.in_range(0, 47)
SHARE = pa.Check.in_range(0.0, 1.0)

fact_sales = table(
    "curated.fact_sales",
    "One row per sold order line.",
    {
        "order_id": column(STRING, "Order id.", lineage=["refined.order_items.order_id"]),
        "line_number": column(INT, "Line number.", checks=[pa.Check.ge(1)],
                              lineage=["refined.order_items.line_number"]),
        "order_date": column(DATE, "Africa/Nairobi date of the order.", lineage=["refined.orders.order_date"]),
        "county_code": column(INT, "Order county (0 = Unknown).", checks=[ANY_COUNTY],
                              lineage=["refined.orders.county_code"]),
        "county_name": column(STRING, "Order county name.", lineage=["refined.orders.county_name"]),
        "customer_pseudonym": column(STRING, "Customer pseudonym (HMAC).", checks=[pa.Check.str_matches(HEX64)],
                                     lineage=["refined.orders.customer_pseudonym"]),
        "product_id": column(STRING, "Product id.", lineage=["refined.order_items.product_id"]),
        "category": column(STRING, "Latest category of the product ('Unknown' if the product is unknown).",
                           lineage=["refined.products.category"]),
        "quantity": column(INT, "Units.", checks=[pa.Check.ge(1)], lineage=["refined.order_items.quantity"]),
        "unit_price_kes": column(MONEY, "Unit price.", checks=[pa.Check.ge(0)],
                                 lineage=["refined.order_items.unit_price_kes"]),
        "discount_kes": column(MONEY, "Line discount.", checks=[pa.Check.ge(0)],
                               lineage=["refined.order_items.discount_kes"]),
        "net_revenue_kes": column(MONEY, "quantity x unit_price_kes - discount_kes.", checks=[pa.Check.ge(0)],
                                  lineage=["refined.order_items.quantity", "refined.order_items.unit_price_kes",
                                           "refined.order_items.discount_kes"]),
        "cost_kes": column(MONEY, "quantity x unit_cost_kes, when the unit cost is known.", nullable=True,
                           lineage=["refined.order_items.quantity", "refined.products.unit_cost_kes"]),
        "payment_method": column(STRING, "Order payment method.", checks=[pa.Check.isin([*PAYMENT_METHODS, UNKNOWN])],
                                 lineage=["refined.orders.payment_method"]),
        "channel": column(STRING, "Order channel.", checks=[pa.Check.isin([*CHANNELS, UNKNOWN])],
                          lineage=["refined.orders.channel"]),
        "order_status": column(STRING, "Current order status (a sold status).",
                               checks=[pa.Check.isin(list(ORDER_STATUSES))], lineage=["refined.orders.status"]),
    },
    key=["order_id", "line_number"],
    day_column="order_date",
)

daily_sales = table(
    "curated.daily_sales",
    "Sales per day, county and product (county 0 = Unknown included, so totals are national totals).",
    {
        "order_date": column(DATE, "Order date.", lineage=["curated.fact_sales.order_date"]),
        "county_code": column(INT, "County (0 = Unknown).", checks=[ANY_COUNTY],
                              lineage=["curated.fact_sales.county_code"]),
        "product_id": column(STRING, "Product id.", lineage=["curated.fact_sales.product_id"]),
        "county_name": column(STRING, "County name ('Unknown' for 0).", lineage=["curated.fact_sales.county_name"]),
        "category": column(STRING, "Product category.", lineage=["curated.fact_sales.category"]),
        "units": column(LONG, "Units sold.", checks=[pa.Check.ge(1)], lineage=["curated.fact_sales.quantity"]),
        "net_revenue_kes": column(MONEY_TOTAL, "Net revenue.", checks=[pa.Check.ge(0)],
                                  lineage=["curated.fact_sales.net_revenue_kes"]),
        "orders": column(LONG, "Distinct orders.", checks=[pa.Check.ge(1)], lineage=["curated.fact_sales.order_id"]),
        "lines": column(LONG, "Sold lines.", checks=[pa.Check.ge(1)], lineage=["curated.fact_sales.line_number"]),
        "cost_kes": column(MONEY_TOTAL, "Cost of the lines whose unit cost is known.", nullable=True,
                           lineage=["curated.fact_sales.cost_kes"]),
        "lines_without_cost": column(LONG, "Lines whose unit cost is unknown.", checks=[pa.Check.ge(0)],
                                     lineage=["curated.fact_sales.cost_kes"]),
    },
    key=["order_date", "county_code", "product_id"],
    day_column="order_date",
)

county_monthly_kpis = table(
    "curated.county_monthly_kpis",
    "Monthly KPIs per known county. Shares are of the national total, which includes Unknown-county sales "
    "(national_net_revenue_kes), so county shares of a month sum to 1 minus the Unknown share.",
    {
        "county_code": column(INT, "County.", checks=[KNOWN_COUNTY], lineage=["curated.customer_orders.county_code"]),
        "county_name": column(STRING, "County name.", lineage=["refined.counties.county_name"]),
        "month": column(DATE, "First day of the month.", lineage=["curated.customer_orders.order_date"]),
        "net_revenue_kes": column(MONEY_TOTAL, "Net revenue.", checks=[pa.Check.ge(0)],
                                  lineage=["curated.customer_orders.net_revenue_kes"]),
        "orders": column(LONG, "Distinct sold orders.", checks=[pa.Check.ge(1)],
                         lineage=["curated.customer_orders.order_id"]),
        "customers": column(LONG, "Distinct customers.", checks=[pa.Check.ge(1)],
                            lineage=["curated.customer_orders.customer_pseudonym"]),
        "units": column(LONG, "Units.", checks=[pa.Check.ge(1)], lineage=["curated.customer_orders.units"]),
        "avg_order_value_kes": column(MONEY_TOTAL, "Net revenue / distinct orders (per order, not per line).",
                                      checks=[pa.Check.ge(0)],
                                      lineage=["curated.customer_orders.net_revenue_kes", "curated.customer_orders.order_id"]),
        "revenue_per_1000_residents_kes": column(MONEY_TOTAL, "Net revenue per 1,000 residents (KNBS 2019).",
                                                 checks=[pa.Check.ge(0)],
                                                 lineage=["curated.customer_orders.net_revenue_kes",
                                                          "refined.counties.population_2019"]),
        "national_net_revenue_kes": column(MONEY_TOTAL, "National net revenue that month (incl. Unknown county).",
                                           checks=[pa.Check.ge(0)], lineage=["curated.customer_orders.net_revenue_kes"]),
        "share_of_national_revenue": column(DOUBLE, "net_revenue_kes / national_net_revenue_kes.", checks=[SHARE],
                                            lineage=["curated.customer_orders.net_revenue_kes"]),
        "mpesa_order_share": column(DOUBLE, "Share of the county's orders paid with M-Pesa.", checks=[SHARE],
                                    lineage=["curated.customer_orders.payment_method"]),
    },
    key=["county_code", "month"],
)

category_share_by_county = table(
    "curated.category_share_by_county",
    "All-time net revenue per known county and category, with the category's share of the county.",
    {
        "county_code": column(INT, "County.", checks=[KNOWN_COUNTY], lineage=["curated.daily_sales.county_code"]),
        "county_name": column(STRING, "County name.", lineage=["curated.daily_sales.county_name"]),
        "category": column(STRING, "Category.", lineage=["curated.daily_sales.category"]),
        "net_revenue_kes": column(MONEY_TOTAL, "Net revenue.", checks=[pa.Check.ge(0)],
                                  lineage=["curated.daily_sales.net_revenue_kes"]),
        "share_of_county_revenue": column(DOUBLE, "Share of the county's net revenue.", checks=[SHARE],
                                          lineage=["curated.daily_sales.net_revenue_kes"]),
    },
    key=["county_code", "category"],
)

top_products_by_county = table(
    "curated.top_products_by_county",
    "Top 10 products per known county by all-time net revenue (ties: product_id ascending).",
    {
        "county_code": column(INT, "County.", checks=[KNOWN_COUNTY], lineage=["curated.daily_sales.county_code"]),
        "county_name": column(STRING, "County name.", lineage=["curated.daily_sales.county_name"]),
        "rank": column(INT, "1..10.", checks=[pa.Check.in_range(1, 10)]),
        "product_id": column(STRING, "Product id.", lineage=["curated.daily_sales.product_id"]),
        "product_name": column(STRING, "Product name (null if unknown).", nullable=True,
                               lineage=["refined.products.product_name"]),
        "category": column(STRING, "Category.", lineage=["curated.daily_sales.category"]),
        "net_revenue_kes": column(MONEY_TOTAL, "All-time net revenue in the county.", checks=[pa.Check.ge(0)],
                                  lineage=["curated.daily_sales.net_revenue_kes"]),
        "units": column(LONG, "Units.", checks=[pa.Check.ge(1)], lineage=["curated.daily_sales.units"]),
    },
    key=["county_code", "rank"],
    zorder_by=["county_code"],
)

product_performance = table(
    "curated.product_performance",
    "All-time performance per product (every known product, plus unknown product ids that sold).",
    {
        "product_id": column(STRING, "Product id.", lineage=["refined.products.product_id"]),
        "product_name": column(STRING, "Product name (null if unknown).", nullable=True,
                               lineage=["refined.products.product_name"]),
        "category": column(STRING, "Category ('Unknown' if unknown).", lineage=["refined.products.category"]),
        "units": column(LONG, "Units sold.", checks=[pa.Check.ge(0)], lineage=["curated.daily_sales.units"]),
        "net_revenue_kes": column(MONEY_TOTAL, "Net revenue.", checks=[pa.Check.ge(0)],
                                  lineage=["curated.daily_sales.net_revenue_kes"]),
        "orders": column(LONG, "Distinct sold orders.", checks=[pa.Check.ge(0)],
                         lineage=["curated.daily_sales.orders"]),
        "counties_reached": column(LONG, "Distinct known counties it sold in.", checks=[pa.Check.in_range(0, 47)],
                                   lineage=["curated.daily_sales.county_code"]),
        "avg_selling_price_kes": column(MONEY_TOTAL, "Net revenue / units (null when nothing sold).", nullable=True,
                                        lineage=["curated.daily_sales.net_revenue_kes", "curated.daily_sales.units"]),
        "gross_margin_kes": column(MONEY_TOTAL, "Net revenue - cost, when the unit cost is known.", nullable=True,
                                   lineage=["curated.daily_sales.net_revenue_kes", "curated.daily_sales.cost_kes"]),
        "gross_margin_pct": column(DOUBLE, "gross_margin_kes / net_revenue_kes.", nullable=True,
                                   lineage=["curated.daily_sales.net_revenue_kes", "curated.daily_sales.cost_kes"]),
    },
    key=["product_id"],
)

customer_orders = table(
    "curated.customer_orders",
    "One row per customer pseudonym and sold order: the input to customer segmentation.",
    {
        "customer_pseudonym": column(STRING, "Customer pseudonym.", checks=[pa.Check.str_matches(HEX64)],
                                     lineage=["curated.fact_sales.customer_pseudonym"]),
        "order_id": column(STRING, "Order id.", lineage=["curated.fact_sales.order_id"]),
        "order_date": column(DATE, "Order date.", lineage=["curated.fact_sales.order_date"]),
        "county_code": column(INT, "Order county (0 = Unknown).", checks=[ANY_COUNTY],
                              lineage=["curated.fact_sales.county_code"]),
        "payment_method": column(STRING, "Order payment method.", checks=[pa.Check.isin([*PAYMENT_METHODS, UNKNOWN])],
                                 lineage=["curated.fact_sales.payment_method"]),
        "net_revenue_kes": column(MONEY_TOTAL, "Order net revenue.", checks=[pa.Check.ge(0)],
                                  lineage=["curated.fact_sales.net_revenue_kes"]),
        "units": column(LONG, "Units in the order.", checks=[pa.Check.ge(1)], lineage=["curated.fact_sales.quantity"]),
        "lines": column(LONG, "Sold lines in the order.", checks=[pa.Check.ge(1)],
                        lineage=["curated.fact_sales.line_number"]),
    },
    key=["customer_pseudonym", "order_id"],
    day_column="order_date",
)

payment_method_mix = table(
    "curated.payment_method_mix",
    "How each known county paid, month by month: sold orders and net revenue per payment method, with each "
    "method's share of the county's orders and revenue that month (M-Pesa, Airtel Money, card, cash on delivery; "
    "unknown when the order's payment method was not recognised). The shares of a county and month sum to 1.",
    {
        "county_code": column(INT, "County.", checks=[KNOWN_COUNTY], lineage=["curated.customer_orders.county_code"]),
        "county_name": column(STRING, "County name.", lineage=["refined.counties.county_name"]),
        "month": column(DATE, "First day of the month.", lineage=["curated.customer_orders.order_date"]),
        "payment_method": column(STRING, "Payment method of the orders.",
                                 checks=[pa.Check.isin([*PAYMENT_METHODS, UNKNOWN])],
                                 lineage=["curated.customer_orders.payment_method"]),
        "orders": column(LONG, "Sold orders paid this way.", checks=[pa.Check.ge(1)],
                         lineage=["curated.customer_orders.order_id"]),
        "net_revenue_kes": column(MONEY_TOTAL, "Their net revenue.", checks=[pa.Check.ge(0)],
                                  lineage=["curated.customer_orders.net_revenue_kes"]),
        "order_share": column(DOUBLE, "orders / the county's sold orders that month.", checks=[SHARE],
                              lineage=["curated.customer_orders.order_id"]),
        "revenue_share": column(DOUBLE, "net_revenue_kes / the county's net revenue that month (0 when it is 0).",
                                checks=[SHARE], lineage=["curated.customer_orders.net_revenue_kes"]),
    },
    key=["county_code", "month", "payment_method"],
)

ALL = (fact_sales, daily_sales, county_monthly_kpis, category_share_by_county, top_products_by_county,
       product_performance, customer_orders, payment_method_mix)
