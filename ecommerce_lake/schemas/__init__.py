"""Every lake table's schema, by catalog name (``<layer>.<table>``)."""

from __future__ import annotations

import pandera.pyspark as pa

from ecommerce_lake.schemas import curated, ml, ops, raw, refined

ALL: tuple[pa.DataFrameSchema, ...] = (*raw.ALL, *refined.ALL, *curated.ALL, *ml.ALL, *ops.ALL)
BY_NAME: dict[str, pa.DataFrameSchema] = {s.name: s for s in ALL}


def schema_for(name: str) -> pa.DataFrameSchema:
    return BY_NAME[name]
