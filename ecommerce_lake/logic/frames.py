"""DataFrame helpers shared by the transformations and the checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType


class Held:
    """DataFrames computed once and kept (memory, spilling to disk) for one piece of work, released together when
    it is done: ``with Held() as held: rows = held(parse(...)); ...``. The one way the lake caches: every
    intermediate result a step keeps is released when the step's ``with`` block ends, however it ends."""

    def __init__(self) -> None:
        self._frames: list[DataFrame] = []

    def __call__(self, df: DataFrame) -> DataFrame:
        kept = df.persist(StorageLevel.MEMORY_AND_DISK)
        self._frames.append(kept)
        return kept

    def release(self) -> None:
        for df in self._frames:
            df.unpersist()
        self._frames.clear()

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# Above every character a key can hold: an upper bound for "a key followed by anything" (UTF-8 byte order)
_ABOVE_ALL = "\U0010ffff"
# Below this many rows a table is "small": joining it whole costs less than narrowing it to some keys first (the
# key ranges and broadcasts of ``kept_keys`` pay off on millions of rows, not on thousands)
SMALL_TABLE_ROWS = 1_000_000


@dataclass(frozen=True)
class Keys:
    """Lookup keys computed and kept, with the [min, max] of their ``column`` (``kept_keys``)."""

    df: DataFrame
    column: str
    lo: Any  # None when there are no keys
    hi: Any
    spaced: bool  # a key holds a character at or below the space

    def range_on(self, target: str | None = None, trimmed: bool = False) -> Column | None:
        """A predicate on a table's ``target`` column (default ``column``) that every row whose value is one of
        the keys satisfies: the keys' [min, max]. It changes no join result; it lets Delta skip the files whose
        min/max statistics lie outside the range (data skipping), which a semi-join with the keys alone does
        not. Ids issued in sequence (orders, payments, and the landing files of a day) sit in a few files of a
        big table, so a few days' keys read those files instead of the whole history.

        ``trimmed``: the table holds raw values that match a key once trimmed of spaces (``parsing.clean``);
        the range then also admits values with leading spaces (below ``'!'``) and trailing ones (up to the
        maximum followed by anything). Keys holding characters at or below the space, for which that bound does
        not hold, get no predicate. None when there are no keys."""
        if self.lo is None:
            return None
        c = F.col(target or self.column)
        if not trimmed:
            return (c >= F.lit(self.lo)) & (c <= F.lit(self.hi))
        if not isinstance(self.lo, str) or self.spaced:
            return None
        return (c < F.lit("!")) | ((c >= F.lit(self.lo)) & (c <= F.lit(self.hi + _ABOVE_ALL)))

    def narrow(self, table: DataFrame, target: str | None = None, trimmed: bool = False) -> DataFrame:
        """``table`` restricted to the keys' range (``range_on``): the same join result, fewer files read."""
        cond = self.range_on(target, trimmed)
        return table if cond is None else table.where(cond)


def kept_keys(keys: DataFrame, column: str, held: Held, narrow: bool = True) -> Keys:
    """``keys`` computed now and kept, with the range of ``column``, in one Spark job.

    Spark estimates a filtered Delta scan at the size of the whole table, so a join of a whole table with the
    keys of a few day partitions is planned as a shuffle of both sides: every new day would shuffle the whole
    history. Once the keys are computed, Spark knows they are small and broadcasts them: the big side is
    filtered where it is read, and their range (``Keys.narrow``) lets Delta skip the files that cannot hold
    them. Large keys (a full rebuild) still get a shuffle join, as before. They are kept in ``held``.

    ``narrow=False`` (the table the keys look up is small): the keys as they are, no job and no range — on a small
    table the extra Spark jobs cost more than the files they would skip."""
    if not narrow:
        return Keys(keys, column, None, None, False)
    df = held(keys)
    aggs = [F.min(column).alias("lo"), F.max(column).alias("hi")]
    text = isinstance(df.schema[column].dataType, StringType)
    if text:
        aggs.append(F.max(F.col(column).rlike("[\\x00-\\x20]").cast("int")).alias("spaced"))
    row = df.agg(*aggs).collect()[0]  # computes every partition of the kept keys: Spark then knows their size
    return Keys(df, column, row["lo"], row["hi"], bool(text and row["spaced"]))


def semi_join_keys(table: DataFrame, keys: DataFrame, on: Sequence[str], held: Held,
                   narrow: bool = True) -> DataFrame:
    """Rows of ``table`` whose ``on`` columns occur in ``keys``, read through the keys' range on the first
    column (``kept_keys``: computed first, broadcast when few; ``narrow=False``: a plain semi-join)."""
    kept = kept_keys(keys.select(*on).distinct(), on[0], held, narrow)
    return kept.narrow(table).join(kept.df, list(on), "left_semi")
