"""An independent computation of the lake's expected results, straight from the landing CSV files.

Written separately from the Spark code under test, in plain Python (csv, decimal, datetime) and pandas, from
the landing contract as documented in docs/landing-contract.md. Tests compare the lake against it.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pandas as pd

REQUIRED = {
    "customers.csv": ["customer_id", "updated_at"],
    "products.csv": ["product_id", "product_name", "category", "list_price_kes", "updated_at"],
    "orders.csv": ["order_id", "customer_id", "order_ts", "status", "updated_at"],
    "order_items.csv": ["order_id", "line_number", "product_id", "quantity", "unit_price_kes"],
    "payments.csv": ["payment_id", "order_id", "method", "amount_kes", "paid_ts", "status"],
    "inventory.csv": ["product_id", "county", "on_hand", "as_of"],
}
STATUSES = {"placed", "paid", "shipped", "delivered", "cancelled", "returned"}
SOLD = {"paid", "shipped", "delivered"}
NAIROBI = dt.timezone(dt.timedelta(hours=3))
CENT = Decimal("0.01")
FIRST_DAY = dt.date(2023, 1, 1)  # ECOMMERCE_LAKE_PARTITIONS_START's default: orders before it are rejected
DATA = Path(__file__).resolve().parents[1] / "ecommerce_lake" / "data"


@dataclass
class Row:
    batch: str
    row: int
    values: dict[str, str]
    malformed: bool
    ragged: bool = False  # a field count other than the header's (malformed also covers bytes not UTF-8)


@dataclass
class Landing:
    root: Path
    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)
    rows: dict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))


def read_landing(root: Path) -> Landing:
    landing = Landing(root)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (folder / "_SUCCESS").exists():
            landing.incomplete.append(folder.name)
            continue
        files: dict[str, list[Row]] = {}
        problem = None
        for path in sorted(folder.glob("*.csv")):
            with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:  # bytes not UTF-8: U+FFFD
                reader = csv.reader(fh)
                header = [h.strip().lower() for h in next(reader, [])]
                missing = [c for c in REQUIRED.get(path.name, []) if c not in header]
                if missing:
                    problem = f"{path.name} lacks {missing}"
                rows = []
                for i, record in enumerate(reader, start=1):
                    values = {h: (record[j] if j < len(record) else "") for j, h in enumerate(header)}
                    # a row with a field count other than the header's, or with bytes that are not UTF-8, is
                    # rejected by the contract
                    rows.append(Row(folder.name, i, values, malformed=len(record) != len(header)
                                    or any("\ufffd" in field for field in record),
                                    ragged=len(record) != len(header)))
                files[path.name] = rows
        if problem:
            landing.rejected[folder.name] = problem
            continue
        landing.accepted.append(folder.name)
        for name, rows in files.items():
            landing.rows[name.removesuffix(".csv")].extend(rows)
    return landing


# ---- parsing -----------------------------------------------------------------------------------------------
def money(text: str) -> Decimal | None:
    text = text.strip()
    if not re.fullmatch(r"[+-]?\d+(\.\d{1,2})?", text):
        return None
    return Decimal(text)


def instant(text: str) -> dt.datetime | None:
    text = text.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?", text):
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=NAIROBI)


def day(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()) else None
    except ValueError:
        return None


# ---- counties --------------------------------------------------------------------------------------------
def _key(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"['`]", "", text)
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    if words[:2] in (["county", "of"], ["city", "of"]):
        words = words[2:]
    while words and words[-1] in ("county", "city", "town", "municipality"):
        words = words[:-1]
    return "".join(words)


def county_lookup() -> dict[str, int]:
    table = {}
    with (DATA / "kenya_counties.csv").open() as fh:
        for r in csv.DictReader(fh):
            table[_key(r["county_name"])] = int(r["county_code"])
    with (DATA / "county_aliases.csv").open() as fh:
        for r in csv.DictReader(fh):
            table[_key(r["alias"])] = int(r["county_code"])
    return table


def county_names() -> dict[int, str]:
    with (DATA / "kenya_counties.csv").open() as fh:
        return {int(r["county_code"]): r["county_name"] for r in csv.DictReader(fh)}


def resolve(text: str, lookup: dict[str, int]) -> int | None:
    return lookup.get(_key(text)) if text and text.strip() else None


# ---- the expected lake -------------------------------------------------------------------------------------
def latest(rows: list[tuple], key_index: int = 0) -> dict:
    """rows of (key, sort_tuple, payload): the payload with the greatest sort tuple per key."""
    best: dict = {}
    for key, order, payload in rows:
        if key not in best or order > best[key][0]:
            best[key] = (order, payload)
    return {k: v[1] for k, v in best.items()}


def _current_orders(landing: Landing, now: dt.datetime) -> tuple[dict, dict, dict]:
    """(the current version of every valid order: order_id -> (status, order_ts, delivery county text, customer
    id, payment method text), each customer's county code, the county lookup)."""
    lookup = county_lookup()

    customers = []
    for r in landing.rows["customers"]:
        v = r.values
        ts = instant(v.get("updated_at", ""))
        ok = (not r.malformed and v.get("customer_id", "").strip() and ts is not None
              and (not v.get("signup_date", "").strip() or day(v["signup_date"]) is not None))
        if ok:
            customers.append((v["customer_id"].strip(), (ts, r.batch, r.row), v.get("county", "")))
    customer_county = {k: resolve(c, lookup) for k, c in latest(customers).items()}

    orders = []
    for r in landing.rows["orders"]:
        v = r.values
        ts, upd = instant(v.get("order_ts", "")), instant(v.get("updated_at", ""))
        status = v.get("status", "").strip().lower()
        fee = v.get("shipping_fee_kes", "").strip()
        ok = (not r.malformed and all(v.get(c, "").strip() for c in REQUIRED["orders.csv"])
              and ts is not None and upd is not None and status in STATUSES and ts <= now
              and ts.astimezone(NAIROBI).date() >= FIRST_DAY
              and (not fee or (money(fee) is not None and money(fee) >= 0)))
        if ok:
            orders.append((v["order_id"].strip(), (upd, r.batch, r.row),
                           (status, ts, v.get("delivery_county", ""), v["customer_id"].strip(),
                            v.get("payment_method", "").strip().lower())))
    return latest(orders), customer_county, lookup


def expected_orders(landing: Landing, now: dt.datetime) -> pd.DataFrame:
    """Every order's current version, whatever its status: order_id, customer_id, status, order_date (Nairobi),
    county_code (delivery county, else the customer's, else 0), payment_method as delivered."""
    current, customer_county, lookup = _current_orders(landing, now)
    return pd.DataFrame([{
        "order_id": order_id, "customer_id": customer, "status": status,
        "order_date": ts.astimezone(NAIROBI).date(),
        "county_code": resolve(delivery, lookup) or customer_county.get(customer) or 0, "payment_method": method,
    } for order_id, (status, ts, delivery, customer, method) in current.items()])


def expected_fact_sales(landing: Landing, now: dt.datetime) -> pd.DataFrame:
    names = county_names()
    current, customer_county, lookup = _current_orders(landing, now)

    items = []
    for r in landing.rows["order_items"]:
        v = r.values
        if r.malformed or not all(v.get(c, "").strip() for c in REQUIRED["order_items.csv"]):
            continue
        line, qty = v["line_number"].strip(), v["quantity"].strip()
        price = money(v["unit_price_kes"])
        disc = Decimal("0") if not v.get("discount_kes", "").strip() else money(v["discount_kes"])
        if not re.fullmatch(r"\d+", line) or int(line) < 1 or not re.fullmatch(r"\d+", qty) or int(qty) < 1:
            continue
        if price is None or disc is None or price < 0 or disc < 0 or disc > int(qty) * price:
            continue
        items.append(((v["order_id"].strip(), int(line)), (r.batch, r.row),
                      (v["product_id"].strip(), int(qty), price, disc)))
    lines = latest(items)

    out = []
    for (order_id, line), (product, qty, price, disc) in lines.items():
        order = current.get(order_id)
        if order is None or order[0] not in SOLD:
            continue
        status, ts, delivery, customer, method = order
        code = resolve(delivery, lookup) or customer_county.get(customer) or 0
        out.append({
            "order_id": order_id, "line_number": line, "product_id": product, "quantity": qty,
            "customer_id": customer,
            "net_revenue_kes": (qty * price - disc).quantize(CENT), "unit_price_kes": price,
            "order_date": ts.astimezone(NAIROBI).date(), "county_code": code,
            "county_name": names.get(code, "Unknown"),
        })
    return pd.DataFrame(out)


# ---- every row's fate: the rules it breaks, and the winning version per key ---------------------------------
# Written from docs/landing-contract.md ("Row rules", "Versions and duplicates"), not from logic/refined/refine.py.
_BLANK = re.compile(r"[ \t\n\x0b\f\r\u00a0\u2000-\u200b\u3000]*")
_AMOUNT = re.compile(r"[+-]?\d{1,15}(\.\d{1,2})?")
_INT = re.compile(r"[+-]?\d{1,9}")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
KEYS = {"customers": ("customer_id",), "products": ("product_id",), "orders": ("order_id",),
        "order_items": ("order_id", "line_number"), "payments": ("payment_id",),
        "inventory": ("product_id", "county", "as_of")}
BY_UPDATED_AT = {"customers", "products", "orders"}  # the others: the later batch, then the later row


def text(values: dict[str, str], column: str) -> str | None:
    """A value as the contract reads it: spaces trimmed; empty or only white space is missing (None)."""
    value = values.get(column, "").strip(" ")
    return None if _BLANK.fullmatch(value) else value


def rules_broken(table: str, row: Row, now: dt.datetime) -> set[str]:
    """Every row rule of the contract the row breaks (empty: a valid row), for a row with its header's field count.
    ``now`` stands for the ingestion time."""
    v = row.values
    rules: set[str] = set()
    if any(text(v, c) is None for c in REQUIRED[f"{table}.csv"]):
        rules.add("missing_required_value")
    if any("\ufffd" in x for x in v.values()):
        rules.add("not_utf8")

    def amount_bad(c):
        t = text(v, c)
        return t is not None and not _AMOUNT.fullmatch(t)

    def amount(c):
        t = text(v, c)
        return Decimal(t) if t is not None and _AMOUNT.fullmatch(t) else None

    def ts_bad(c):
        t = text(v, c)
        return t is not None and instant(t) is None

    def date_bad(c):
        t = text(v, c)
        return t is not None and day(t) is None

    if table == "customers":
        if ts_bad("updated_at"):
            rules.add("unparseable_timestamp")
        if date_bad("signup_date"):
            rules.add("unparseable_date")
    elif table == "products":
        if amount_bad("list_price_kes") or amount_bad("unit_cost_kes"):
            rules.add("unparseable_number")
        if any((amount(c) or 0) < 0 for c in ("list_price_kes", "unit_cost_kes")):
            rules.add("negative_amount")
        if ts_bad("updated_at"):
            rules.add("unparseable_timestamp")
    elif table == "orders":
        if amount_bad("shipping_fee_kes"):
            rules.add("unparseable_number")
        if ts_bad("order_ts") or ts_bad("updated_at"):
            rules.add("unparseable_timestamp")
        if (amount("shipping_fee_kes") or 0) < 0:
            rules.add("negative_amount")
        status = text(v, "status")
        if status is not None and re.sub(r"[\s\-]+", "_", status.lower()) not in STATUSES:
            rules.add("unknown_status")
        ts = instant(text(v, "order_ts") or "")
        if ts is not None and ts > now:
            rules.add("future_order_timestamp")
        if ts is not None and ts.astimezone(NAIROBI).date() < FIRST_DAY:
            rules.add("date_outside_partitions")
    elif table == "order_items":
        line, qty = text(v, "line_number"), text(v, "quantity")
        line_bad = line is not None and (not _INT.fullmatch(line) or int(line) < 1)
        qty_not_number = qty is not None and not _NUMBER.fullmatch(qty)
        if line_bad or qty_not_number or amount_bad("unit_price_kes") or amount_bad("discount_kes"):
            rules.add("unparseable_number")
        if qty is not None and _NUMBER.fullmatch(qty) and (not _INT.fullmatch(qty) or int(qty) < 1):
            rules.add("quantity_not_positive_integer")
        if (amount("unit_price_kes") or 0) < 0 or (amount("discount_kes") or 0) < 0:
            rules.add("negative_amount")
        discount = Decimal(0) if text(v, "discount_kes") is None else amount("discount_kes")
        price = amount("unit_price_kes")
        if (discount is not None and price is not None and qty is not None and _INT.fullmatch(qty)
                and discount > int(qty) * price):
            rules.add("discount_above_line_amount")
    elif table == "payments":
        if amount_bad("amount_kes"):
            rules.add("unparseable_number")
        if ts_bad("paid_ts"):
            rules.add("unparseable_timestamp")
        paid = instant(text(v, "paid_ts") or "")
        if paid is not None and (paid.astimezone(NAIROBI).date() < FIRST_DAY or paid > now):
            rules.add("date_outside_partitions")
    elif table == "inventory":
        on_hand = text(v, "on_hand")
        if on_hand is not None and not _INT.fullmatch(on_hand):
            rules.add("unparseable_number")
        if on_hand is not None and _INT.fullmatch(on_hand) and int(on_hand) < 0:
            rules.add("negative_stock")
        if date_bad("as_of"):
            rules.add("unparseable_date")
    return rules


def row_key(table: str, values: dict[str, str]) -> tuple:
    key = tuple(text(values, c) for c in KEYS[table])
    if table == "order_items":
        return (key[0], int(key[1]))
    if table == "inventory":
        return (key[0], key[1], day(key[2]))
    return key


def fates(landing: Landing, table: str, now: dt.datetime) -> tuple[dict[tuple, set[str]], dict[tuple, Row]]:
    """(rejected rows by (batch, row number) with the rules they break, the winning row per key)."""
    rejected: dict[tuple, set[str]] = {}
    candidates = []
    for r in landing.rows[table]:
        if r.ragged:
            rejected[(r.batch, r.row)] = {"malformed_row"}  # the other rules of a ragged row are not compared
            continue
        broken = rules_broken(table, r, now)
        if broken:
            rejected[(r.batch, r.row)] = broken
            continue
        version = (instant(text(r.values, "updated_at")),) if table in BY_UPDATED_AT else ()
        candidates.append((row_key(table, r.values), (*version, r.batch, r.row), r))
    return rejected, latest(candidates)
