"""DataFrame helpers shared by the transformations and the checks."""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame


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
