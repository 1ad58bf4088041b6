"""Landing -> raw: validate batches against the contract and read their CSVs as strings.

Values stay exactly as they arrived (strings; an empty field is null). Each row gets ``_batch_id``,
``_source_file`` (``<batch_id>/<file>``), ``_row_number`` (1-based data row within the file) and
``_ingested_at``. Columns the contract does not know are kept in the ``_extra`` map; a row whose number of
fields differs from its header keeps the raw line in ``_corrupt_record`` (refined rejects it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ecommerce_lake.core.contract import (
    BY_FILENAME,
    CORRUPT_COLUMN,
    EXTRA_COLUMN,
    LANDING_FILES,
    LandingFile,
)
from ecommerce_lake.logic.parsing import clean, nairobi_date, parse_timestamp
from ecommerce_lake.logic.landing import Batch, LandingFiles
from ecommerce_lake.schemas.spark import struct_type
from ecommerce_lake.schemas import raw as raw_schemas

DAY_COLUMNS = raw_schemas.DAY_COLUMNS
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:=+-]*$")


@dataclass
class BatchPlan:
    batch_id: str
    arrival_day: dt.date | None = None
    headers: dict[str, list[str]] = field(default_factory=dict)  # filename -> header (as written)
    ignored_files: list[str] = field(default_factory=list)
    reason: str | None = None  # set when the whole batch is rejected
    fingerprint: str | None = None  # LandingFiles.fingerprint: its file names and contents

    @property
    def accepted(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class Redelivery:
    """A batch id already in raw.batch_log delivered again with other content: refused, the lake keeps the
    first delivery."""

    batch_id: str
    ingested_fingerprint: str
    fingerprint: str

    @property
    def message(self) -> str:
        return (f"batch {shown(self.batch_id)}: REFUSED – delivered again with other content (fingerprint "
                f"{self.fingerprint[:19]}…, ingested as {self.ingested_fingerprint[:19]}…); the lake keeps the first "
                "delivery. Deliver corrections under a new batch id.")


def shown(batch_id: str) -> str:
    """A batch id fit for a log line: control and other non-printable characters escaped."""
    return batch_id if batch_id.isprintable() else repr(batch_id)


@dataclass
class IngestPlan:
    new: list[BatchPlan]
    incomplete: list[str]
    already_ingested: int
    redelivered: list[Redelivery] = field(default_factory=list)

    @property
    def accepted(self) -> list[BatchPlan]:
        return [b for b in self.new if b.accepted]

    @property
    def rejected(self) -> list[BatchPlan]:
        return [b for b in self.new if not b.accepted]


def check_batch(landing: LandingFiles, batch: Batch) -> BatchPlan:
    """Validate one complete batch's file names and headers against the contract."""
    plan = BatchPlan(batch.batch_id, batch.arrival_day)
    if not BATCH_ID_RE.match(batch.batch_id):
        plan.reason = f"batch id {batch.batch_id!r} has characters outside [A-Za-z0-9._:=+-]"
        return plan
    if batch.irregular:  # nothing outside the landing root is ever read, and nothing but regular files
        plan.reason = "holds what the landing zone never reads: " + ", ".join(
            f"{'the batch folder' if name == '.' else repr(name)} ({what})" for name, what in batch.irregular)
        return plan
    plan.fingerprint = landing.fingerprint(batch)
    problems: list[str] = []
    for name in batch.files:
        spec = BY_FILENAME.get(name.lower())
        if spec is None:
            plan.ignored_files.append(name)
            continue
        header = landing.read_header(batch.batch_id, name)
        if not header or all(h == "" for h in header):
            problems.append(f"{name}: empty file (no header row)")
            continue
        lowered = [h.lower() for h in header]
        dups = sorted({h for h in lowered if lowered.count(h) > 1})
        if dups:
            problems.append(f"{name}: duplicate column name(s) {', '.join(dups)}")
        missing = [c for c in spec.required if c not in lowered]
        if missing:
            problems.append(f"{name}: lacks required column(s) {', '.join(missing)}")
        plan.headers[name] = header
    if not plan.headers and not problems:
        problems.append("holds none of the contract files (" + ", ".join(f.filename for f in LANDING_FILES) + ")")
    if problems:
        plan.reason = "; ".join(problems)
    return plan


def plan_ingest(landing: LandingFiles, seen: Mapping[str, str | None] | set[str],
                only: str | None = None, check_redelivery: bool = True) -> IngestPlan:
    """New complete batches (all of them, or just ``only``), validated against the contract.

    ``seen``: the batch ids in raw.batch_log, with the fingerprint each was ingested with (None for batches
    logged before fingerprints existed, or rejected ones). A seen batch whose files now have another
    fingerprint is listed in ``redelivered`` and not read. ``check_redelivery=False`` skips that comparison
    (it digests every ingested batch's files) for callers that only need the new batches."""
    fingerprints = seen if isinstance(seen, Mapping) else dict.fromkeys(seen)
    new: list[BatchPlan] = []
    incomplete: list[str] = []
    redelivered: list[Redelivery] = []
    already = 0
    for batch in landing.list_batches():
        if only is not None and batch.batch_id != only:
            continue
        if batch.batch_id in fingerprints:
            already += 1
            before = fingerprints[batch.batch_id]
            if check_redelivery and before is not None and batch.complete and not batch.irregular:
                now = landing.fingerprint(batch)
                if now != before:
                    redelivered.append(Redelivery(batch.batch_id, before, now))
        elif not batch.complete:
            incomplete.append(batch.batch_id)
        else:
            new.append(check_batch(landing, batch))
    return IngestPlan(new, incomplete, already, redelivered)


def raw_schema(spec: LandingFile) -> T.StructType:
    """The raw table's columns as read from landing (without the partition-day column, added later)."""
    full = struct_type(raw_schemas.TABLES[spec.name])
    return T.StructType([f for f in full.fields if f.name not in raw_schemas.DAY_COLUMNS.values()])


def read_raw(
    spark: SparkSession,
    landing: LandingFiles,
    spec: LandingFile,
    batches: Iterable[BatchPlan],
    ingested_at: dt.datetime,
) -> DataFrame:
    """All rows of ``spec``'s file in the given (accepted) batches, in the raw schema."""
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for plan in batches:
        for name, header in plan.headers.items():
            if name.lower() == spec.filename:
                groups[tuple(header)].append(landing.spark_path(plan.batch_id, name))
    parts: list[DataFrame] = []
    for header, paths in groups.items():
        read_schema = T.StructType(
            [T.StructField(f"c{i}", T.StringType(), True) for i in range(len(header))]
            + [T.StructField(CORRUPT_COLUMN, T.StringType(), True)]
        )
        df = (
            spark.read.schema(read_schema)
            .options(
                header=True,
                multiLine=True,  # RFC 4180 quoted newlines; also keeps each file in one split, in order
                quote='"',
                escape='"',
                mode="PERMISSIVE",
                columnNameOfCorruptRecord=CORRUPT_COLUMN,
                encoding="UTF-8",
            )
            .csv(paths)
            .withColumn("__path", F.col("_metadata.file_path"))
            .withColumn("__seq", F.monotonically_increasing_id())
        )
        position = {h.strip().lower(): i for i, h in enumerate(header)}
        known = [
            (F.col(f"c{position[c]}") if c in position else F.lit(None).cast("string")).alias(c)
            for c in spec.columns
        ]
        extras = [(h.strip(), i) for i, h in enumerate(header) if h.strip().lower() not in spec.columns]
        if extras:
            extra = F.create_map(*[x for name, i in extras for x in (F.lit(name), F.col(f"c{i}"))])
        else:
            extra = F.lit(None).cast(T.MapType(T.StringType(), T.StringType()))
        parts.append(df.select(*known, extra.alias(EXTRA_COLUMN), CORRUPT_COLUMN, "__path", "__seq"))
    if not parts:
        return spark.createDataFrame([], raw_schema(spec))
    df = parts[0]
    for part in parts[1:]:
        df = df.unionByName(part)
    df = df.withColumn("_source_file", F.regexp_extract("__path", r"([^/]+/[^/]+)$", 1))
    df = df.withColumn("_batch_id", F.regexp_extract("__path", r"([^/]+)/[^/]+$", 1))
    window = Window.partitionBy("_source_file").orderBy("__seq")
    df = df.withColumn("_row_number", F.row_number().over(window).cast("int"))
    df = df.withColumn("_ingested_at", F.lit(ingested_at).cast("timestamp"))
    return df.select(*[F.col(f.name).cast(f.dataType) for f in raw_schema(spec).fields])


def batch_log(
    spark: SparkSession,
    plans: list[BatchPlan],
    file_rows: dict[str, dict[str, int]],
    days: dict[str, list[str]],
    ingested_at: dt.datetime,
    run_id: str | None,
) -> DataFrame:
    rows = []
    for p in plans:
        counts = file_rows.get(p.batch_id, {}) if p.accepted else None
        if counts is not None:
            counts = {name: int(counts.get(name, 0)) for name in p.headers}
        rows.append(
            (
                p.batch_id,
                "accepted" if p.accepted else "rejected",
                p.reason,
                sorted(p.headers),
                sorted(p.ignored_files),
                counts,
                sum(counts.values()) if counts is not None else None,
                ingested_at,
                run_id,
                p.arrival_day,
                sorted(days.get(p.batch_id, [])),
                p.fingerprint,
            )
        )
    return spark.createDataFrame(rows, struct_type(raw_schemas.batch_log))


# ---- partition days -----------------------------------------------------------------------------------------
def _usable(day: Column, arrival: Column, start: dt.date, today: dt.date) -> Column:
    """``day`` when it is a partition of the lake, else the batch's arrival day (clamped into the range)."""
    lo, hi = F.lit(start), F.lit(today)
    fallback = F.least(F.greatest(arrival, lo), hi)
    return F.when(day.isNotNull() & (day >= lo) & (day <= hi), day).otherwise(fallback)


def _arrival(plans: Iterable[BatchPlan]) -> Column:
    mapping = F.create_map(*[x for p in plans for x in (F.lit(p.batch_id), F.lit(p.arrival_day))])
    return F.element_at(mapping, F.col("_batch_id"))


def assign_days(
    raw: dict[str, DataFrame],
    plans: list[BatchPlan],
    existing_orders: DataFrame | None,
    start: dt.date,
    today: dt.date,
) -> dict[str, DataFrame]:
    """Add each sales row's partition day, by the rules in ``ecommerce_lake.logic.raw.plan`` (same rules, in Spark).

    ``existing_orders``: (order_id, _batch_id, _row_number, _order_date) of raw orders already in the lake.
    """
    arrival = _arrival(plans)
    corrupt = F.col(CORRUPT_COLUMN).isNotNull()

    def own_day(ts_col: str) -> Column:
        parsed = nairobi_date(parse_timestamp(ts_col).value)
        return F.when(corrupt, _usable(F.lit(None).cast("date"), arrival, start, today)).otherwise(
            _usable(parsed, arrival, start, today))

    orders = raw["orders"].withColumn(DAY_COLUMNS["orders"], own_day("order_ts"))
    payments = raw["payments"].withColumn(DAY_COLUMNS["payments"], own_day("paid_ts"))

    # An item follows its order: the order's latest row in the same batch (priority 2), else in an earlier
    # batch of this run (1), else already in the lake (0); otherwise the batch's arrival day.
    new_versions = orders.where(~corrupt & clean("order_id").isNotNull()).select(
        clean("order_id").alias("__oid"), F.col("_batch_id").alias("__obatch"),
        F.col("_row_number").alias("__orow"), F.col(DAY_COLUMNS["orders"]).alias("__oday"),
        F.lit(True).alias("__new"),
    )
    candidates = new_versions
    if existing_orders is not None:
        candidates = candidates.unionByName(existing_orders.select(
            clean("order_id").alias("__oid"), F.col("_batch_id").alias("__obatch"),
            F.col("_row_number").alias("__orow"), F.col(DAY_COLUMNS["orders"]).alias("__oday"),
            F.lit(False).alias("__new"),
        ))
    items = raw["order_items"].withColumn("__item_oid", clean("order_id"))
    row_id = ["_source_file", "_row_number"]  # a raw row's identity (deterministic, unlike generated ids)
    joined = items.select(*row_id, "__item_oid", "_batch_id").join(
        candidates, F.col("__item_oid") == F.col("__oid"), "inner"
    ).where(~F.col("__new") | (F.col("__obatch") <= F.col("_batch_id")))
    priority = (F.when(F.col("__new") & (F.col("__obatch") == F.col("_batch_id")), 2)
                .when(F.col("__new"), 1).otherwise(0))
    ranked = joined.withColumn("__priority", priority).withColumn(
        "__rank", F.row_number().over(Window.partitionBy(*row_id).orderBy(
            F.col("__priority").desc(), F.col("__obatch").desc(), F.col("__orow").desc())))
    chosen = ranked.where("__rank = 1").select(*row_id, "__oday")
    items = items.join(chosen, row_id, "left")
    item_day = F.when(corrupt | F.col("__item_oid").isNull() | F.col("__oday").isNull(),
                      _usable(F.lit(None).cast("date"), arrival, start, today)).otherwise(
        _usable(F.col("__oday"), arrival, start, today))
    items = items.withColumn(DAY_COLUMNS["order_items"], item_day).drop("__item_oid", "__oday")
    out = dict(raw)
    out.update({"orders": orders, "order_items": items, "payments": payments})
    return {name: df.select(*[F.col(f.name).cast(f.dataType) for f in struct_type(raw_schemas.TABLES[name]).fields])
            for name, df in out.items()}
