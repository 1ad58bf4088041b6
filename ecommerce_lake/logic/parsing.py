"""Typed parsing of landing strings, as Spark column expressions (no Python UDFs).

Every parser returns a :class:`Parsed` pair: the typed value (null when absent or invalid) and a boolean
column that is true when a value was present but could not be parsed. Spark 4 runs in ANSI mode, so only
``try_*`` functions and regex-guarded casts are used: bad input never raises, it is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ecommerce_lake.core.contract import NAIROBI_OFFSET, NAIROBI_TZ

MONEY = T.DecimalType(18, 2)
AMOUNT_RE = r"^[+-]?[0-9]{1,15}(\.[0-9]{1,2})?$"
INT_RE = r"^[+-]?[0-9]{1,9}$"
NUMBER_RE = r"^[+-]?[0-9]+(\.[0-9]+)?$"
DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TS_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)?$"
TS_FORMAT = "yyyy-MM-dd'T'HH:mm[:ss][.SSSSSSSSS]XXX"


@dataclass(frozen=True)
class Parsed:
    value: Column
    invalid: Column  # present but unparseable


def clean(c: Column | str) -> Column:
    """Trimmed string (of spaces); empty, or only white space (tabs, line breaks, no-break spaces), becomes null:
    a blank key is a missing key."""
    col = F.col(c) if isinstance(c, str) else c
    t = F.trim(col)
    return F.when((t == "") | t.rlike(r"^[\s\u00a0\u2000-\u200b\u3000]+$"), F.lit(None).cast("string")).otherwise(t)


def present(c: Column | str) -> Column:
    return clean(c).isNotNull()


def parse_amount(c: Column | str) -> Parsed:
    """KES amount with '.' as decimal point and at most 2 decimals -> decimal(18,2)."""
    s = clean(c)
    ok = s.rlike(AMOUNT_RE)
    return Parsed(F.when(ok, s.try_cast(MONEY)), s.isNotNull() & ~ok)


def parse_int(c: Column | str) -> Parsed:
    s = clean(c)
    ok = s.rlike(INT_RE)
    return Parsed(F.when(ok, s.try_cast(T.IntegerType())), s.isNotNull() & ~ok)


def is_number(c: Column | str) -> Column:
    return clean(c).rlike(NUMBER_RE)


def parse_date(c: Column | str) -> Parsed:
    s = clean(c)
    value = F.when(s.rlike(DATE_RE), F.to_date(F.try_to_timestamp(s, F.lit("yyyy-MM-dd"))))
    return Parsed(value, s.isNotNull() & value.isNull())


def parse_timestamp(c: Column | str) -> Parsed:
    """ISO-8601 with an offset (``+03:00``, ``+0300``, ``Z``) or without one (= Africa/Nairobi local time).

    Result is a TIMESTAMP (an instant); the session time zone is UTC.
    """
    s = clean(c)
    shaped = s.rlike(TS_RE)
    t = F.regexp_replace(s, r"^([0-9-]{10}) ", "$1T")
    t = F.regexp_replace(t, r"[Zz]$", "+00:00")
    t = F.regexp_replace(t, r"([+-][0-9]{2})([0-9]{2})$", "$1:$2")
    t = F.regexp_replace(t, r"([+-][0-9]{2})$", "$1:00")
    has_offset = t.rlike(r"[+-][0-9]{2}:[0-9]{2}$")
    t = F.when(has_offset, t).otherwise(F.concat(t, F.lit(NAIROBI_OFFSET)))
    value = F.when(shaped, F.try_to_timestamp(t, F.lit(TS_FORMAT)))
    return Parsed(value, s.isNotNull() & value.isNull())


def nairobi_date(ts: Column) -> Column:
    """The local calendar date in Africa/Nairobi of a timestamp instant."""
    return F.to_date(F.from_utc_timestamp(ts, NAIROBI_TZ))


def normalise_enum(c: Column | str) -> Column:
    """Case and surrounding spaces ignored: ``' Paid '`` -> ``'paid'``; inner spaces/hyphens -> ``_``."""
    s = F.lower(clean(c))
    return F.regexp_replace(s, r"[\s\-]+", "_")
