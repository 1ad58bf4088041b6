"""Raw layer: one append-by-batch table per landing file type, plus the batch log."""

import datetime as dt

import dagster as dg
from pyspark.sql import functions as F

from ecommerce_lake.contract import LANDING_FILES
from ecommerce_lake.defs.common import CheckEnv, ExtraCheck, asset_out, key_of, table_checks
from ecommerce_lake.logic.ingest import batch_log, plan_ingest, read_raw
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.platform.landing import LandingResource
from ecommerce_lake.schemas import raw as schemas

BATCH_LOG_KEY = key_of(schemas.batch_log)
RAW_KEYS = {spec.name: key_of(schemas.TABLES[spec.name]) for spec in LANDING_FILES}
# Append-by-batch: a write replaces only the rows of the batches it carries (re-ingesting is idempotent).
_APPEND = {"replace_key": "_batch_id"}


@dg.multi_asset(
    name="raw_ingest",
    outs={
        **{spec.name: asset_out(schemas.TABLES[spec.name], **_APPEND) for spec in LANDING_FILES},
        "batch_log": asset_out(schemas.batch_log, replace_key="batch_id"),
    },
    description="Ingest every new complete landing batch: validate it against the contract, append its rows "
    "(as strings) to the raw tables, and record it in raw.batch_log – accepted, or rejected whole with the "
    "reason. Batches already in the batch log are never read again; incomplete batches are skipped.",
)
def raw_ingest(context: dg.AssetExecutionContext, landing: LandingResource, lake: LakeResource):
    spark = lake.session()
    seen: set[str] = set()
    if lake.exists(BATCH_LOG_KEY):
        seen = {r["batch_id"] for r in lake.read(BATCH_LOG_KEY, columns=["batch_id"]).collect()}
    plan = plan_ingest(landing, seen)
    ingested_at = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    context.log.info(
        f"landing {landing.root}: {len(plan.accepted)} new batch(es) to ingest, {len(plan.rejected)} rejected, "
        f"{len(plan.incomplete)} incomplete (no _SUCCESS yet), {plan.already_ingested} already ingested"
    )
    for batch_id in plan.incomplete:
        context.log.warning(f"batch {batch_id}: skipped, incomplete (no _SUCCESS marker yet)")
    for p in plan.rejected:
        context.log.error(f"batch {p.batch_id}: REJECTED – {p.reason}")

    accepted_ids = [p.batch_id for p in plan.accepted]
    for spec in LANDING_FILES:
        df = read_raw(spark, landing, spec, plan.accepted, ingested_at)
        yield dg.Output(df, output_name=spec.name, metadata={"lake/replace_values": accepted_ids})

    file_rows: dict[str, dict[str, int]] = {}
    if accepted_ids:
        for spec in LANDING_FILES:
            key = RAW_KEYS[spec.name]
            if not lake.exists(key):
                continue
            counts = (
                lake.read(key, columns=["_batch_id"])
                .where(F.col("_batch_id").isin(accepted_ids))
                .groupBy("_batch_id")
                .count()
                .collect()
            )
            for row in counts:
                file_rows.setdefault(row["_batch_id"], {})[spec.filename] = int(row["count"])
    log_df = batch_log(spark, plan.new, file_rows, ingested_at, context.run_id)
    rejected_md = "\n".join(f"| {p.batch_id} | {p.reason} |" for p in plan.rejected)
    yield dg.Output(
        log_df,
        output_name="batch_log",
        metadata={
            "lake/replace_values": [p.batch_id for p in plan.new],
            "batches/accepted": len(plan.accepted),
            "batches/rejected": len(plan.rejected),
            "batches/incomplete": len(plan.incomplete),
            "batches/already_ingested": plan.already_ingested,
            "rows/ingested": sum(sum(v.values()) for v in file_rows.values()),
            "incomplete_batches": dg.MetadataValue.json(plan.incomplete[:100]),
            "rejected_batches": dg.MetadataValue.md(
                "| batch | reason |\n|---|---|\n" + rejected_md if rejected_md else "none"
            ),
        },
    )


def _no_rejected_batches(env: CheckEnv) -> dg.AssetCheckResult:
    log = env.lake.read(BATCH_LOG_KEY)
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


NO_REJECTED_BATCHES = ExtraCheck(
    "no_rejected_batches",
    "Warns when the latest ingestion rejected a batch; the metadata names each batch and why.",
    _no_rejected_batches,
)

CHECKS = [
    *[table_checks(s, blocking=True) for s in schemas.TABLES.values()],
    table_checks(schemas.batch_log, blocking=True, extra=[NO_REJECTED_BATCHES]),
]

defs = dg.Definitions(assets=[raw_ingest], asset_checks=CHECKS)
