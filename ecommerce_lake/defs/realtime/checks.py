"""Checks of the realtime tables: their schemas' checks, and the reconciliation with the batch lake."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ecommerce_lake.defs.checks import CheckContext, TableChecks, table_check
from ecommerce_lake.defs.keys import CURATED_KEYS, REALTIME_KEYS
from ecommerce_lake.schemas import realtime as schemas

NAIROBI = dt.timezone(dt.timedelta(hours=3))


@table_check("reconciles_with_daily_sales",
             "For every day both have complete (the stream's watermark past the day's end; the day in "
             "curated.daily_sales), the windows plus the late events of each county add up to that county's and "
             "day's net revenue in curated.daily_sales, to the cent.")
def reconciles_with_daily_sales(env: CheckContext) -> dg.AssetCheckResult:
    from pyspark.sql import functions as F

    lake, lateness = env.lake, env.values["lateness_minutes"]
    daily_key = CURATED_KEYS["daily_sales"]
    if not lake.exists(daily_key):
        return dg.AssetCheckResult(passed=True, metadata={"days_compared": 0,
                                                          "note": "curated.daily_sales is not built yet"})
    events = lake.read(REALTIME_KEYS["events"])
    latest = events.agg(F.unix_seconds(F.max("event_time"))).collect()[0][0]  # an instant, in any time zone
    if latest is None:
        return dg.AssetCheckResult(passed=True, metadata={"days_compared": 0, "note": "no events yet"})
    watermark = dt.datetime.fromtimestamp(int(latest), dt.UTC) - dt.timedelta(minutes=lateness)
    # the last Nairobi day whose end (midnight at +03:00) the watermark passed
    last_complete = watermark.astimezone(NAIROBI).date() - dt.timedelta(days=1)
    cols = ["county_code", F.col("event_date").alias("day"), "net_amount_kes"]
    stream = (events.select(*cols).unionByName(lake.read(REALTIME_KEYS["late_events"]).select(*cols))
              .where(F.col("day") <= F.lit(last_complete))
              .groupBy("county_code", "day").agg(F.sum("net_amount_kes").cast("decimal(20,2)").alias("stream")))
    days = stream.select("day").distinct()
    batch = (lake.read(daily_key).select("county_code", F.col("order_date").alias("day"), "net_revenue_kes")
             .join(days, "day", "left_semi")
             .groupBy("county_code", "day").agg(F.sum("net_revenue_kes").cast("decimal(20,2)").alias("batch")))
    batch_days = batch.select("day").distinct()
    stream = stream.join(batch_days, "day", "left_semi")  # days both have
    joined = stream.join(batch, ["county_code", "day"], "full_outer").select(
        "county_code", "day", F.coalesce("stream", F.lit(0)).cast("decimal(20,2)").alias("stream"),
        F.coalesce("batch", F.lit(0)).cast("decimal(20,2)").alias("batch"))
    summary = joined.agg(F.countDistinct("day").alias("days"), F.count(F.lit(1)).alias("pairs"),
                         F.sum(F.when(F.col("stream") != F.col("batch"), 1).otherwise(0)).alias("differ"),
                         F.sum("stream").alias("stream_total"), F.sum("batch").alias("batch_total")).collect()[0]
    differ = int(summary["differ"] or 0)
    samples = [] if not differ else [
        {"county_code": r["county_code"], "day": str(r["day"]), "stream": str(r["stream"]), "batch": str(r["batch"])}
        for r in joined.where(F.col("stream") != F.col("batch")).orderBy("day", "county_code").limit(10).collect()]
    return dg.AssetCheckResult(passed=differ == 0, metadata={
        "days_compared": int(summary["days"] or 0), "county_days_compared": int(summary["pairs"] or 0),
        "county_days_differing": differ, "stream_net_revenue_kes": str(summary["stream_total"] or 0),
        "batch_net_revenue_kes": str(summary["batch_total"] or 0), "last_complete_day": str(last_complete),
        "watermark_utc": watermark.replace(tzinfo=None).isoformat(), "differences": dg.MetadataValue.json(samples)})


CHECKS = {
    "county_sales_5min": TableChecks(schemas.county_sales_5min, [reconciles_with_daily_sales]),
    "events": TableChecks(schemas.events),
    "late_events": TableChecks(schemas.late_events),
    "event_rejects": TableChecks(schemas.event_rejects, blocking=False),
}
