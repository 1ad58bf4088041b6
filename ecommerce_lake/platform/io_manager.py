"""Typed Delta IO manager for PySpark DataFrames.

Asset definition metadata it understands (all optional):

``partition_expr``  SQL expression (usually a column) holding the partition value of a row. Required for
                    partitioned assets; the IO manager builds Delta ``replaceWhere`` from it so a run rewrites
                    only its own partition(s) – a single partition or a backfill range in one run.
``partition_by``    list of columns for physical Delta partitioning (``partitionBy``).
``zorder_by``       list of columns the Delta maintenance asset (``ops/delta_maintenance``) Z-orders the table by
                    (``OPTIMIZE ... ZORDER BY``); writes do not Z-order (a daily maintenance run does).
``replace_key``     column for append-style assets: the write replaces only rows whose ``replace_key`` value
                    occurs in the output (e.g. ``_batch_id`` for raw tables: re-ingesting a batch is a no-op
                    change, other batches are untouched). An asset that knows those values returns
                    ``Replacing(df, values)`` instead of ``df`` and saves the IO manager a pass over the output.

Input metadata (``AssetIn(metadata={"columns": [...]})``) selects columns on load.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ecommerce_lake.platform.lake import MONTH_COLUMN, LakeError, LakeResource, WriteResult, catalog_name
from ecommerce_lake.platform.spark_metrics import performance_metadata
from ecommerce_lake.platform.schema_meta import column_shape, dataframe_table_schema


if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# What every partition's materialization of a multi-partition write records (see DeltaIOManager._record)
PER_PARTITION_METADATA = frozenset({"dagster/table_name", "dagster/uri", "delta/version", "lake/schema_as_declared",
                                    "lake/partitions_written"})
SHOWN_PREDICATE_CHARS = 300  # longer replaceWhere predicates are shortened in materialization metadata


@dataclass(frozen=True)
class Replacing:
    """An output of a ``replace_key`` asset with the key values it replaces (e.g. the batches being ingested).

    The values travel with the output, not in its Output metadata: Dagster copies an Output's metadata into every
    partition's materialization, which made a two-year build store the list of 730 batch ids 2,190 times."""

    frame: DataFrame
    values: Sequence[str]


def _is_spark_dataframe(obj: Any) -> bool:
    from pyspark.sql import DataFrame

    return isinstance(obj, DataFrame)


def _sql_literal(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def partition_predicate(
    partition_expr: str,
    partitions_def: dg.PartitionsDefinition | None,
    time_window: dg.TimeWindow | None,
    partition_keys: Sequence[str],
) -> str:
    """The SQL predicate selecting exactly the given partition(s) of ``partition_expr``."""
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition) and time_window is not None:
        fmt = "%Y-%m-%d" if partitions_def.fmt == "%Y-%m-%d" else "%Y-%m-%d %H:%M:%S"
        start = time_window.start.strftime(fmt)
        end = time_window.end.strftime(fmt)
        return f"({partition_expr} >= {_sql_literal(start)} AND {partition_expr} < {_sql_literal(end)})"
    if not partition_keys:
        raise LakeError("no partition keys to build a predicate from")
    keys = ", ".join(_sql_literal(k) for k in sorted(partition_keys))
    return f"({partition_expr} IN ({keys}))"


class DeltaIOManager(dg.ConfigurableIOManager):
    """Stores PySpark DataFrames as Delta tables at ``<lake_root>/<layer>/<table>``."""

    lake: LakeResource

    # ---- output -------------------------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        asset_key = context.asset_key
        name = asset_key.to_user_string()
        announced = None
        if isinstance(obj, Replacing):
            obj, announced = obj.frame, list(obj.values)
        if not _is_spark_dataframe(obj):
            raise dg.DagsterTypeCheckDidNotPass(
                f"asset {name!r} returned {type(obj).__module__}.{type(obj).__qualname__}; the Delta IO manager "
                "stores only pyspark.sql.DataFrame outputs"
            )
        meta = context.definition_metadata or {}
        partition_expr = meta.get("partition_expr")
        partition_by = list(meta.get("partition_by") or [])
        replace_key = meta.get("replace_key")

        predicates: list[str] = []
        partitions_written: list[str] = []
        if context.has_asset_partitions:
            if not partition_expr:
                raise LakeError(
                    f"asset {name!r} is partitioned but has no 'partition_expr' metadata; refusing to overwrite "
                    "the whole table for a partitioned run"
                )
            time_window = None
            if isinstance(context.asset_partitions_def, dg.TimeWindowPartitionsDefinition):
                time_window = context.asset_partitions_time_window
                if not partition_by:  # physical layout: one directory per month of the partition column
                    obj = obj.withColumn(MONTH_COLUMN, F.trunc(F.col(partition_expr), "month"))
                    partition_by = [MONTH_COLUMN]
            partitions_written = list(context.asset_partition_keys)
            predicates.append(partition_predicate(
                partition_expr, context.asset_partitions_def, time_window, partitions_written
            ))
        if replace_key:
            values = announced
            if values is None:  # not announced by the asset: find them (one extra pass over the output)
                values = [r[0] for r in obj.select(replace_key).distinct().collect() if r[0] is not None]
            values = sorted(str(v) for v in values)
            if not values and self.lake.exists(asset_key):
                context.log.info(f"{name}: nothing new to write (no {replace_key} values); table unchanged")
                self._record_unchanged(context)
                return
            if not values:  # the first run found nothing to ingest: the table is created empty, so that what
                # reads it downstream sees no rows instead of failing on a missing table
                context.log.info(f"{name}: nothing to write yet (no {replace_key} values); created empty")
            else:
                predicates.append(partition_predicate(replace_key, None, None, values))
            if not context.has_asset_partitions:
                partitions_written = values
        replace_where = " AND ".join(predicates) if predicates else None

        result = self.lake.write(
            obj,
            asset_key,
            replace_where=replace_where,
            partition_by=partition_by,
            commit_info={"run_id": context.run_id, "asset": name, "partitions": len(partitions_written)},
        )
        context.log.info(
            f"{name}: wrote {'an unreported number of' if result.rows is None else result.rows} rows in "
            f"{'?' if result.files is None else result.files} files to {result.uri} "
            f"(Delta version {result.version}, {result.seconds:.1f} s"
            + (f", replaceWhere {printable(summarized(replace_where))}" if replace_where else ", full overwrite")
            + ")"
        )
        md = self._metadata(context, obj, result, partitions_written)
        md.update(performance_metadata(context, self.lake.session(), result.rows or 0))
        self._record(context, md, partitions_written)

    @staticmethod
    def _record(context: dg.OutputContext, md: dict[str, Any], partitions_written: list[str]) -> None:
        """Attach the write's metadata to its materializations. A write of several partitions (a backfill range,
        730 days in a two-year build) yields one materialization per partition: each gets what identifies the
        write (PER_PARTITION_METADATA); the write's figures (rows, bytes, files, timings, Spark metrics, the
        predicate) go once, on its last partition – they describe the write, not a partition, and repeating them
        cost a full build thousands of copies in the event log."""
        if context.has_asset_partitions and len(partitions_written) > 1:
            try:
                step = context.step_context
            except dg.DagsterInvariantViolationError:  # outside a run step: every partition gets everything
                step = None
            if step is not None:
                last = partitions_written[-1]
                step.add_asset_metadata({k: v for k, v in md.items() if k not in PER_PARTITION_METADATA},
                                        asset_key=context.asset_key, partition_key=last)
                md = {k: v for k, v in md.items() if k in PER_PARTITION_METADATA}
                md["lake/write_figures_on_partition"] = last
        context.add_output_metadata(md)

    def _metadata(
        self, context: dg.OutputContext, obj, result: WriteResult, partitions_written: list[str]
    ) -> dict[str, Any]:
        declared = (context.definition_metadata or {}).get("dagster/column_schema")
        written = T.StructType([f for f in obj.schema.fields if f.name != MONTH_COLUMN])  # as readers see it
        actual = dataframe_table_schema(written, declared)
        as_declared = declared is not None and column_shape(actual) == column_shape(declared)
        md: dict[str, Any] = {
            "lake/schema_as_declared": dg.MetadataValue.bool(as_declared),
            "dagster/table_name": result.table_name,
            "dagster/uri": dg.MetadataValue.path(result.uri),
            "delta/version": dg.MetadataValue.int(result.version),
            "delta/operation": result.operation,
            "lake/files_written": dg.MetadataValue.int(result.files or 0),
            "lake/bytes_written": dg.MetadataValue.int(result.bytes or 0),
            "lake/write_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
            "lake/schema_changed": dg.MetadataValue.bool(result.schema_changed),
        }
        if not as_declared:
            # The written columns, when the asset declares none or they differ from the declared ones; otherwise
            # the declared schema (the asset's definition metadata) is the schema, and the materialization – one
            # per partition, 730 for a two-year build – does not repeat it.
            md["dagster/column_schema"] = actual
        if result.rows is not None:  # unknown stays unknown rather than a false 0
            md["dagster/row_count"] = dg.MetadataValue.int(result.rows)
        if result.replace_where:
            md["lake/replace_where"] = _shortened(result.replace_where)
        if partitions_written:
            shown = partitions_written if len(partitions_written) <= 50 else [
                partitions_written[0], "...", partitions_written[-1]]
            md["lake/partitions_written"] = dg.MetadataValue.json(
                {"count": len(partitions_written), "keys": shown}
            )
        if result.previous_version is not None:
            md["delta/previous_version"] = dg.MetadataValue.int(result.previous_version)
        if result.previous_rows is not None:
            md["lake/previous_row_count"] = dg.MetadataValue.int(result.previous_rows)
        return md

    def _record_unchanged(self, context: dg.OutputContext) -> None:
        version = self.lake.current_version(context.asset_key)
        md: dict[str, Any] = {
            "dagster/table_name": catalog_name(context.asset_key),
            "dagster/uri": dg.MetadataValue.path(self.lake.table_uri(context.asset_key)),
            "lake/unchanged": True,
        }
        if version is not None:
            md["delta/version"] = dg.MetadataValue.int(version)
            self.lake.register_soon(context.asset_key)
        context.add_output_metadata(md)

    # ---- input --------------------------------------------------------------------------------
    def load_input(self, context: dg.InputContext):
        asset_key = context.asset_key
        name = asset_key.to_user_string()
        typing_type = getattr(context.dagster_type, "typing_type", Any)
        if typing_type not in (Any, object) and not _is_dataframe_type(typing_type):
            consumer = context.op_def.name if context.op_def else "?"
            raise dg.DagsterTypeCheckDidNotPass(
                f"input {context.name!r} of {consumer!r} (asset {name!r}) is annotated as {typing_type!r}; the "
                "Delta IO manager loads only pyspark.sql.DataFrame inputs"
            )
        meta = context.definition_metadata or {}
        columns = meta.get("columns")
        where = None
        upstream_meta = (context.upstream_output.definition_metadata or {}) if context.upstream_output else {}
        partition_expr = upstream_meta.get("partition_expr")
        if context.has_asset_partitions and partition_expr:
            time_window = None
            if isinstance(context.asset_partitions_def, dg.TimeWindowPartitionsDefinition):
                time_window = context.asset_partitions_time_window
            where = partition_predicate(
                partition_expr, context.asset_partitions_def, time_window, list(context.asset_partition_keys)
            )
        df = self.lake.read(asset_key, columns=columns, where=where)
        context.log.debug(f"loaded {name} from {self.lake.table_uri(asset_key)}" + (f" where {where}" if where else ""))
        return df


_IN_LIST = re.compile(r"IN \(((?:'(?:[^'\\]|\\.)*'(?:, )?){6,})\)")


def printable(text: str) -> str:
    """``text`` with control and other non-printable characters escaped (a batch id may hold them)."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def summarized(predicate: str) -> str:
    """The predicate with long ``IN (...)`` lists said as their count and range: a two-year build replaces 730
    batches, and the log line should not list them (the Delta commit keeps the whole predicate)."""
    def say(match: re.Match) -> str:
        values = re.findall(r"'((?:[^'\\]|\\.)*)'", match.group(1))
        return f"IN ({len(values)} values, '{min(values)}' .. '{max(values)}')"

    return _IN_LIST.sub(say, predicate)


def _shortened(predicate: str) -> str:
    """The predicate as materialization metadata: whole when short; else its start and length (the Delta commit's
    ``operationParameters.predicate`` keeps it whole). It is repeated in every partition's materialization."""
    predicate = summarized(predicate)
    if len(predicate) <= SHOWN_PREDICATE_CHARS:
        return predicate
    return (f"{predicate[:SHOWN_PREDICATE_CHARS]} … ({len(predicate):,} characters in all; in full in the Delta "
            "commit's operationParameters.predicate)")


def _is_dataframe_type(tp) -> bool:
    from pyspark.sql import DataFrame

    try:
        return isinstance(tp, type) and issubclass(tp, DataFrame)
    except TypeError:
        return False
