"""Every lake table's schema, by catalog name (``<layer>.<table>``), and the facts each schema holds.

A table's schema is the one source of truth for its name (layer and table: the asset key, the path
``<lake_root>/<layer>/<table>``, the catalog name), its columns and rules (the checks, the data dictionary), its
key, and its layout (``_base.table``: ``day_column``, ``replace_key``, ``zorder_by``).
"""

from __future__ import annotations

import pandera.pyspark as pa

from ecommerce_lake.schemas import curated, insights, ml, ops, raw, realtime, refined

ALL: tuple[pa.DataFrameSchema, ...] = (*raw.ALL, *refined.ALL, *curated.ALL, *insights.ALL, *ml.ALL,
                                       *realtime.ALL, *ops.ALL)
BY_NAME: dict[str, pa.DataFrameSchema] = {s.name: s for s in ALL}
LAYERS = ("raw", "refined", "curated", "insights", "ml", "realtime", "ops")


def layer_of(schema: pa.DataFrameSchema) -> str:
    """``raw`` of ``raw.orders``."""
    return schema.name.split(".", 1)[0]


def table_of(schema: pa.DataFrameSchema) -> str:
    """``orders`` of ``raw.orders``."""
    return schema.name.split(".", 1)[1]


def by_table(schemas) -> dict[str, pa.DataFrameSchema]:
    """``{table: schema}`` of schemas of one layer."""
    return {table_of(s): s for s in schemas}


def day_column(schema: pa.DataFrameSchema) -> str | None:
    """The date column a day-partitioned table is partitioned on (None: not partitioned by day)."""
    return (schema.metadata or {}).get("day_column")


def replace_key(schema: pa.DataFrameSchema) -> str | None:
    """The column an append-by-key table is replaced by (raw tables: the batch id)."""
    return (schema.metadata or {}).get("replace_key")


def zorder_by(schema: pa.DataFrameSchema) -> list[str]:
    return list((schema.metadata or {}).get("zorder_by") or [])


def encrypted_columns(schema: pa.DataFrameSchema) -> list[str]:
    """The columns holding encrypted personal values (``pii="encrypted"``: strings, or maps whose values are)."""
    return [name for name, c in schema.columns.items() if (c.metadata or {}).get("pii") == "encrypted"]
