"""DataFrame helpers shared by the transformations and the checks."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def held_df(df: DataFrame, held: list[DataFrame]) -> DataFrame:
    """Persist ``df`` (memory, spilling to disk); the caller releases it through ``held`` (``release(held)``)."""
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    held.append(df)
    return df


def sized(df: DataFrame, held: list[DataFrame]) -> DataFrame:
    """``df`` computed now and kept, so Spark plans the joins that use it with its real size.

    Spark estimates a filtered Delta scan at the size of the whole table, so a join of a whole table with the
    keys of a few day partitions is planned as a shuffle of both sides: every new day would shuffle the whole
    history. Once the keys are computed, Spark knows they are small and broadcasts them: the big side is
    filtered where it is read. Large keys (a full rebuild) still get a shuffle join, as before.
    """
    df = held_df(df, held)
    df.count()
    return df


def release(held: list[DataFrame]) -> None:
    for df in held:
        df.unpersist()
    held.clear()


# Above every character a key can hold: an upper bound for "a key followed by anything" (UTF-8 byte order)
_ABOVE_ALL = "\U0010ffff"


def key_range(keys: DataFrame, column: str, target: str | None = None, trimmed: bool = False) -> Column | None:
    """A predicate on a table's ``target`` column (default ``column``) that every row whose value is one of
    ``keys[column]`` satisfies: the keys' [min, max] range. It changes no join result; it lets Delta skip the files whose min/max statistics
    of ``column`` lie outside the range (data skipping), which a semi-join with the keys alone does not. Ids
    issued in sequence (orders, payments, and the landing files of a day) sit in a few files of a big table, so
    a few days' keys read those files instead of the whole history.

    ``trimmed``: the table holds raw values that match a key once trimmed of spaces (``parsing.clean``); the
    range then also admits values with leading spaces (below ``'!'``) and trailing ones (up to the maximum
    followed by anything). Keys holding characters at or below the space, for which that bound does not hold,
    get no predicate. None when there are no keys."""
    aggs = [F.min(column).alias("lo"), F.max(column).alias("hi")]
    if trimmed:
        aggs.append(F.max(F.col(column).rlike("[\\x00-\\x20]").cast("int")).alias("odd"))
    row = keys.agg(*aggs).collect()[0]
    lo, hi = row["lo"], row["hi"]
    if lo is None:
        return None
    c = F.col(target or column)
    if not trimmed:
        return (c >= F.lit(lo)) & (c <= F.lit(hi))
    if not isinstance(lo, str) or row["odd"]:
        return None
    return (c < F.lit("!")) | ((c >= F.lit(lo)) & (c <= F.lit(hi + _ABOVE_ALL)))


def semi_join_keys(table: DataFrame, keys: DataFrame, on: Sequence[str], held: list[DataFrame]) -> DataFrame:
    """Rows of ``table`` whose ``on`` columns occur in ``keys``: the keys are computed and kept first (``sized``:
    Spark broadcasts a few days' keys) and their range on the first column narrows the read (``key_range``)."""
    wanted = sized(keys.select(*on).distinct(), held)
    narrow = key_range(wanted, on[0])
    return (table.where(narrow) if narrow is not None else table).join(wanted, list(on), "left_semi")
