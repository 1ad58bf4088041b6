"""Which day partitions a landing batch touches, computed without Spark (the sensor and the runner use it).

The raw ingestion computes each row's day with the same rules in Spark (``ecommerce_lake.logic.ingest``) and
refuses to write a row outside the run's partitions, so a disagreement can never misfile data.

Rules (the partition *day* of a raw row):

* orders: the Nairobi date of ``order_ts``; payments: of ``paid_ts``;
* order_items: the day of their order's latest row in the same batch, else of its latest row already in the
  lake (or in an earlier batch of the same run), else the batch's arrival day;
* a row whose date is unreadable, outside the partitions, or in a malformed CSV record: the arrival day.

A batch also touches the days where its orders already live (their partitions are recomputed, so an order
whose ``order_ts`` moved to another day leaves its old day).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ecommerce_lake.logic.parsing import TS_RE
from ecommerce_lake.partitions import clamp_day, nairobi_today
from ecommerce_lake.platform.landing import Batch, LandingResource

NAIROBI = dt.timezone(dt.timedelta(hours=3))
_TS = re.compile(TS_RE)

# order_id -> day of the order's latest row already in the lake
ExistingDays = Callable[[set[str]], dict[str, dt.date]]


_SPACE_SEP = re.compile(r"^([0-9-]{10}) ")
_ZULU = re.compile(r"[Zz]$")
_OFFSET_HHMM = re.compile(r"([+-][0-9]{2})([0-9]{2})$")
_OFFSET_HH = re.compile(r"([+-][0-9]{2})$")
_HAS_OFFSET = re.compile(r"[+-][0-9]{2}:[0-9]{2}$")


def nairobi_date(text: str | None) -> dt.date | None:
    """The Nairobi date of an ISO-8601 timestamp string, with the lake's parsing rules (None if unreadable).

    The same normalisation as Spark's ``parsing.parse_timestamp`` (``test_planner_days_agree_with_spark_parsing``
    compares the two on 27 shapes); called once per landing row by the planner, so the patterns are compiled once.
    """
    if text is None:
        return None
    s = text.strip()
    if not s or not _TS.match(s):
        return None
    if (len(s) == 19 and s[16] == ":") or (len(s) == 25 and s.endswith("+03:00")):
        # Nairobi local time to the second, without an offset or with +03:00 (the usual shapes): the date as written
        try:
            return dt.datetime.fromisoformat(s).date()
        except ValueError:
            return None
    s = _SPACE_SEP.sub(r"\1T", s)
    s = _ZULU.sub("+00:00", s)
    s = _OFFSET_HHMM.sub(r"\1:\2", s)
    s = _OFFSET_HH.sub(r"\1:00", s)
    if not _HAS_OFFSET.search(s):
        s += "+03:00"
    try:
        value = dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    return value.astimezone(NAIROBI).date()


@dataclass
class Rows:
    header: list[str]
    records: list[tuple[int, dict[str, str], bool]]  # (row number, values, malformed)


def read_rows(text: str, columns: Iterable[str] | None = None) -> Rows:
    """The CSV's records as (row number, {column: value}, malformed); with ``columns``, the values of those
    columns only (the planner reads two or three of a file's columns: building the others cost more than
    parsing)."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    wanted = [(i, h) for i, h in enumerate(header) if columns is None or h in columns]
    width = len(header)
    records = []
    for number, record in enumerate(reader, start=1):
        n = len(record)
        values = {h: (record[i] if i < n else None) for i, h in wanted}
        records.append((number, values, n != width))
    return Rows(header, records)


@dataclass
class BatchDays:
    batch_id: str
    days: set[dt.date] = field(default_factory=set)
    order_days: dict[str, dt.date] = field(default_factory=dict)  # order_id -> day of its latest row here


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def plan_days(
    landing: LandingResource,
    batches: Iterable[Batch],
    existing_days: ExistingDays,
    files_of: Callable[[Batch], Iterable[str]] | None = None,
) -> dict[str, BatchDays]:
    """Days touched by each batch (processed in id order, as the ingestion does)."""
    planned: dict[str, BatchDays] = {}
    seen_in_run: dict[str, dt.date] = {}
    today = nairobi_today()  # once per plan, not once per row
    for batch in sorted(batches, key=lambda b: b.batch_id):
        names = {n.lower(): n for n in (files_of(batch) if files_of else batch.files)}
        arrival = batch.arrival_day
        out = BatchDays(batch.batch_id)

        def rows(filename: str, columns: tuple[str, ...], batch: Batch = batch,
                 names: dict = names) -> list[tuple[int, dict, bool]]:
            if filename not in names:
                return []
            return read_rows(landing.read_text(batch.batch_id, names[filename]), columns).records

        order_rows = rows("orders.csv", ("order_id", "order_ts"))
        item_rows = rows("order_items.csv", ("order_id",))
        referenced = {oid for _, v, _ in order_rows + item_rows if (oid := _clean(v.get("order_id")))}
        lake_days = existing_days(referenced - seen_in_run.keys()) if referenced else {}
        for _, values, malformed in order_rows:
            day = arrival if malformed else clamp_day(nairobi_date(values.get("order_ts")), arrival, today)
            out.days.add(day)
            if (oid := _clean(values.get("order_id"))) is not None:
                out.order_days[oid] = day  # the last row in the file wins, as in Spark
        for oid in referenced:  # recompute where the order already lives
            if oid in seen_in_run:
                out.days.add(seen_in_run[oid])
            elif oid in lake_days:
                out.days.add(clamp_day(lake_days[oid], arrival, today))
        for _, values, malformed in item_rows:
            oid = _clean(values.get("order_id"))
            if malformed or oid is None:
                out.days.add(arrival)
            elif oid in out.order_days:
                out.days.add(out.order_days[oid])
            elif oid in seen_in_run:
                out.days.add(seen_in_run[oid])
            elif oid in lake_days:
                out.days.add(clamp_day(lake_days[oid], arrival, today))
            else:
                out.days.add(arrival)
        for _, values, malformed in rows("payments.csv", ("paid_ts",)):
            out.days.add(arrival if malformed else clamp_day(nairobi_date(values.get("paid_ts")), arrival, today))
        seen_in_run.update(out.order_days)
        planned[batch.batch_id] = out
    return planned


@dataclass
class PlannedBatch:
    batch: Batch
    accepted: bool
    reason: str | None
    days: set[dt.date]


@dataclass
class NewBatches:
    planned: list[PlannedBatch]  # new complete batches, in id order (at most ``limit``)
    incomplete: list[str]  # batches without _SUCCESS (never read)
    listed: list[str]  # every batch id seen after the cursor, in order
    truncated: bool  # more new complete batches remain than ``limit``


def plan_new_batches(
    landing: LandingResource,
    ingested: set[str],
    existing_days: ExistingDays,
    after: str | None = None,
    limit: int | None = None,
) -> NewBatches:
    """New complete batches after ``after`` (at most ``limit``), validated, with the days they touch."""
    from ecommerce_lake.logic.ingest import check_batch

    incomplete: list[str] = []
    listed: list[str] = []
    todo: list[tuple[Batch, object]] = []
    truncated = False
    for batch in landing.list_batches(after=after):
        listed.append(batch.batch_id)
        if batch.batch_id in ingested:
            continue
        if not batch.complete:
            incomplete.append(batch.batch_id)
            continue
        if limit is not None and len(todo) >= limit:
            truncated = True
            continue
        todo.append((batch, check_batch(landing, batch)))
    headers = {b.batch_id: p.headers for b, p in todo if p.accepted}
    days = plan_days(landing, [b for b, p in todo if p.accepted], existing_days,
                     files_of=lambda b: headers[b.batch_id].keys())
    planned = [PlannedBatch(batch, p.accepted, p.reason, days[batch.batch_id].days if p.accepted else set())
               for batch, p in todo]
    return NewBatches(planned, incomplete, listed, truncated)
