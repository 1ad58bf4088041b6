"""Hypothesis strategies for whole landing zones, each row written with the fate the landing contract gives it.

Written from docs/landing-contract.md, independently of the code under test: files are made with Python's csv
module (or by hand, for what csv cannot write: ragged rows, unbalanced quotes, bytes that are not UTF-8), and
every row carries its expected fate — kept as its key's winning version, collapsed into it, or rejected with a
named rule — computed here from how the row was drawn, not from the lake.

A zone mixes every dirty-row class of the contract with malformed files: ragged rows, an unbalanced quote,
quoted line breaks and commas, CRLF, a byte-order mark, bytes that are not UTF-8, a 0-byte file, a header-only
file, a repeated header, headers in other case and order with spaces, an unknown extra column, a 1 MB field,
blank keys, bare dates where timestamps belong, an incomplete batch (no ``_SUCCESS``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from ecommerce_lake_tests.landing_fixtures import HEADERS
from ecommerce_lake_tests.oracle import REQUIRED

TABLES = ["customers", "products", "orders", "order_items", "payments", "inventory"]
KEYS = {"customers": ["customer_id"], "products": ["product_id"], "orders": ["order_id"],
        "order_items": ["order_id", "line_number"], "payments": ["payment_id"],
        "inventory": ["product_id", "county", "as_of"]}
BY_UPDATED_AT = {"customers", "products", "orders"}  # the winner: latest updated_at, then later batch, later row
EAT = dt.timezone(dt.timedelta(hours=3))
BASE = dt.datetime(2025, 11, 1, 9, 0, tzinfo=EAT)

# row classes that break exactly one rule: (class, the tables it applies to, the rule the row is rejected for)
DIRTY = {
    "blank_key": (TABLES, "missing_required_value"),
    "missing_required": (TABLES, "missing_required_value"),
    "ragged_short": (TABLES, "malformed_row"),
    "ragged_long": (TABLES, "malformed_row"),
    "bad_amount": (["products", "order_items", "payments"], "unparseable_number"),
    "bad_timestamp": (["customers", "products", "orders", "payments"], "unparseable_timestamp"),
    "bare_date_timestamp": (["customers", "products", "orders", "payments"], "unparseable_timestamp"),
    "bad_date": (["customers", "inventory"], "unparseable_date"),
    "negative_amount": (["products", "order_items"], "negative_amount"),
    "zero_quantity": (["order_items"], "quantity_not_positive_integer"),
    "big_discount": (["order_items"], "discount_above_line_amount"),
    "unknown_status": (["orders"], "unknown_status"),
    "future_order": (["orders"], "future_order_timestamp"),
    "before_first_day": (["orders", "payments"], "date_outside_partitions"),
    "negative_stock": (["inventory"], "negative_stock"),
    "not_utf8": (TABLES, "not_utf8"),
}
# clean rows with awkward but valid text: kept (or collapsed) like any clean row
AWKWARD = ["plain", "comma", "quote", "line_break", "crlf_in_field", "padded", "unicode", "megabyte"]
FREE_TEXT = {"customers": "full_name", "products": "brand", "orders": "channel", "order_items": "discount_kes",
             "payments": "mpesa_receipt", "inventory": None}
FILE_FORMS = ["normal", "normal", "normal", "header_only", "zero_bytes", "repeated_header", "missing_column"]


@dataclass
class Row:
    table: str
    values: dict[str, str]  # what was written (for kept rows: the clean values)
    kind: str  # "clean" or a DIRTY class
    instant: dt.datetime | None = None  # updated_at, for the version rule
    raw_line: bytes | str | None = None  # written as-is instead of by the csv module (str: as UTF-8)
    row_number: int = 0  # 1-based data record number within its file (set when written)

    @property
    def rule(self) -> str | None:
        return None if self.kind == "clean" else DIRTY[self.kind][1]

    def key(self) -> tuple:
        k = tuple(self.values[c].strip() for c in KEYS[self.table])
        return (k[0], int(k[1])) if self.table == "order_items" else k


@dataclass
class File:
    table: str
    form: str
    header: list[str]  # as written (case, order, spaces, extra column)
    rows: list[Row]
    bom: bool
    crlf: bool


@dataclass
class BatchSpec:
    batch_id: str
    files: list[File]
    complete: bool

    @property
    def rejected_for(self) -> str | None:
        """Why the contract rejects the whole batch (a phrase of the reason), None when it is ingested."""
        for f in self.files:
            if f.form == "zero_bytes":
                return "empty file"
            if f.form == "repeated_header":
                return "duplicate column"
            if f.form == "missing_column":
                return "lacks required column"
        return None


@dataclass
class Zone:
    batches: list[BatchSpec]
    written: dict[str, bytes] = field(default_factory=dict)

    def accepted(self) -> list[BatchSpec]:
        return [b for b in self.batches if b.complete and b.rejected_for is None]

    def rows(self, table: str) -> list[tuple[str, Row]]:
        """(batch id, row) of every row of ``table`` the lake reads (accepted batches)."""
        return [(b.batch_id, r) for b in self.accepted() for f in b.files if f.table == table for r in f.rows]

    def expected(self, table: str) -> tuple[dict[tuple, Row], dict[tuple[str, int], str]]:
        """The kept rows by key (the winning version) and the rejected rows by (source file, row number)."""
        best: dict[tuple, tuple[tuple, Row]] = {}
        rejected = {}
        for batch, row in self.rows(table):
            source = f"{batch}/{table}.csv"
            if row.rule:
                rejected[(source, row.row_number)] = row.rule
                continue
            order = ((row.instant,) if table in BY_UPDATED_AT else ()) + (batch, row.row_number)
            k = row.key()
            if k not in best or order > best[k][0]:
                best[k] = (order, row)
        return {k: v[1] for k, v in best.items()}, rejected

    def write(self, root: Path) -> None:
        for b in self.batches:
            folder = root / b.batch_id
            folder.mkdir(parents=True)
            for f in b.files:
                data = render(f)
                (folder / f"{f.table}.csv").write_bytes(data)
                self.written[f"{b.batch_id}/{f.table}.csv"] = data
            if b.complete:
                (folder / "_SUCCESS").write_text("")

    def classes(self) -> set[str]:
        """What the zone exercises, for hypothesis' statistics: row classes, file forms, BOM, CRLF, incomplete."""
        out = set()
        for b in self.batches:
            if not b.complete:
                out.add("batch: incomplete")
            if b.rejected_for:
                out.add(f"batch: rejected ({b.rejected_for})")
            for f in b.files:
                out.add(f"file: {f.form}")
                if f.bom:
                    out.add("file: byte-order mark")
                if f.crlf:
                    out.add("file: CRLF")
                if f.form == "normal" and f.header != HEADERS[f"{f.table}.csv"]:
                    out.add("file: header in other case/order/spacing")
                out.update(f"row: {r.kind}" for r in f.rows)
        return out

    def describe(self) -> str:
        out = []
        for b in self.batches:
            out.append(f"batch {b.batch_id} ({'complete' if b.complete else 'incomplete'}"
                       f"{', rejected: ' + b.rejected_for if b.rejected_for else ''})")
            for f in b.files:
                kinds = ", ".join(sorted({r.kind for r in f.rows})) or "-"
                out.append(f"  {f.table}.csv {f.form} bom={f.bom} crlf={f.crlf} rows={len(f.rows)}: {kinds}")
        return "\n".join(out)


def render(f: File) -> bytes:
    if f.form == "zero_bytes":
        return b""
    newline = "\r\n" if f.crlf else "\n"
    out = io.BytesIO()
    if f.bom:
        out.write("\ufeff".encode())
    text = io.StringIO()
    csv.writer(text, lineterminator=newline).writerow(f.header)
    out.write(text.getvalue().encode())
    columns = [h.strip().lower() for h in f.header]
    for n, row in enumerate(f.rows, start=1):
        row.row_number = n
        if row.raw_line is not None:
            raw = row.raw_line.encode() if isinstance(row.raw_line, str) else row.raw_line
            out.write(raw + newline.encode())
            continue
        text = io.StringIO()
        csv.writer(text, lineterminator=newline).writerow([row.values.get(c, "") for c in columns])
        out.write(text.getvalue().encode())
    return out.getvalue()


def _ts(instant: dt.datetime, style: int) -> str:
    """One of the contract's timestamp spellings of ``instant``."""
    utc = instant.astimezone(dt.UTC)
    return [
        instant.isoformat(timespec="seconds"),                       # 2025-11-01T09:00:00+03:00
        utc.strftime("%Y-%m-%dT%H:%M:%SZ"),                          # ...Z
        instant.strftime("%Y-%m-%d %H:%M:%S%z"),                     # space, +0300
        instant.strftime("%Y-%m-%dT%H:%M"),                          # no seconds, no offset: Nairobi time
    ][style]


def _awkward(kind: str, base: str) -> str:
    return {"plain": base, "comma": base + ", Jr", "quote": base + ' "the 2nd"', "line_break": base + "\nline 2",
            "crlf_in_field": base + "\r\nline 2", "padded": f"  {base}  ", "unicode": base + " Wanjirũ ñ ✓",
            "megabyte": base + "x" * 1_000_000}[kind]


@st.composite
def rows_of(draw, table: str, batch_no: int) -> list[Row]:
    n = draw(st.integers(min_value=0, max_value=6))
    rows = []
    for _ in range(n):
        k = draw(st.integers(min_value=1, max_value=4))  # few keys: versions and duplicates are common
        minutes = draw(st.integers(min_value=0, max_value=3)) * 90 + batch_no  # ties on updated_at happen
        instant = BASE + dt.timedelta(days=batch_no, minutes=minutes)
        style = draw(st.integers(min_value=0, max_value=3))
        stamp = _ts(instant, style)
        values = {
            "customers": {"customer_id": f"C{k}", "full_name": f"Customer {k}", "email": f"c{k}@example.com",
                          "phone": "0712345678", "county": draw(st.sampled_from(["Nairobi", "homa-bay", "Atlantis", ""])),
                          "signup_date": "2024-05-01", "updated_at": stamp},
            "products": {"product_id": f"P{k}", "product_name": f"Product {k}", "category": "phones",
                         "brand": "Acme", "unit_cost_kes": "100", "list_price_kes": f"{100 + minutes}.50",
                         "updated_at": stamp},
            "orders": {"order_id": f"O{k}", "customer_id": f"C{k}", "order_ts": _ts(instant - dt.timedelta(hours=2), style),
                       "status": draw(st.sampled_from(["paid", " Delivered ", "PLACED", "cancelled"])),
                       "channel": "web", "delivery_county": "", "payment_method": "M-Pesa",
                       "shipping_fee_kes": "", "updated_at": stamp},
            "order_items": {"order_id": f"O{k}", "line_number": draw(st.sampled_from(["1", "2", "01"])),
                            "product_id": f"P{k}", "quantity": "2", "unit_price_kes": "250.00", "discount_kes": ""},
            "payments": {"payment_id": f"Y{k}", "order_id": f"O{k}", "method": "mpesa", "amount_kes": "500",
                         "paid_ts": stamp, "status": "completed", "mpesa_receipt": f"R{k}"},
            "inventory": {"product_id": f"P{k}", "county": "Nairobi", "on_hand": str(minutes),
                          "as_of": "2025-11-0" + str(1 + k % 3)},
        }[table]
        kinds = [c for c, (tables, _) in DIRTY.items() if table in tables]
        kind = draw(st.sampled_from(["clean"] * 3 + kinds))
        row = Row(table, values, kind, instant)
        text_col = FREE_TEXT[table]
        if kind == "clean" and text_col and table != "order_items":
            values[text_col] = _awkward(draw(st.sampled_from(AWKWARD)), values[text_col])
        _dirty(row, kind, draw)
        rows.append(row)
    return rows


def _dirty(row: Row, kind: str, draw) -> None:
    v, table = row.values, row.table
    if kind == "blank_key":
        v[KEYS[table][0]] = draw(st.sampled_from(["", "   ", "\t", "\u00a0"]))
    elif kind == "missing_required":
        v[draw(st.sampled_from([c for c in REQUIRED[f"{table}.csv"] if c not in KEYS[table]] or KEYS[table]))] = ""
    elif kind == "bad_amount":
        v[{"products": "list_price_kes", "order_items": "unit_price_kes", "payments": "amount_kes"}[table]] = \
            draw(st.sampled_from(["12,50", "KES 100", "1.234", "abc"]))
    elif kind == "bad_timestamp":
        v["paid_ts" if table == "payments" else "updated_at"] = draw(st.sampled_from(
            ["2025-13-40T10:00:00+03:00", "30/11/2025 10:00", "yesterday"]))
    elif kind == "bare_date_timestamp":
        v["paid_ts" if table == "payments" else "updated_at"] = "2025-11-05"
    elif kind == "bad_date":
        v["signup_date" if table == "customers" else "as_of"] = draw(st.sampled_from(["2025-02-30", "1/2/2025"]))
    elif kind == "negative_amount":
        v["list_price_kes" if table == "products" else "unit_price_kes"] = "-5.00"
    elif kind == "zero_quantity":
        v["quantity"] = draw(st.sampled_from(["0", "-1", "1.5"]))
    elif kind == "big_discount":
        v["discount_kes"] = "999.00"
    elif kind == "unknown_status":
        v["status"] = "teleported"
    elif kind == "future_order":
        v["order_ts"] = "2099-01-01T10:00:00+03:00"
    elif kind == "before_first_day":
        v["order_ts" if table == "orders" else "paid_ts"] = "2019-06-01T10:00:00+03:00"
    elif kind == "negative_stock":
        v["on_hand"] = "-3"
    elif kind in ("ragged_short", "ragged_long", "not_utf8"):
        pass  # written as a raw line by the file strategy, which knows the column order


@st.composite
def files_of(draw, table: str, batch_no: int) -> File:
    form = draw(st.sampled_from(FILE_FORMS))
    columns = list(HEADERS[f"{table}.csv"])
    if draw(st.booleans()):
        columns = draw(st.permutations(columns))
    header = [draw(st.sampled_from([c, c.upper(), c.title(), f" {c} "])) for c in columns]
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        header.append("loyalty_tier")  # unknown to the contract: kept in raw's _extra, ignored after
    if form == "repeated_header":
        header.append(header[0].strip().upper())
    if form == "missing_column":
        header = [h for h in header if h.strip().lower() != REQUIRED[f"{table}.csv"][0]]
    rows = [] if form in ("header_only", "zero_bytes") else draw(rows_of(table, batch_no))
    lowered = [h.strip().lower() for h in header]
    for row in rows:
        fields = [row.values.get(c, "") for c in lowered]
        if row.kind == "ragged_short":
            row.raw_line = _line(fields[:-1])
        elif row.kind == "ragged_long":
            row.raw_line = _line([*fields, "surplus"])
        elif row.kind == "not_utf8":
            line = _line(fields).encode()
            at = line.index(fields[-1].encode()) if fields[-1] else len(line)
            row.raw_line = line[:at] + b"\xff\xfe caf\xe9" + line[at:]  # not UTF-8 (Latin-1 bytes)
    if rows and draw(st.integers(min_value=0, max_value=5)) == 0:
        # an unbalanced quote opens the last row's first field: the rest of the file is that one field, so the
        # row has one field instead of the header's (RFC 4180): malformed_row
        last = rows[-1]
        last.kind = "ragged_short"
        last.raw_line = b'"' + _line([last.values.get(c, "") for c in lowered]).encode()
    return File(table, form, header, rows, bom=draw(st.booleans()), crlf=draw(st.booleans()))


def _line(fields: list[str]) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="").writerow(fields)
    return text.getvalue()


@st.composite
def zones(draw) -> Zone:
    n = draw(st.integers(min_value=1, max_value=3))
    batches = []
    for i in range(n):
        tables = draw(st.lists(st.sampled_from(TABLES), min_size=1, max_size=6, unique=True))
        files = [draw(files_of(t, i)) for t in sorted(tables, key=TABLES.index)]
        complete = i < n - 1 or draw(st.integers(min_value=0, max_value=4)) > 0
        batches.append(BatchSpec(f"2025-11-{10 + i:02d}", files, complete))
    return Zone(batches)
