"""Checks of the ml tables (besides their schema checks): one segment and one cluster per customer, segment
churn, the forecast against its baselines, coherent county demand, the inventory policy's service level."""

from __future__ import annotations

import math

import dagster as dg
from pyspark.sql import functions as F

from ecommerce_lake.defs.checks import WARN, CheckContext, TableCheck, TableChecks, table_check
from ecommerce_lake.defs.keys import CURATED_KEYS, FORECAST_MODEL, ML_KEYS
from ecommerce_lake.schemas import ml as schemas


def metric(v: float | None) -> dg.MetadataValue:
    """A figure as float metadata (NaN when there is none), rounded to 6 places."""
    return dg.MetadataValue.float(float("nan") if v is None else round(float(v), 6))


def one_row_per_customer(key: dg.AssetKey, what: str) -> TableCheck:
    @table_check(f"every_customer_has_one_{what}",
                 f"Every customer with a sold order (up to as_of) has exactly one {what}.")
    def check(ctx: CheckContext) -> dg.AssetCheckResult:
        rfm = ctx.lake.read(ML_KEYS["rfm_scores"], columns=["customer_pseudonym", "as_of"])
        as_of = rfm.agg(F.max("as_of")).collect()[0][0]
        expected = (ctx.lake.read(CURATED_KEYS["customer_orders"], columns=["customer_pseudonym", "order_date"])
                    .where(F.col("order_date") <= F.lit(as_of)).select("customer_pseudonym").distinct())
        actual = ctx.lake.read(key, columns=["customer_pseudonym"]).groupBy("customer_pseudonym").count()
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

    return check


@table_check("segment_changes", "Share of customers whose segment changed since the previous materialization (warns "
             "above ECOMMERCE_LAKE_SEGMENT_CHANGE_WARN_SHARE).", severity=WARN)
def segment_changes(ctx: CheckContext) -> dg.AssetCheckResult:
    """Share of customers whose segment differs from the previous materialization (Delta time travel)."""
    key = ML_KEYS["rfm_scores"]
    writes = [h for h in ctx.lake.history(key, 20) if h["operation"] == "WRITE"]
    threshold = ctx.quality.segment_change_warn_share
    if len(writes) < 2:
        return dg.AssetCheckResult(passed=True, metadata={"note": "first materialization", "threshold": threshold})
    now = ctx.lake.read(key, columns=["customer_pseudonym", "segment"])
    before = ctx.lake.read(key, columns=["customer_pseudonym", "segment"], version=int(writes[1]["version"]))
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


@table_check("model_beats_seasonal_naive", "The model's backtest WAPE (product x county) is below the seasonal-naive "
             "baseline's, recomputed from ml.forecast_backtest.")
def model_beats_seasonal_naive(ctx: CheckContext) -> dg.AssetCheckResult:
    """Recomputed from ml.forecast_backtest (not from the asset's own metadata)."""
    row = ctx.lake.read(ML_KEYS["forecast_backtest"]).agg(
        F.sum("actual_units").cast("double").alias("a"),
        F.sum(F.abs(F.col("model_units") - F.col("actual_units"))).alias("m"),
        F.sum(F.abs(F.col("seasonal_naive_units") - F.col("actual_units"))).alias("s"),
        F.sum(F.abs(F.col("moving_average_units") - F.col("actual_units"))).alias("ma"),
    ).collect()[0]
    a = row["a"] or 0.0
    model, snaive, ma = (row["m"] / a, row["s"] / a, row["ma"] / a) if a else (math.nan,) * 3
    return dg.AssetCheckResult(
        passed=bool(a and model < snaive),
        metadata={"model_wape": metric(model), "seasonal_naive_wape": metric(snaive),
                  "moving_average_wape": metric(ma), "level": "product_county"},
    )


@table_check("sums_match_product_forecasts", "Every county x category x day equals the sum of its product forecasts.")
def sums_match_product_forecasts(ctx: CheckContext) -> dg.AssetCheckResult:
    product = (ctx.lake.read(ML_KEYS["sales_forecast"]).groupBy("county_code", "category", "forecast_date")
               .agg(F.sum("forecast_units").alias("p")))
    county = ctx.lake.read(ML_KEYS["county_demand_forecast"]).select("county_code", "category", "forecast_date",
                                                                     "forecast_units")
    j = product.join(county, ["county_code", "category", "forecast_date"], "full")
    row = j.agg(F.max(F.abs(F.coalesce("p", F.lit(0.0)) - F.coalesce("forecast_units", F.lit(0.0)))).alias("d"),
                F.sum(F.when(F.col("p").isNull() | F.col("forecast_units").isNull(), 1).otherwise(0)).alias("x"),
                F.count(F.lit(1)).alias("n")).collect()[0]
    diff = float(row["d"] or 0.0)
    return dg.AssetCheckResult(passed=diff < 1e-6 and not row["x"],
                               metadata={"max_abs_difference": metric(diff), "unmatched_cells": int(row["x"] or 0),
                                         "cells": int(row["n"])})


@table_check("simulated_service_level", "The (s, Q) policy simulated on the backtest windows' actual demand achieves a "
             "cycle service level at most 3 points below target.")
def simulated_service_level(ctx: CheckContext) -> dg.AssetCheckResult:
    """From the simulation the step just ran (``values["simulation"]``), or, when only the check runs, from the
    latest materialization's figures."""
    sim = ctx.values.get("simulation")
    if sim is not None:
        t, a, fill = sim.target_cycle_service_level, sim.achieved_cycle_service_level, sim.fill_rate
    else:
        event = ctx.context.instance.get_latest_materialization_event(ML_KEYS["inventory_recommendations"])
        md = event.asset_materialization.metadata if event else {}
        if "simulation/achieved_cycle_service_level" not in md:
            return dg.AssetCheckResult(passed=False, metadata={"error": "no simulation metadata on the latest "
                                                                        "materialization"})
        t, a, fill = (float(md[f"simulation/{k}"].value) for k in ("target_cycle_service_level",
                                                                  "achieved_cycle_service_level", "fill_rate"))
    return dg.AssetCheckResult(passed=bool(a >= t - 0.03), metadata={
        "target": metric(t), "achieved": metric(a), "shortfall_points": metric((t - a) * 100),
        "fill_rate": metric(fill)})


# the promotion gate of the forecast model (not a table: a registered MLflow model version), evaluated in the
# training step (defs/ml/forecasting.py), which moves the alias champion only when it passes
GATE = dg.AssetCheckSpec(
    "no_worse_than_champion", asset=FORECAST_MODEL, blocking=True,
    description="The candidate's product x county WAPE and county MASE are no worse than the champion's on the same "
    "rolling-origin backtest (the champion's spec backtested again when it differs); only then does the candidate "
    "become champion.")

CHECKS = {
    "rfm_scores": TableChecks(schemas.rfm_scores, [one_row_per_customer(ML_KEYS["rfm_scores"], "segment"),
                                                   segment_changes]),
    "customer_clusters": TableChecks(schemas.customer_clusters,
                                     [one_row_per_customer(ML_KEYS["customer_clusters"], "cluster")]),
    "segment_summary": TableChecks(schemas.segment_summary),
    "sales_forecast": TableChecks(schemas.sales_forecast),
    "forecast_backtest": TableChecks(schemas.forecast_backtest, [model_beats_seasonal_naive]),
    "county_demand_forecast": TableChecks(schemas.county_demand_forecast, [sums_match_product_forecasts]),
    "inventory_recommendations": TableChecks(schemas.inventory_recommendations, [simulated_service_level]),
}
