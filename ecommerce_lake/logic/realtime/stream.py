"""Kafka messages -> contract-checked events -> 5-minute county windows. Plain DataFrame -> DataFrame functions.

The streaming micro-batch (``platform/stream.py``) calls them in this order: :func:`parse_messages` (every
message, with the first contract rule it breaks), :func:`rejects` and :func:`accepted` (counties resolved as the
batch lake resolves a delivery county), :func:`split_late` against the watermark, :func:`first_of_each_event`
(duplicates within the batch), then :func:`windows` over the ledger of accepted events.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ecommerce_lake.core.events import EVENT_TYPES, FIELDS, SCHEMA_VERSION, WINDOW_MINUTES
from ecommerce_lake.logic import counties as county_logic
from ecommerce_lake.logic.parsing import clean, nairobi_date, parse_amount, parse_timestamp

# Every field read as text first (a JSON number arrives as its text): the rules below type it, so a wrong type is
# a reject with a reason, not a null.
_JSON_SCHEMA = T.StructType([T.StructField(name, T.StringType()) for name in FIELDS]
                            + [T.StructField("_corrupt", T.StringType())])
_OFFSET_RE = r"(Z|z|[+-][0-9]{2}:?[0-9]{2})$"


def _rule(cases: list[tuple[str, Column, Column]]) -> tuple[Column, Column]:
    """(rule, message) of the first case whose condition holds (null, null when none does)."""
    rule, message = F.lit(None).cast("string"), F.lit(None).cast("string")
    for name, cond, text in reversed(cases):
        rule = F.when(cond, F.lit(name)).otherwise(rule)
        message = F.when(cond, text).otherwise(message)
    return rule, message


def parse_messages(messages: DataFrame) -> DataFrame:
    """Kafka rows (``value`` binary, ``topic``, ``partition``, ``offset``, ``timestamp``) -> one row per message
    with the contract's fields typed, and ``rule``/``message`` of the first rule it breaks (null when valid)."""
    raw = F.col("value").cast("string")
    text = F.make_valid_utf8(raw)  # invalid bytes become U+FFFD: the message still shows
    parsed = messages.select(
        F.col("topic"), F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"), text.alias("value"),
        F.coalesce(F.is_valid_utf8(raw), F.lit(True)).alias("utf8"),
        F.from_json(text, _JSON_SCHEMA, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"})
        .alias("j"),
    )
    j = {name: F.col(f"j.{name}") for name in FIELDS}
    amount, event_time = parse_amount(j["net_amount_kes"]), parse_timestamp(j["event_time"])
    is_object = F.coalesce(F.trim(F.col("value")).startswith("{"), F.lit(False))
    not_json = (F.col("j").isNull() | F.col("j._corrupt").isNotNull() | ~is_object
                | ~F.col("utf8"))
    missing = [name for name, (_, required, _) in FIELDS.items() if required]
    missing_any = F.lit(False)
    missing_names = []
    for name in missing:
        blank = clean(j[name]).isNull()
        missing_any = missing_any | blank
        missing_names.append(F.when(blank, F.lit(name)))
    rule, message = _rule([
        ("not_json", not_json, F.lit("the message is not a JSON object in UTF-8")),
        ("missing_field", missing_any,
         F.concat(F.lit("missing or blank: "), F.concat_ws(", ", *missing_names))),
        ("wrong_schema_version", clean(j["schema_version"]) != F.lit(str(SCHEMA_VERSION)),
         F.concat(F.lit("schema_version "), j["schema_version"], F.lit(f" is not {SCHEMA_VERSION}"))),
        ("unknown_event_type", ~clean(j["event_type"]).isin(*EVENT_TYPES),
         F.concat(F.lit("event_type '"), j["event_type"], F.lit("' is not one of " + ", ".join(EVENT_TYPES)))),
        ("bad_amount", amount.invalid,
         F.concat(F.lit("net_amount_kes '"), j["net_amount_kes"], F.lit("' is not a KES amount"))),
        ("bad_event_time", event_time.invalid | ~clean(j["event_time"]).rlike(_OFFSET_RE),
         F.concat(F.lit("event_time '"), j["event_time"], F.lit("' is not an ISO-8601 timestamp with an offset"))),
    ])
    return parsed.select(
        "topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "value",
        clean(j["event_id"]).alias("event_id"), clean(j["event_type"]).alias("event_type"),
        clean(j["order_id"]).alias("order_id"), clean(j["county"]).alias("county_text"),
        clean(j["customer_county"]).alias("customer_county_text"),
        amount.value.alias("net_amount_kes"), event_time.value.alias("event_time"),
        rule.alias("rule"), message.alias("message"),
    )


def rejects(parsed: DataFrame, batch_id: int, received_at: dt.datetime) -> DataFrame:
    """The messages that break the contract, as ``realtime.event_rejects`` rows."""
    return parsed.where(F.col("rule").isNotNull()).select(
        "topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "value", "rule", "message",
        F.lit(batch_id).cast("long").alias("batch_id"), F.lit(received_at).cast("timestamp").alias("received_at"),
    )


def accepted(parsed: DataFrame, batch_id: int, received_at: dt.datetime) -> DataFrame:
    """The valid events, their county resolved as the batch lake resolves an order's county: ``county`` when it
    names a county, else ``customer_county``, else county 0 (Unknown); as ``realtime.events`` rows."""
    spark = parsed.sparkSession
    valid = parsed.where(F.col("rule").isNull())
    resolved = county_logic.resolve_county(valid, "county_text", "event", spark)
    resolved = county_logic.resolve_county(resolved, "customer_county_text", "customer", spark)
    code = F.coalesce(F.col("event_code"), F.when(F.col("customer_code") != 0, F.col("customer_code")),
                      F.lit(county_logic.UNKNOWN))
    coded = resolved.withColumn("county_code", code)
    named = county_logic.attach_county_names(coded, "county_code", spark)
    return named.select(
        "event_id", "event_type", "order_id", "county_text", F.col("county_code").cast("int"), "county_name",
        "net_amount_kes", "event_time", nairobi_date(F.col("event_time")).alias("event_date"),
        F.col("kafka_partition").cast("int"), "kafka_offset",
        F.lit(batch_id).cast("long").alias("batch_id"), F.lit(received_at).cast("timestamp").alias("received_at"),
    )


def first_of_each_event(events: DataFrame) -> DataFrame:
    """One row per event id: the first message that carried it (lowest partition, then offset)."""
    first = Window.partitionBy("event_id").orderBy("kafka_partition", "kafka_offset")
    return events.withColumn("__n", F.row_number().over(first)).where("__n = 1").drop("__n")


def split_late(events: DataFrame, watermark: dt.datetime | None) -> tuple[DataFrame, DataFrame]:
    """(on time, late): an event is late when its event_time is before the watermark."""
    if watermark is None:
        return events, events.limit(0).withColumn("watermark", F.lit(None).cast("timestamp"))
    wm = F.lit(watermark).cast("timestamp")
    return events.where(F.col("event_time") >= wm), events.where(F.col("event_time") < wm).withColumn("watermark", wm)


def window_start(ts: Column) -> Column:
    return F.window(ts, f"{WINDOW_MINUTES} minutes").start


def windows(events: DataFrame, updated_at: dt.datetime) -> DataFrame:
    """``realtime.county_sales_5min`` rows of ``events`` (ledger rows): 5-minute tumbling windows per county."""
    w = F.window("event_time", f"{WINDOW_MINUTES} minutes")
    out = events.groupBy(w.alias("w"), "county_code").agg(
        F.first("county_name").alias("county_name"),
        F.count(F.lit(1)).alias("events"),
        F.countDistinct("order_id").alias("orders"),
        F.sum("net_amount_kes").cast("decimal(20,2)").alias("net_revenue_kes"),
    )
    return out.select(
        F.col("w.start").alias("window_start"), F.col("w.end").alias("window_end"),
        nairobi_date(F.col("w.start")).alias("window_date"), F.col("county_code").cast("int"), "county_name",
        "events", "orders", "net_revenue_kes", F.lit(updated_at).cast("timestamp").alias("updated_at"),
    )
