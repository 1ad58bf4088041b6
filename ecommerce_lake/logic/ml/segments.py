"""Customer segmentation: RFM scores and named segments, K-means clusters, segment summaries.

All from curated.customer_orders (one row per customer pseudonym and sold order). Plain DataFrame functions.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ecommerce_lake.logic.counties import UNKNOWN
from ecommerce_lake.logic.frames import Held
from ecommerce_lake.core.segment_rules import SEGMENT_RULES
from ecommerce_lake.schemas.spark import conform
from ecommerce_lake.schemas import ml as schemas


def _segment_column(r: Column, f: Column) -> Column:
    expr = None
    for rule in SEGMENT_RULES:
        cond = r.between(*rule.r) & f.between(*rule.f)
        expr = F.when(cond, F.lit(rule.segment)) if expr is None else expr.when(cond, F.lit(rule.segment))
    return expr


def _quintile(order: Column) -> Column:
    """Score 1..5 from the cumulative distribution: equal values share a score (deterministic ties)."""
    return F.ceil(F.cume_dist().over(Window.orderBy(order)) * 5).cast("int")


def latest_order_date(customer_orders: DataFrame) -> dt.date | None:
    return customer_orders.agg(F.max("order_date")).collect()[0][0]


def rfm_scores(customer_orders: DataFrame, as_of: dt.date) -> DataFrame:
    """One row per customer with a sold order on or before ``as_of``."""
    orders = customer_orders.where(F.col("order_date") <= F.lit(as_of))
    latest_county = (
        orders.withColumn("__rank", F.row_number().over(Window.partitionBy("customer_pseudonym").orderBy(
            F.col("order_date").desc(), F.col("net_revenue_kes").desc(), F.col("county_code").asc())))
        .where("__rank = 1").select("customer_pseudonym", "county_code")
    )
    per = orders.groupBy("customer_pseudonym").agg(
        F.max("order_date").alias("last_order_date"),
        F.countDistinct("order_id").alias("frequency"),
        F.sum("net_revenue_kes").cast("decimal(20,2)").alias("monetary_kes"),
    )
    per = per.withColumn("recency_days", F.datediff(F.lit(as_of), F.col("last_order_date")))
    scored = (
        per.join(latest_county, "customer_pseudonym")
        .withColumn("r_score", _quintile(F.col("recency_days").desc()))
        .withColumn("f_score", _quintile(F.col("frequency").asc()))
        .withColumn("m_score", _quintile(F.col("monetary_kes").asc()))
    )
    out = scored.select(
        "customer_pseudonym", "county_code", "last_order_date", "recency_days", "frequency", "monetary_kes",
        "r_score", "f_score", "m_score",
        F.concat(F.lit("R"), "r_score", F.lit("F"), "f_score", F.lit("M"), "m_score").alias("rfm_cell"),
        _segment_column(F.col("r_score"), F.col("f_score")).alias("segment"),
        F.lit(as_of).alias("as_of"),
    )
    return conform(out, schemas.rfm_scores)


@dataclass
class Clustering:
    clusters: DataFrame
    k: int
    silhouettes: dict[int, float]
    centroids: list[dict]


def _label(centroid: dict, medians: dict) -> str:
    recency = "recent" if centroid["recency_days"] <= medians["recency_days"] else "lapsed"
    frequency = "frequent" if centroid["frequency"] > medians["frequency"] else "occasional"
    spend = "high-spend" if centroid["monetary_kes"] > medians["monetary_kes"] else "low-spend"
    return f"{recency}, {frequency}, {spend}"


def customer_clusters(rfm: DataFrame, k_range: range = range(3, 9), seed: int = 42) -> Clustering:
    """K-means on log-transformed, standardised R, F and M; k chosen by silhouette (ties: the smaller k)."""
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    base = rfm.select(
        "customer_pseudonym",
        F.log1p(F.col("recency_days").cast("double")).alias("log_r"),
        F.log1p(F.col("frequency").cast("double")).alias("log_f"),
        F.log1p(F.col("monetary_kes").cast("double")).alias("log_m"),
    )
    assembled = VectorAssembler(inputCols=["log_r", "log_f", "log_m"], outputCol="raw_features").transform(base)
    scaler = StandardScaler(inputCol="raw_features", outputCol="features", withMean=True, withStd=True).fit(assembled)
    with Held() as held:  # the scaled features, while the k-means models are fitted and scored
        return _clusters(rfm, held(scaler.transform(assembled).select("customer_pseudonym", "features")), scaler,
                         k_range, seed)


def _clusters(rfm: DataFrame, data: DataFrame, scaler, k_range: range, seed: int) -> Clustering:
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.evaluation import ClusteringEvaluator

    evaluator = ClusteringEvaluator(featuresCol="features", predictionCol="cluster_id", distanceMeasure="squaredEuclidean")
    silhouettes: dict[int, float] = {}
    models = {}
    for k in k_range:
        model = KMeans(k=k, seed=seed, featuresCol="features", predictionCol="cluster_id", maxIter=50).fit(data)
        silhouettes[k] = float(evaluator.evaluate(model.transform(data)))
        models[k] = model
    best = max(silhouettes, key=lambda k: (round(silhouettes[k], 6), -k))
    model = models[best]
    mean, std = scaler.mean.toArray(), scaler.std.toArray()
    medians = rfm.agg(
        F.percentile_approx("recency_days", 0.5).alias("recency_days"),
        F.percentile_approx("frequency", 0.5).alias("frequency"),
        F.percentile_approx(F.col("monetary_kes").cast("double"), 0.5).alias("monetary_kes"),
    ).collect()[0].asDict()
    centroids = []
    for i, center in enumerate(model.clusterCenters()):
        logs = center * std + mean  # back to log1p space, then to the original units
        c = {"cluster_id": i, "recency_days": math.expm1(logs[0]), "frequency": math.expm1(logs[1]),
             "monetary_kes": math.expm1(logs[2])}
        c["label"] = _label(c, medians)
        centroids.append(c)
    seen: dict[str, int] = {}
    for c in sorted(centroids, key=lambda c: c["cluster_id"]):
        seen[c["label"]] = seen.get(c["label"], 0) + 1
        if seen[c["label"]] > 1:
            c["label"] = f"{c['label']} ({seen[c['label']]})"
    spark = rfm.sparkSession
    labels = spark.createDataFrame([(c["cluster_id"], c["label"]) for c in centroids], "cluster_id int, cluster_label string")
    assigned = model.transform(data).select("customer_pseudonym", F.col("cluster_id").cast("int"))
    out = assigned.join(F.broadcast(labels), "cluster_id").withColumn("k", F.lit(best))
    return Clustering(conform(out, schemas.customer_clusters), best, silhouettes, centroids)


def segment_summary(rfm: DataFrame, counties: DataFrame) -> DataFrame:
    """Per known county and segment: customers, their share of the county's customers and revenue, mean R, F, M.
    A customer counts in the county of their latest order."""
    known = rfm.where(F.col("county_code") != UNKNOWN)
    per = known.groupBy("county_code", "segment").agg(
        F.count(F.lit(1)).alias("customers"),
        F.sum("monetary_kes").cast("decimal(20,2)").alias("revenue_kes"),
        F.avg("recency_days").alias("mean_recency_days"),
        F.avg("frequency").alias("mean_frequency"),
        F.avg(F.col("monetary_kes").cast("double")).alias("mean_monetary_kes"),
    )
    county = Window.partitionBy("county_code")
    out = per.withColumn(
        "customer_share", F.col("customers") / F.sum("customers").over(county)
    ).withColumn(
        "revenue_share",
        F.when(F.sum("revenue_kes").over(county) > 0,
               F.col("revenue_kes").cast("double") / F.sum("revenue_kes").over(county).cast("double"))
        .otherwise(F.lit(0.0)),
    ).join(F.broadcast(counties.select("county_code", "county_name")), "county_code", "left")
    return conform(out, schemas.segment_summary)
