"""The real-time feed's streaming query: Kafka -> contract-checked, de-duplicated events -> 5-minute county windows
in Delta, exactly once.

Spark Structured Streaming reads the topic (``format("kafka")``); each micro-batch goes through
:func:`process_batch` (``foreachBatch``), which uses the plain functions of ``logic/realtime/stream.py`` and writes:

1. ``realtime.event_rejects``: messages that break the contract, with the rule;
2. ``realtime.events``: accepted events not seen before (an anti-join on ``event_id``: duplicates collapse);
3. ``realtime.late_events``: events behind the watermark (the latest event time of earlier micro-batches minus
   the allowed lateness), not seen before;
4. ``realtime.county_sales_5min``: the windows the micro-batch touched, recomputed from the ledger and replaced
   (Delta ``replaceWhere`` on their time range).

Exactly once: the checkpoint (outside the tables, ``<lake_root>/_checkpoints/realtime/...``) records which offsets
were processed; a micro-batch that ran but was not recorded (the process killed in between) runs again, and every
write above is idempotent for a replay: keyed anti-joins (an event or reject already written is not written
again), the watermark computed from the ledger *without* the micro-batch's own offsets (so a replay classifies
the same events late), and windows recomputed from the ledger. A killed write leaves the previous table version
(Delta commits are atomic).

It runs on the engine when it is up (``foreachBatch`` over Spark Connect runs the function in a Python worker of
the engine) and in-process otherwise. ``trigger(availableNow=True)``: everything the topic holds, then stop (the
asset); ``processingTime``: continuously (``ecommerce-lake stream run --continuous``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ecommerce_lake.logic.realtime import stream as logic
from ecommerce_lake.schemas import realtime as schemas
from ecommerce_lake.schemas.spark import conform

log = logging.getLogger(__name__)

TABLES = ("county_sales_5min", "events", "late_events", "event_rejects")


@dataclass(frozen=True)
class StreamTables:
    """Where the feed's tables and its checkpoint are (from the lake root: ``<root>/realtime/<table>``)."""

    root: str

    def path(self, table: str) -> str:
        return f"{self.root.rstrip('/')}/realtime/{table}"

    @property
    def checkpoint(self) -> str:
        return f"{self.root.rstrip('/')}/_checkpoints/realtime/county_sales_5min"


def _read(spark, path: str):
    try:
        df = spark.read.format("delta").load(path)
        df.schema  # noqa: B018 - analyse now (Spark Connect is lazy): a missing table raises here
        return df
    except Exception as exc:  # noqa: BLE001 - the table does not exist yet (first micro-batch)
        if "DELTA_MISSING_DELTA_TABLE" in str(exc) or "PATH_NOT_FOUND" in str(exc) or "is not a Delta table" in str(exc):
            return None
        raise


def _append(df, path: str) -> None:
    df.write.format("delta").mode("append").option("mergeSchema", "false").save(path)


def _new_only(df, existing, on: list[str]):
    return df if existing is None else df.join(existing.select(*on), on, "left_anti")


def _batch_ranges(batch) -> tuple[str | None, list[tuple[int, int, int]]]:
    """(predicate excluding the micro-batch's own messages, [(partition, first, last offset)])."""
    from pyspark.sql import functions as F

    rows = batch.groupBy("partition").agg(F.min("offset").alias("lo"), F.max("offset").alias("hi")).collect()
    ranges = [(int(r["partition"]), int(r["lo"]), int(r["hi"])) for r in rows]
    if not ranges:
        return None, []
    own = " OR ".join(f"(kafka_partition = {p} AND kafka_offset BETWEEN {lo} AND {hi})" for p, lo, hi in ranges)
    return f"NOT ({own})", ranges


def watermark(spark, tables: StreamTables, exclude: str | None, lateness_minutes: int) -> dt.datetime | None:
    """The latest event time of the ledger (``exclude``: not this micro-batch's own rows) minus the lateness."""
    from pyspark.sql import functions as F

    ledger = _read(spark, tables.path("events"))
    if ledger is None:
        return None
    if exclude:
        ledger = ledger.where(exclude)
    latest = ledger.agg(F.unix_seconds(F.max("event_time"))).collect()[0][0]
    if latest is None:
        return None
    return dt.datetime.fromtimestamp(int(latest), dt.UTC) - dt.timedelta(minutes=lateness_minutes)


def process_batch(batch, batch_id: int, tables: StreamTables, lateness_minutes: int) -> None:
    """One micro-batch (see the module's docstring). Idempotent: running it twice writes nothing twice."""
    from pyspark.sql import functions as F

    spark = batch.sparkSession
    received = dt.datetime.now(dt.UTC)
    exclude, ranges = _batch_ranges(batch)
    if not ranges:
        return
    parsed = logic.parse_messages(batch).localCheckpoint()  # computed once, read by every write below
    rejects = conform(logic.rejects(parsed, batch_id, received), schemas.event_rejects)
    existing = _read(spark, tables.path("event_rejects"))
    _append(_new_only(rejects, existing, ["topic", "kafka_partition", "kafka_offset"]), tables.path("event_rejects"))

    wm = watermark(spark, tables, exclude, lateness_minutes)
    events = logic.first_of_each_event(logic.accepted(parsed, batch_id, received)).localCheckpoint()
    on_time, late = logic.split_late(events, wm)
    ledger = _read(spark, tables.path("events"))
    _append(conform(_new_only(on_time, ledger, ["event_id"]), schemas.events), tables.path("events"))
    late_table = _read(spark, tables.path("late_events"))
    new_late = _new_only(_new_only(late, ledger, ["event_id"]), late_table, ["event_id"])
    _append(conform(new_late, schemas.late_events), tables.path("late_events"))

    # the time range of the windows the micro-batch touched, as epoch seconds: instants, whatever the time zone of
    # this Python process or of the Spark session (a naive datetime or a TIMESTAMP'...' literal would depend on both)
    start = F.unix_seconds(logic.window_start(F.col("event_time")))
    span = on_time.agg(F.min(start).alias("lo"), F.max(start).alias("hi")).collect()[0]
    if span["lo"] is None:
        return
    lo, hi = int(span["lo"]), int(span["hi"]) + 60 * logic.WINDOW_MINUTES
    touched = f"window_start >= timestamp_seconds({lo}) AND window_start < timestamp_seconds({hi})"
    ledger = spark.read.format("delta").load(tables.path("events")).where(
        f"event_time >= timestamp_seconds({lo}) AND event_time < timestamp_seconds({hi})")
    windows = conform(logic.windows(ledger, received), schemas.county_sales_5min)
    (windows.write.format("delta").mode("overwrite").option("replaceWhere", touched)
     .save(tables.path("county_sales_5min")))


@dataclass
class StreamReport:
    batches: int = 0
    input_rows: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    committed_offsets: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def run(spark, tables: StreamTables, *, bootstrap: str, topic: str, lateness_minutes: int,
        max_offsets_per_trigger: int = 0, continuous: bool = False, interval: str = "5 seconds",
        timeout: float | None = None, progress: Callable[[str], None] = log.info) -> StreamReport:
    """Run the feed's query: until the topic is drained (``continuous=False``: ``availableNow``) or until
    ``timeout`` seconds / an interrupt (``continuous``)."""
    started = time.monotonic()
    reader = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", bootstrap)
              .option("subscribe", topic).option("startingOffsets", "earliest")
              .option("failOnDataLoss", "true"))
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))

    def sink(batch, batch_id):
        process_batch(batch, batch_id, tables, lateness_minutes)

    writer = (reader.load().writeStream.foreachBatch(sink).option("checkpointLocation", tables.checkpoint)
              .queryName("realtime_county_sales_5min"))
    writer = writer.trigger(processingTime=interval) if continuous else writer.trigger(availableNow=True)
    query = writer.start()
    progress(f"stream: reading {topic} at {bootstrap}, checkpoint {tables.checkpoint}"
             + (" (continuous)" if continuous else " (available now)"))
    try:
        if continuous and timeout is not None:
            query.awaitTermination(timeout)
        else:
            query.awaitTermination()
    finally:
        if query.isActive:
            query.stop()
    report = StreamReport(seconds=round(time.monotonic() - started, 3))
    for p in query.recentProgress or []:
        rows = _messages(p)
        if rows:
            report.batches += 1
            report.input_rows += rows
    if query.exception() is not None:
        raise RuntimeError(f"the stream failed: {query.exception()}")
    report.rows_per_second = round(report.input_rows / report.seconds, 1) if report.seconds else 0.0
    report.committed_offsets = committed_offsets(tables.checkpoint, topic)
    return report


def _offsets(value) -> dict[str, dict[str, int]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _messages(progress) -> int:
    """Messages a micro-batch read: its end minus its start offsets (``numInputRows`` counts every evaluation of
    the micro-batch's DataFrame, several per ``foreachBatch``)."""
    total = 0
    for source in getattr(progress, "sources", None) or []:
        start, end = _offsets(source.startOffset), _offsets(source.endOffset)
        for topic, parts in end.items():
            for part, offset in parts.items():
                total += max(0, int(offset) - int((start.get(topic) or {}).get(part, 0)))
    return total


def committed_offsets(checkpoint: str, topic: str) -> dict[int, int]:
    """``{partition: next offset}`` the checkpoint recorded as processed (its latest commit), {} if none. Local
    checkpoints only (an S3 checkpoint is read by the engine; the sensor then compares with the table's history)."""
    root = Path(checkpoint.removeprefix("file:"))
    commits, offsets = root / "commits", root / "offsets"
    if not commits.is_dir():
        return {}
    done = sorted((int(p.name) for p in commits.iterdir() if p.name.isdigit()), reverse=True)
    for n in done:
        path = offsets / str(n)
        if path.exists():
            lines = path.read_text().splitlines()
            for line in lines[2:]:
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict) and topic in value:
                    return {int(p): int(o) for p, o in value[topic].items()}
    return {}
