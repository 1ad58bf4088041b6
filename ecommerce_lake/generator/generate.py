"""Deterministic, vectorised generator of contract-conforming landing batches.

One batch per day (batch id = the Nairobi date, ``YYYY-MM-DD``). What it models:

* demand: county weights = census population x urbanisation (Nairobi, Mombasa, Kiambu, Nakuru, Kisumu lead);
  weekly and month-end payday seasonality, Kenyan public holidays (``holidays``), Black Friday / Cyber Monday
  and the Christmas run-up, a growth trend; customers of very different activity (log-normal);
* products in seven categories with Zipf popularity, price changes (product updates in later batches) and
  promotions (category promo windows, Black Friday deals, coupons);
* M-Pesa-dominant payments; order status changes (paid, shipped, delivered, cancelled, returned) arriving in
  the batches of the days they happen; refunds for returns;
* dirty data at ``dirty_rate``: county aliases/towns/case/spacing, exact duplicates, re-sent rows,
  unparseable numbers and timestamps, non-positive or fractional quantities, discounts above the line amount,
  missing keys, unknown statuses, future timestamps, negative prices; plus non-ASCII names, quoted commas,
  files with a UTF-8 BOM and batches with shuffled columns and an extra column.

Everything is drawn from one ``numpy`` generator seeded by ``seed``: the same arguments give the same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecommerce_lake.core.contract import LANDING_FILES, SUCCESS_MARKER
from ecommerce_lake.core.reference import counties, county_aliases

log = logging.getLogger(__name__)

CATEGORIES = {
    # name: (share of catalogue, median price KES, price sigma, mean extra quantity)
    "phones": (0.14, 18000, 0.7, 0.05),
    "electronics": (0.14, 6500, 0.9, 0.1),
    "fashion": (0.22, 1800, 0.6, 0.3),
    "groceries": (0.20, 450, 0.7, 1.6),
    "home": (0.12, 2500, 0.8, 0.3),
    "beauty": (0.11, 900, 0.6, 0.5),
    "baby": (0.07, 1500, 0.6, 0.6),
}
BRANDS = {
    "phones": ["Samsung", "Tecno", "Infinix", "itel", "Oppo", "Xiaomi", "Nokia", "Apple"],
    "electronics": ["Hisense", "Vitron", "Sony", "LG", "Ramtons", "TCL", "JBL", "HP"],
    "fashion": ["Bata", "Deacons", "LC Waikiki", "Woolworths", "Kikoy Co", "Adidas"],
    "groceries": ["Brookside", "Kabras", "Ketepa", "Jogoo", "Pembe", "Kimbo", "Daima", "Mumias"],
    "home": ["Ramtons", "Sayona", "Nunix", "Armco", "Mika", "Kenpoly"],
    "beauty": ["Nivea", "Dove", "Vaseline", "Garnier", "Ushindi", "Zoë Organics"],
    "baby": ["Pampers", "Huggies", "Softcare", "Johnson's", "Cerelac", "Molfix"],
}
ITEMS = {
    "phones": ["Smartphone 64GB", "Smartphone 128GB", "Smartphone 256GB, Dual SIM", "Feature Phone"],
    "electronics": ["32\" LED TV", "Soundbar", "Bluetooth Speaker", "Laptop 14\", 8GB RAM", "Power Bank 20000mAh"],
    "fashion": ["Kitenge Dress", "Leather Sandals", "Men's Shirt", "Sneakers", "Maasai Shuka, Red"],
    "groceries": ["Maize Flour 2kg", "Cooking Oil 1L", "Sugar 2kg", "Tea Leaves 500g", "Milk 500ml, Long Life"],
    "home": ["Cooking Pot Set", "Water Dispenser", "Blender", "Bedsheet Set, Queen", "Thermos Flask"],
    "beauty": ["Body Lotion 400ml", "Shea Butter", "Hair Relaxer", "Petroleum Jelly", "Perfume 50ml"],
    "baby": ["Diapers Size 3", "Baby Wipes, 72pcs", "Infant Formula 400g", "Baby Lotion", "Baby Carrier"],
}
FIRST = ["Wanjiru", "Kamau", "Otieno", "Achieng", "Njeri", "Mwangi", "Kiprono", "Chebet", "Wafula", "Nafula",
         "Mutua", "Mwende", "Omondi", "Akinyi", "Kiptoo", "Jepkosgei", "Hassan", "Amina", "Fatuma", "Abdi",
         "Baraka", "Zawadi", "Imani", "Faith", "Grace", "Brian", "Kevin", "Mercy", "Dennis", "Esther",
         "Wanjirũ", "Zoë", "Renée", "José", "Njoki", "Atieno", "Wairimu", "Kipchumba", "Auma", "Nyambura"]
LAST = ["Kamau", "Otieno", "Mwangi", "Ochieng", "Kiprotich", "Wanyama", "Mutua", "Njoroge", "Kariuki",
        "Odhiambo", "Were", "Barasa", "Cheruiyot", "Kiptanui", "Mohamed", "Ali", "Ndung'u", "Gitau", "Muthoni",
        "Onyango", "Okoth", "Wekesa", "Nyaga", "Kimani", "Ng'ang'a", "Müller", "Wambũi", "Koech", "Rotich"]
EMAIL_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "safaricom.co.ke", "icloud.com", "uonbi.ac.ke"]
URBAN = {"Nairobi": 4.0, "Mombasa": 2.6, "Kiambu": 2.0, "Nakuru": 1.7, "Kisumu": 1.8, "Uasin Gishu": 1.4,
         "Machakos": 1.3, "Kajiado": 1.4, "Nyeri": 1.1, "Kilifi": 0.9, "Kakamega": 0.8}
ARID = {"Turkana", "Wajir", "Mandera", "Marsabit", "Garissa", "Tana River", "Samburu", "West Pokot", "Isiolo",
        "Lamu"}
PAYMENT = (["mpesa", "card", "airtel_money", "cash_on_delivery"], [0.66, 0.11, 0.07, 0.16])
CHANNEL = (["app", "web", "ussd", "whatsapp"], [0.45, 0.35, 0.08, 0.12])
HOURS = np.array([1, 0.5, 0.3, 0.2, 0.3, 0.8, 2, 3.5, 4.5, 5, 5.5, 6, 7.5, 7.5, 6, 5.5, 5.5, 6, 7, 8.5, 9, 8,
                  5.5, 3])


@dataclass
class GeneratorConfig:
    out: Path
    seed: int = 42
    days: int = 730
    customers: int = 20000
    products: int = 500
    lines: int = 1_000_000  # approximate number of order lines
    end_date: dt.date | None = None  # default: yesterday in Nairobi
    dirty_rate: float = 0.02
    overwrite: bool = False
    inventory: bool = True  # an inventory snapshot (as of the last day) in the last batch


@dataclass
class GeneratorSummary:
    batches: int
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    first_batch: str = ""
    last_batch: str = ""


# ---------------------------------------------------------------------------------------------------------
def _nairobi_today() -> dt.date:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).date()


def _day_multipliers(dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Demand multiplier per day, and a Black-Friday flag (for category boosts)."""
    import holidays

    weekday = np.array([0.95, 0.97, 1.0, 1.0, 1.08, 1.15, 1.02])[dates.dayofweek]
    dom = dates.day.values
    payday = np.where((dom >= 25) | (dom <= 2), 1.28, 1.0)
    years = sorted(set(dates.year))
    ke = holidays.Kenya(years=years)
    hol = np.array([d.date() in ke for d in dates])
    eve = np.array([(d + pd.Timedelta(days=1)).date() in ke for d in dates])
    holiday = np.where(hol, 0.85, 1.0) * np.where(eve, 1.2, 1.0)
    black_friday = np.zeros(len(dates), dtype=bool)
    special = np.ones(len(dates))
    for year in years:
        nov = pd.date_range(f"{year}-11-01", f"{year}-11-30")
        bf = nov[nov.dayofweek == 4][3]
        for offset, factor in ((0, 3.0), (1, 1.8), (2, 1.4), (3, 1.9), (-1, 1.3), (-2, 1.2)):
            special[dates == bf + pd.Timedelta(days=offset)] *= factor
        black_friday |= np.asarray(dates == bf)
        xmas = (dates >= pd.Timestamp(f"{year}-12-10")) & (dates <= pd.Timestamp(f"{year}-12-24"))
        ramp = 1.2 + 0.5 * ((dates.day.values - 10) / 14.0)
        special = np.where(xmas, special * ramp, special)
        special[(dates >= pd.Timestamp(f"{year}-01-02")) & (dates <= pd.Timestamp(f"{year}-01-12"))] *= 0.8
    trend = np.linspace(1.0, 1.0 + 0.35 * len(dates) / 730.0, len(dates))
    return weekday * payday * holiday * special * trend, black_friday


def _county_texts(rng: np.random.Generator, codes: np.ndarray, dirty_rate: float) -> np.ndarray:
    """County text per row: canonical names, harmless variants, towns/aliases, and a few unresolvable ones."""
    ref = {c.code: c.name for c in counties()}
    aliases: dict[int, list[str]] = {}
    for alias, code, _ in county_aliases():
        aliases.setdefault(code, []).append(alias)
    names = np.array([ref[c] for c in codes], dtype=object)
    u = rng.random(len(codes))
    out = names.copy()
    variant = (u < 0.25)
    v = rng.integers(0, 5, len(codes))
    for i in np.flatnonzero(variant):
        n = names[i]
        out[i] = (n.upper(), n.lower(), f"  {n} ", f"{n} County", n.replace(" ", "-").replace("'", ""))[v[i]]
    alias_rows = np.flatnonzero((u >= 0.25) & (u < 0.25 + dirty_rate * 2))
    for i in alias_rows:
        options = aliases.get(int(codes[i]))
        if options:
            out[i] = options[int(rng.integers(0, len(options)))]
    junk = np.flatnonzero((u >= 0.9) & (u < 0.9 + dirty_rate * 0.5))
    junk_values = np.array(["", "N/A", "Atlantis", "Kampala", "unknown", "-"], dtype=object)
    out[junk] = junk_values[rng.integers(0, len(junk_values), len(junk))]
    return out


def _fmt_money(x: np.ndarray) -> np.ndarray:
    return np.char.mod("%.2f", np.round(x, 2)).astype(object)


def _fmt_ts(ts_utc: np.ndarray, style: np.ndarray) -> np.ndarray:
    """Format UTC instants (datetime64[s]) as ISO-8601: 0 = +03:00 offset, 1 = no offset (Nairobi), 2 = Z."""
    local = pd.to_datetime(ts_utc + np.timedelta64(3, "h"))
    utc = pd.to_datetime(ts_utc)
    base_local = local.strftime("%Y-%m-%dT%H:%M:%S").to_numpy(dtype=object)
    out = base_local + "+03:00"
    no_off = style == 1
    out[no_off] = pd.Index(local[no_off]).strftime("%Y-%m-%d %H:%M:%S").to_numpy(dtype=object)
    z = style == 2
    out[z] = pd.Index(utc[z]).strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(dtype=object)
    return out


# ---------------------------------------------------------------------------------------------------------
def generate(cfg: GeneratorConfig) -> GeneratorSummary:
    started = time.monotonic()
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        if not cfg.overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace its batches")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    end = cfg.end_date or (_nairobi_today() - dt.timedelta(days=1))
    dates = pd.date_range(end - dt.timedelta(days=cfg.days - 1), end, freq="D")
    n_days = len(dates)
    day0 = np.datetime64(dates[0].date(), "s") - np.timedelta64(3, "h")  # local midnight of day 0, in UTC
    mult, black_friday = _day_multipliers(dates)

    # ---- counties and customers -------------------------------------------------------------------------
    ref = counties()
    weights = np.array([c.population_2019 * URBAN.get(c.name, 1.0) * (0.3 if c.name in ARID else 1.0) for c in ref])
    weights = weights / weights.sum()
    codes = np.array([c.code for c in ref])
    n_cust = cfg.customers
    cust_county = rng.choice(codes, size=n_cust, p=weights)
    activity = rng.lognormal(0.0, 1.0, n_cust)
    existing = rng.random(n_cust) < 0.35
    signup_day = np.where(existing, -rng.integers(1, 700, n_cust),
                          (rng.random(n_cust) ** 0.8 * n_days).astype(int))
    order_c = np.argsort(signup_day, kind="stable")
    signup_sorted = signup_day[order_c]
    cum_activity = np.cumsum(activity[order_c])

    # ---- products, prices and promotions ----------------------------------------------------------------
    cat_names = list(CATEGORIES)
    cat_share = np.array([CATEGORIES[c][0] for c in cat_names])
    n_prod = cfg.products
    prod_cat = rng.choice(len(cat_names), size=n_prod, p=cat_share / cat_share.sum())
    median = np.array([CATEGORIES[c][1] for c in cat_names])[prod_cat]
    sigma = np.array([CATEGORIES[c][2] for c in cat_names])[prod_cat]
    base_price = np.round(median * rng.lognormal(0, sigma), -1) + 0.0
    base_price = np.maximum(base_price, 50.0) - rng.choice([0.0, 1.0, 0.01], size=n_prod, p=[0.5, 0.4, 0.1])
    cost_ratio = rng.uniform(0.55, 0.8, n_prod)
    popularity = 1.0 / np.arange(1, n_prod + 1) ** 0.9
    rng.shuffle(popularity)
    cum_pop = np.cumsum(popularity)
    n_changes = 3
    change_day = np.sort(rng.integers(1, max(2, n_days), (n_prod, n_changes)), axis=1)
    change_day = np.where(rng.random((n_prod, n_changes)) < 0.6, change_day, 10**9)  # ~1.8 changes per product
    change_day = np.sort(change_day, axis=1)
    factors = rng.uniform(0.85, 1.2, (n_prod, n_changes))
    prices = np.column_stack([base_price, base_price[:, None] * np.cumprod(factors, axis=1)])
    prices = np.round(prices, 0) - 0.0
    promo_windows = []  # (category, start_day, length, pct)
    for _ in range(max(1, n_days // 20)):
        promo_windows.append((int(rng.integers(0, len(cat_names))), int(rng.integers(0, n_days)),
                              int(rng.integers(3, 8)), float(rng.choice([0.05, 0.1, 0.15, 0.2]))))

    # ---- orders ------------------------------------------------------------------------------------------
    lines_per_order = 2.3
    base = cfg.lines / lines_per_order / mult.sum()
    per_day = rng.poisson(base * mult)
    n_orders = int(per_day.sum())
    o_day = np.repeat(np.arange(n_days), per_day)
    eligible = np.searchsorted(signup_sorted, o_day, side="right")
    eligible = np.maximum(eligible, 1)
    u = rng.random(n_orders) * cum_activity[eligible - 1]
    o_cust = order_c[np.minimum(np.searchsorted(cum_activity, u), n_cust - 1)]
    hour = rng.choice(24, size=n_orders, p=HOURS / HOURS.sum())
    secs = hour * 3600 + rng.integers(0, 3600, n_orders)
    o_ts = day0 + (o_day.astype("timedelta64[D]") + secs.astype("timedelta64[s]"))
    o_ts = o_ts.astype("datetime64[s]")
    o_county = np.where(rng.random(n_orders) < 0.92, cust_county[o_cust], rng.choice(codes, size=n_orders, p=weights))
    o_pay = rng.choice(PAYMENT[0], size=n_orders, p=PAYMENT[1])
    o_channel = rng.choice(CHANNEL[0], size=n_orders, p=CHANNEL[1])
    order_ids = np.char.add("O", np.char.zfill(np.arange(1, n_orders + 1).astype(str), 8)).astype(object)

    # ---- lines -------------------------------------------------------------------------------------------
    n_lines_per = 1 + np.minimum(rng.poisson(lines_per_order - 1, n_orders), 7)
    n_lines = int(n_lines_per.sum())
    l_order = np.repeat(np.arange(n_orders), n_lines_per)
    l_number = (np.arange(n_lines) - np.repeat(np.cumsum(n_lines_per) - n_lines_per, n_lines_per)) + 1
    l_day = o_day[l_order]
    l_prod = np.minimum(np.searchsorted(cum_pop, rng.random(n_lines) * cum_pop[-1]), n_prod - 1)
    bf_lines = black_friday[l_day] & (rng.random(n_lines) < 0.5)
    tech = np.flatnonzero(np.isin(prod_cat, [cat_names.index("phones"), cat_names.index("electronics")]))
    if len(tech):
        l_prod[bf_lines] = rng.choice(tech, size=int(bf_lines.sum()))
    l_cat = prod_cat[l_prod]
    extra_qty = np.array([CATEGORIES[c][3] for c in cat_names])[l_cat]
    l_qty = 1 + np.minimum(rng.poisson(extra_qty), 9)
    version = (change_day[l_prod] <= l_day[:, None]).sum(axis=1)
    l_price = prices[l_prod, version]
    pct = np.zeros(n_lines)
    for cat, start, length, p in promo_windows:
        pct[(l_cat == cat) & (l_day >= start) & (l_day < start + length)] = p
    pct[bf_lines] = rng.choice([0.15, 0.2, 0.25, 0.3], size=int(bf_lines.sum()))
    coupon = (pct == 0) & (rng.random(n_lines) < 0.05)
    pct[coupon] = rng.choice([0.05, 0.1], size=int(coupon.sum()))
    l_disc = np.round(l_qty * l_price * pct, 2)
    l_net = l_qty * l_price - l_disc
    order_total = np.bincount(l_order, weights=l_net, minlength=n_orders)

    # ---- status lifecycle --------------------------------------------------------------------------------
    prepaid = o_pay != "cash_on_delivery"
    outcome = rng.choice(3, size=n_orders, p=[0.91, 0.06, 0.03])  # delivered, cancelled, returned
    t_paid = o_ts + rng.integers(60, 3 * 3600, n_orders).astype("timedelta64[s]")
    t_ship = o_ts + rng.integers(18 * 3600, 40 * 3600, n_orders).astype("timedelta64[s]")
    t_deliv = t_ship + rng.integers(20 * 3600, 96 * 3600, n_orders).astype("timedelta64[s]")
    t_cancel = o_ts + rng.integers(600, 20 * 3600, n_orders).astype("timedelta64[s]")
    t_return = t_deliv + rng.integers(3 * 86400, 10 * 86400, n_orders).astype("timedelta64[s]")
    end_utc = day0 + np.timedelta64(n_days, "D")
    cancelled = outcome == 1
    returned = outcome == 2
    # events: (order index, status, time)
    ev_idx, ev_status, ev_time = [], [], []

    def event(mask: np.ndarray, status: str, times: np.ndarray) -> None:
        ev_idx.append(np.flatnonzero(mask))
        ev_status.append(np.full(int(mask.sum()), status, dtype=object))
        ev_time.append(times[mask])

    event(np.ones(n_orders, dtype=bool), "placed", o_ts)
    event(prepaid & ~cancelled, "paid", t_paid)
    event(~cancelled & (rng.random(n_orders) < 0.35), "shipped", t_ship)
    event(~cancelled, "delivered", t_deliv)
    event(cancelled, "cancelled", t_cancel)
    event(returned, "returned", t_return)
    e_idx = np.concatenate(ev_idx)
    e_status = np.concatenate(ev_status)
    e_time = np.concatenate(ev_time)
    happened = e_time < end_utc
    e_idx, e_status, e_time = e_idx[happened], e_status[happened], e_time[happened]
    e_day = ((e_time - day0) // np.timedelta64(1, "D")).astype(int)
    # The first row of an order carries its status at the end of the order day; later events arrive as
    # update rows in the batch of the day they happen (same-day events are folded into the first row).
    key = e_idx.astype(np.int64) * (n_days + 1) + e_day
    srt = np.lexsort((e_time, key))
    e_idx, e_status, e_time, e_day, key = e_idx[srt], e_status[srt], e_time[srt], e_day[srt], key[srt]
    last_of_day = np.r_[key[1:] != key[:-1], True]
    e_idx, e_status, e_time, e_day = e_idx[last_of_day], e_status[last_of_day], e_time[last_of_day], e_day[last_of_day]

    fee = np.where(order_total >= 5000, 0.0, np.where(o_county == 47, 150.0, rng.choice([200.0, 250.0, 350.0],
                                                                                        size=n_orders)))
    county_txt = _county_texts(rng, o_county, cfg.dirty_rate)
    county_txt[rng.random(n_orders) < 0.25] = ""  # many orders only carry the customer's county
    ts_style = rng.choice(3, size=len(e_idx), p=[0.7, 0.2, 0.1])
    orders = pd.DataFrame({
        "order_id": order_ids[e_idx],
        "customer_id": np.char.add("C", np.char.zfill((o_cust[e_idx] + 1).astype(str), 7)).astype(object),
        "order_ts": _fmt_ts(o_ts[e_idx], ts_style),
        "status": e_status,
        "channel": o_channel[e_idx].astype(object),
        "delivery_county": county_txt[e_idx],
        "payment_method": o_pay[e_idx].astype(object),
        "shipping_fee_kes": _fmt_money(fee[e_idx]),
        "updated_at": _fmt_ts(e_time, ts_style),
        "__day": e_day,
    })
    variants = rng.random(len(orders))
    orders.loc[variants < 0.04, "status"] = orders.loc[variants < 0.04, "status"].str.upper()
    mask = (variants >= 0.04) & (variants < 0.07)
    orders.loc[mask, "status"] = " " + orders.loc[mask, "status"].str.capitalize() + " "

    # ---- order items (in the batch of the order day) -----------------------------------------------------
    items = pd.DataFrame({
        "order_id": order_ids[l_order],
        "line_number": l_number.astype(str).astype(object),
        "product_id": np.char.add("P", np.char.zfill((l_prod + 1).astype(str), 5)).astype(object),
        "quantity": l_qty.astype(str).astype(object),
        "unit_price_kes": _fmt_money(l_price),
        "discount_kes": np.where(l_disc > 0, _fmt_money(l_disc), ""),
        "__day": l_day,
    })

    # ---- payments ----------------------------------------------------------------------------------------
    pay_pre = np.flatnonzero(prepaid & ~cancelled & (t_paid < end_utc))
    pay_cod = np.flatnonzero(~prepaid & ~cancelled & (t_deliv < end_utc))
    refund = np.flatnonzero(returned & (t_return < end_utc))
    p_idx = np.concatenate([pay_pre, pay_cod, refund])
    p_time = np.concatenate([t_paid[pay_pre], t_deliv[pay_cod], t_return[refund]])
    p_amount = np.concatenate([order_total[pay_pre] + fee[pay_pre], order_total[pay_cod] + fee[pay_cod],
                               -order_total[refund]])
    p_status = np.array(["completed"] * (len(pay_pre) + len(pay_cod)) + ["refunded"] * len(refund), dtype=object)
    p_method = o_pay[p_idx].astype(object)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    receipts = np.array(["".join(r) for r in letters[rng.integers(0, 36, (len(p_idx), 10))]], dtype=object)
    receipts = np.where(p_method == "mpesa", receipts, "")
    payments = pd.DataFrame({
        "payment_id": np.char.add("PAY", np.char.zfill(np.arange(1, len(p_idx) + 1).astype(str), 8)).astype(object),
        "order_id": order_ids[p_idx],
        "method": p_method,
        "amount_kes": _fmt_money(p_amount),
        "paid_ts": _fmt_ts(p_time, np.zeros(len(p_idx), dtype=int)),
        "status": p_status,
        "mpesa_receipt": receipts,
        "__day": ((p_time - day0) // np.timedelta64(1, "D")).astype(int),
    })

    # ---- customers (first version in the batch of the sign-up day, updates later) ------------------------
    first_name = rng.choice(FIRST, n_cust).astype(object)
    last_name = rng.choice(LAST, n_cust).astype(object)
    full = first_name + " " + last_name
    comma = rng.random(n_cust) < 0.05
    full[comma] = last_name[comma] + ", " + first_name[comma]
    ascii_first = pd.Series(first_name).str.normalize("NFKD").str.encode("ascii", "ignore").str.decode("ascii")
    ascii_last = pd.Series(last_name).str.normalize("NFKD").str.encode("ascii", "ignore").str.decode("ascii")
    cid = np.arange(1, n_cust + 1)
    email = (ascii_first.str.lower() + "." + ascii_last.str.lower().str.replace("'", "") + cid.astype(str) + "@"
             + pd.Series(rng.choice(EMAIL_DOMAINS, n_cust))).to_numpy(dtype=object)
    msisdn = pd.Series(rng.integers(700000000, 799999999, n_cust).astype(str))
    phone_style = rng.integers(0, 4, n_cust)
    phone = np.select(
        [phone_style == 0, phone_style == 1, phone_style == 2],
        [("0" + msisdn).to_numpy(dtype=object), ("+254" + msisdn).to_numpy(dtype=object),
         ("254" + msisdn).to_numpy(dtype=object)],
        default=("0" + msisdn.str[:3] + " " + msisdn.str[3:6] + " " + msisdn.str[6:]).to_numpy(dtype=object),
    ).astype(object)
    c_county = _county_texts(rng, cust_county, cfg.dirty_rate)
    c_day = np.clip(signup_day, 0, n_days - 1)
    signup_date = (np.datetime64(dates[0].date(), "D") + signup_day.astype("timedelta64[D]")).astype(str).astype(object)
    c_updated = day0 + c_day.astype("timedelta64[D]") + rng.integers(3600, 80000, n_cust).astype("timedelta64[s]")
    customers = pd.DataFrame({
        "customer_id": np.char.add("C", np.char.zfill(cid.astype(str), 7)).astype(object),
        "full_name": full, "email": email, "phone": phone, "county": c_county, "signup_date": signup_date,
        "updated_at": _fmt_ts(c_updated.astype("datetime64[s]"), np.zeros(n_cust, dtype=int)),
        "__day": c_day,
    })
    movers = np.flatnonzero((rng.random(n_cust) < 0.04) & (c_day < n_days - 2))
    if len(movers):
        upd_day = c_day[movers] + rng.integers(1, np.maximum(2, n_days - c_day[movers]))
        upd_day = np.minimum(upd_day, n_days - 1)
        moved = customers.iloc[movers].copy()
        moved["county"] = _county_texts(rng, rng.choice(codes, size=len(movers), p=weights), cfg.dirty_rate)
        upd_ts = day0 + upd_day.astype("timedelta64[D]") + rng.integers(3600, 80000, len(movers)).astype("timedelta64[s]")
        moved["updated_at"] = _fmt_ts(upd_ts.astype("datetime64[s]"), np.zeros(len(movers), dtype=int))
        moved["__day"] = upd_day
        customers = pd.concat([customers, moved], ignore_index=True)

    # ---- products (all in the first batch, price changes later) ------------------------------------------
    brands = np.array([BRANDS[cat_names[c]][int(rng.integers(0, len(BRANDS[cat_names[c]])))] for c in prod_cat],
                      dtype=object)
    item_names = np.array([ITEMS[cat_names[c]][int(rng.integers(0, len(ITEMS[cat_names[c]])))] for c in prod_cat],
                          dtype=object)
    pid = np.char.add("P", np.char.zfill(np.arange(1, n_prod + 1).astype(str), 5)).astype(object)
    cat_text = np.array([cat_names[c] for c in prod_cat], dtype=object)
    cat_case = rng.random(n_prod)
    cat_text[cat_case < 0.1] = np.char.capitalize(cat_text[cat_case < 0.1].astype(str)).astype(object)
    prod_rows = []
    for v in range(n_changes + 1):
        if v == 0:
            sel, day = np.arange(n_prod), np.zeros(n_prod, dtype=int)
        else:
            sel = np.flatnonzero(change_day[:, v - 1] < n_days)
            day = change_day[sel, v - 1]
        ts = day0 + day.astype("timedelta64[D]") + np.timedelta64(3600, "s") * 2
        cost = np.round(prices[sel, v] * cost_ratio[sel], 2)
        prod_rows.append(pd.DataFrame({
            "product_id": pid[sel], "product_name": brands[sel] + " " + item_names[sel],
            "category": cat_text[sel], "brand": brands[sel],
            "unit_cost_kes": np.where(rng.random(len(sel)) < 0.9, _fmt_money(cost), ""),
            "list_price_kes": _fmt_money(prices[sel, v]),
            "updated_at": _fmt_ts(ts.astype("datetime64[s]"), np.zeros(len(sel), dtype=int)),
            "__day": day,
        }))
    products = pd.concat(prod_rows, ignore_index=True)

    # ---- inventory: one snapshot per product x county that sold in the last 60 days, in the last batch ------
    recent = l_day >= n_days - 60
    recent_units = pd.DataFrame({"p": l_prod[recent], "c": o_county[l_order[recent]], "q": l_qty[recent]}) \
        .groupby(["p", "c"], as_index=False)["q"].sum()
    weekly = recent_units["q"].to_numpy() * 7 / 60
    on_hand = np.floor(weekly * rng.uniform(0.0, 3.0, len(weekly))).astype(int)
    inventory = pd.DataFrame({
        "product_id": np.char.add("P", np.char.zfill((recent_units["p"].to_numpy() + 1).astype(str), 5)).astype(object),
        "county": _county_texts(rng, recent_units["c"].to_numpy(), cfg.dirty_rate),
        "on_hand": on_hand.astype(str).astype(object),
        "as_of": str(end),
        "__day": np.full(len(recent_units), n_days - 1),
    }) if cfg.inventory else pd.DataFrame(columns=["product_id", "county", "on_hand", "as_of", "__day"])

    frames = {"customers": customers, "products": products, "orders": orders, "order_items": items,
              "payments": payments, "inventory": inventory}
    frames = _inject_dirt(rng, frames, cfg.dirty_rate, n_days)

    # ---- write batches -----------------------------------------------------------------------------------
    batch_ids = [d.strftime("%Y-%m-%d") for d in dates]
    summary = GeneratorSummary(batches=n_days, first_batch=batch_ids[0], last_batch=batch_ids[-1])
    sliced = {}
    for name, df in frames.items():
        df = df.sort_values("__day", kind="stable")
        days = df["__day"].to_numpy()
        bounds = np.searchsorted(days, np.arange(n_days + 1))
        sliced[name] = (df.drop(columns="__day"), bounds)
        summary.rows[name] = len(df)
    bom_file = rng.random((n_days, len(LANDING_FILES))) < 0.02
    shuffled_batch = rng.random(n_days) < 0.03
    for d, batch_id in enumerate(batch_ids):
        folder = out / batch_id
        folder.mkdir(parents=True, exist_ok=True)
        for j, spec in enumerate(LANDING_FILES):
            df, bounds = sliced[spec.name]
            part = df.iloc[bounds[d]:bounds[d + 1]]
            if part.empty and spec.name not in ("orders", "order_items"):
                continue
            if shuffled_batch[d]:
                cols = list(part.columns)
                rng.shuffle(cols)
                part = part[cols].assign(export_source="erp-v2")
            part.to_csv(folder / spec.filename, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n",
                        encoding="utf-8-sig" if bom_file[d, j] else "utf-8")
        (folder / SUCCESS_MARKER).write_text("")
    summary.seconds = time.monotonic() - started
    return summary


def _inject_dirt(rng: np.random.Generator, frames: dict[str, pd.DataFrame], rate: float, n_days: int):
    """Inject rule-breaking and duplicate rows at ``rate`` (fractions are per kind of dirt)."""
    if rate <= 0:
        return frames

    def pick(df: pd.DataFrame, share: float) -> np.ndarray:
        return np.flatnonzero(rng.random(len(df)) < share)

    items = frames["order_items"].copy()
    idx = pick(items, rate * 0.10)
    items.loc[items.index[idx], "unit_price_kes"] = rng.choice(["1,250.00", "abc", "12.5.0", "KES 300"], len(idx))
    idx = pick(items, rate * 0.10)
    items.loc[items.index[idx], "quantity"] = rng.choice(["0", "-1", "1.5", "two"], len(idx))
    idx = pick(items, rate * 0.05)
    items.loc[items.index[idx], "discount_kes"] = "999999.00"
    idx = pick(items, rate * 0.03)
    items.loc[items.index[idx], "order_id"] = ""
    idx = pick(items, rate * 0.02)
    items.loc[items.index[idx], "unit_price_kes"] = "-100.00"
    idx = pick(items, rate * 0.02)
    items.loc[items.index[idx], "discount_kes"] = "-5.00"

    orders = frames["orders"].copy()
    idx = pick(orders, rate * 0.05)
    orders.loc[orders.index[idx], "order_ts"] = rng.choice(["2024-02-30T10:00:00", "yesterday", "12/05/2024 10:00"],
                                                           len(idx))
    idx = pick(orders, rate * 0.03)
    orders.loc[orders.index[idx], "status"] = rng.choice(["pending", "refunded", "on hold"], len(idx))
    idx = pick(orders, rate * 0.02)
    orders.loc[orders.index[idx], "customer_id"] = ""
    idx = pick(orders, rate * 0.01)
    orders.loc[orders.index[idx], "order_ts"] = "2099-01-01T10:00:00+03:00"
    idx = pick(orders, rate * 0.02)
    orders.loc[orders.index[idx], "shipping_fee_kes"] = rng.choice(["free", "-50.00"], len(idx))

    customers = frames["customers"].copy()
    idx = pick(customers, rate * 0.05)
    customers.loc[customers.index[idx], "signup_date"] = rng.choice(["2023-02-30", "01/02/2023"], len(idx))
    idx = pick(customers, rate * 0.02)
    customers.loc[customers.index[idx], "updated_at"] = "not a timestamp"

    products = frames["products"].copy()
    idx = pick(products, rate * 0.05)
    products.loc[products.index[idx], "unit_cost_kes"] = "n/a"

    payments = frames["payments"].copy()
    idx = pick(payments, rate * 0.03)
    payments.loc[payments.index[idx], "amount_kes"] = "1.000,00"

    inventory = frames["inventory"].copy()
    idx = pick(inventory, rate * 0.05)
    inventory.loc[inventory.index[idx], "on_hand"] = rng.choice(["-3", "lots", "2.5"], len(idx))

    out = {"customers": customers, "products": products, "orders": orders, "order_items": items,
           "payments": payments, "inventory": inventory}
    for name, df in out.items():
        dups = df.iloc[pick(df, rate * 0.5)]  # exact duplicates in the same batch
        resent = df.iloc[pick(df, rate * 0.5)].copy()  # re-sent in a later batch, unchanged
        resent["__day"] = np.minimum(resent["__day"].to_numpy() + rng.integers(1, 4, len(resent)), n_days - 1)
        out[name] = pd.concat([df, dups, resent], ignore_index=True)
    return out
