"""``realtime/county_sales_5min`` and its side tables: one step runs the streaming query over what the topic holds
(``trigger(availableNow=True)``) and stops, so it is materialized like any other asset (the UI, ``ecommerce-lake
run``, the ``kafka_events_sensor``). The query writes its tables itself, idempotently per micro-batch
(``platform/stream.py``); the step then reports what changed and evaluates the tables' checks."""


import dagster as dg

from ecommerce_lake.defs.checks import evaluate_checks
from ecommerce_lake.defs.keys import REALTIME_KEYS
from ecommerce_lake.defs.realtime.checks import CHECKS
from ecommerce_lake.defs.resources import KafkaResource, MaintenanceConfig, QualityResource
from ecommerce_lake.defs.tables import asset_kwargs
from ecommerce_lake.platform import kafka as kafka_client
from ecommerce_lake.platform import stream
from ecommerce_lake.platform.lake import LakeResource, catalog_name


def _spec(table: str) -> dg.AssetSpec:
    kw = asset_kwargs(CHECKS[table].schema)
    return dg.AssetSpec(kw["key"], group_name=kw["group_name"], description=kw["description"],
                        metadata=kw["metadata"], kinds={"spark", "delta", "kafka"}, owners=kw["owners"])


COMPACT_AT_FILES = 64  # every micro-batch adds a few small files to each table


def _compact(context: dg.AssetExecutionContext, lake: LakeResource, retention_hours: int) -> set[str]:
    """OPTIMIZE (then VACUUM with the maintenance retention) each realtime table that has reached
    ``COMPACT_AT_FILES`` files: here, in the stream's own step, because the daily maintenance would contend with the
    stream's commits (one stream at a time: the pool)."""
    done = set()
    for table in stream.TABLES:
        key = REALTIME_KEYS[table]
        if not lake.exists(key):
            continue
        files = int(lake.detail(key)["numFiles"])
        if files < COMPACT_AT_FILES:
            continue
        metrics = lake.optimize(key)
        vacuumed = lake.vacuum(key, retention_hours)
        context.log.info(f"{catalog_name(key)}: compacted {metrics.get('numFilesRemoved', 0)} of {files} files into "
                         f"{metrics.get('numFilesAdded', 0)}; vacuumed {len(vacuumed)} files older than "
                         f"{retention_hours} h")
        done.add(table)
    return done


@dg.multi_asset(
    name="realtime__county_sales_5min",
    specs=[_spec(t) for t in stream.TABLES],
    check_specs=[s for c in CHECKS.values() for s in c.specs],
    description="Runs the real-time feed's streaming query over the events the Kafka topic holds and stops: "
    "contract checks, de-duplication, late events, 5-minute county windows.",
    pool="realtime_stream",  # one stream at a time: they share the checkpoint
)
def county_sales_stream(context: dg.AssetExecutionContext, lake: LakeResource, kafka: KafkaResource,
                        quality: QualityResource, maintenance: MaintenanceConfig):
    created = kafka_client.ensure_topic(kafka.bootstrap, kafka.topic, kafka.partitions)
    if created:
        context.log.info(f"created topic {kafka.topic} ({kafka.partitions} partitions) at {kafka.bootstrap}")
    tables = stream.StreamTables(lake.root)
    before = {t: lake.current_version(REALTIME_KEYS[t]) for t in stream.TABLES}
    report = stream.run(lake.session(), tables, bootstrap=kafka.bootstrap, topic=kafka.topic,
                        lateness_minutes=kafka.watermark_minutes,
                        max_offsets_per_trigger=kafka.max_offsets_per_trigger, progress=context.log.info)
    ends = kafka_client.end_offsets(kafka.bootstrap, kafka.topic)
    lag = sum(max(0, end - report.committed_offsets.get(p, 0)) for p, end in ends.items())
    context.log.info(f"stream: {report.input_rows} messages in {report.batches} micro-batches, {report.seconds} s; "
                     f"lag now {lag}")
    compacted = _compact(context, lake, maintenance.retention_hours)
    for table in stream.TABLES:
        key = REALTIME_KEYS[table]
        if lake.exists(key):
            lake.register_soon(key)  # catalog name realtime.<table>
        yield dg.MaterializeResult(asset_key=key, metadata={
            "table_name": catalog_name(key), "path": lake.table_uri(key),
            "dagster/row_count": lake.row_count(key) or 0,
            "delta_version_before": before[table] if before[table] is not None else -1,
            "delta_version": lake.current_version(key) if lake.exists(key) else -1,
            "messages_read": report.input_rows, "micro_batches": report.batches, "seconds": report.seconds,
            "consumer_lag": lag, "committed_offsets": dg.MetadataValue.json(report.committed_offsets),
            "end_offsets": dg.MetadataValue.json(ends), "compacted": table in compacted,
        })
    yield from evaluate_checks(context, lake, quality, list(CHECKS.values()),
                               lateness_minutes=kafka.watermark_minutes)
