"""Every table's asset key, from its schema (``<layer>.<table>`` -> ``AssetKey([layer, table])``): the key drives
the table's path (``<lake_root>/<layer>/<table>``) and catalog name, so nothing else names a table."""

from __future__ import annotations

import dagster as dg
import pandera.pyspark as pa

from ecommerce_lake.schemas import curated, insights, layer_of, ml, ops, raw, realtime, refined, table_of


def key_of(schema: pa.DataFrameSchema) -> dg.AssetKey:
    return dg.AssetKey([layer_of(schema), table_of(schema)])


def _keys(schemas) -> dict[str, dg.AssetKey]:
    return {table_of(s): key_of(s) for s in schemas}


RAW_KEYS = _keys(raw.ALL)
REFINED_KEYS = _keys(refined.ALL)
CURATED_KEYS = _keys(curated.ALL)
ML_KEYS = _keys(ml.ALL)
OPS_KEYS = _keys(ops.ALL)
REALTIME_KEYS = _keys(realtime.ALL)
INSIGHTS_KEYS = _keys(insights.ALL)

# not a table: the forecast model, a version of a registered MLflow model per training (platform/models.py)
FORECAST_MODEL = dg.AssetKey(["ml", "forecast_model"])
