"""The event contract: order events on the Kafka topic the real-time feed reads.

Documented for people in docs/event-contract.md; a test keeps the two in step (as for the landing contract).

An event is one JSON object per Kafka message (UTF-8, the key is the order id so one order's events stay in
order on one partition). Its ``net_amount_kes`` is the *change* the event makes to the order's net revenue, so
the events of an order add up to what the batch lake counts for it: once every event of an order is in, the
5-minute windows (and late events) of a county and day sum to that county's and day's ``net_revenue_kes`` in
``curated.daily_sales``:

* an order becomes sold (status paid, shipped or delivered): ``+`` the order's net revenue (quantity x unit
  price - discount over its lines, as ``curated.fact_sales`` computes it);
* a sold order is cancelled or returned: ``-`` that amount; an order that is only placed: ``0``;
* an order moved to another county: ``-`` in the old county, ``+`` in the new one.

``event_time`` is the time of the sale the event revises (the order's ``order_ts``, with its offset): windows
are the sales of that 5-minute period, and a correction that arrives long after is a *late* event, counted and
kept (``realtime.late_events``), not lost.
"""

from __future__ import annotations

TOPIC = "ecommerce_events"
SCHEMA_VERSION = 1
EVENT_TYPES = ("order_placed", "order_updated", "order_cancelled", "order_returned", "order_moved")
WINDOW_MINUTES = 5
WATERMARK_MINUTES = 10  # default: events older than the latest event time seen minus this are late

# field -> (JSON type, required, description)
FIELDS: dict[str, tuple[str, bool, str]] = {
    "event_id": ("string", True, "Unique id of the event (a producer that re-sends an event re-sends this id)."),
    "event_type": ("string", True, "One of " + ", ".join(EVENT_TYPES) + "."),
    "order_id": ("string", True, "The order the event is about (also the Kafka message key)."),
    "county": ("string", True, "County as text (name, alias or major town); resolved as the batch lake resolves "
                               "a delivery county. Text that resolves to no county counts as county 0, Unknown."),
    "customer_county": ("string", False, "Optional: the customer's county as text, used when `county` resolves to no "
                                         "county (the batch lake's rule: delivery county, else customer county)."),
    "net_amount_kes": ("number", True, "Signed change of the order's net revenue in KES, at most 2 decimals."),
    "event_time": ("string", True, "ISO-8601 timestamp with offset (e.g. 2026-12-05T10:15:00+03:00): the time "
                                   "of the sale the event is about."),
    "schema_version": ("integer", True, f"Version of this contract: {SCHEMA_VERSION}."),
}

# Why an event goes to realtime.event_rejects (first broken rule, in this order)
REJECT_RULES: dict[str, str] = {
    "not_json": "the message is not a JSON object (or not UTF-8)",
    "missing_field": "a required field is missing, null or blank",
    "wrong_schema_version": f"schema_version is not {SCHEMA_VERSION}",
    "unknown_event_type": "event_type is not one of the contract's types",
    "bad_amount": "net_amount_kes is not a number with at most 2 decimals",
    "bad_event_time": "event_time is not an ISO-8601 timestamp with an offset",
}
