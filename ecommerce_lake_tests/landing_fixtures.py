"""Hand-made landing batches with known content, added after the generated ones.

Each dirty row's expected rule is written here by hand (not computed by the code under test).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

HEADERS = {
    "customers.csv": ["customer_id", "full_name", "email", "phone", "county", "signup_date", "updated_at"],
    "products.csv": ["product_id", "product_name", "category", "brand", "unit_cost_kes", "list_price_kes",
                     "updated_at"],
    "orders.csv": ["order_id", "customer_id", "order_ts", "status", "channel", "delivery_county", "payment_method",
                   "shipping_fee_kes", "updated_at"],
    "order_items.csv": ["order_id", "line_number", "product_id", "quantity", "unit_price_kes", "discount_kes"],
    "payments.csv": ["payment_id", "order_id", "method", "amount_kes", "paid_ts", "status", "mpesa_receipt"],
    "inventory.csv": ["product_id", "county", "on_hand", "as_of"],
}
T = "2025-12-01T08:00:00+03:00"

# customer id -> (county text, expected county code): one per alias class of the issue
COUNTY_CASES = {
    "T001": ("Nairobi City", 47),          # City suffix
    "T002": ("  homa-bay  ", 43),          # case, spacing, hyphen
    "T003": ("Murang'a County", 21),       # apostrophe + County suffix
    "T004": ("ELGEYO MARAKWET", 28),       # case, space for hyphen
    "T005": ("Taita Taveta", 6),
    "T006": ("Tharaka-Nithi", 13),
    "T007": ("Eldoret", 27),               # towns ...
    "T008": ("Thika", 22),
    "T009": ("Malindi", 3),
    "T010": ("Kitale", 26),
    "T011": ("Nanyuki", 31),
    "T012": ("Naivasha", 32),
    "T013": ("Diani", 2),
    "T014": ("Kitengela", 34),
    "T015": ("Athi River", 16),
    "T016": ("Voi", 6),
    "T017": ("Webuye", 39),
    "T018": ("Atlantis", 0),               # does not resolve
    "T021": ("Muranga", 21),
    "T022": ("nairobi.", 47),              # punctuation
    "T023": ("Ongata Rongai", 34),
    "T024": ("Ruiru", 22),
    "T025": ("Mlolongo", 16),
    "T026": ("Kimilili", 39),
    "T027": ("Gilgil", 32),
    "T028": ("Ukunda", 2),
    "T029": ("Watamu", 3),
    "T030": ("Homa Bay", 43),
}

# (batch, file, row number) -> expected first rule
EXPECTED_REJECTS: dict[tuple[str, str, int], str] = {}


def _write(folder: Path, name: str, rows: list[list[str]], header: list[str] | None = None, bom: bool = False,
           raw_lines: list[str] = ()) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header or HEADERS[name])
    writer.writerows(rows)
    for line in raw_lines:
        buf.write(line + "\n")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(buf.getvalue(), encoding="utf-8-sig" if bom else "utf-8")


def _reject(batch: str, name: str, rows: list[list[str]], row: list[str], rule: str) -> None:
    rows.append(row)
    EXPECTED_REJECTS[(batch, name, len(rows))] = rule


def find_delivered_order(landing: Path) -> str:
    """A generated order whose latest version is 'delivered' (to cancel it in a later batch)."""
    latest: dict[str, tuple[str, str]] = {}
    for path in sorted(landing.glob("*/orders.csv")):
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for r in csv.DictReader(fh):
                key = r.get("order_id", "").strip()
                if key and r.get("status", "").strip().lower() in {"placed", "paid", "shipped", "delivered",
                                                                    "cancelled", "returned"}:
                    latest[key] = max(latest.get(key, ("", "")), (path.parent.name, r["status"].strip().lower()))
    return next(k for k, (_, status) in sorted(latest.items()) if status == "delivered")


def add_handmade_batches(landing: Path) -> dict:
    """Write batches 2025-12-01 .. 2025-12-04 after the generated ones (which end 2025-11-30)."""
    EXPECTED_REJECTS.clear()
    cancelled_order = find_delivered_order(landing)

    b = "2025-12-01"
    folder = landing / b
    customers: list[list[str]] = []
    for i, (cid, (county, _)) in enumerate(COUNTY_CASES.items()):
        name = "Achieng', Mary Wanjirũ" if cid == "T001" else f"Zoë Test{i}"
        customers.append([cid, name, f"handmade.{cid.lower()}@example.co.ke", f"0712 000 {i:03d}", county,
                          "2025-12-01", T])
    _reject(b, "customers.csv", customers,
            ["T019", "Bad Date", "bad.date@example.com", "0712999001", "Nairobi", "2025-02-30", T], "unparseable_date")
    _reject(b, "customers.csv", customers,
            ["T020", "Bad Ts", "bad.ts@example.com", "0712999002", "Nairobi", "2025-12-01", "yesterday"],
            "unparseable_timestamp")
    _reject(b, "customers.csv", customers,
            ["", "No Key", "no.key@example.com", "0712999003", "Nairobi", "2025-12-01", T], "missing_required_value")
    # a second version of a kept customer that breaks a rule: a steward sees it (reveal) and erasure reaches it
    _reject(b, "customers.csv", customers,
            ["T001", "Mary W. Achieng", "mary.achieng.old@example.co.ke", "0712 000 999", "Kisumu", "2025-13-01", T],
            "unparseable_date")
    _write(folder, "customers.csv", customers)

    products: list[list[str]] = [["TP01", "Kitenge Dress, Blue", "fashion", "Kikoy Co", "500.00", "1200.00", T]]
    _reject(b, "products.csv", products, ["TP02", "Bad Price", "home", "", "", "-1.00", T], "negative_amount")
    _write(folder, "products.csv", products)

    o = lambda oid, cid, ts, status, county="", fee="0.00", method="mpesa": [  # noqa: E731
        oid, cid, ts, status, "app", county, method, fee, "2025-12-01T12:00:00+03:00"]
    orders: list[list[str]] = [
        o("TO01", "T001", "2025-12-01T10:00:00+03:00", " Paid ", method="M-Pesa"),
        o("TO02", "T018", "2025-12-01 10:30:00", "delivered", county="Mombasa"),
        o("TO03", "T018", "2025-12-01T07:45:00Z", "shipped"),
        o("TO09", "T007", "2025-12-01T11:00:00+03:00", "PAID", county="County of Kisumu"),
        [cancelled_order, "C0000001", "2025-11-11T10:00:00+03:00", "cancelled", "app", "", "mpesa", "0.00",
         "2025-12-01T13:00:00+03:00"],
    ]
    _reject(b, "orders.csv", orders, o("TO04", "T001", "2025-12-01T10:00:00+03:00", "pending"), "unknown_status")
    _reject(b, "orders.csv", orders, o("TO05", "T001", "2099-01-01T00:00:00Z", "paid"), "future_order_timestamp")
    _reject(b, "orders.csv", orders, o("TO06", "T001", "2025-13-01T00:00:00", "paid"), "unparseable_timestamp")
    _reject(b, "orders.csv", orders, o("TO07", "T001", "2025-12-01T10:00:00+03:00", "paid", fee="-50.00"),
            "negative_amount")
    _reject(b, "orders.csv", orders, o("TO08", "T001", "2025-12-01T10:00:00+03:00", "paid", fee="1,000"),
            "unparseable_number")
    _reject(b, "orders.csv", orders, o("TO10", "", "2025-12-01T10:00:00+03:00", "paid"), "missing_required_value")
    _reject(b, "orders.csv", orders, o("TO11", "T001", "2022-06-01T10:00:00+03:00", "paid"), "date_outside_partitions")
    # rows without a key (empty, or only white space): nothing to keep, so rejected, never silently dropped
    _reject(b, "orders.csv", orders, o("", "T001", "2025-12-01T10:00:00+03:00", "paid"), "missing_required_value")
    _reject(b, "orders.csv", orders, o("  \t ", "T001", "2025-12-01T10:00:00+03:00", "paid"), "missing_required_value")
    _write(folder, "orders.csv", orders)

    items: list[list[str]] = [
        ["TO01", "1", "P00001", "2", "100.50", ""],
        ["TO01", "2", "P00002", "1", "99.99", "9.99"],
        ["TO02", "1", "P00003", "3", "10.00", "0"],
        ["TO03", "1", "P99999", "1", "50.00", ""],
        ["TO09", "1", "P00004", "1", "1000.00", "100.00"],
    ]
    items.append(["TO02", "1", "P00003", "3", "10.00", "0"])  # exact duplicate: collapses
    _reject(b, "order_items.csv", items, ["TO01", "3", "P00005", "0", "10.00", ""], "quantity_not_positive_integer")
    _reject(b, "order_items.csv", items, ["TO01", "4", "P00005", "1.5", "10.00", ""], "quantity_not_positive_integer")
    _reject(b, "order_items.csv", items, ["TO01", "5", "P00005", "-1", "10.00", ""], "quantity_not_positive_integer")
    _reject(b, "order_items.csv", items, ["TO01", "6", "P00005", "abc", "10.00", ""], "unparseable_number")
    _reject(b, "order_items.csv", items, ["TO01", "7", "P00005", "1", "-5.00", ""], "negative_amount")
    _reject(b, "order_items.csv", items, ["TO01", "8", "P00005", "1", "100.00", "500.00"],
            "discount_above_line_amount")
    _reject(b, "order_items.csv", items, ["TO01", "9", "P00005", "1", "1,000.00", ""], "unparseable_number")
    _reject(b, "order_items.csv", items, ["", "1", "P00005", "1", "10.00", ""], "missing_required_value")
    _reject(b, "order_items.csv", items, ["TO01", "10", "P00005", "1", "10.00", "-1.00"], "negative_amount")
    _write(folder, "order_items.csv", items)

    payments: list[list[str]] = [["TPAY1", "TO01", "M-Pesa", "291.00", "2025-12-01T10:05:00+03:00", "completed",
                                  "QK7TEST001"]]
    _reject(b, "payments.csv", payments, ["TPAY2", "TO02", "card", "abc", "2025-12-01T10:05:00+03:00", "completed",
                                          ""], "unparseable_number")
    _reject(b, "payments.csv", payments, ["TPAY3", "TO02", "card", "10.00", "2099-01-01T00:00:00Z", "completed", ""],
            "date_outside_partitions")
    _reject(b, "payments.csv", payments, ["", "TO02", "card", "10.00", "2025-12-01T10:05:00+03:00", "completed", ""],
            "missing_required_value")
    _write(folder, "payments.csv", payments)

    inventory: list[list[str]] = [["P00001", "nairobi city", "5", "2025-12-01"],
                                  ["P00002", "Atlantis", "3", "2025-12-01"]]  # unresolvable county: kept as 0
    _reject(b, "inventory.csv", inventory, ["P00003", "Mombasa", "-2", "2025-12-01"], "negative_stock")
    _reject(b, "inventory.csv", inventory, ["P00004", "Mombasa", "lots", "2025-12-01"], "unparseable_number")
    _reject(b, "inventory.csv", inventory, ["P00005", "Mombasa", "1", "2025-12-32"], "unparseable_date")
    _write(folder, "inventory.csv", inventory)
    (folder / "_SUCCESS").write_text("")

    # A batch with a file that lacks a required column: rejected whole, its good customers never ingested.
    b2 = landing / "2025-12-02"
    _write(b2, "customers.csv", [["T900", "Rejected Batch Person", "rejected@example.com", "0712888000",
                                  "Nairobi", "2025-12-02", "2025-12-02T08:00:00+03:00"]])
    _write(b2, "orders.csv", [["TO900", "T900", "2025-12-02T09:00:00+03:00", "app", "", "mpesa", "0.00",
                               "2025-12-02T09:00:00+03:00"]],
           header=["order_id", "customer_id", "order_ts", "channel", "delivery_county", "payment_method",
                   "shipping_fee_kes", "updated_at"])
    (b2 / "_SUCCESS").write_text("")

    # An incomplete batch (no _SUCCESS yet): never read.
    b3 = landing / "2025-12-03"
    _write(b3, "orders.csv", [["TO950", "T001", "2025-12-03T09:00:00+03:00", "paid", "app", "", "mpesa", "0.00",
                               "2025-12-03T09:00:00+03:00"]])

    # Columns in another order, an extra column, a byte-order mark, a malformed row, a re-sent row and a
    # corrected line (later batch wins).
    b4 = "2025-12-04"
    header = ["quantity", "order_id", "product_id", "line_number", "discount_kes", "unit_price_kes", "note"]
    rows4: list[list[str]] = [
        ["3", "TO02", "P00003", "1", "0", "10.00", "re-sent"],       # identical values to batch 2025-12-01
        ["1", "TO01", "P00002", "2", "", "120.00", "price fix"],      # replaces TO01 line 2 (later batch)
    ]
    _write(landing / b4, "order_items.csv", rows4, header=header, bom=True,
           raw_lines=['1,TO01,P00006,11,,10.00,"extra",surplus-field'])
    EXPECTED_REJECTS[(b4, "order_items.csv", 3)] = "malformed_row"
    with (landing / b4 / "order_items.csv").open("ab") as fh:  # Latin-1 bytes where UTF-8 is the contract
        fh.write(b'1,TO01,P00006,12,,10.00,"caf\xe9 cr\xe8me"\n')
    EXPECTED_REJECTS[(b4, "order_items.csv", 4)] = "not_utf8"
    (landing / b4 / "_SUCCESS").write_text("")
    return {"cancelled_order": cancelled_order, "rejected_batch": "2025-12-02", "incomplete_batch": "2025-12-03"}
