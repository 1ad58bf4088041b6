"""Insight tables: the business's monthly questions, answered per county and month where it fits.

Built from the curated tables (and refined orders and counties for what curated leaves out: orders that were
never sold, the census populations). The business rules are those of ``schemas.curated``: a sold order is paid,
shipped or delivered; months are calendar months of the Africa/Nairobi order date; county 0 (Unknown) is left
out of per-county tables and kept in national ones. docs/insights.md maps each question to its table and column.
"""

from __future__ import annotations

import pandera.pyspark as pa

from ecommerce_lake.schemas._base import DATE, DOUBLE, INT, LONG, MONEY_TOTAL, STRING, column, table

KNOWN_COUNTY = pa.Check.in_range(1, 47)
SHARE = pa.Check.in_range(0.0, 1.0)
COUNT = pa.Check.ge(0)

# Unit-price bands (KES, lower bound inclusive): the label, and the band's lower bound. One source for the
# logic, the checks, the dashboard and docs/insights.md.
PRICE_BANDS: tuple[tuple[str, int], ...] = (
    ("under 500", 0),
    ("500-1,999", 500),
    ("2,000-4,999", 2_000),
    ("5,000-19,999", 5_000),
    ("20,000 and over", 20_000),
)
TOP_PRODUCTS_PER_MONTH = 5


def _order_measures(source: str) -> dict[str, pa.Column]:
    """What a scorecard (county or national) says of a month's orders: sales, customers, payment mix, outcomes and
    growth. ``source`` names the rows they are counted over in the lineage."""
    co, ro = "curated.customer_orders", "refined.orders"
    return {
        "net_revenue_kes": column(MONEY_TOTAL, f"Net revenue of the sold orders ({source}).", checks=[pa.Check.ge(0)],
                                  lineage=[f"{co}.net_revenue_kes"]),
        "orders": column(LONG, "Sold orders (paid, shipped or delivered).", checks=[COUNT], lineage=[f"{co}.order_id"]),
        "customers": column(LONG, "Distinct customers with a sold order.", checks=[COUNT],
                            lineage=[f"{co}.customer_pseudonym"]),
        "avg_order_value_kes": column(MONEY_TOTAL, "net_revenue_kes / orders, rounded half-up to the cent (null "
                                      "without sold orders).", nullable=True, checks=[pa.Check.ge(0)],
                                      lineage=[f"{co}.net_revenue_kes", f"{co}.order_id"]),
        "new_customers": column(LONG, "Customers whose first sold order ever (any county) is in this month.",
                                checks=[COUNT], lineage=[f"{co}.customer_pseudonym", f"{co}.order_date"]),
        "returning_customers": column(LONG, "customers - new_customers: bought before this month.", checks=[COUNT],
                                      lineage=[f"{co}.customer_pseudonym", f"{co}.order_date"]),
        "repeat_customer_share": column(DOUBLE, "Share of the month's customers who had two or more sold orders "
                                        "(any county) by the end of the month (null without customers).",
                                        nullable=True, checks=[SHARE],
                                        lineage=[f"{co}.customer_pseudonym", f"{co}.order_date"]),
        "mpesa_order_share": column(DOUBLE, "Share of the sold orders paid with M-Pesa (null without sold orders).",
                                    nullable=True, checks=[SHARE], lineage=[f"{co}.payment_method"]),
        "cash_on_delivery_order_share": column(DOUBLE, "Share of the sold orders paid cash on delivery (null without "
                                               "sold orders).", nullable=True, checks=[SHARE],
                                               lineage=[f"{co}.payment_method"]),
        "orders_received": column(LONG, "Orders placed this month, whatever their current status.",
                                  checks=[pa.Check.ge(1)], lineage=[f"{ro}.order_id"]),
        "cancelled_orders": column(LONG, "Of those, orders whose current status is cancelled.", checks=[COUNT],
                                   lineage=[f"{ro}.status"]),
        "returned_orders": column(LONG, "Of those, orders whose current status is returned.", checks=[COUNT],
                                  lineage=[f"{ro}.status"]),
        "cancellation_rate": column(DOUBLE, "cancelled_orders / orders_received.", checks=[SHARE],
                                    lineage=[f"{ro}.status"]),
        "return_rate": column(DOUBLE, "returned_orders / orders_received.", checks=[SHARE], lineage=[f"{ro}.status"]),
        "revenue_mom_growth": column(DOUBLE, "net_revenue_kes / the previous calendar month's - 1 (null when that "
                                     "month had no revenue).", nullable=True, lineage=[f"{co}.net_revenue_kes"]),
        "revenue_yoy_growth": column(DOUBLE, "net_revenue_kes / the same month a year before - 1 (null when that "
                                     "month had no revenue).", nullable=True, lineage=[f"{co}.net_revenue_kes"]),
    }


county_scorecard = table(
    "insights.county_scorecard",
    "Each known county's month: revenue and orders with their rank among the counties, average order value, "
    "market penetration (orders and customers per 1,000 residents, KNBS 2019), new and returning customers, the "
    "repeat-purchase share, M-Pesa and cash-on-delivery shares, cancellation and return rates, month-over-month "
    "and year-over-year growth. One row per county and month with at least one order received.",
    {
        "county_code": column(INT, "County.", checks=[KNOWN_COUNTY], lineage=["refined.orders.county_code"]),
        "county_name": column(STRING, "County name.", lineage=["refined.counties.county_name"]),
        "month": column(DATE, "First day of the month.", lineage=["refined.orders.order_date"]),
        "population_2019": column(LONG, "KNBS 2019 census population.", checks=[pa.Check.gt(0)],
                                  lineage=["refined.counties.population_2019"]),
        **_order_measures("the county's"),
        "revenue_rank": column(INT, "Rank of net_revenue_kes among the month's counties (1 = highest; ties share "
                               "the rank).", checks=[pa.Check.in_range(1, 47)],
                               lineage=["curated.customer_orders.net_revenue_kes"]),
        "orders_rank": column(INT, "Rank of sold orders among the month's counties (1 = most; ties share the rank).",
                              checks=[pa.Check.in_range(1, 47)], lineage=["curated.customer_orders.order_id"]),
        "orders_per_1000_residents": column(DOUBLE, "orders x 1,000 / population_2019.", checks=[pa.Check.ge(0)],
                                            lineage=["curated.customer_orders.order_id",
                                                     "refined.counties.population_2019"]),
        "customers_per_1000_residents": column(DOUBLE, "customers x 1,000 / population_2019.",
                                               checks=[pa.Check.ge(0)],
                                               lineage=["curated.customer_orders.customer_pseudonym",
                                                        "refined.counties.population_2019"]),
    },
    key=["county_code", "month"],
)

national_monthly = table(
    "insights.national_monthly",
    "The whole country's month, Unknown-county orders included, with the same measures as the county scorecard.",
    {
        "month": column(DATE, "First day of the month.", lineage=["refined.orders.order_date"]),
        **_order_measures("every county, Unknown included"),
    },
    key=["month"],
)

category_mix = table(
    "insights.category_mix",
    "Category share within each known county, month by month: net revenue and units per category, the category's "
    "share of the county's revenue that month and its rank there.",
    {
        "county_code": column(INT, "County.", checks=[KNOWN_COUNTY], lineage=["curated.daily_sales.county_code"]),
        "county_name": column(STRING, "County name.", lineage=["curated.daily_sales.county_name"]),
        "month": column(DATE, "First day of the month.", lineage=["curated.daily_sales.order_date"]),
        "category": column(STRING, "Product category.", lineage=["curated.daily_sales.category"]),
        "net_revenue_kes": column(MONEY_TOTAL, "Net revenue.", checks=[pa.Check.ge(0)],
                                  lineage=["curated.daily_sales.net_revenue_kes"]),
        "units": column(LONG, "Units sold.", checks=[pa.Check.ge(1)], lineage=["curated.daily_sales.units"]),
        "share_of_county_revenue": column(DOUBLE, "net_revenue_kes / the county's net revenue that month (0 when "
                                          "that is 0).", checks=[SHARE],
                                          lineage=["curated.daily_sales.net_revenue_kes"]),
        "rank_in_county": column(INT, "Rank by net revenue within the county and month (1 = highest; ties: "
                                 "category ascending).", checks=[pa.Check.ge(1)],
                                 lineage=["curated.daily_sales.net_revenue_kes"]),
    },
    key=["county_code", "month", "category"],
)

top_products_monthly = table(
    "insights.top_products_monthly",
    f"The top {TOP_PRODUCTS_PER_MONTH} products of each known county and month by net revenue (ties: product_id "
    "ascending).",
    {
        "county_code": column(INT, "County.", checks=[KNOWN_COUNTY], lineage=["curated.daily_sales.county_code"]),
        "county_name": column(STRING, "County name.", lineage=["curated.daily_sales.county_name"]),
        "month": column(DATE, "First day of the month.", lineage=["curated.daily_sales.order_date"]),
        "rank": column(INT, f"1..{TOP_PRODUCTS_PER_MONTH}.", checks=[pa.Check.in_range(1, TOP_PRODUCTS_PER_MONTH)]),
        "product_id": column(STRING, "Product id.", lineage=["curated.daily_sales.product_id"]),
        "product_name": column(STRING, "Product name (null if unknown).", nullable=True,
                               lineage=["refined.products.product_name"]),
        "category": column(STRING, "Category.", lineage=["curated.daily_sales.category"]),
        "net_revenue_kes": column(MONEY_TOTAL, "Net revenue in the county that month.", checks=[pa.Check.ge(0)],
                                  lineage=["curated.daily_sales.net_revenue_kes"]),
        "units": column(LONG, "Units.", checks=[pa.Check.ge(1)], lineage=["curated.daily_sales.units"]),
    },
    key=["county_code", "month", "rank"],
)

price_bands = table(
    "insights.price_bands",
    "What customers pay, by category and month: sold lines, units and net revenue per unit-price band ("
    + ", ".join(label for label, _ in PRICE_BANDS) + " KES), with the band's share of the category's units.",
    {
        "month": column(DATE, "First day of the month.", lineage=["curated.fact_sales.order_date"]),
        "category": column(STRING, "Product category.", lineage=["curated.fact_sales.category"]),
        "price_band": column(STRING, "Unit-price band (KES).", checks=[pa.Check.isin([b for b, _ in PRICE_BANDS])],
                             lineage=["curated.fact_sales.unit_price_kes"]),
        "band_order": column(INT, "Position of the band, cheapest first (1..5).",
                             checks=[pa.Check.in_range(1, len(PRICE_BANDS))],
                             lineage=["curated.fact_sales.unit_price_kes"]),
        "lines": column(LONG, "Sold lines.", checks=[pa.Check.ge(1)], lineage=["curated.fact_sales.line_number"]),
        "units": column(LONG, "Units.", checks=[pa.Check.ge(1)], lineage=["curated.fact_sales.quantity"]),
        "net_revenue_kes": column(MONEY_TOTAL, "Net revenue.", checks=[pa.Check.ge(0)],
                                  lineage=["curated.fact_sales.net_revenue_kes"]),
        "share_of_category_units": column(DOUBLE, "units / the category's units that month.", checks=[SHARE],
                                          lineage=["curated.fact_sales.quantity"]),
    },
    key=["month", "category", "price_band"],
)

ALL = (county_scorecard, national_monthly, category_mix, top_products_monthly, price_bands)
