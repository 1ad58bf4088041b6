"""Raw layer: landing rows as they arrived, appended by batch; sales-bearing tables partitioned by day.

Two ingestion steps share one batch selection (every new complete batch, or the batch named by the run's
``ecommerce_lake/batch_id`` tag, as the landing sensor sets it):

* ``raw_ingest_sales`` (daily partitions): raw.orders, raw.order_items, raw.payments;
* ``raw_ingest`` (after it): raw.customers, raw.products, raw.inventory and raw.batch_log – written last, so a
  batch only counts as ingested once all its rows are in.
"""

import datetime as dt

import dagster as dg
from pyspark.sql import functions as F

from ecommerce_lake.core.calendar import nairobi_today
from ecommerce_lake.core.contract import BY_NAME, LANDING_FILES
from ecommerce_lake.defs.checks import evaluate_checks
from ecommerce_lake.defs.keys import RAW_KEYS
from ecommerce_lake.defs.partitions import BATCH_TAG, FIRST_DAY
from ecommerce_lake.defs.raw.checks import BATCH_TABLES, CHECKS, SALES
from ecommerce_lake.defs.resources import QualityResource
from ecommerce_lake.defs.tables import asset_out, partitioning, require_together
from ecommerce_lake.logic.frames import Held, kept_keys
from ecommerce_lake.logic.raw.ingest import DAY_COLUMNS, assign_days, batch_log, plan_ingest, read_raw, shown
from ecommerce_lake.logic.raw.plan import read_rows
from ecommerce_lake.logic.refined import pii
from ecommerce_lake.platform.io_manager import Replacing
from ecommerce_lake.platform.lake import LakeError, LakeResource
from ecommerce_lake.platform.landing import LandingResource
from ecommerce_lake.platform.secrets import PrivacyKeysResource
from ecommerce_lake.schemas import encrypted_columns
from ecommerce_lake.schemas import raw as schemas

BATCH_LOG_KEY = RAW_KEYS["batch_log"]
INGEST_POOL = "ecommerce_lake_ingest"  # one ingestion at a time: batches are appended in id order


def _selected_plan(context, landing: LandingResource, lake: LakeResource, check_redelivery: bool = True):
    seen: dict[str, str | None] = {}
    if lake.exists(BATCH_LOG_KEY):
        log = lake.read(BATCH_LOG_KEY)
        has_fingerprint = "fingerprint" in log.columns  # absent in lakes written before fingerprints existed
        seen = {r["batch_id"]: (r["fingerprint"] if has_fingerprint else None) for r in log.select(
            "batch_id", "fingerprint" if has_fingerprint else F.lit(None).alias("fingerprint")).collect()}
    only = context.run.tags.get(BATCH_TAG)
    plan = plan_ingest(landing, seen, only=only, check_redelivery=check_redelivery)
    return plan, only


def _ingested_at() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)


@dg.multi_asset(
    name="raw_ingest_sales",
    outs={name: asset_out(schemas.TABLES[name]) for name in SALES},
    **partitioning(*(schemas.TABLES[name] for name in SALES)),
    pool=INGEST_POOL,
    check_specs=[spec for name in SALES for spec in CHECKS[name].specs],
    can_subset=True,
    description="Append the orders, order lines and payments of new landing batches to the day partitions "
    "they belong to (raw.orders, raw.order_items, raw.payments). Re-ingesting a batch changes nothing.",
)
def raw_ingest_sales(context: dg.AssetExecutionContext, landing: LandingResource, lake: LakeResource,
                     quality: QualityResource):
    if require_together(context, SALES, "a batch's sales rows go in together"):
        yield from _ingest_sales(context, landing, lake)
    yield from evaluate_checks(context, lake, quality, [CHECKS[name] for name in SALES])


def _ingest_sales(context: dg.AssetExecutionContext, landing: LandingResource, lake: LakeResource):
    spark = lake.session()
    # re-delivered batches are refused and logged by raw_ingest; here only the new batches matter
    plan, only = _selected_plan(context, landing, lake, check_redelivery=False)
    accepted = plan.accepted
    context.log.info(
        f"sales rows of {len(accepted)} new batch(es)" + (f" (batch {only})" if only else "")
        + f" for partitions {context.partition_key_range.start}..{context.partition_key_range.end}"
    )
    ingested_at = _ingested_at()
    raw = {name: read_raw(spark, landing, BY_NAME[name], accepted, ingested_at) for name in SALES}
    with Held() as held:  # what the step computes once and writes from memory, released when it is written
        yield from _ingest_sales_days(context, lake, raw, accepted, held)


def _ingest_sales_days(context: dg.AssetExecutionContext, lake: LakeResource, raw: dict, accepted: list, held: Held):
    existing = None
    if accepted and lake.exists(RAW_KEYS["orders"]):
        # the order ids the new lines refer to, computed first: Spark broadcasts them, and their range lets Delta
        # read only the files of raw.orders that can hold them (ids are issued in sequence)
        referenced = kept_keys(raw["order_items"].select(F.trim("order_id").alias("__ref_oid"))
                               .where("__ref_oid IS NOT NULL AND __ref_oid != ''").distinct(), "__ref_oid", held,
                               narrow=not lake.is_small(RAW_KEYS["orders"]))
        existing = lake.read(RAW_KEYS["orders"], columns=["order_id", "_batch_id", "_row_number", "_order_date"])
        existing = referenced.narrow(existing, "order_id", trimmed=True).join(
            referenced.df, F.trim(F.col("order_id")) == F.col("__ref_oid"), "left_semi")
    window = context.partition_time_window
    today = nairobi_today()
    with_days = assign_days(raw, accepted, existing, FIRST_DAY, today)
    if accepted:  # computed once (CSV parsing, day assignment), then checked and written from memory/disk
        with_days = {name: held(df) for name, df in with_days.items()}
        _refuse_rows_outside(with_days, window, context.partition_key_range)
    for name in SALES:
        yield dg.Output(Replacing(with_days[name], [p.batch_id for p in accepted]), output_name=name)


def _refuse_rows_outside(tables: dict, window: dg.TimeWindow, keys: dg.PartitionKeyRange) -> None:
    start, end = window.start.date(), window.end.date()
    for name in SALES:
        col = DAY_COLUMNS[name]
        lo, hi = tables[name].agg(F.min(col), F.max(col)).collect()[0]
        if lo is None or (lo >= start and hi < end):
            continue
        bad = (tables[name].where((F.col(col) < F.lit(start)) | (F.col(col) >= F.lit(end)))
               .groupBy(col).agg(F.collect_set("_batch_id").alias("batches")).limit(10).collect())
        if bad:
            detail = ", ".join(f"{r[col]} (batches {', '.join(sorted(r['batches']))})" for r in bad)
            raise LakeError(
                f"raw.{name}: rows belong to days outside this run's partitions {keys.start}..{keys.end}: {detail}. "
                "Nothing was written. Ingest through the landing sensor or `ecommerce-lake run`, which select the "
                "partitions a batch touches."
            )


@dg.multi_asset(
    name="raw_ingest",
    outs={
        **{name: asset_out(schemas.TABLES[name]) for name in BATCH_TABLES},
        "batch_log": asset_out(schemas.batch_log),
    },
    deps=[RAW_KEYS[name] for name in SALES],
    pool=INGEST_POOL,
    check_specs=[spec for name in (*BATCH_TABLES, "batch_log") for spec in CHECKS[name].specs],
    can_subset=True,
    description="Append customers, products and inventory snapshots of new landing batches, then record every new "
    "complete batch in raw.batch_log – accepted, or rejected whole with the reason. Batches already in the batch log are never "
    "read again; incomplete batches (no _SUCCESS yet) are skipped.",
)
def raw_ingest(context: dg.AssetExecutionContext, landing: LandingResource, lake: LakeResource,
               quality: QualityResource, privacy_keys: PrivacyKeysResource):
    if require_together(context, (*BATCH_TABLES, "batch_log"),
                        "raw.batch_log marks a batch ingested only with every table of it"):
        yield from _ingest_batches(context, landing, lake, privacy_keys)
    yield from evaluate_checks(context, lake, quality, [CHECKS[name] for name in (*BATCH_TABLES, "batch_log")],
                               privacy_keys=privacy_keys)


def _ingest_batches(context: dg.AssetExecutionContext, landing: LandingResource, lake: LakeResource,
                    privacy_keys: PrivacyKeysResource):
    spark = lake.session()
    plan, only = _selected_plan(context, landing, lake)
    ingested_at = _ingested_at()
    context.log.info(
        f"landing {landing.root}: {len(plan.accepted)} new batch(es) to ingest, {len(plan.rejected)} rejected, "
        f"{len(plan.incomplete)} incomplete (no _SUCCESS yet), {plan.already_ingested} already ingested"
        + (f" (this run: batch {only})" if only else "")
    )
    for batch_id in plan.incomplete:
        context.log.warning(f"batch {shown(batch_id)}: skipped, incomplete (no _SUCCESS marker yet)")
    for p in plan.rejected:
        context.log.error(f"batch {shown(p.batch_id)}: REJECTED – {p.reason}")
    for r in plan.redelivered:
        context.log.error(r.message)

    accepted_ids = [p.batch_id for p in plan.accepted]
    for name in BATCH_TABLES:
        df = read_raw(spark, landing, BY_NAME[name], plan.accepted, ingested_at)
        if name in schemas.PERSONAL_FILES and accepted_ids:  # personal values never reach the lake in clear
            keys = privacy_keys.spark_keys()
            df = pii.seal(df, encrypted_columns(schemas.TABLES[name]), keys)
            context.log.info(f"raw.{name}: personal columns encrypted with key k{keys.version}")
        yield dg.Output(Replacing(df, accepted_ids), output_name=name)

    file_rows: dict[str, dict[str, int]] = {}
    days: dict[str, list[str]] = {}
    if accepted_ids:
        for spec in LANDING_FILES:
            key = RAW_KEYS[spec.name]
            if not lake.exists(key):
                continue
            day_col = DAY_COLUMNS.get(spec.name)
            df = lake.read(key).where(F.col("_batch_id").isin(accepted_ids))
            aggs = [F.count(F.lit(1)).alias("rows")]
            if day_col:
                aggs.append(F.collect_set(F.col(day_col).cast("string")).alias("days"))
            for row in df.groupBy("_batch_id").agg(*aggs).collect():
                file_rows.setdefault(row["_batch_id"], {})[spec.filename] = int(row["rows"])
                if day_col:
                    days.setdefault(row["_batch_id"], [])
                    days[row["_batch_id"]] = sorted(set(days[row["_batch_id"]]) | set(row["days"]))
        missing = [
            f"{p.batch_id}/{name}" for p in plan.accepted for name in p.headers
            if name.lower() in {f"{t}.csv" for t in SALES} and name.lower() not in file_rows.get(p.batch_id, {})
            and read_rows(landing.read_text(p.batch_id, name)).records
        ]
        if missing:
            raise LakeError(
                f"{', '.join(missing)}: rows are not in raw yet. Materialize raw_ingest_sales for the partitions "
                "these batches touch first (the landing sensor and `ecommerce-lake run` do); the batches are not "
                "marked as ingested."
            )
    log_df = batch_log(spark, plan.new, file_rows, days, ingested_at, context.run_id)
    rejected_md = "\n".join(f"| {p.batch_id} | {p.reason} |" for p in plan.rejected)
    yield dg.Output(
        Replacing(log_df, [p.batch_id for p in plan.new]),
        output_name="batch_log",
        metadata={
            "batches/accepted": len(plan.accepted),
            "batches/rejected": len(plan.rejected),
            "batches/incomplete": len(plan.incomplete),
            "batches/already_ingested": plan.already_ingested,
            "batches/redelivered_refused": len(plan.redelivered),
            "rows/ingested": sum(sum(v.values()) for v in file_rows.values()),
            "incomplete_batches": dg.MetadataValue.json(plan.incomplete[:100]),
            "redelivered_batches": dg.MetadataValue.json([r.batch_id for r in plan.redelivered][:100]),
            "rejected_batches": dg.MetadataValue.md(
                "| batch | reason |\n|---|---|\n" + rejected_md if rejected_md else "none"
            ),
        },
    )


ASSETS = [raw_ingest_sales, raw_ingest]
