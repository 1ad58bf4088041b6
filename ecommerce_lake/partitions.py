"""Time partitions of the sales-bearing assets: one partition per day of order_date in Africa/Nairobi.

The first day comes from ECOMMERCE_LAKE_PARTITIONS_START (default 2023-01-01); the last is today in Nairobi
(end_offset=1), so a batch exported today can be ingested today. Rows whose date falls outside that range, or
cannot be read, are filed under their batch's arrival day (and refined rejects the unreadable ones).
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from ecommerce_lake.contract import NAIROBI_TZ
from ecommerce_lake.settings import PREFIX, Settings


def _partitions_start() -> dt.date:
    """ECOMMERCE_LAKE_PARTITIONS_START alone (the partitions are defined when the code loads; the other settings
    are validated where they are used, with a clear message)."""
    raw = os.environ.get(PREFIX + "PARTITIONS_START") or Settings.partitions_start
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"{PREFIX}PARTITIONS_START={raw!r} is not a YYYY-MM-DD date") from exc


PARTITIONS_START = _partitions_start()
DAILY = dg.DailyPartitionsDefinition(
    start_date=PARTITIONS_START.isoformat(), timezone=NAIROBI_TZ, end_offset=1, fmt="%Y-%m-%d"
)
SINGLE_RUN = dg.BackfillPolicy.single_run()
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BATCH_TAG = "ecommerce_lake/batch_id"


def nairobi_today() -> dt.date:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=3)).date()


def clamp_day(day: dt.date | None, fallback: dt.date, today: dt.date | None = None) -> dt.date:
    """A day usable as a partition key: ``day`` when inside [start, today], else ``fallback`` (clamped)."""
    today = today or nairobi_today()
    if day is not None and PARTITIONS_START <= day <= today:
        return day
    return min(max(fallback, PARTITIONS_START), today)


def range_tags(days: set[dt.date] | list[dt.date]) -> dict[str, str]:
    return {RANGE_START_TAG: min(days).isoformat(), RANGE_END_TAG: max(days).isoformat()}
