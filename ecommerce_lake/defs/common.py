"""What every lake asset and table check shares: keys, metadata, owners, kinds and schema-driven checks."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandera.pyspark as pa

from ecommerce_lake.platform.frames import release, semi_join_keys
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.platform.schema_meta import asset_metadata, validate

KINDS = {"spark", "delta"}
OWNERS = {
    "raw": ["team:data-platform"],
    "refined": ["team:data-platform"],
    "curated": ["team:analytics-engineering"],
    "ml": ["team:data-science"],
    "ops": ["team:data-platform"],
}


def key_of(schema: pa.DataFrameSchema) -> dg.AssetKey:
    return dg.AssetKey(schema.name.split("."))


def asset_kwargs(schema: pa.DataFrameSchema, **extra_metadata: Any) -> dict[str, Any]:
    """``@asset`` keyword arguments for the table ``schema`` describes (key, group, docs, schema metadata)."""
    layer = schema.name.split(".")[0]
    return {
        "key": key_of(schema),
        "group_name": layer,
        "description": schema.description,
        "metadata": asset_metadata(schema, **extra_metadata),
        "kinds": KINDS,
        "owners": OWNERS[layer],
    }


def asset_out(schema: pa.DataFrameSchema, **extra_metadata: Any) -> dg.AssetOut:
    kw = asset_kwargs(schema, **extra_metadata)
    return dg.AssetOut(
        key=kw["key"], group_name=kw["group_name"], description=kw["description"], metadata=kw["metadata"],
        kinds=kw["kinds"], owners=kw["owners"],
    )


class QualityResource(dg.ConfigurableResource):
    """Thresholds of the warning checks (ECOMMERCE_LAKE_UNKNOWN_COUNTY_WARN_SHARE, ..._ROW_COUNT_CHANGE_WARN_RATIO,
    ..._SEGMENT_CHANGE_WARN_SHARE)."""

    unknown_county_warn_share: float = 0.05
    row_count_change_warn_ratio: float = 0.5
    segment_change_warn_share: float = 0.2


@dataclass(frozen=True)
class CheckEnv:
    """What a table check function gets."""

    context: dg.AssetCheckExecutionContext
    lake: LakeResource
    quality: QualityResource
    held: list = field(default_factory=list)  # DataFrames kept for the step, released when its checks are done

    def scope(self, column: str) -> str | None:
        """Predicate on ``column`` selecting the partitions of this run (None outside a partitioned run)."""
        return scope_predicate(self.context, column)

    def read(self, key: dg.AssetKey, column: str | None = None, columns: Sequence[str] | None = None):
        """A table, restricted to this run's partitions when ``column`` (its partition column) is given."""
        where = self.scope(column) if column else None
        return self.lake.read(key, columns=columns, where=where)

    def matching(self, table, keys, on: Sequence[str], column: str | None):
        """``table`` restricted to rows whose ``on`` columns occur in ``keys``, when this run checks some
        partitions of a table partitioned by ``column``; ``table`` unchanged otherwise. Use it where only those
        rows can join with ``keys``: the keys of a few days are computed first, so Spark broadcasts them and
        filters ``table`` as it reads it, instead of shuffling a whole table to join it with a few days."""
        if self.scope(column) is None:
            return table
        return semi_join_keys(table, keys, on, self.held)


@dataclass(frozen=True)
class ExtraCheck:
    """A table-specific check evaluated in the table's check step, after the schema-derived checks."""

    name: str
    description: str
    fn: Callable[[CheckEnv], dg.AssetCheckResult]
    blocking: bool = False
    additional_deps: Sequence[dg.AssetKey] = ()


def scope_predicate(context: dg.AssetCheckExecutionContext, partition_expr: str | None) -> str | None:
    """For a time-partitioned table checked in a partitioned run: the predicate selecting the run's partitions."""
    if not partition_expr or not context.has_partition_key_range:
        return None
    window = context.partition_time_window
    return (f"({partition_expr} >= '{window.start.date().isoformat()}' AND "
            f"{partition_expr} < '{window.end.date().isoformat()}')")


def table_checks(
    schema: pa.DataFrameSchema, blocking: bool, extra: Sequence[ExtraCheck] = (), partition_expr: str | None = None
) -> dg.AssetChecksDefinition:
    """Every check of one table, evaluated in one step (one pass over the table for the schema checks).

    Schema-derived (from the pandera schema, blocking when ``blocking``):
    ``columns_match_schema`` (names and Spark types), ``not_null`` (non-nullable columns), ``unique_key``
    (the schema's ``unique`` key), ``value_rules`` (every column check); and ``row_count_change`` (warning:
    rows now against the previous evaluation). Then the table's ``extra`` checks.

    For a time-partitioned table (``partition_expr``) checked in a partitioned run, the value rules look at the
    run's partitions only (cost in proportion to the new data); key uniqueness still covers the whole table
    (the rows of the whole table that share a key with the run's rows).
    """
    key = key_of(schema)
    has_rules = any(c.checks for c in schema.columns.values())
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
    specs = [
        dg.AssetCheckSpec("columns_match_schema", asset=key, blocking=blocking,
                          description="Column names and types equal the table's pandera schema."),
        dg.AssetCheckSpec("not_null", asset=key, blocking=blocking,
                          description="Non-nullable columns of the schema hold no nulls."),
    ]
    if schema.unique:
        specs.append(dg.AssetCheckSpec("unique_key", asset=key, blocking=blocking,
                                       description=f"No two rows share the key ({', '.join(schema.unique)})."))
    if has_rules:
        specs.append(dg.AssetCheckSpec("value_rules", asset=key, blocking=blocking,
                                       description="Every value satisfies the schema's column checks."))
    specs.append(dg.AssetCheckSpec(
        "row_count_change", asset=key, blocking=False,
        description="Rows now against the previous evaluation; warns when the change exceeds the configured "
                    "ratio (ECOMMERCE_LAKE_ROW_COUNT_CHANGE_WARN_RATIO)."))
    for e in extra:
        specs.append(dg.AssetCheckSpec(e.name, asset=key, blocking=e.blocking, description=e.description,
                                       additional_deps=list(e.additional_deps)))

    @dg.multi_asset_check(specs=specs, name=f"{key.path[0]}_{key.path[1]}_checks",
                          description=f"Checks of {schema.name}.")
    def _checks(context: dg.AssetCheckExecutionContext, lake: LakeResource, quality: QualityResource):
        table = lake.read(key)
        where = scope_predicate(context, partition_expr)
        df = table.where(where) if where else table
        report = validate(df, schema, key_scope=table if where else None)
        table_rows = table.count() if where else report.rows  # Delta answers count(*) from its log
        yield dg.AssetCheckResult(
            check_name="columns_match_schema", asset_key=key, passed=report.columns_ok, severity=severity,
            metadata={"problems": dg.MetadataValue.json(report.column_problems), "rows": report.rows,
                      "scope": where or "whole table"},
        )
        groups = {
            "not_null": [r for r in report.rules if r.rule.startswith("not_null:")],
            "unique_key": [r for r in report.rules if r.rule.startswith("unique_key:")],
            "value_rules": [r for r in report.rules if not r.rule.startswith(("not_null:", "unique_key:"))],
        }
        for name, results in groups.items():
            if name == "unique_key" and not schema.unique or name == "value_rules" and not has_rules:
                continue
            failing = [r for r in results if not r.passed]
            metadata: dict[str, Any] = {
                "rows": report.rows,
                "failing_rows": sum(r.failures for r in failing),
                "rules_evaluated": len(results),
            }
            for r in failing[:20]:
                metadata[f"failed/{r.rule}"] = r.failures
                metadata[f"sample/{r.rule}"] = dg.MetadataValue.json(r.samples)
            yield dg.AssetCheckResult(check_name=name, asset_key=key, passed=not failing, severity=severity,
                                      metadata=metadata)
        yield _row_count_change(context, key, table_rows, quality.row_count_change_warn_ratio)
        env = CheckEnv(context, lake, quality)
        try:
            for e in extra:
                result = e.fn(env)
                yield dg.AssetCheckResult(
                    check_name=e.name, asset_key=key, passed=result.passed, metadata=result.metadata,
                    severity=dg.AssetCheckSeverity.ERROR if e.blocking else dg.AssetCheckSeverity.WARN,
                )
        finally:
            release(env.held)

    return _checks


def _row_count_change(
    context: dg.AssetCheckExecutionContext, key: dg.AssetKey, rows: int, warn_ratio: float
) -> dg.AssetCheckResult:
    """Compare with the row count recorded by the previous evaluation of this check (no Spark work)."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

    history = context.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, "row_count_change"), limit=5, status={Status.SUCCEEDED, Status.FAILED}
    )
    previous = None
    for record in history:
        if record.run_id != context.run.run_id and record.evaluation is not None:
            previous = getattr(record.evaluation.metadata.get("rows"), "value", None)
            break
    metadata: dict[str, Any] = {"rows": rows, "warn_ratio": dg.MetadataValue.float(warn_ratio)}
    if previous is None:
        metadata["note"] = "first evaluation: nothing to compare with"
        return dg.AssetCheckResult(check_name="row_count_change", asset_key=key, passed=True, metadata=metadata,
                                   severity=dg.AssetCheckSeverity.WARN)
    change = (rows - previous) / previous if previous else (0.0 if rows == 0 else 1.0)
    metadata.update({"previous_rows": int(previous), "change_ratio": dg.MetadataValue.float(round(change, 4))})
    return dg.AssetCheckResult(check_name="row_count_change", asset_key=key, passed=abs(change) <= warn_ratio,
                               severity=dg.AssetCheckSeverity.WARN, metadata=metadata)
