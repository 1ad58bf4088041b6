"""Machine-learning outputs (group ``ml``): customer segments, clusters and their summary."""

from __future__ import annotations

import pandera.pyspark as pa

from ecommerce_lake.logic.segment_rules import SEGMENTS
from ecommerce_lake.schemas._base import DATE, DOUBLE, HEX64, INT, LONG, MONEY_TOTAL, STRING, column, table

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

ALL = (rfm_scores, customer_clusters, segment_summary)
