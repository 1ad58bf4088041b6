"""Raw -> refined: parse, apply the row rules, keep the winning version of each key, conform.

Each landing table has a ``parse_<table>`` function giving typed columns plus ``_rules`` (the row rules the
row breaks, in :data:`~ecommerce_lake.core.contract.REJECT_RULES` order) and ``_reject_detail``. Rows that break
no rule are deduplicated by the contract's version rules; the others become :func:`rejects`. The same parse
functions feed both sides, so every raw row is either kept, collapsed as a duplicate/older version of a kept
row, or rejected – the invariant checked by the ``rows_accounted`` asset checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ecommerce_lake.core.contract import (
    BY_NAME,
    CHANNELS,
    CORRUPT_COLUMN,
    CUSTOMERS,
    EXTRA_COLUMN,
    INVENTORY,
    ORDER_ITEMS,
    ORDER_STATUSES,
    ORDERS,
    PAYMENT_METHODS,
    PAYMENTS,
    PRODUCTS,
    REJECT_RULES,
    UNKNOWN,
    LandingFile,
)
from ecommerce_lake.logic import counties as county_logic
from ecommerce_lake.logic.refined import pii
from ecommerce_lake.logic.parsing import (
    Parsed,
    clean,
    is_number,
    nairobi_date,
    normalise_enum,
    parse_amount,
    parse_date,
    parse_int,
    parse_timestamp,
    present,
)
from ecommerce_lake.logic.frames import Held, kept_keys
from ecommerce_lake.schemas import encrypted_columns
from ecommerce_lake.schemas.spark import conform
from ecommerce_lake.schemas import raw as raw_schemas
from ecommerce_lake.schemas import refined as schemas

LINEAGE = ("_batch_id", "_source_file", "_row_number", "_ingested_at")

CHANNEL_ALIASES = {"web": "web", "website": "web", "online": "web", "app": "app", "mobileapp": "app",
                   "android": "app", "ios": "app", "ussd": "ussd", "whatsapp": "whatsapp", "wa": "whatsapp"}
PAYMENT_ALIASES = {"mpesa": "mpesa", "lipanampesa": "mpesa", "airtelmoney": "airtel_money",
                   "airtel": "airtel_money", "card": "card", "creditcard": "card", "debitcard": "card",
                   "visa": "card", "mastercard": "card", "cashondelivery": "cash_on_delivery",
                   "cod": "cash_on_delivery", "cash": "cash_on_delivery"}
assert set(CHANNEL_ALIASES.values()) == set(CHANNELS)
assert set(PAYMENT_ALIASES.values()) == set(PAYMENT_METHODS)


@dataclass(frozen=True)
class Rule:
    name: str
    failed: Column
    detail: Column


def _shown(name: str) -> Column:
    """``name='value'`` for messages (the value as it arrived)."""
    return F.concat(F.lit(f"{name}="), F.coalesce(F.concat(F.lit("'"), F.col(name), F.lit("'")), F.lit("empty")))


def _msg(name: str, text: str) -> Column:
    return F.concat(_shown(name), F.lit(" " + text))


REPLACEMENT = "\ufffd"  # what the CSV reader makes of bytes that are not UTF-8


def _base_rules(spec: LandingFile) -> list[Rule]:
    missing_any = F.lit(False)
    for c in spec.required:
        missing_any = missing_any | ~present(c)
    missing = [F.when(~present(c), F.lit(c)) for c in spec.required]
    # the CSV reader decodes bytes that are not UTF-8 as U+FFFD: such a row's text cannot be trusted
    decoded = [F.coalesce(F.col(c), F.lit("")) for c in spec.columns]
    decoded.append(F.coalesce(F.concat_ws("", F.map_values(F.col(EXTRA_COLUMN))), F.lit("")))
    undecodable = [F.when(F.instr(F.col(c), REPLACEMENT) > 0, F.lit(c)) for c in spec.columns]
    return [
        Rule("malformed_row", F.col(CORRUPT_COLUMN).isNotNull(),
             F.lit("the row's field count differs from the header")),
        Rule("not_utf8", F.instr(F.concat(*decoded), REPLACEMENT) > 0,
             F.concat(F.lit("bytes that are not UTF-8 in: "),
                      F.concat_ws(", ", *undecodable,
                                  F.when(F.instr(decoded[-1], REPLACEMENT) > 0, F.lit("an extra column"))))),
        Rule("missing_required_value", missing_any,
             F.concat(F.lit("required value missing: "), F.concat_ws(", ", *missing))),
    ]


def _apply_columns(typed: Mapping[str, Column], rules: list[Rule]) -> list[Column]:
    order = list(REJECT_RULES)
    rules = sorted(rules, key=lambda r: order.index(r.name))
    failed = F.filter(F.array(*[F.when(r.failed, F.lit(r.name)) for r in rules]), lambda x: x.isNotNull())
    detail = F.concat_ws("; ", *[F.when(r.failed, r.detail) for r in rules])
    return [
        *[c.alias(f"__t_{n}") for n, c in typed.items()],
        F.array_distinct(failed).alias("_rules"),
        detail.alias("_reject_detail"),
    ]


def _typed(df: DataFrame, names: list[str]) -> DataFrame:
    """Replace raw string columns by their typed versions (``__t_<name>``), keep lineage and rule columns
    (and any ``__carry_*`` column a caller passed through)."""
    carried = [c for c in df.columns if c.startswith("__carry_")]
    return df.select(
        *[F.col(f"__t_{n}").alias(n) for n in names],
        *LINEAGE,
        "_rules",
        "_reject_detail",
        "__content",
        *carried,
    )


def _content_hash(spec: LandingFile) -> Column:
    """Identity of a row's contract values, to count exact duplicates."""
    return F.sha2(F.to_json(F.struct(*[clean(c).alias(c) for c in spec.columns])), 256)


def _stage(**parsed: Parsed) -> tuple[list[Column], dict[str, Parsed]]:
    """Evaluate each parser once into columns and hand back references to them: the rules below use a value
    several times, and referencing a column keeps Spark's plans small (fast to analyse and compile)."""
    columns = [p.value.alias(f"__v_{n}") for n, p in parsed.items()]
    columns += [p.invalid.alias(f"__x_{n}") for n, p in parsed.items()]
    return columns, {n: Parsed(F.col(f"__v_{n}"), F.col(f"__x_{n}")) for n in parsed}


@dataclass(frozen=True)
class ParsePlan:
    """The column expressions that parse one landing table, built once per SparkSession (building them costs
    thousands of calls into the JVM; applying them to a DataFrame costs a few)."""

    stage: list[Column]
    content: Column
    apply: list[Column]
    names: list[str]

    def run(self, raw: DataFrame) -> DataFrame:
        df = raw.select("*", *self.stage, self.content.alias("__content")).select("*", *self.apply)
        return _typed(df, self.names)


_PLANS: dict[tuple[str, object, int], ParsePlan] = {}


def _plan(table: str, build: Callable[[], tuple[list[Column], dict[str, Column], list[Rule]]],
          variant: object = None) -> ParsePlan:
    from pyspark import SparkContext

    key = (table, variant, id(SparkContext._active_spark_context))
    if key not in _PLANS:
        stage, typed, rules = build()
        _PLANS[key] = ParsePlan(stage, _content_hash(BY_NAME[table]), _apply_columns(typed, rules), list(typed))
    return _PLANS[key]


# ---- parsing, one function per landing table -----------------------------------------------------
def _customers_expressions():
    stage, p = _stage(updated=parse_timestamp("updated_at"), signup=parse_date("signup_date"))
    updated, signup = p["updated"], p["signup"]
    typed = {
        "customer_id": clean("customer_id"),
        "full_name": clean("full_name"),
        "email": clean("email"),
        "phone": clean("phone"),
        "county": clean("county"),
        "signup_date": signup.value,
        "updated_at": updated.value,
    }
    rules = _base_rules(CUSTOMERS) + [
        Rule("unparseable_timestamp", updated.invalid, _msg("updated_at", "is not an ISO-8601 timestamp")),
        Rule("unparseable_date", signup.invalid, _msg("signup_date", "is not a YYYY-MM-DD date")),
    ]
    return stage, typed, rules


def parse_customers(raw: DataFrame) -> DataFrame:
    return _plan("customers", _customers_expressions).run(raw)


def _products_expressions():
    stage, p = _stage(updated=parse_timestamp("updated_at"), price=parse_amount("list_price_kes"),
                    cost=parse_amount("unit_cost_kes"))
    updated, price, cost = p["updated"], p["price"], p["cost"]
    typed = {
        "product_id": clean("product_id"),
        "product_name": clean("product_name"),
        "category": F.initcap(F.lower(clean("category"))),
        "brand": clean("brand"),
        "unit_cost_kes": cost.value,
        "list_price_kes": price.value,
        "updated_at": updated.value,
    }
    rules = _base_rules(PRODUCTS) + [
        Rule("unparseable_number", price.invalid | cost.invalid,
             F.concat_ws("; ", F.when(price.invalid, _msg("list_price_kes", "is not a KES amount")),
                         F.when(cost.invalid, _msg("unit_cost_kes", "is not a KES amount")))),
        Rule("negative_amount", F.coalesce(price.value < 0, F.lit(False)) | F.coalesce(cost.value < 0, F.lit(False)),
             F.lit("list_price_kes or unit_cost_kes is negative")),
        Rule("unparseable_timestamp", updated.invalid, _msg("updated_at", "is not an ISO-8601 timestamp")),
    ]
    return stage, typed, rules


def parse_products(raw: DataFrame) -> DataFrame:
    return _plan("products", _products_expressions).run(raw)


def _enum(col: str, aliases: dict[str, str]) -> Column:
    key = F.regexp_replace(F.lower(clean(col)), "[^a-z0-9]", "")
    mapping = F.create_map(*[F.lit(x) for x in chain.from_iterable(aliases.items())])
    return F.coalesce(F.element_at(mapping, key), F.lit(UNKNOWN))


def _orders_expressions(first_day: dt.date):
    stage, p = _stage(order_ts=parse_timestamp("order_ts"), updated=parse_timestamp("updated_at"),
                    fee=parse_amount("shipping_fee_kes"), status=Parsed(normalise_enum("status"), F.lit(False)))
    order_ts, updated, fee, status = p["order_ts"], p["updated"], p["fee"], p["status"].value
    typed = {
        "order_id": clean("order_id"),
        "customer_id": clean("customer_id"),
        "order_ts": order_ts.value,
        "status": status,
        "channel": _enum("channel", CHANNEL_ALIASES),
        "payment_method": _enum("payment_method", PAYMENT_ALIASES),
        "shipping_fee_kes": fee.value,
        "delivery_county": clean("delivery_county"),
        "updated_at": updated.value,
    }
    rules = _base_rules(ORDERS) + [
        Rule("unparseable_number", fee.invalid, _msg("shipping_fee_kes", "is not a KES amount")),
        Rule("unparseable_timestamp", order_ts.invalid | updated.invalid,
             F.concat_ws("; ", F.when(order_ts.invalid, _msg("order_ts", "is not an ISO-8601 timestamp")),
                         F.when(updated.invalid, _msg("updated_at", "is not an ISO-8601 timestamp")))),
        Rule("negative_amount", F.coalesce(fee.value < 0, F.lit(False)), _msg("shipping_fee_kes", "is negative")),
        Rule("unknown_status", status.isNotNull() & ~status.isin(*ORDER_STATUSES),
             _msg("status", "is not one of " + ", ".join(ORDER_STATUSES))),
        Rule("future_order_timestamp", F.coalesce(order_ts.value > F.col("_ingested_at"), F.lit(False)),
             F.concat(_shown("order_ts"), F.lit(" is after the ingestion time "),
                      F.date_format("_ingested_at", "yyyy-MM-dd'T'HH:mm:ss'Z'"))),
        Rule("date_outside_partitions", F.coalesce(nairobi_date(order_ts.value) < F.lit(first_day), F.lit(False)),
             F.concat(_shown("order_ts"), F.lit(f" is before the lake's first day {first_day}"))),
    ]
    return stage, typed, rules


def parse_orders(raw: DataFrame, first_day: dt.date) -> DataFrame:
    """``first_day``: the lake's first day partition; an order dated before it is rejected."""
    return _plan("orders", lambda: _orders_expressions(first_day), first_day).run(raw)


def _order_items_expressions():
    stage, p = _stage(line=parse_int("line_number"), qty=parse_int("quantity"),
                    price=parse_amount("unit_price_kes"), disc=parse_amount("discount_kes"))
    line, qty, price, disc = p["line"], p["qty"], p["price"], p["disc"]
    discount = F.when(~present("discount_kes"), F.lit(0).cast(T.DecimalType(18, 2))).otherwise(disc.value)
    qty_not_number = present("quantity") & ~is_number("quantity")
    qty_bad = present("quantity") & is_number("quantity") & (qty.invalid | F.coalesce(qty.value < 1, F.lit(True)))
    line_bad = present("line_number") & (line.invalid | F.coalesce(line.value < 1, F.lit(True)))
    line_amount = qty.value.cast("decimal(28,2)") * price.value
    typed = {
        "order_id": clean("order_id"),
        "line_number": line.value,
        "product_id": clean("product_id"),
        "quantity": qty.value,
        "unit_price_kes": price.value,
        "discount_kes": discount,
    }
    rules = _base_rules(ORDER_ITEMS) + [
        Rule("unparseable_number", line_bad | qty_not_number | price.invalid | disc.invalid,
             F.concat_ws("; ",
                         F.when(line_bad, _msg("line_number", "is not a positive integer")),
                         F.when(qty_not_number, _msg("quantity", "is not a number")),
                         F.when(price.invalid, _msg("unit_price_kes", "is not a KES amount")),
                         F.when(disc.invalid, _msg("discount_kes", "is not a KES amount")))),
        Rule("quantity_not_positive_integer", qty_bad, _msg("quantity", "is not a positive integer")),
        Rule("negative_amount", F.coalesce(price.value < 0, F.lit(False)) | F.coalesce(disc.value < 0, F.lit(False)),
             F.concat_ws("; ", F.when(price.value < 0, _msg("unit_price_kes", "is negative")),
                         F.when(disc.value < 0, _msg("discount_kes", "is negative")))),
        Rule("discount_above_line_amount", F.coalesce(discount > line_amount, F.lit(False)),
             F.concat(_shown("discount_kes"), F.lit(" exceeds quantity x unit_price_kes = "),
                      line_amount.cast("string"))),
    ]
    return stage, typed, rules


def parse_order_items(raw: DataFrame) -> DataFrame:
    return _plan("order_items", _order_items_expressions).run(raw)


def _payments_expressions(first_day: dt.date):
    stage, p = _stage(amount=parse_amount("amount_kes"), paid=parse_timestamp("paid_ts"))
    amount, paid = p["amount"], p["paid"]
    typed = {
        "payment_id": clean("payment_id"),
        "order_id": clean("order_id"),
        "method": _enum("method", PAYMENT_ALIASES),
        "amount_kes": amount.value,
        "paid_ts": paid.value,
        "status": F.lower(clean("status")),
        "mpesa_receipt": clean("mpesa_receipt"),
    }
    outside = (nairobi_date(paid.value) < F.lit(first_day)) | (paid.value > F.col("_ingested_at"))
    rules = _base_rules(PAYMENTS) + [
        Rule("unparseable_number", amount.invalid, _msg("amount_kes", "is not a KES amount")),
        Rule("unparseable_timestamp", paid.invalid, _msg("paid_ts", "is not an ISO-8601 timestamp")),
        Rule("date_outside_partitions", F.coalesce(outside, F.lit(False)),
             F.concat(_shown("paid_ts"), F.lit(f" is before the lake's first day {first_day} or after the "
                                                "ingestion time"))),
    ]
    return stage, typed, rules


def parse_payments(raw: DataFrame, first_day: dt.date) -> DataFrame:
    """``first_day``: the lake's first day partition; a payment dated before it is rejected."""
    return _plan("payments", lambda: _payments_expressions(first_day), first_day).run(raw)


def _inventory_expressions():
    stage, p = _stage(on_hand=parse_int("on_hand"), as_of=parse_date("as_of"))
    on_hand, as_of = p["on_hand"], p["as_of"]
    typed = {
        "product_id": clean("product_id"),
        "county": clean("county"),
        "on_hand": on_hand.value,
        "as_of": as_of.value,
    }
    rules = _base_rules(INVENTORY) + [
        Rule("unparseable_number", on_hand.invalid, _msg("on_hand", "is not a whole number")),
        Rule("negative_stock", F.coalesce(on_hand.value < 0, F.lit(False)), _msg("on_hand", "is negative")),
        Rule("unparseable_date", as_of.invalid, _msg("as_of", "is not a YYYY-MM-DD date")),
    ]
    return stage, typed, rules


def parse_inventory(raw: DataFrame) -> DataFrame:
    return _plan("inventory", _inventory_expressions).run(raw)


UNDATED_PARSERS: dict[str, Callable[[DataFrame], DataFrame]] = {  # noqa: RUF012
    "customers": parse_customers,
    "products": parse_products,
    "order_items": parse_order_items,
    "inventory": parse_inventory,
}
DATED_PARSERS: dict[str, Callable[[DataFrame, dt.date], DataFrame]] = {  # noqa: RUF012
    "orders": parse_orders,
    "payments": parse_payments,
}


def opened(table: str, raw: DataFrame, keys: pii.Keys | None) -> DataFrame:
    """Raw rows of ``table`` with their encrypted personal columns decrypted (a no-op for the other tables): the
    rules and the duplicate test read values, not ciphertexts (each encryption of a value differs)."""
    if table not in raw_schemas.PERSONAL_FILES:
        return raw
    if keys is None:
        raise ValueError(f"raw.{table} holds encrypted personal columns: parsing it needs the privacy keys")
    return pii.unseal(raw, encrypted_columns(raw_schemas.TABLES[table]), keys)


def parse(table: str, raw: DataFrame, first_day: dt.date | None = None, keys: pii.Keys | None = None) -> DataFrame:
    """Raw rows of landing table ``table`` parsed: typed values, ``_rules`` broken, ``__content``. Orders and
    payments need ``first_day``, the lake's first day partition (rows dated before it break a rule); customers
    need the privacy ``keys`` (their personal columns are encrypted in raw)."""
    raw = opened(table, raw, keys)
    if table in DATED_PARSERS:
        if first_day is None:
            raise ValueError(f"parsing {table} needs the lake's first day (first_day)")
        return DATED_PARSERS[table](raw, first_day)
    return UNDATED_PARSERS[table](raw)


def valid(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.size("_rules") == 0)


def keep_latest(valid_rows: DataFrame, spec: LandingFile) -> DataFrame:
    """The winning version per key: latest updated_at (if the table has it), then later batch, then later row."""
    order = [F.col("updated_at").desc()] if spec.version_rule == "updated_at" else []
    order += [F.col("_batch_id").desc(), F.col("_row_number").desc()]
    window = Window.partitionBy(*spec.key).orderBy(*order)
    return valid_rows.withColumn("__rank", F.row_number().over(window)).where("__rank = 1").drop("__rank")


# ---- refined tables --------------------------------------------------------------------------------
def refine_customers(raw: DataFrame, pseudonym_key: bytes, keys: pii.Keys) -> DataFrame:
    """The current version of each customer: pseudonymised for analysts, and name, email and phone encrypted for a
    steward: the kept row's values as raw holds them (so a re-run writes the same bytes: each encryption of a value
    differs)."""
    spark = raw.sparkSession
    sealed = raw.withColumns({f"__carry_{c}": F.col(c) for c in raw_schemas.PII_COLUMNS["customers"]})
    latest = keep_latest(valid(parse("customers", sealed, keys=keys)), CUSTOMERS)
    resolved = county_logic.resolve_county(latest, "county", "county", spark)
    resolved = resolved.withColumn("county_code", F.coalesce("county_code", F.lit(county_logic.UNKNOWN)))
    named = county_logic.attach_county_names(resolved, "county_code", spark)
    out = named.select(
        "customer_id",
        pii.pseudonym(F.col("customer_id"), pseudonym_key, "customer").alias("customer_pseudonym"),
        pii.email_domain(F.col("email")).alias("email_domain"),
        pii.pseudonym(pii.e164_kenya(F.col("phone")), pseudonym_key, "phone").alias("phone_hash"),
        *[F.col(f"__carry_{c}").alias(f"{c}_encrypted") for c in raw_schemas.PII_COLUMNS["customers"]],
        F.col("county").alias("county_text"),
        "county_code",
        "county_name",
        "former_province",
        "signup_date",
        "updated_at",
        *LINEAGE[:3],
    )
    return conform(out, schemas.customers)


def refine_products(raw: DataFrame) -> DataFrame:
    return conform(keep_latest(valid(parse_products(raw)), PRODUCTS), schemas.products)


def refine_inventory(raw: DataFrame) -> DataFrame:
    """Stock snapshots: one row per product, county text and as_of day (the later batch, then row, wins), with
    the county resolved (0 = Unknown: kept, never matched to a forecast series)."""
    spark = raw.sparkSession
    latest = keep_latest(valid(parse_inventory(raw)), INVENTORY)
    resolved = county_logic.resolve_county(latest, "county", "county", spark)
    resolved = resolved.withColumn("county_code", F.coalesce("county_code", F.lit(county_logic.UNKNOWN)))
    named = county_logic.attach_county_names(resolved, "county_code", spark)
    out = named.select("product_id", "county", "county_code", "county_name", "on_hand", "as_of", *LINEAGE[:3])
    return conform(out, schemas.inventory)


def refine_orders(raw: DataFrame, customers: DataFrame, pseudonym_key: bytes, first_day: dt.date) -> DataFrame:
    """The current version of every order in ``raw`` (all its versions must be there), conformed."""
    return current_orders(parse_orders(raw, first_day), customers, pseudonym_key)


def current_orders(parsed: DataFrame, customers: DataFrame, pseudonym_key: bytes) -> DataFrame:
    """From parsed order rows: the current version of each order, with its county and pseudonym, conformed."""
    spark = parsed.sparkSession
    latest = keep_latest(valid(parsed), ORDERS)
    resolved = county_logic.resolve_county(latest, "delivery_county", "delivery", spark)
    customer_county = customers.select(
        "customer_id", F.col("county_code").alias("__customer_code")
    )
    joined = resolved.join(customer_county, "customer_id", "left")
    code = (
        F.when(F.col("delivery_code").isNotNull(), F.col("delivery_code"))
        .when(F.coalesce(F.col("__customer_code"), F.lit(0)) != 0, F.col("__customer_code"))
        .otherwise(F.lit(county_logic.UNKNOWN))
    )
    source = (
        F.when(F.col("delivery_code").isNotNull(), F.lit("delivery"))
        .when(F.coalesce(F.col("__customer_code"), F.lit(0)) != 0, F.lit("customer"))
        .otherwise(F.lit("unknown"))
    )
    with_county = joined.withColumn("county_code", code).withColumn("county_source", source)
    named = county_logic.attach_county_names(with_county, "county_code", spark)
    out = named.select(
        "order_id",
        "customer_id",
        pii.pseudonym(F.col("customer_id"), pseudonym_key, "customer").alias("customer_pseudonym"),
        "order_ts",
        nairobi_date(F.col("order_ts")).alias("order_date"),
        "status",
        "channel",
        "payment_method",
        "shipping_fee_kes",
        F.col("delivery_county").alias("delivery_county_text"),
        "county_code",
        "county_name",
        "former_province",
        "county_source",
        "updated_at",
        *LINEAGE[:3],
    )
    return conform(out, schemas.orders)


def in_window(col: str, start: dt.date, end: dt.date) -> Column:
    return (F.col(col) >= F.lit(start)) & (F.col(col) < F.lit(end))


def _versions(all_rows: DataFrame, in_scope: DataFrame, key: str, held: Held,
              narrow: bool = True) -> DataFrame:
    """Every raw version (any partition) of the keys that have a row in scope.

    The keys are computed and kept first (``kept_keys``): for a few days Spark then broadcasts them and reads
    only the raw table's files within their range, instead of shuffling the whole history against them (unless
    ``narrow`` is off: a small raw table is joined whole)."""
    keys = kept_keys(in_scope.select(clean(key).alias("__key")).where("__key IS NOT NULL").distinct(), "__key", held,
                     narrow)
    versions = keys.narrow(all_rows, key, trimmed=True).join(keys.df, clean(key) == F.col("__key"), "left_semi")
    # Rows in scope without a key have no versions to collect, but they must still be parsed: they are rejected
    # (missing_required_value), not dropped.
    return versions.unionByName(in_scope.where(clean(key).isNull()))


@dataclass
class SalesInputs:
    """Raw sales rows for refining the day partitions [start, end)."""

    orders: DataFrame  # raw.orders, every partition (only versions of orders with a row in scope are used)
    order_items: DataFrame  # raw.order_items, every partition
    payments: DataFrame  # raw.payments, every partition
    customers: DataFrame  # refined.customers (customer_id, county_code)
    refined_order_ids: DataFrame | None  # order_id of refined.orders as it stands (None: no table yet)
    start: dt.date
    end: dt.date  # exclusive
    first_day: dt.date  # the lake's first day partition (rows dated before it are rejected)
    narrow: bool = True  # narrow the raw tables to the scope's keys first (big tables); off for small ones


def refine_sales(inp: SalesInputs, pseudonym_key: bytes, held: Held) -> dict[str, DataFrame]:
    """refined.orders, refined.order_items, refined.payments and refined.sales_rejects for [start, end).

    * orders: the current version of every order with a raw row in scope, kept if its order_date is in scope
      (an order whose order_ts moved to another day leaves this day);
    * order lines follow their order's day; lines of unknown orders stay on their raw day;
    * payments: the current version of every payment with a raw row in scope (paid_date in scope);
    * rejects: the scope's raw rows that break a rule, on their raw day.

    Intermediate results are kept in ``held``: release it once the outputs are written.
    Besides computing them once, persisting stops Spark from pushing the row-rule filters below the version
    joins, which would evaluate every rule on every row of the raw table instead of on the versions in scope.
    """
    day = raw_schemas.DAY_COLUMNS
    orders_scope = inp.orders.where(in_window(day["orders"], inp.start, inp.end))
    items_scope = inp.order_items.where(in_window(day["order_items"], inp.start, inp.end))
    payments_scope = inp.payments.where(in_window(day["payments"], inp.start, inp.end))

    in_scope = in_window("__carry_day", inp.start, inp.end)  # a parsed row's raw day is in scope

    # Each raw row is parsed once; the parsed rows give both the refined versions and the rejects.
    order_rows = held(parse_orders(_carry(_versions(inp.orders, orders_scope, "order_id", held, inp.narrow),
                                          "orders"), inp.first_day))
    orders = held(current_orders(order_rows, inp.customers, pseudonym_key)
                  .where(in_window("order_date", inp.start, inp.end)))

    # The current orders' keys, computed and kept: Spark then knows they are small (a few days) and broadcasts
    # them, so the raw order lines are filtered as they are read instead of the whole history being shuffled.
    kept = kept_keys(orders.select(F.col("order_id").alias("__oid"), F.col("order_date").alias("__odate")),
                     "__oid", held, inp.narrow)
    current = kept.df
    of_orders = kept.narrow(inp.order_items, "order_id", trimmed=True).join(
        current, clean("order_id") == F.col("__oid"), "left_semi")
    item_rows = held(parse_order_items(_carry(
        of_orders.unionByName(items_scope).dropDuplicates(["_source_file", "_row_number"]), "order_items")))
    of_current = item_rows.join(current, F.col("order_id") == F.col("__oid"), "left_semi")
    # Orphans: lines in scope whose order is neither current here nor already refined. The few candidate order
    # ids are looked up in refined.orders (broadcast, no shuffle of its whole history of order ids).
    orphans = item_rows.where(in_scope).join(current, F.col("order_id") == F.col("__oid"), "left_anti")
    if inp.refined_order_ids is not None:
        wanted = kept_keys(orphans.select(F.col("order_id").alias("__oid")).where("__oid IS NOT NULL").distinct(),
                           "__oid", held, inp.narrow)
        refined = (wanted.narrow(inp.refined_order_ids, "order_id").select(F.col("order_id").alias("__oid"))
                   .join(wanted.df, "__oid", "left_semi"))
        orphans = orphans.join(refined, F.col("order_id") == F.col("__oid"), "left_anti")
    items = keep_latest(valid(of_current.unionByName(orphans)), ORDER_ITEMS)
    items = items.join(current, F.col("order_id") == F.col("__oid"), "left")
    items = items.withColumn("order_date", F.coalesce("__odate", "__carry_day"))
    items = items.where(in_window("order_date", inp.start, inp.end))

    payment_rows = held(parse_payments(_carry(_versions(inp.payments, payments_scope, "payment_id", held,
                                                        inp.narrow), "payments"), inp.first_day))
    payments = keep_latest(valid(payment_rows), PAYMENTS)
    payments = payments.withColumn("paid_date", nairobi_date(F.col("paid_ts")))
    payments = payments.where(in_window("paid_date", inp.start, inp.end))

    sales_rejects = None
    for table, rows in (("orders", order_rows), ("order_items", item_rows), ("payments", payment_rows)):
        part = _reject_rows(rows.where(in_scope), table, partitioned=True)
        sales_rejects = part if sales_rejects is None else sales_rejects.unionByName(part)
    return {
        "orders": orders,
        "order_items": conform(items, schemas.order_items),
        "payments": conform(payments, schemas.payments),
        "sales_rejects": conform(sales_rejects, schemas.sales_rejects),
    }


def counties_table(spark) -> DataFrame:
    return conform(county_logic.counties_df(spark), schemas.counties)


# ---- rejects ---------------------------------------------------------------------------------------
def _original_values(spec: LandingFile) -> Column:
    """Column -> value as the row arrived (and its unknown columns, and its broken record). A personal file's
    personal values are taken from raw as they are there: encrypted."""
    pairs = []
    for c in spec.columns:
        pairs += [F.lit(c), F.col(c).cast("string")]
    values = F.map_concat(F.create_map(*pairs),
                          F.coalesce(F.col(EXTRA_COLUMN), F.create_map().cast("map<string,string>")))
    corrupt = F.col(CORRUPT_COLUMN)
    values = F.when(corrupt.isNotNull(), F.map_concat(values, F.create_map(F.lit(CORRUPT_COLUMN), corrupt))).otherwise(values)
    return F.map_filter(values, lambda k, v: v.isNotNull())


def personal_entry(table: Column, name: Column) -> Column:
    """Whether the rejects' ``original_values`` entry ``name`` of a row of landing table ``table`` is encrypted:
    a personal file's personal columns, unknown columns and broken record."""
    plain = [(t, [c for c in BY_NAME[t].columns if c not in raw_schemas.PII_COLUMNS[t]])
             for t in raw_schemas.PERSONAL_FILES]
    out = F.lit(False)
    for t, cols in plain:
        out = F.when(table == t, ~name.isin(cols)).otherwise(out)
    return out


def _entry(df: DataFrame) -> Callable[[Column], Column] | None:
    """In a rejects table, which original-values entries are encrypted (:func:`personal_entry`); elsewhere all."""
    return (lambda k: personal_entry(F.col("table"), k)) if "table" in df.columns else None


def transform_encrypted(df: DataFrame, columns: Sequence[str], fn: Callable[[Column], Column]) -> DataFrame:
    """``df`` with ``fn`` applied to every encrypted value of its encrypted ``columns`` (in a rejects table, only
    the entries :func:`personal_entry` names)."""
    return pii.transform(df, columns, fn, _entry(df))


def encrypted_values(df: DataFrame, columns: Sequence[str]) -> Column:
    """Every encrypted value of a row, as one array (nulls left out)."""
    types, entry = dict(df.dtypes), _entry(df)
    parts = []
    for c in columns:
        if not types[c].startswith("map"):
            parts.append(F.array(F.col(c)))
        else:
            kept = F.col(c) if entry is None else F.map_filter(F.col(c), lambda k, v: entry(k))
            parts.append(F.map_values(kept))
    both = F.concat(*[F.coalesce(p, F.array().cast("array<string>")) for p in parts])
    return F.filter(both, lambda v: v.isNotNull())


def key_version_counts(df: DataFrame, columns: Sequence[str]) -> dict[int, int]:
    """The encrypted values of ``columns`` per key version (-1: values that are not encrypted), in one query."""
    v = F.col("v")
    version = F.when(v.rlike(pii.ENCRYPTED_PATTERN), pii.key_version(v)).otherwise(-1)
    rows = (df.select(F.explode(encrypted_values(df, columns)).alias("v"))
            .groupBy(version.alias("version")).count().collect())
    return {int(r["version"]): int(r["count"]) for r in rows}


def _carry(raw: DataFrame, table: str) -> DataFrame:
    """Raw rows plus what a reject needs after parsing: original values, the key as written, the raw day."""
    spec = BY_NAME[table]
    out = raw.withColumn("__carry_values", _original_values(spec)).withColumn(
        "__carry_key", F.concat_ws("|", *[F.coalesce(clean(c), F.lit("")) for c in spec.key])
    )
    day_column = raw_schemas.DAY_COLUMNS.get(table)
    return out.withColumn("__carry_day", F.col(day_column)) if day_column else out


def _reject_rows(parsed: DataFrame, table: str, partitioned: bool) -> DataFrame:
    """Parsed (and carried) rows that break a rule, in the rejects shape."""
    bad = parsed.where(F.size("_rules") > 0)
    return bad.select(
        F.lit(table).alias("table"),
        F.col("_rules")[0].alias("rule"),
        F.col("_rules").alias("rules"),
        F.col("_reject_detail").alias("detail"),
        F.col("_batch_id").alias("batch_id"),
        F.col("_source_file").alias("source_file"),
        F.col("_row_number").alias("row_number"),
        F.col("__carry_key").alias("record_key"),
        F.col("__carry_values").alias("original_values"),
        F.col("_ingested_at").alias("ingested_at"),
        *([F.col("__carry_day").alias("partition_date")] if partitioned else []),
    )


def rejects_of(raw: DataFrame, table: str, keys: pii.Keys | None = None) -> DataFrame:
    """Rows of one (unpartitioned) raw table that break a row rule, in the rejects shape (their original values
    carried before the personal columns are decrypted for the rules)."""
    return _reject_rows(parse(table, _carry(raw, table), keys=keys), table, partitioned=False)


def rejects(raw_tables: Mapping[str, DataFrame], keys: pii.Keys | None = None) -> DataFrame:
    parts = [rejects_of(df, table, keys) for table, df in raw_tables.items()]
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return conform(out, schemas.rejects)
