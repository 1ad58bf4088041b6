"""How a table becomes an asset: everything the ``@multi_asset`` of a table needs comes from its schema.

* key, group (the layer), owners, kinds, description, ``dagster/column_schema`` and ``dagster/column_lineage``;
* its layout for the IO manager (``partition_expr`` from the schema's ``day_column``, ``replace_key``,
  ``zorder_by``), and the daily partitions when it has a day column;
* its checks' specs (``defs/checks.py``), evaluated in the asset's own step.

Assets are thin wiring: a step computes its outputs with ``logic/`` functions, the IO manager writes them, then
the step yields its checks' results (:func:`emit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandera.pyspark as pa

from ecommerce_lake.defs.keys import key_of
from ecommerce_lake.defs.partitions import DAILY, SINGLE_RUN
from ecommerce_lake.platform.schema_meta import asset_metadata
from ecommerce_lake.schemas import day_column, layer_of, replace_key, zorder_by

if TYPE_CHECKING:
    from ecommerce_lake.defs.checks import TableChecks
    from ecommerce_lake.defs.resources import QualityResource
    from ecommerce_lake.platform.lake import LakeResource

KINDS = {"spark", "delta"}
OWNERS = {
    "raw": ["team:data-platform"],
    "refined": ["team:data-platform"],
    "curated": ["team:analytics-engineering"],
    "insights": ["team:analytics-engineering"],
    "ml": ["team:data-science"],
    "realtime": ["team:data-platform"],
    "ops": ["team:data-platform"],
}


def table_metadata(schema: pa.DataFrameSchema, **extra: Any) -> dict[str, Any]:
    """The asset's definition metadata: column schema and lineage, and the layout the IO manager follows."""
    layout = {"partition_expr": day_column(schema), "replace_key": replace_key(schema),
              "zorder_by": zorder_by(schema) or None}
    return asset_metadata(schema, **{k: v for k, v in layout.items() if v}, **extra)


def asset_kwargs(schema: pa.DataFrameSchema, **extra_metadata: Any) -> dict[str, Any]:
    """``@asset`` keyword arguments for the table ``schema`` describes (key, group, docs, schema metadata)."""
    layer = layer_of(schema)
    return {
        "key": key_of(schema),
        "group_name": layer,
        "description": schema.description,
        "metadata": table_metadata(schema, **extra_metadata),
        "kinds": KINDS,
        "owners": OWNERS.get(layer, ["team:data-platform"]),
    }


def asset_out(schema: pa.DataFrameSchema, kinds: set[str] | None = None, **extra_metadata: Any) -> dg.AssetOut:
    """The output of a table in a (subsettable) multi-asset: not required, since a run may select some of a
    step's tables, or only their checks."""
    kw = asset_kwargs(schema, **extra_metadata)
    return dg.AssetOut(
        key=kw["key"], group_name=kw["group_name"], description=kw["description"], metadata=kw["metadata"],
        kinds=kinds or kw["kinds"], owners=kw["owners"], is_required=False,
    )


def partitioning(*schemas: pa.DataFrameSchema) -> dict[str, Any]:
    """The partitions of a step writing ``schemas``: the daily ones when they have a day column (all of them or
    none), a run over a range of days being one run of the step."""
    days = [day_column(s) is not None for s in schemas]
    if any(days) and not all(days):
        raise ValueError(f"{', '.join(s.name for s in schemas)}: a step writes day-partitioned tables or none")
    return {"partitions_def": DAILY, "backfill_policy": SINGLE_RUN} if all(days) else {}


def table_asset(checks: TableChecks, *, kinds: set[str] | None = None, **extra_metadata: Any) -> dict[str, Any]:
    """``@multi_asset`` arguments of one table with its checks (use with :func:`emit`): the asset is subsettable,
    so a run may materialize it without its checks (``run --no-checks``) or evaluate its checks alone (the UI's
    "Execute checks")."""
    key = checks.key
    return {"name": "__".join(key.path), "outs": {key.path[1]: asset_out(checks.schema, kinds, **extra_metadata)},
            "check_specs": checks.specs, "can_subset": True, **partitioning(checks.schema)}


def selected(context: dg.AssetExecutionContext, *outputs: str) -> list[str]:
    """Which of a step's ``outputs`` the run materializes (a subset when the run selected only some)."""
    return [o for o in outputs if o in context.selected_output_names]


def require_together(context: dg.AssetExecutionContext, outputs: Sequence[str], why: str) -> bool:
    """For steps whose outputs must be written together (a batch is marked ingested only with every table of it):
    True when they are selected, False when none is (a run of their checks alone), a clear error for a part."""
    chosen = selected(context, *outputs)
    if chosen and len(chosen) < len(outputs):
        raise dg.Failure(f"{context.op_def.name} writes {', '.join(outputs)} together ({why}); the run selected only "
                         f"{', '.join(chosen)}. Select all of them, or none to evaluate their checks alone.")
    return bool(chosen)


def emit(context: dg.AssetExecutionContext, lake: LakeResource, quality: QualityResource,
         outputs: dict[str, Callable[[], Any]], checks: Sequence[TableChecks], **values: Any):
    """The body of a table step: write each selected output (``outputs``: name -> a function computing it, called
    only when selected), then evaluate the selected checks of ``checks`` on what was written."""
    from ecommerce_lake.defs.checks import evaluate_checks

    for name in selected(context, *outputs):
        value = outputs[name]()
        yield value if isinstance(value, dg.Output) else dg.Output(value, output_name=name)
    yield from evaluate_checks(context, lake, quality, checks, **values)
