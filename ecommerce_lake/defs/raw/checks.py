"""Checks of the raw tables (besides their schema checks)."""

from __future__ import annotations

import dagster as dg
from pyspark.sql import functions as F

from ecommerce_lake.defs.checks import WARN, CheckContext, TableChecks, table_check
from ecommerce_lake.defs.keys import RAW_KEYS
from ecommerce_lake.schemas import raw as schemas

SALES = ("orders", "order_items", "payments")
BATCH_TABLES = ("customers", "products", "inventory")


@table_check("no_rejected_batches", "Warns when the latest ingestion rejected a batch; the metadata names each batch "
             "and why.", severity=WARN)
def no_rejected_batches(ctx: CheckContext) -> dg.AssetCheckResult:
    log = ctx.lake.read(RAW_KEYS["batch_log"])
    latest = log.agg(F.max("ingested_at")).collect()[0][0]
    rows = log.where(F.col("status") == "rejected").select("batch_id", "reason", "ingested_at").collect()
    rejected = sorted((r["batch_id"], r["reason"]) for r in rows if r["ingested_at"] == latest)
    return dg.AssetCheckResult(
        passed=not rejected,
        metadata={
            "rejected_in_latest_ingestion": len(rejected),
            "rejected_all_time": len(rows),
            "batches": dg.MetadataValue.json([{"batch_id": b, "reason": r} for b, r in rejected[:50]]),
        },
    )


CHECKS = {
    **{name: TableChecks(schemas.TABLES[name]) for name in (*BATCH_TABLES, *SALES)},
    "batch_log": TableChecks(schemas.batch_log, [no_rejected_batches]),
}
