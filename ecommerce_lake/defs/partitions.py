"""Time partitions of the sales-bearing assets: one partition per day (Africa/Nairobi), from the lake's first day
to today (``end_offset=1``, so a batch exported today can be ingested today). Rows whose date falls outside, or
cannot be read, are filed under their batch's arrival day (and refined rejects the unreadable ones).

The first day is ``ECOMMERCE_LAKE_PARTITIONS_START`` (default 2023-01-01, ``core.calendar.DEFAULT_FIRST_DAY``),
read here when the definitions load: a partitions definition is part of the asset definitions, not a run-time
resource. This is the one setting read while modules import; the logic receives :data:`FIRST_DAY` as an argument.
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from ecommerce_lake.core.calendar import DEFAULT_FIRST_DAY
from ecommerce_lake.core.contract import NAIROBI_TZ

PARTITIONS_START_VAR = "ECOMMERCE_LAKE_PARTITIONS_START"


def _first_day() -> dt.date:
    raw = os.environ.get(PARTITIONS_START_VAR) or DEFAULT_FIRST_DAY.isoformat()
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"{PARTITIONS_START_VAR}={raw!r} is not a YYYY-MM-DD date") from exc


FIRST_DAY = _first_day()
DAILY = dg.DailyPartitionsDefinition(start_date=FIRST_DAY.isoformat(), timezone=NAIROBI_TZ, end_offset=1,
                                     fmt="%Y-%m-%d")
SINGLE_RUN = dg.BackfillPolicy.single_run()
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BATCH_TAG = "ecommerce_lake/batch_id"


def range_tags(days: set[dt.date] | list[dt.date]) -> dict[str, str]:
    return {RANGE_START_TAG: min(days).isoformat(), RANGE_END_TAG: max(days).isoformat()}
