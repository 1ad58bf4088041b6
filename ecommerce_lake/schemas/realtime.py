"""Real-time tables (group ``realtime``): order events from Kafka, aggregated into 5-minute windows per county.

Written by the ``realtime/county_sales_5min`` step's streaming query (``platform/stream.py``), not by the IO
manager: a streaming micro-batch writes its tables itself, each write idempotent per micro-batch (Delta
keyed anti-joins, windows recomputed from the ledger), so a micro-batch replayed after a crash changes nothing
twice. The stream's step compacts them itself (they are not in the daily maintenance: it would contend with the
stream's commits). The event contract is
``core/events.py`` (docs/event-contract.md).
"""

from __future__ import annotations

import pandera.pyspark as pa

from ecommerce_lake.core.events import EVENT_TYPES, REJECT_RULES
from ecommerce_lake.schemas._base import DATE, INT, LONG, MONEY, MONEY_TOTAL, STRING, TIMESTAMP, column, table

NON_NEGATIVE = pa.Check.ge(0)
COUNTY_CODE = pa.Check.in_range(0, 47)


def _event_columns() -> dict[str, pa.Column]:
    return {
        "event_id": column(STRING, "Event id (contract field)."),
        "event_type": column(STRING, "Event type (contract field).", checks=[pa.Check.isin(list(EVENT_TYPES))]),
        "order_id": column(STRING, "Order the event is about."),
        "county_text": column(STRING, "County as the event gave it."),
        "county_code": column(INT, "County resolved as the batch lake resolves a delivery county (0: Unknown).",
                              checks=[COUNTY_CODE]),
        "county_name": column(STRING, "Official county name (Unknown for code 0)."),
        "net_amount_kes": column(MONEY, "Signed change of the order's net revenue (KES)."),
        "event_time": column(TIMESTAMP, "Time of the sale the event is about (UTC)."),
        "event_date": column(DATE, "Africa/Nairobi date of event_time (the day curated.daily_sales counts it on)."),
        "kafka_partition": column(INT, "Kafka partition of the message.", checks=[NON_NEGATIVE]),
        "kafka_offset": column(LONG, "Kafka offset of the message.", checks=[NON_NEGATIVE]),
        "batch_id": column(LONG, "Streaming micro-batch that took the event in.", checks=[NON_NEGATIVE]),
        "received_at": column(TIMESTAMP, "When that micro-batch ran (UTC)."),
    }


events = table(
    "realtime.events",
    "Every accepted order event, once (duplicates collapse on event_id): the ledger the 5-minute windows are "
    "computed from. Events later than the watermark are in realtime.late_events instead.",
    _event_columns(),
    key=["event_id"],
)

late_events = table(
    "realtime.late_events",
    "Events whose event_time was already behind the watermark when they arrived (latest event time seen minus "
    "the allowed lateness): kept and counted, not in the windows. Windows plus late events of a county and day "
    "add up to curated.daily_sales.",
    {**_event_columns(),
     "watermark": column(TIMESTAMP, "The watermark the event was behind (UTC).")},
    key=["event_id"],
)

event_rejects = table(
    "realtime.event_rejects",
    "Messages of the topic that break the event contract, with the rule and the message as it arrived: nothing "
    "is dropped silently.",
    {
        "topic": column(STRING, "Kafka topic."),
        "kafka_partition": column(INT, "Kafka partition of the message.", checks=[NON_NEGATIVE]),
        "kafka_offset": column(LONG, "Kafka offset of the message.", checks=[NON_NEGATIVE]),
        "kafka_timestamp": column(TIMESTAMP, "Kafka timestamp of the message (UTC)."),
        "value": column(STRING, "The message as it arrived (invalid UTF-8 bytes shown as U+FFFD).", nullable=True),
        "rule": column(STRING, "The first contract rule the message breaks.",
                       checks=[pa.Check.isin(list(REJECT_RULES))]),
        "message": column(STRING, "What is wrong, naming the field."),
        "batch_id": column(LONG, "Streaming micro-batch that read it.", checks=[NON_NEGATIVE]),
        "received_at": column(TIMESTAMP, "When that micro-batch ran (UTC)."),
    },
    key=["topic", "kafka_partition", "kafka_offset"],
)

county_sales_5min = table(
    "realtime.county_sales_5min",
    "Sales by county in 5-minute event-time windows, from the order events of the Kafka topic: refreshed as "
    "events arrive (a window changes while events for it keep coming, until the watermark passes its end).",
    {
        "window_start": column(TIMESTAMP, "Window start (UTC, inclusive)."),
        "window_end": column(TIMESTAMP, "Window end (UTC, exclusive): 5 minutes after the start."),
        "window_date": column(DATE, "Africa/Nairobi date of the window."),
        "county_code": column(INT, "KNBS county code (0: Unknown).", checks=[COUNTY_CODE],
                              lineage=["realtime.events.county_code"]),
        "county_name": column(STRING, "Official county name.", lineage=["realtime.events.county_name"]),
        "events": column(LONG, "Events in the window.", checks=[pa.Check.ge(1)]),
        "orders": column(LONG, "Distinct orders with an event in the window.", checks=[pa.Check.ge(1)]),
        "net_revenue_kes": column(MONEY_TOTAL, "Sum of the events' signed net amounts (KES).",
                                  lineage=["realtime.events.net_amount_kes"]),
        "updated_at": column(TIMESTAMP, "When the window was last recomputed (UTC)."),
    },
    key=["window_start", "county_code"],
)

ALL = (county_sales_5min, events, late_events, event_rejects)
