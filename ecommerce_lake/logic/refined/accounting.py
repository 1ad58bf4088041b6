"""Every raw row's fate, counted: kept (the lineage of its key's refined row), collapsed (a valid row whose key is
kept from another row: an exact duplicate or an older version) or rejected (in the rejects table by its file and
row number). Each class is counted on its own, so the equation ``read = kept + collapsed + rejected`` can fail:
a row in no class (lost, or invalid and not rejected) or in two (a rejected row also kept) breaks it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

LINEAGE = ["_source_file", "_row_number"]


@dataclass(frozen=True)
class Accounting:
    read: int  # raw rows read
    bad: int  # of them, breaking a row rule
    kept_read: int  # raw rows that are their key's refined row
    collapsed: int  # valid rows whose key is kept from another row
    rejected: int  # raw rows found in the rejects
    bad_not_rejected: int  # rows breaking a rule and not in the rejects
    lost: int  # valid rows whose key is not kept at all
    distinct_good: int  # distinct contents of the valid rows
    kept: int  # refined rows in scope
    kept_not_from_raw: int  # refined rows without a raw row behind them
    lost_sample: list[dict] = field(default_factory=list)

    @property
    def exact_duplicates(self) -> int:
        """Valid rows repeating another valid row's content."""
        return (self.read - self.bad) - self.distinct_good

    @property
    def balanced(self) -> bool:
        return self.read == self.kept_read + self.collapsed + self.rejected

    def passed(self, whole_table: bool) -> bool:
        """Every row accounted for once. Within some day partitions an order may have moved in or out (its
        order_ts changed day), so the kept rows of those partitions need not be the kept rows read; over the
        whole table (``whole_table``) they are the same rows."""
        return (self.balanced and self.lost == 0 and self.bad_not_rejected == 0 and self.kept_not_from_raw == 0
                and self.rejected == self.bad and (not whole_table or self.kept_read == self.kept))

    @property
    def equation(self) -> str:
        return (f"{self.read} read {'=' if self.balanced else '!='} {self.kept_read} kept + {self.collapsed} "
                f"collapsed + {self.rejected} rejected")


def _n(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0))


def account_rows(parsed: DataFrame, key: Sequence[str], kept_of_keys: DataFrame, kept: DataFrame,
                 rejected: DataFrame, raw_lineage: DataFrame, sample_size: int = 5) -> Accounting:
    """Count every class in one query.

    ``parsed``: the raw rows read, parsed (``key``, lineage, ``__content``, ``bad``); ``kept_of_keys``: the refined
    row (``key`` and lineage) of every key read, wherever it lives now; ``kept``: the refined rows in scope (``key``
    and lineage); ``rejected``: the lineage of the rejected rows; ``raw_lineage``: the raw rows behind ``kept``.
    """
    key = list(key)
    kept_of_keys = kept_of_keys.select(*key, F.col("_source_file").alias("__kept_file"),
                                       F.col("_row_number").alias("__kept_row"))
    rejected = rejected.select(*LINEAGE).withColumn("__in_rejects", F.lit(True))
    j = parsed.join(kept_of_keys, key, "left").join(rejected, LINEAGE, "left")
    good, has_kept = ~F.col("bad"), F.col("__kept_file").isNotNull()
    is_kept = has_kept & (F.col("__kept_file") == F.col("_source_file")) & (F.col("__kept_row") == F.col("_row_number"))
    # the kept rows and those without a raw row behind them, with the read rows' classes: one query
    kept_side = kept.select(*LINEAGE).join(raw_lineage.select(*LINEAGE).withColumn("__in_raw", F.lit(True)),
                                           LINEAGE, "left").agg(
        F.count(F.lit(1)).alias("kept"), _n(F.col("__in_raw").isNull()).alias("kept_not_from_raw"))
    row = j.agg(
        F.count(F.lit(1)).alias("read"),
        _n(F.col("bad")).alias("bad"),
        _n(is_kept).alias("kept_read"),
        _n(good & has_kept & ~is_kept).alias("collapsed"),
        _n(F.col("__in_rejects").isNotNull()).alias("rejected"),
        _n(F.col("bad") & F.col("__in_rejects").isNull()).alias("bad_not_rejected"),
        _n(good & ~has_kept).alias("lost"),
        F.countDistinct(F.when(good, F.col("__content"))).alias("distinct_good"),
    ).crossJoin(kept_side).collect()[0].asDict()
    counts = {k: int(v or 0) for k, v in row.items()}  # sums over no rows are null (e.g. no inventory yet)
    sample = []
    if counts["lost"]:
        sample = [{k: str(v) for k, v in r.asDict().items()}
                  for r in j.where(good & ~has_kept).select(*key, *LINEAGE).limit(sample_size).collect()]
    return Accounting(**counts, lost_sample=sample)
