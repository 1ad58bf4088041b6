"""The lake's calendar: days are Nairobi days (UTC+3 all year), and sales-bearing tables hold one partition per
day from the lake's first day to today.

Plain date arithmetic: the Dagster partitions definition built on it is ``defs/partitions.py``; the logic takes
the first day as an argument (``first_day``), from that definition.
"""

from __future__ import annotations

import datetime as dt

from ecommerce_lake.core.contract import NAIROBI_OFFSET

NAIROBI = dt.timezone(dt.timedelta(hours=int(NAIROBI_OFFSET[:3])))
DEFAULT_FIRST_DAY = dt.date(2023, 1, 1)  # ECOMMERCE_LAKE_PARTITIONS_START overrides it (defs/partitions.py)


def nairobi_date_of(moment: dt.datetime) -> dt.date:
    """The Nairobi date of an aware datetime."""
    return moment.astimezone(NAIROBI).date()


def nairobi_today() -> dt.date:
    return nairobi_date_of(dt.datetime.now(dt.timezone.utc))


def clamp_day(day: dt.date | None, fallback: dt.date, first_day: dt.date, today: dt.date | None = None) -> dt.date:
    """A day usable as a partition key: ``day`` when inside [first_day, today], else ``fallback`` (clamped)."""
    today = today or nairobi_today()
    if day is not None and first_day <= day <= today:
        return day
    return min(max(fallback, first_day), today)
