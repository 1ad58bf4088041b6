"""Which day partitions a landing batch touches, computed without Spark (the sensor and the runner use it).

The raw ingestion computes each row's day with the same rules in Spark (``ecommerce_lake.logic.raw.ingest``) and
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
from ecommerce_lake.core.calendar import NAIROBI, clamp_day, nairobi_today
from ecommerce_lake.logic.landing import Batch, LandingFiles

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


# The usual shapes, whose Nairobi date is their first ten characters when those are a valid date: local time to
# the second without an offset, or with +03:00 (``nairobi_date``'s fast branch). Every other value goes through
# ``nairobi_date`` itself.
_PLAIN_LOCAL = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\+03:00)?$"


@dataclass
class FileColumns:
    """The columns the planner reads from one landing CSV, one value per record (None where the column is absent
    or the record too short), and which records are malformed (a field count other than the header's)."""

    values: dict[str, list[str | None]]
    malformed: list[bool] | None  # None: no record is malformed
    rows: int


def read_columns(text: str, columns: tuple[str, ...]) -> FileColumns:
    """``columns`` of a landing CSV: parsed by Arrow's C++ reader when every record is as wide as the header (the
    usual case, ten times faster), else by ``read_rows`` (the reference: Python's csv module)."""
    fast = _arrow_columns(text, columns)
    if fast is not None:
        return fast
    records = read_rows(text, columns).records
    return FileColumns(
        {c: [values.get(c) for _, values, _ in records] for c in columns},
        [bad for _, _, bad in records] if any(bad for _, _, bad in records) else None,
        len(records),
    )


def _arrow_columns(text: str, columns: tuple[str, ...]) -> FileColumns | None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = next(csv.reader(io.StringIO(text)), [])
    names = [h.strip().lower() for h in header]
    if len(header) < 2 or len(set(names)) != len(names):
        return None  # one column (a blank line is then a record, not a malformed one), or ambiguous names
    if "\n\n" in text.replace("\r\n", "\n").replace("\r", "\n"):
        return None  # a blank line: a malformed (empty) record for the csv module, a row of empty values for Arrow
    wanted = {names[i]: raw for i, raw in enumerate(header) if names[i] in columns}
    invalid: list[object] = []

    def on_invalid(row: object) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(text.encode("utf-8")),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False,
                                             invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={raw: pa.string() for raw in header}, include_columns=list(wanted.values()),
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowException, ValueError, UnicodeError):
        return None
    if invalid or table.column_names != list(wanted.values()):
        return None
    rows = table.num_rows
    return FileColumns(
        {c: (table.column(wanted[c]).to_pylist() if c in wanted else [None] * rows) for c in columns}, None, rows)


def _days(ts: list[str | None], malformed: list[bool] | None, arrival: dt.date, today: dt.date,
          first_day: dt.date) -> list[dt.date]:
    """Each record's partition day from its timestamp (``nairobi_date``, clamped; a malformed record: arrival)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(ts, type=pa.string())
    prefixes = pc.if_else(pc.match_substring_regex(array, _PLAIN_LOCAL), pc.utf8_slice_codeunits(array, 0, 10),
                          pa.scalar(None, pa.string())).to_pylist()
    dates: dict[str, dt.date | None] = {}
    for prefix in set(prefixes) - {None}:
        try:
            dates[prefix] = dt.date.fromisoformat(prefix)
        except ValueError:
            dates[prefix] = None
    days = [dates[p] if p is not None else nairobi_date(t) for p, t in zip(prefixes, ts)]
    usable = {d: clamp_day(d, arrival, first_day, today) for d in set(days)}
    if malformed is None:
        return [usable[d] for d in days]
    return [arrival if bad else usable[d] for d, bad in zip(days, malformed)]


def _oids(values: list[str | None]) -> list[str | None]:
    """Order ids as the lake keys them: trimmed; empty is none."""
    return [(v.strip() or None) if v is not None else None for v in values]


def plan_days(
    landing: LandingFiles,
    batches: Iterable[Batch],
    existing_days: ExistingDays,
    *,
    first_day: dt.date,
    files_of: Callable[[Batch], Iterable[str]] | None = None,
    today: dt.date | None = None,
) -> dict[str, BatchDays]:
    """Days touched by each batch (processed in id order, as the ingestion does).

    Column at a time: an order line adds no day of its own unless it is malformed, has no order id, or its order
    is nowhere (not in its batch, an earlier batch of the run or the lake): in every other case its day is its
    order's, which the order rows (or the orders already elsewhere) add. ``today`` (default: today in Nairobi)
    is the last day partition, ``first_day`` the first: days outside are clamped into them.
    """
    planned: dict[str, BatchDays] = {}
    seen_in_run: dict[str, dt.date] = {}
    today = today or nairobi_today()  # once per plan, not once per row
    for batch in sorted(batches, key=lambda b: b.batch_id):
        names = {n.lower(): n for n in (files_of(batch) if files_of else batch.files)}
        arrival = batch.arrival_day
        out = BatchDays(batch.batch_id)

        def read(filename: str, columns: tuple[str, ...], batch: Batch = batch, names: dict = names) -> FileColumns:
            if filename not in names:
                return FileColumns({c: [] for c in columns}, None, 0)
            return read_columns(landing.read_text(batch.batch_id, names[filename]), columns)

        orders = read("orders.csv", ("order_id", "order_ts"))
        items = read("order_items.csv", ("order_id",))
        order_ids = _oids(orders.values["order_id"])
        order_days = _days(orders.values["order_ts"], orders.malformed, arrival, today, first_day)
        out.days.update(order_days)
        out.order_days = dict(zip(order_ids, order_days))  # the last row in the file wins, as in Spark
        out.order_days.pop(None, None)
        item_ids = set(_oids(items.values["order_id"]))
        referenced = (set(order_ids) | item_ids) - {None}
        # (set comprehensions, not ``set - dict.keys()``, which walks the whole run's orders for every batch)
        elsewhere = {oid for oid in referenced if oid not in seen_in_run}
        lake_days = existing_days(elsewhere) if elsewhere else {}
        # recompute where the order already lives
        out.days.update(seen_in_run[oid] for oid in referenced if oid in seen_in_run)
        out.days.update(clamp_day(day, arrival, first_day, today) for oid, day in lake_days.items()
                        if oid in referenced)
        if items.malformed is not None or None in item_ids or any(
                oid not in out.order_days and oid not in seen_in_run and oid not in lake_days for oid in item_ids):
            out.days.add(arrival)
        payments = read("payments.csv", ("paid_ts",))
        out.days.update(_days(payments.values["paid_ts"], payments.malformed, arrival, today, first_day))
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
    landing: LandingFiles,
    ingested: set[str],
    existing_days: ExistingDays,
    *,
    first_day: dt.date,
    after: str | None = None,
    limit: int | None = None,
    today: dt.date | None = None,
) -> NewBatches:
    """New complete batches after ``after`` (at most ``limit``), validated, with the days they touch."""
    from ecommerce_lake.logic.raw.ingest import check_batch

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
    days = plan_days(landing, [b for b, p in todo if p.accepted], existing_days, first_day=first_day,
                     files_of=lambda b: headers[b.batch_id].keys(), today=today)
    planned = [PlannedBatch(batch, p.accepted, p.reason, days[batch.batch_id].days if p.accepted else set())
               for batch, p in todo]
    return NewBatches(planned, incomplete, listed, truncated)
