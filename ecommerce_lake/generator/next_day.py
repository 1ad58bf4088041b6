"""Tomorrow's export: one more batch that continues a landing zone's history (``ecommerce-lake generate --next``).

``generate`` writes a whole history at once; a second call with another seed would start the order ids again at
``O00000001`` and rewrite old orders. This writes the batch an exporter would deliver next, from what the
landing zone already holds:

* the day after the latest batch (today in Nairobi at the latest; a second batch of the same day gets an id
  with the time, ``2026-12-02T101500Z``);
* new orders, order lines and payments with ids after the highest ones delivered so far;
* known customers (and a few new sign-ups, with new ids) and known products at their latest list price;
* status updates of the recent orders still open (shipped, delivered), and cash-on-delivery payments on
  delivery, as the export of that day carries them.

The batch is clean (no planted dirty rows). Its size follows the recent batches (``--lines`` to choose).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecommerce_lake.core.contract import BY_NAME, SUCCESS_MARKER
from ecommerce_lake.generator.generate import CHANNEL, FIRST, LAST, PAYMENT, GeneratorSummary, _fmt_money

RECENT_BATCHES = 10  # batches read for the highest ids, the recent size and the open orders
OPEN = ("placed", "paid", "shipped")


@dataclass
class NextConfig:
    landing: Path
    seed: int | None = None  # default: from the new batch's day (the same day gives the same batch)
    lines: int | None = None  # order lines; default: the mean of the recent batches
    now: dt.datetime | None = None  # "now" (UTC); default: the clock


def _read(folder: Path, name: str) -> pd.DataFrame:
    path = folder / f"{name}.csv"
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(BY_NAME[name].columns))
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    df.columns = [c.strip().lower() for c in df.columns]
    return df


def _max_id(values: pd.Series, prefix: str) -> int:
    numbers = values.str.strip().str.extract(rf"^{prefix}(\d+)$")[0].dropna()
    return int(numbers.astype(int).max()) if len(numbers) else 0


def _money(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values.str.strip(), errors="coerce")


def batches(landing: Path) -> list[Path]:
    """Complete batches (with their _SUCCESS marker), oldest first."""
    return sorted((p for p in landing.iterdir() if p.is_dir() and (p / SUCCESS_MARKER).exists()),
                  key=lambda p: p.name)


def next_batch_id(landing: Path, now: dt.datetime) -> tuple[str, dt.date]:
    done = batches(landing)
    if not done:
        raise FileNotFoundError(f"{landing} holds no complete batch: generate a history first "
                                "(`ecommerce-lake generate`), then --next continues it")
    days = [dt.date.fromisoformat(p.name[:10]) for p in done if re.match(r"^\d{4}-\d{2}-\d{2}", p.name)]
    if not days:
        raise ValueError(f"the batches of {landing} are not named by date (YYYY-MM-DD...): --next cannot tell "
                         "which day comes next")
    today = (now + dt.timedelta(hours=3)).date()
    day = min(max(days) + dt.timedelta(days=1), today)
    batch_id = day.isoformat()
    if (landing / batch_id).exists():  # a second batch of the same day (today)
        batch_id = f"{day.isoformat()}T{now:%H%M%S}Z"
    if (landing / batch_id).exists():
        raise FileExistsError(f"{landing / batch_id} exists already")
    return batch_id, day


def _ts(instants: np.ndarray) -> np.ndarray:
    """UTC instants (datetime64[s]) as Nairobi ISO-8601 with its offset."""
    local = pd.to_datetime(instants + np.timedelta64(3, "h"))
    return (local.strftime("%Y-%m-%dT%H:%M:%S") + "+03:00").to_numpy(dtype=object)


def generate_next(cfg: NextConfig) -> GeneratorSummary:
    started = time.monotonic()
    landing = Path(cfg.landing)
    now = (cfg.now or dt.datetime.now(dt.UTC)).replace(tzinfo=None, microsecond=0)
    batch_id, day = next_batch_id(landing, now)
    done = batches(landing)
    recent = done[-RECENT_BATCHES:]
    rng = np.random.default_rng(cfg.seed if cfg.seed is not None else int(day.strftime("%Y%m%d")) + len(done))

    # ---- what the landing zone holds ----------------------------------------------------------------------
    customers = pd.concat([_read(b, "customers") for b in done], ignore_index=True)
    customers = customers[customers["customer_id"].str.strip() != ""]
    latest_customer = customers.drop_duplicates("customer_id", keep="last")
    products = pd.concat([_read(b, "products") for b in done], ignore_index=True)
    products["__price"] = _money(products["list_price_kes"])
    products = products[(products["product_id"].str.strip() != "") & (products["__price"] > 0)]
    latest_product = products.drop_duplicates("product_id", keep="last")
    if latest_customer.empty or latest_product.empty:
        raise ValueError(f"{landing} holds no usable customers or products to continue from")
    orders = pd.concat([_read(b, "orders") for b in recent], ignore_index=True)
    items = [_read(b, "order_items") for b in recent]
    payments = pd.concat([_read(b, "payments") for b in recent], ignore_index=True)
    next_order = _max_id(orders["order_id"], "O") + 1
    next_payment = _max_id(payments["payment_id"], "PAY") + 1
    next_customer = _max_id(customers["customer_id"], "C") + 1
    lines = cfg.lines if cfg.lines is not None else max(1, int(np.mean([len(i) for i in items])))

    # ---- new customers (a few sign-ups) and the orders of the day --------------------------------------------
    day0 = np.datetime64(day, "s") - np.timedelta64(3, "h")  # local midnight, in UTC
    end = min(day0 + np.timedelta64(1, "D"), np.datetime64(now, "s"))
    span = max(int((end - day0) / np.timedelta64(1, "s")), 60)
    n_orders = max(1, int(rng.poisson(lines / 2.3)))
    known = latest_customer["customer_id"].to_numpy(dtype=object)
    county_of = dict(zip(latest_customer["customer_id"], latest_customer.get("county", ""), strict=False))
    n_new = int(rng.binomial(n_orders, 0.03))
    new_ids = np.array([f"C{next_customer + i:07d}" for i in range(n_new)], dtype=object)
    new_county = rng.choice(list({v for v in county_of.values() if v}) or ["Nairobi"], n_new)
    first, last = rng.choice(FIRST, n_new), rng.choice(LAST, n_new)
    ascii_ = lambda names: [unicodedata.normalize("NFKD", n).encode("ascii", "ignore").decode().lower()  # noqa: E731
                            .replace("'", "") for n in names]
    signup_ts = day0 + rng.integers(0, span, n_new).astype("timedelta64[s]")
    new_customers = pd.DataFrame({
        "customer_id": new_ids, "full_name": [f"{a} {b}" for a, b in zip(first, last, strict=True)],
        "email": [f"{a}.{b}{i}@gmail.com" for a, b, i in zip(ascii_(first), ascii_(last),
                                                             range(next_customer, next_customer + n_new), strict=True)],
        "phone": [f"07{int(x):08d}" for x in rng.integers(0, 10**8, n_new)],
        "county": new_county, "signup_date": np.full(n_new, day.isoformat(), dtype=object),
        "updated_at": _ts(signup_ts),
    })
    buyers = np.concatenate([rng.choice(known, n_orders - n_new), new_ids])
    rng.shuffle(buyers)
    county_of.update(dict(zip(new_ids, new_county, strict=True)))
    o_ts = np.sort(day0 + rng.integers(0, span, n_orders).astype("timedelta64[s]"))
    o_pay = rng.choice(PAYMENT[0], n_orders, p=PAYMENT[1])
    o_channel = rng.choice(CHANNEL[0], n_orders, p=CHANNEL[1])
    o_ids = np.array([f"O{next_order + i:08d}" for i in range(n_orders)], dtype=object)
    delivery = np.array([county_of.get(c, "") if rng.random() < 0.75 else "" for c in buyers], dtype=object)

    # ---- order lines: known products at their latest list price ---------------------------------------------
    n_lines_per = 1 + np.minimum(rng.poisson(1.3, n_orders), 7)
    l_order = np.repeat(np.arange(n_orders), n_lines_per)
    l_number = np.concatenate([np.arange(1, n + 1) for n in n_lines_per])
    popularity = 1.0 / np.arange(1, len(latest_product) + 1) ** 0.9
    pick = rng.choice(len(latest_product), len(l_order), p=popularity / popularity.sum())
    l_price = latest_product["__price"].to_numpy()[pick]
    l_qty = 1 + np.minimum(rng.poisson(0.3, len(l_order)), 9)
    totals = np.bincount(l_order, weights=l_qty * l_price, minlength=n_orders)
    fee = np.where(totals >= 5000, 0.0, 250.0)
    new_items = pd.DataFrame({
        "order_id": o_ids[l_order], "line_number": l_number.astype(str),
        "product_id": latest_product["product_id"].to_numpy(dtype=object)[pick], "quantity": l_qty.astype(str),
        "unit_price_kes": _fmt_money(l_price), "discount_kes": "",
    })

    # ---- payments of prepaid orders, the orders' rows ---------------------------------------------------------
    prepaid = o_pay != "cash_on_delivery"
    t_paid = o_ts + rng.integers(60, 3600, n_orders).astype("timedelta64[s]")
    paid = prepaid & (t_paid < end)
    status = np.where(paid, "paid", "placed").astype(object)
    updated = np.where(paid, t_paid, o_ts)
    new_orders = pd.DataFrame({
        "order_id": o_ids, "customer_id": buyers, "order_ts": _ts(o_ts), "status": status, "channel": o_channel,
        "delivery_county": delivery, "payment_method": o_pay, "shipping_fee_kes": _fmt_money(fee),
        "updated_at": _ts(updated.astype("datetime64[s]")),
    })
    pay_idx = np.flatnonzero(paid)

    # ---- the day's status updates of recent open orders ------------------------------------------------------
    latest = orders[orders["order_id"].str.strip() != ""].drop_duplicates("order_id", keep="last")
    latest = latest[latest["status"].str.strip().str.lower().isin(OPEN)]
    moving = latest.iloc[np.flatnonzero(rng.random(len(latest)) < 0.5)].copy()
    nxt = {"placed": "shipped", "paid": "shipped", "shipped": "delivered"}
    moving["status"] = [nxt[s.strip().lower()] for s in moving["status"]]
    move_ts = day0 + rng.integers(0, span, len(moving)).astype("timedelta64[s]")
    moving["updated_at"] = _ts(move_ts)
    cod_delivered = moving[(moving["status"] == "delivered")
                           & (moving.get("payment_method", "").str.strip() == "cash_on_delivery")]
    amounts = {}
    for df in items:  # what a delivered cash-on-delivery order costs: its lines and fee
        if df.empty:
            continue
        d = df[df["order_id"].isin(set(cod_delivered["order_id"]))]
        net = _money(d["quantity"]) * _money(d["unit_price_kes"]) - _money(d["discount_kes"]).fillna(0)
        for oid, value in net.groupby(d["order_id"]).sum().items():
            amounts[oid] = amounts.get(oid, 0.0) + float(value)
    cod = cod_delivered[cod_delivered["order_id"].isin(amounts)]
    cod_fee = _money(cod.get("shipping_fee_kes", pd.Series("0", index=cod.index))).fillna(0).to_numpy()
    n_pay = len(pay_idx) + len(cod)
    receipts = ["".join(rng.choice(list("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"), 10)) for _ in range(n_pay)]
    methods = np.concatenate([o_pay[pay_idx], np.full(len(cod), "cash_on_delivery", dtype=object)])
    new_payments = pd.DataFrame({
        "payment_id": [f"PAY{next_payment + i:08d}" for i in range(n_pay)],
        "order_id": np.concatenate([o_ids[pay_idx], cod["order_id"].to_numpy(dtype=object)]),
        "method": methods,
        "amount_kes": _fmt_money(np.concatenate([totals[pay_idx] + fee[pay_idx],
                                                 np.array([amounts[o] for o in cod["order_id"]]) + cod_fee])),
        "paid_ts": np.concatenate([_ts(t_paid[pay_idx].astype("datetime64[s]")), cod["updated_at"].to_numpy()]),
        "status": "completed",
        "mpesa_receipt": np.where(methods == "mpesa", receipts, ""),
    })
    updates = moving[[c for c in BY_NAME["orders"].columns if c in moving.columns]]

    # ---- write the batch (the marker last, as an exporter does) ---------------------------------------------
    folder = landing / batch_id
    folder.mkdir(parents=True)
    out = {"customers": new_customers, "orders": pd.concat([new_orders, updates], ignore_index=True),
           "order_items": new_items, "payments": new_payments}
    summary = GeneratorSummary(batches=1, first_batch=batch_id, last_batch=batch_id)
    for name, df in out.items():
        if df.empty and name not in ("orders", "order_items"):
            continue
        columns = [c for c in BY_NAME[name].columns if c in df.columns]
        df[columns].to_csv(folder / f"{name}.csv", index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        summary.rows[name] = len(df)
    (folder / SUCCESS_MARKER).write_text("")
    summary.seconds = time.monotonic() - started
    return summary
