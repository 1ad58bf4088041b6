"""Machine-learning assets (group ``ml``): customer segments now; forecasts and inventory in forecasting.py."""

import datetime as dt

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.defs.common import CheckEnv, ExtraCheck, QualityResource, TableChecks, emit, key_of, table_asset
from ecommerce_lake.defs.conditions import cron_condition
from ecommerce_lake.defs.curated import CURATED_KEYS
from ecommerce_lake.defs.refined import REFINED_KEYS
from ecommerce_lake.logic import segments
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.schemas import ml as schemas

ML_KEYS = {s.name.split(".")[1]: key_of(s) for s in schemas.ALL}
DAILY_SCORING = cron_condition("0 4 * * *", "daily scoring at 04:00 Nairobi")


class SegmentationConfig(dg.ConfigurableResource):
    """ECOMMERCE_LAKE_RFM_AS_OF: the day RFM is computed for (YYYY-MM-DD; default: the latest order date)."""

    as_of: str = ""


# ---- checks -------------------------------------------------------------------------------------------
def _one_row_per_customer(key: dg.AssetKey, what: str) -> ExtraCheck:
    def fn(env: CheckEnv) -> dg.AssetCheckResult:
        rfm = env.lake.read(ML_KEYS["rfm_scores"], columns=["customer_pseudonym", "as_of"])
        as_of = rfm.agg(F.max("as_of")).collect()[0][0]
        expected = (env.lake.read(CURATED_KEYS["customer_orders"], columns=["customer_pseudonym", "order_date"])
                    .where(F.col("order_date") <= F.lit(as_of)).select("customer_pseudonym").distinct())
        actual = env.lake.read(key, columns=["customer_pseudonym"]).groupBy("customer_pseudonym").count()
        # one full join and one aggregation answer all four counts (a job each would read both tables 4 times)
        both = expected.withColumn("__expected", F.lit(True)).join(actual, "customer_pseudonym", "full")
        row = both.agg(F.count(F.when(F.col("count").isNull(), 1)).alias("missing"),
                       F.count(F.when(F.col("__expected").isNull(), 1)).alias("unexpected"),
                       F.count(F.when(F.col("count") > 1, 1)).alias("duplicated"),
                       F.count("__expected").alias("expected")).collect()[0]
        counts = {k: int(row[k]) for k in ("missing", "unexpected", "duplicated")}
        sample = ([r[0] for r in both.where(F.col("count").isNull()).select("customer_pseudonym").limit(5).collect()]
                  if counts["missing"] else [])
        return dg.AssetCheckResult(
            passed=not any(counts.values()),
            metadata={**counts, "customers_expected": int(row["expected"]), "as_of": str(as_of),
                      "sample_missing": dg.MetadataValue.json(sample)},
        )

    return ExtraCheck(f"every_customer_has_one_{what}",
                      f"Every customer with a sold order (up to as_of) has exactly one {what}.", fn, blocking=True)


def _segment_changes(env: CheckEnv) -> dg.AssetCheckResult:
    """Share of customers whose segment differs from the previous materialization (Delta time travel)."""
    key = ML_KEYS["rfm_scores"]
    writes = [h for h in env.lake.history(key, 20) if h["operation"] == "WRITE"]
    threshold = env.quality.segment_change_warn_share
    if len(writes) < 2:
        return dg.AssetCheckResult(passed=True, metadata={"note": "first materialization", "threshold": threshold})
    now = env.lake.read(key, columns=["customer_pseudonym", "segment"])
    before = env.lake.read(key, columns=["customer_pseudonym", "segment"], version=int(writes[1]["version"]))
    both = now.join(before.withColumnRenamed("segment", "previous"), "customer_pseudonym")
    row = both.agg(F.count(F.lit(1)).alias("n"),
                   F.sum(F.when(F.col("segment") != F.col("previous"), 1).otherwise(0)).alias("changed")).collect()[0]
    share = (row["changed"] or 0) / row["n"] if row["n"] else 0.0
    moves = (both.where(F.col("segment") != F.col("previous")).groupBy("previous", "segment").count()
             .orderBy(F.col("count").desc()).limit(10).collect())
    return dg.AssetCheckResult(
        passed=share <= threshold,
        metadata={"changed_share": dg.MetadataValue.float(round(share, 4)), "threshold": threshold,
                  "customers_compared": row["n"], "previous_version": int(writes[1]["version"]),
                  "top_moves": dg.MetadataValue.json([f"{r['previous']} -> {r['segment']}: {r['count']}" for r in moves])},
    )


EXTRA = {
    "rfm_scores": [
        _one_row_per_customer(ML_KEYS["rfm_scores"], "segment"),
        ExtraCheck("segment_changes", "Share of customers whose segment changed since the previous materialization "
                   "(warns above ECOMMERCE_LAKE_SEGMENT_CHANGE_WARN_SHARE).", _segment_changes),
    ],
    "customer_clusters": [_one_row_per_customer(ML_KEYS["customer_clusters"], "cluster")],
}

CHECKS = {s.name.split(".")[1]: TableChecks(s, extra=EXTRA.get(s.name.split(".")[1], ()))
          for s in schemas.SEGMENTATION}


def _kw(table: str, **extra) -> dict:
    return table_asset(CHECKS[table], **extra)


@dg.multi_asset(**_kw("rfm_scores", segment_rules=dg.MetadataValue.md(segments.rules_markdown())),
                ins={"orders": dg.AssetIn(CURATED_KEYS["customer_orders"])})
def rfm_scores(context: dg.AssetExecutionContext, orders: DataFrame, segmentation: SegmentationConfig,
               lake: LakeResource, quality: QualityResource):
    def compute():
        as_of = (dt.date.fromisoformat(segmentation.as_of) if segmentation.as_of
                 else segments.latest_order_date(orders))
        if as_of is None:
            raise dg.Failure("curated.customer_orders holds no sold order: nothing to score")
        context.log.info(f"RFM as of {as_of}")
        return dg.Output(segments.rfm_scores(orders, as_of), output_name="rfm_scores", metadata={
            "as_of": str(as_of), "segment_rules": dg.MetadataValue.md(segments.rules_markdown())})

    yield from emit(context, lake, quality, {"rfm_scores": compute}, [CHECKS["rfm_scores"]])


@dg.multi_asset(**_kw("customer_clusters"), ins={"rfm": dg.AssetIn(ML_KEYS["rfm_scores"])})
def customer_clusters(context: dg.AssetExecutionContext, rfm: DataFrame, lake: LakeResource,
                      quality: QualityResource):
    def compute():
        result = segments.customer_clusters(rfm)
        centroids = "\n".join(
            f"| {c['cluster_id']} | {c['label']} | {c['recency_days']:.0f} | {c['frequency']:.2f} | "
            f"{c['monetary_kes']:,.0f} |" for c in result.centroids)
        return dg.Output(result.clusters, output_name="customer_clusters", metadata={
            "k": result.k,
            **{f"silhouette/k={k}": dg.MetadataValue.float(round(v, 4)) for k, v in result.silhouettes.items()},
            "centroids": dg.MetadataValue.md("| cluster | label | recency (days) | frequency | monetary (KES) |\n"
                                             "|---|---|---|---|---|\n" + centroids),
        })

    yield from emit(context, lake, quality, {"customer_clusters": compute}, [CHECKS["customer_clusters"]])


@dg.multi_asset(**_kw("segment_summary"),
                ins={"rfm": dg.AssetIn(ML_KEYS["rfm_scores"]), "counties": dg.AssetIn(REFINED_KEYS["counties"])})
def segment_summary(context: dg.AssetExecutionContext, rfm: DataFrame, counties: DataFrame, lake: LakeResource,
                    quality: QualityResource):
    yield from emit(context, lake, quality, {"segment_summary": lambda: segments.segment_summary(rfm, counties)},
                    [CHECKS["segment_summary"]])


ASSETS = [a.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=DAILY_SCORING))
          for a in (rfm_scores, customer_clusters, segment_summary)]
defs = dg.Definitions(assets=ASSETS)
