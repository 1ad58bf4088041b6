"""Landing batches -> the order events they imply (``ecommerce-lake stream produce --from-landing DIR``).

Plain Python over the landing CSV files (no Spark: a producer is a small client). Each version of an order (rows
of orders.csv, in ``updated_at`` order) becomes the events that move the order's contribution to net revenue
from what the previous version counted to what this one counts (see ``core/events.py``): the order's net
revenue (quantity x unit price - discount over its latest lines) when its status is sold, 0 otherwise, in the
county its delivery county (else its customer's county) names. Event ids are derived from the order version,
so replaying the same landing zone twice re-sends the same ids, which the stream collapses.

Rows the landing contract rejects (unparseable timestamps, unknown statuses, bad amounts, ragged rows) are skipped
and counted: the batch lake rejects them too.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from ecommerce_lake.core.contract import ORDER_STATUSES, SUCCESS_MARKER
from ecommerce_lake.core.events import SCHEMA_VERSION

SOLD = ("paid", "shipped", "delivered")
NAIROBI = dt.timezone(dt.timedelta(hours=3))
_NS = uuid.UUID("4f6c1d2e-7a41-4b7e-9a53-2c6f0b9e8d10")
_AMOUNT = re.compile(r"[+-]?\d{1,15}(\.\d{1,2})?")
_TS = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?")


@dataclass
class Replay:
    events: list[dict] = field(default_factory=list)
    batches: int = 0
    orders: int = 0
    skipped_rows: int = 0


def _instant(text: str) -> dt.datetime | None:
    text = (text or "").strip()
    if not _TS.fullmatch(text):
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=NAIROBI)


def _amount(text: str) -> Decimal | None:
    text = (text or "").strip()
    return Decimal(text) if _AMOUNT.fullmatch(text) else None


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str], bool]]:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        for i, record in enumerate(reader, start=1):
            bad = len(record) != len(header) or any("\ufffd" in v for v in record)
            yield i, dict(zip(header, record)), bad


def _batches(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / SUCCESS_MARKER).exists())


def order_events(landing_root: str | Path, now: dt.datetime | None = None) -> Replay:
    """Every event the landing zone at ``landing_root`` implies, in event-time order (then version order)."""
    root = Path(landing_root)
    if not root.is_dir():
        raise FileNotFoundError(f"no landing zone at {root}")
    now = now or dt.datetime.now(dt.UTC)
    out = Replay()
    customers: dict[str, tuple] = {}
    versions: dict[str, list[tuple]] = defaultdict(list)
    lines: dict[tuple[str, int], Decimal] = {}
    for batch in _batches(root):
        out.batches += 1
        if (batch / "customers.csv").exists():
            for row, v, bad in _rows(batch / "customers.csv"):
                cid, upd = (v.get("customer_id") or "").strip(), _instant(v.get("updated_at", ""))
                if bad or not cid or upd is None:
                    out.skipped_rows += 1
                    continue
                if cid not in customers or (upd, batch.name, row) > customers[cid][0]:
                    customers[cid] = ((upd, batch.name, row), (v.get("county") or "").strip())
        if (batch / "orders.csv").exists():
            for row, v, bad in _rows(batch / "orders.csv"):
                oid, cid = (v.get("order_id") or "").strip(), (v.get("customer_id") or "").strip()
                ts, upd = _instant(v.get("order_ts", "")), _instant(v.get("updated_at", ""))
                status = (v.get("status") or "").strip().lower()
                if bad or not oid or not cid or ts is None or upd is None or status not in ORDER_STATUSES or ts > now:
                    out.skipped_rows += 1
                    continue
                versions[oid].append(((upd, batch.name, row), status, ts, (v.get("delivery_county") or "").strip(),
                                      cid))
        if (batch / "order_items.csv").exists():
            for row, v, bad in _rows(batch / "order_items.csv"):
                line, qty = (v.get("line_number") or "").strip(), (v.get("quantity") or "").strip()
                price = _amount(v.get("unit_price_kes", ""))
                disc = Decimal(0) if not (v.get("discount_kes") or "").strip() else _amount(v["discount_kes"])
                oid = (v.get("order_id") or "").strip()
                if (bad or not oid or not line.isdigit() or not qty.isdigit() or int(qty) < 1 or price is None
                        or disc is None or price < 0 or disc < 0 or disc > int(qty) * price):
                    out.skipped_rows += 1
                    continue
                lines[(oid, int(line))] = (int(qty) * price - disc)  # arrival order: the later batch/row wins
    net: dict[str, Decimal] = defaultdict(Decimal)
    for (oid, _), amount in lines.items():
        net[oid] += amount
    events = []
    for oid, vs in versions.items():
        out.orders += 1
        before: tuple[tuple[str, str], dt.datetime, Decimal] | None = None  # (county texts, sale time, counted)
        for n, (order_key, status, ts, delivery, cid) in enumerate(sorted(vs, key=lambda x: x[0])):
            county, fallback = delivery, customers.get(cid, (None, ""))[1]
            counted = net[oid].quantize(Decimal("0.01")) if status in SOLD else Decimal("0.00")
            kind = ("order_placed" if before is None else "order_cancelled" if status == "cancelled"
                    else "order_returned" if status == "returned" else "order_updated")
            version = f"{oid}|{order_key[0].isoformat()}|{order_key[1]}|{order_key[2]}"
            where = (county or fallback or "Unknown", fallback)  # no text at all: county 0, as the batch lake
            if before is not None and (before[0], before[1]) != (where, ts):  # moved: take it out where it was
                events.append(_event(version + "|out", "order_moved", oid, before[0], -before[2], before[1]))
                before = (where, ts, Decimal("0.00"))
                kind = "order_moved"
            change = counted - (before[2] if before else Decimal("0.00"))
            events.append(_event(version, kind, oid, where, change, ts))
            before = (where, ts, counted)
    events.sort(key=lambda e: (e["event_time_sort"], e["order_id"], e["_n"]))
    for e in events:
        del e["event_time_sort"], e["_n"]
    out.events = events
    return out


_counter = iter(range(1 << 62))


def _event(version: str, kind: str, order_id: str, where: tuple[str, str], amount: Decimal,
           ts: dt.datetime) -> dict:
    county, fallback = where
    return {
        "event_id": str(uuid.uuid5(_NS, version)),
        "event_type": kind,
        "order_id": order_id,
        "county": county,
        **({"customer_county": fallback} if fallback and fallback != county else {}),
        "net_amount_kes": float(amount.quantize(Decimal("0.01"))),
        "event_time": ts.isoformat(),
        "schema_version": SCHEMA_VERSION,
        "event_time_sort": ts.astimezone(dt.UTC),
        "_n": next(_counter),
    }
