"""Helpers to declare table schemas compactly. Every schema lives in ``ecommerce_lake.schemas``."""

from __future__ import annotations

from collections.abc import Sequence

import pandera.pyspark as pa
from pyspark.sql import types as T

STRING = T.StringType()
INT = T.IntegerType()
LONG = T.LongType()
DOUBLE = T.DoubleType()
DATE = T.DateType()
TIMESTAMP = T.TimestampType()
BOOL = T.BooleanType()
MONEY = T.DecimalType(18, 2)
STRINGS = T.ArrayType(T.StringType())
STRING_MAP = T.MapType(T.StringType(), T.StringType())
LONG_MAP = T.MapType(T.StringType(), T.LongType())
MONEY_TOTAL = T.DecimalType(20, 2)
HEX64 = r"^[0-9a-f]{64}$"
# an encrypted personal value: "k<key version>:" + base64(AES-GCM IV + ciphertext + tag) (logic/refined/pii.py)
ENCRYPTED = r"^k[0-9]+:[A-Za-z0-9+/]+={0,2}$"


def column(
    dtype,
    description: str,
    *,
    nullable: bool = False,
    checks: Sequence[pa.Check] = (),
    lineage: Sequence[str] = (),
    pii: str | None = None,
) -> pa.Column:
    metadata: dict = {}
    if lineage:
        metadata["lineage"] = list(lineage)
    if pii:
        metadata["pii"] = pii
    if pii == "encrypted" and dtype == STRING:
        checks = [*checks, pa.Check.str_matches(ENCRYPTED)]
    return pa.Column(dtype, checks=list(checks), nullable=nullable, description=description,
                     metadata=metadata or None)


def table(name: str, description: str, columns: dict[str, pa.Column], key: Sequence[str] = (), *,
          day_column: str | None = None, replace_key: str | None = None,
          zorder_by: Sequence[str] = ()) -> pa.DataFrameSchema:
    """A table: ``<layer>.<table>`` (the asset key, the path ``<lake_root>/<layer>/<table>`` and the catalog name
    all follow from it), its columns, its unique ``key``, and how it is laid out:

    * ``day_column``: the table is partitioned by day (Africa/Nairobi) on this date column: its asset gets the
      daily partitions, and a run rewrites only its days (Delta ``replaceWhere``);
    * ``replace_key``: the table is appended by this column's values (raw tables, by batch): a write replaces
      only the rows with the values it holds, so re-ingesting a batch changes nothing;
    * ``zorder_by``: columns the daily Delta maintenance Z-orders the table by.
    """
    for column_name in (day_column, replace_key, *zorder_by):
        if column_name is not None and column_name not in columns:
            raise ValueError(f"{name}: layout column {column_name!r} is not one of its columns")
    layout = {k: v for k, v in (("day_column", day_column), ("replace_key", replace_key),
                                 ("zorder_by", list(zorder_by) or None)) if v}
    return pa.DataFrameSchema(columns, name=name, description=description, unique=list(key) or None,
                              metadata=layout or None)


def lineage_columns(source: str) -> dict[str, pa.Column]:
    """Where the kept version of a row came from (refined tables)."""
    return {
        "_batch_id": column(STRING, "Landing batch the kept version of this row arrived in.",
                            lineage=[f"{source}._batch_id"]),
        "_source_file": column(STRING, "Landing file (<batch_id>/<file>) of the kept version.",
                               lineage=[f"{source}._source_file"]),
        "_row_number": column(INT, "Data row number (1-based) in that file.", checks=[pa.Check.ge(1)],
                              lineage=[f"{source}._row_number"]),
    }
