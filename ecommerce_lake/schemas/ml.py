"""Machine-learning outputs (group ``ml``): customer segments, clusters and their summary; sales forecasts,
their backtest, county demand and inventory recommendations."""

from __future__ import annotations

import pandera.pyspark as pa

from ecommerce_lake.core.segment_rules import SEGMENTS
from ecommerce_lake.schemas._base import BOOL, DATE, DOUBLE, HEX64, INT, LONG, MONEY_TOTAL, STRING, column, table

SCORE = pa.Check.in_range(1, 5)


def _segments():
    return list(SEGMENTS)


rfm_scores = table(
    "ml.rfm_scores",
    "Recency, frequency and monetary value per customer with at least one sold order, as of a day (the latest "
    "order_date by default); quintile scores 1..5 (ties share a score) and the named segment from the rule table "
    "in docs/tables.md.",
    {
        "customer_pseudonym": column(STRING, "Customer pseudonym.", checks=[pa.Check.str_matches(HEX64)],
                                     lineage=["curated.customer_orders.customer_pseudonym"]),
        "county_code": column(INT, "County of the customer's latest sold order (0 = Unknown).",
                              checks=[pa.Check.in_range(0, 47)], lineage=["curated.customer_orders.county_code"]),
        "last_order_date": column(DATE, "Date of the latest sold order.", lineage=["curated.customer_orders.order_date"]),
        "recency_days": column(INT, "Days from the last sold order to as_of.", checks=[pa.Check.ge(0)],
                               lineage=["curated.customer_orders.order_date"]),
        "frequency": column(LONG, "Distinct sold orders.", checks=[pa.Check.ge(1)],
                            lineage=["curated.customer_orders.order_id"]),
        "monetary_kes": column(MONEY_TOTAL, "Total net revenue of the sold orders (exact).", checks=[pa.Check.ge(0)],
                               lineage=["curated.customer_orders.net_revenue_kes"]),
        "r_score": column(INT, "Recency score: 5 = most recent quintile.", checks=[SCORE]),
        "f_score": column(INT, "Frequency score: 5 = most frequent quintile.", checks=[SCORE]),
        "m_score": column(INT, "Monetary score: 5 = highest-spending quintile.", checks=[SCORE]),
        "rfm_cell": column(STRING, "R, F and M scores, e.g. R5F4M3.", checks=[pa.Check.str_matches(r"^R[1-5]F[1-5]M[1-5]$")]),
        "segment": column(STRING, "Named segment (rule table on R and F).", checks=[pa.Check.isin(_segments())]),
        "as_of": column(DATE, "The day the scores are computed for."),
    },
    key=["customer_pseudonym"],
)

customer_clusters = table(
    "ml.customer_clusters",
    "K-means cluster of every scored customer, on log-transformed, standardised R, F and M; k chosen by "
    "silhouette over 3..8; labels describe each centroid against the median customer.",
    {
        "customer_pseudonym": column(STRING, "Customer pseudonym.", checks=[pa.Check.str_matches(HEX64)],
                                     lineage=["ml.rfm_scores.customer_pseudonym"]),
        "cluster_id": column(INT, "Cluster number (0..k-1).", checks=[pa.Check.in_range(0, 7)],
                             lineage=["ml.rfm_scores.recency_days", "ml.rfm_scores.frequency",
                                      "ml.rfm_scores.monetary_kes"]),
        "cluster_label": column(STRING, "Human-readable description of the cluster's centroid."),
        "k": column(INT, "Number of clusters chosen.", checks=[pa.Check.in_range(3, 8)]),
    },
    key=["customer_pseudonym"],
)

segment_summary = table(
    "ml.segment_summary",
    "Per known county and segment: customers, their share of the county's customers and of its revenue, and mean "
    "recency, frequency and monetary value. Customers count in the county of their latest order.",
    {
        "county_code": column(INT, "County.", checks=[pa.Check.in_range(1, 47)], lineage=["ml.rfm_scores.county_code"]),
        "county_name": column(STRING, "County name.", lineage=["refined.counties.county_name"]),
        "segment": column(STRING, "Segment.", checks=[pa.Check.isin(_segments())], lineage=["ml.rfm_scores.segment"]),
        "customers": column(LONG, "Customers.", checks=[pa.Check.ge(1)], lineage=["ml.rfm_scores.customer_pseudonym"]),
        "customer_share": column(DOUBLE, "Share of the county's scored customers.", checks=[pa.Check.in_range(0.0, 1.0)]),
        "revenue_kes": column(MONEY_TOTAL, "Their total net revenue.", checks=[pa.Check.ge(0)],
                              lineage=["ml.rfm_scores.monetary_kes"]),
        "revenue_share": column(DOUBLE, "Share of the county's customers' revenue.", checks=[pa.Check.in_range(0.0, 1.0)]),
        "mean_recency_days": column(DOUBLE, "Mean recency (days).", lineage=["ml.rfm_scores.recency_days"]),
        "mean_frequency": column(DOUBLE, "Mean frequency (orders).", lineage=["ml.rfm_scores.frequency"]),
        "mean_monetary_kes": column(DOUBLE, "Mean monetary value (KES).", lineage=["ml.rfm_scores.monetary_kes"]),
    },
    key=["county_code", "segment"],
)

NON_NEGATIVE = pa.Check.ge(0)
HORIZON = pa.Check.in_range(1, 28)
KNOWN_COUNTY = pa.Check.in_range(1, 47)

sales_forecast = table(
    "ml.sales_forecast",
    "Daily unit forecasts for the next 28 days of every product x county series that sold in the 90 days up to "
    "the forecast origin: one global Poisson regression with a log link (Spark ML) on the logs of the series', its "
    "product's and its county's rates (as of 28 days or more before the day) and calendar features; P90 from the "
    "series' backtest errors.",
    {
        "product_id": column(STRING, "Product id.", lineage=["curated.daily_sales.product_id"]),
        "county_code": column(INT, "County (1..47).", checks=[KNOWN_COUNTY], lineage=["curated.daily_sales.county_code"]),
        "county_name": column(STRING, "County name.", lineage=["refined.counties.county_name"]),
        "category": column(STRING, "Product category (latest).", lineage=["curated.daily_sales.category"]),
        "forecast_date": column(DATE, "Day forecast."),
        "horizon_days": column(INT, "Days after the origin (1..28).", checks=[HORIZON]),
        "forecast_units": column(DOUBLE, "Point forecast of units (the expected value).", checks=[NON_NEGATIVE],
                                 lineage=["curated.daily_sales.units", "refined.counties.county_code"]),
        "forecast_p90_units": column(DOUBLE, "Upper planning quantile (P90): the point forecast plus the 90th "
                                     "percentile of the series' backtest errors, never below the point.",
                                     checks=[NON_NEGATIVE], lineage=["curated.daily_sales.units"]),
        "origin_date": column(DATE, "Forecast origin: the last day of data used."),
        "model_version": column(STRING, "Version of the fitted model (saved under <lake_root>/ml/_models)."),
    },
    key=["product_id", "county_code", "forecast_date"],
)

forecast_backtest = table(
    "ml.forecast_backtest",
    "Rolling-origin backtest: for each origin (3, one horizon apart, the last a horizon before the forecast "
    "origin) the model retrained on data up to that origin, its 28-day forecasts and their P90, five baselines "
    "(seasonal naive, 28-day moving average, TSB, Croston-SBA, ADIDA), and the actual units.",
    {
        "origin_date": column(DATE, "Backtest origin."),
        "product_id": column(STRING, "Product id.", lineage=["curated.daily_sales.product_id"]),
        "county_code": column(INT, "County.", checks=[KNOWN_COUNTY], lineage=["curated.daily_sales.county_code"]),
        "category": column(STRING, "Product category.", lineage=["curated.daily_sales.category"]),
        "target_date": column(DATE, "Day forecast."),
        "horizon_days": column(INT, "Days after the origin.", checks=[HORIZON]),
        "actual_units": column(LONG, "Units actually sold (0 on days without sales).", checks=[NON_NEGATIVE],
                               lineage=["curated.daily_sales.units"]),
        "model_units": column(DOUBLE, "Model forecast.", checks=[NON_NEGATIVE]),
        "seasonal_naive_units": column(DOUBLE, "Units on the same weekday of the last week before the origin.",
                                       checks=[NON_NEGATIVE]),
        "moving_average_units": column(DOUBLE, "Mean daily units of the 28 days up to the origin.",
                                       checks=[NON_NEGATIVE]),
        "tsb_units": column(DOUBLE, "TSB: the smoothed probability of a sale on a day times the smoothed size of a "
                            "sale (alpha = beta = 0.1), up to the origin.", checks=[NON_NEGATIVE]),
        "croston_units": column(DOUBLE, "Croston with the Syntetos-Boylan correction: smoothed size over smoothed "
                                "interval between sales, x (1 - alpha/2), alpha = 0.1.", checks=[NON_NEGATIVE]),
        "adida_units": column(DOUBLE, "ADIDA: weekly totals back from the origin, exponentially smoothed "
                              "(alpha = 0.2), spread over the week's days.", checks=[NON_NEGATIVE]),
        "model_p90_units": column(DOUBLE, "P90: the model forecast plus the 90th percentile of the series' errors at "
                                  "the other origins (never below the forecast).", checks=[NON_NEGATIVE]),
    },
    key=["origin_date", "product_id", "county_code", "target_date"],
)

county_demand_forecast = table(
    "ml.county_demand_forecast",
    "County x category daily demand for the next 28 days: the sum of the product x county forecasts (coherent "
    "by construction), P90 from the county x category backtest errors.",
    {
        "county_code": column(INT, "County.", checks=[KNOWN_COUNTY], lineage=["ml.sales_forecast.county_code"]),
        "county_name": column(STRING, "County name.", lineage=["ml.sales_forecast.county_name"]),
        "category": column(STRING, "Product category.", lineage=["ml.sales_forecast.category"]),
        "forecast_date": column(DATE, "Day forecast.", lineage=["ml.sales_forecast.forecast_date"]),
        "horizon_days": column(INT, "Days after the origin.", checks=[HORIZON], lineage=["ml.sales_forecast.horizon_days"]),
        "forecast_units": column(DOUBLE, "Sum of the product forecasts.", checks=[NON_NEGATIVE],
                                 lineage=["ml.sales_forecast.forecast_units"]),
        "forecast_p90_units": column(DOUBLE, "P90 of the county x category demand.", checks=[NON_NEGATIVE],
                                     lineage=["ml.forecast_backtest.model_units", "ml.forecast_backtest.actual_units"]),
        "series": column(LONG, "Product series summed.", checks=[pa.Check.ge(1)], lineage=["ml.sales_forecast.product_id"]),
        "origin_date": column(DATE, "Forecast origin.", lineage=["ml.sales_forecast.origin_date"]),
        "model_version": column(STRING, "Model version.", lineage=["ml.sales_forecast.model_version"]),
    },
    key=["county_code", "category", "forecast_date"],
)

inventory_recommendations = table(
    "ml.inventory_recommendations",
    "Per product x county: a continuous-review (s, Q) policy from the forecast. safety_stock = z x "
    "sigma_daily_error x sqrt(lead_time_days); reorder_point = avg_daily_demand x lead_time_days + safety_stock; "
    "eoq = sqrt(2 x annual_demand x ordering cost / (holding-cost rate x unit cost)); order_size Q = the EOQ capped "
    "at ECOMMERCE_LAKE_MAX_COVER_DAYS of avg_daily_demand, rounded up, at least 1. With a stock snapshot "
    "(landing inventory.csv): whether to order now (on_hand <= ceil(reorder_point)) and how much (whole Qs).",
    {
        "product_id": column(STRING, "Product id.", lineage=["ml.sales_forecast.product_id"]),
        "county_code": column(INT, "County.", checks=[KNOWN_COUNTY], lineage=["ml.sales_forecast.county_code"]),
        "county_name": column(STRING, "County name.", lineage=["ml.sales_forecast.county_name"]),
        "category": column(STRING, "Product category.", lineage=["ml.sales_forecast.category"]),
        "avg_daily_demand": column(DOUBLE, "Mean daily point forecast over the horizon.", checks=[NON_NEGATIVE],
                                   lineage=["ml.sales_forecast.forecast_units"]),
        "sigma_daily_error": column(DOUBLE, "Standard deviation of the series' daily backtest errors.",
                                    checks=[NON_NEGATIVE], lineage=["ml.forecast_backtest.model_units",
                                                                   "ml.forecast_backtest.actual_units"]),
        "lead_time_days": column(INT, "Replenishment lead time (ECOMMERCE_LAKE_LEAD_TIME_DAYS / _LEAD_TIMES).",
                                 checks=[pa.Check.ge(1)]),
        "service_level": column(DOUBLE, "Target cycle service level.", checks=[pa.Check.in_range(0.5, 1.0)]),
        "safety_stock": column(DOUBLE, "Safety stock (units).", checks=[NON_NEGATIVE]),
        "reorder_point": column(DOUBLE, "Reorder point s (units).", checks=[NON_NEGATIVE]),
        "annual_demand": column(DOUBLE, "avg_daily_demand x 365.", checks=[NON_NEGATIVE]),
        "unit_cost_kes": column(DOUBLE, "Unit cost (list price when the cost is unknown).", nullable=True,
                                lineage=["refined.products.unit_cost_kes", "refined.products.list_price_kes"]),
        "eoq": column(DOUBLE, "Economic order quantity (units; 0 without demand or cost).", checks=[NON_NEGATIVE]),
        "order_size": column(DOUBLE, "Order size Q (units): the EOQ capped at ECOMMERCE_LAKE_MAX_COVER_DAYS days of "
                             "avg_daily_demand, rounded up, at least 1.", checks=[pa.Check.ge(1)]),
        "on_hand": column(INT, "Units on hand in the latest snapshot (null: no snapshot).", nullable=True,
                          lineage=["refined.inventory.on_hand"]),
        "inventory_as_of": column(DATE, "Day of that snapshot.", nullable=True, lineage=["refined.inventory.as_of"]),
        "order_now": column(BOOL, "Order now: on_hand at or below the reorder point (null: no snapshot).",
                            nullable=True),
        "order_quantity": column(LONG, "Units to order now: whole multiples of order_size that lift the position "
                                 "above the reorder point (0 if not ordering; null: no snapshot).", nullable=True),
        "origin_date": column(DATE, "Forecast origin.", lineage=["ml.sales_forecast.origin_date"]),
    },
    key=["product_id", "county_code"],
)

SEGMENTATION = (rfm_scores, customer_clusters, segment_summary)
FORECASTING = (sales_forecast, forecast_backtest, county_demand_forecast, inventory_recommendations)
ALL = SEGMENTATION + FORECASTING
