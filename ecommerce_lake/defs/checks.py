"""The checks of a table, declared on its asset and evaluated in the asset's own step.

Each table's checks are its schema's (``TableChecks``: columns and types, not-null, unique key, value rules, in
one Spark aggregation; and ``row_count_change``) plus the table's own (``TableCheck``: a function of a
:class:`CheckContext` returning a ``dg.AssetCheckResult``, declared with :func:`table_check` beside its assets in
``defs/<layer>/checks.py``), each with its severity: ``ERROR`` checks block what is downstream, ``WARN`` checks
say so and let it run.

Why not Dagster's ``@asset_check``: each would be a step of its own, with its own Spark work and hand-over; on the
tiny lake of the issue that measured it, the checks' steps were 74 s of a 181.8 s build (docs/performance.md).
Declared as ``check_specs`` of the asset, they run right after the IO manager wrote the table, in the same step,
several at once (``CHECK_THREADS``), and Dagster records each as it would an ``@asset_check``'s.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandera.pyspark as pa

from ecommerce_lake.defs.keys import key_of
from ecommerce_lake.defs.resources import QualityResource
from ecommerce_lake.logic.frames import Held, semi_join_keys
from ecommerce_lake.logic.validation import validate
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.schemas import day_column, encrypted_columns

ERROR = dg.AssetCheckSeverity.ERROR  # blocking: a failure stops what is downstream
WARN = dg.AssetCheckSeverity.WARN  # a warning: downstream runs


@dataclass(frozen=True)
class CheckContext:
    """What a table check gets: the step's context (the asset's own step: its output is already written), the
    lake, the thresholds, and what the step knows already (``values``, e.g. a simulation's result)."""

    context: dg.AssetExecutionContext
    lake: LakeResource
    quality: QualityResource
    held: Held = field(default_factory=Held)  # DataFrames kept for the step, released when its checks are done
    values: dict = field(default_factory=dict)

    def scope(self, column: str) -> str | None:
        """Predicate on ``column`` selecting the partitions of this run (None outside a partitioned run)."""
        return scope_predicate(self.context, column)

    def read(self, key: dg.AssetKey, column: str | None = None, columns: Sequence[str] | None = None):
        """A table, restricted to this run's partitions when ``column`` (its partition column) is given."""
        where = self.scope(column) if column else None
        return self.lake.read(key, columns=columns, where=where)

    def matching(self, key: dg.AssetKey, keys, on: Sequence[str], column: str | None,
                 columns: Sequence[str] | None = None):
        """Table ``key`` (its ``columns``) restricted to rows whose ``on`` columns occur in ``keys``, when this run
        checks some partitions of a table partitioned by ``column`` and table ``key`` is big; the whole table
        otherwise. Use it where only those rows can join with ``keys``: the keys of a few days are computed first,
        so Spark broadcasts them and filters the table as it reads it, instead of shuffling a whole table to join
        it with a few days. A small table is joined whole: narrowing it would cost more Spark jobs than it saves."""
        table = self.lake.read(key, columns=columns)
        if self.scope(column) is None or self.lake.is_small(key):
            return table
        return semi_join_keys(table, keys, on, self.held)


@dataclass(frozen=True)
class TableCheck:
    """A check of one table, evaluated in the table's step after its schema checks: ``fn`` returns the result
    (``passed`` and metadata); the check's name, table and severity are filled in."""

    name: str
    description: str
    fn: Callable[[CheckContext], dg.AssetCheckResult]
    severity: dg.AssetCheckSeverity = ERROR

    @property
    def blocking(self) -> bool:
        return self.severity == ERROR


def table_check(name: str, description: str, severity: dg.AssetCheckSeverity = ERROR):
    """Declare a function of a :class:`CheckContext` as a :class:`TableCheck` (``@table_check(...)``)."""
    def declare(fn: Callable[[CheckContext], dg.AssetCheckResult]) -> TableCheck:
        return TableCheck(name, description, fn, severity)

    return declare


def scope_predicate(context, partition_expr: str | None) -> str | None:
    """For a time-partitioned table checked in a partitioned run: the predicate selecting the run's partitions."""
    if not partition_expr or not context.has_partition_key_range:
        return None
    window = context.partition_time_window
    return (f"({partition_expr} >= '{window.start.date().isoformat()}' AND "
            f"{partition_expr} < '{window.end.date().isoformat()}')")


class TableChecks:
    """Every check of one table, declared on its asset (``check_specs``) and evaluated in the asset's own step,
    right after the IO manager wrote it: no step (and no Spark session hand-over) of their own, and one pass over
    the written rows for the schema checks.

    Schema-derived (from the pandera schema, blocking when ``blocking``):
    ``columns_match_schema`` (names and Spark types), ``not_null`` (non-nullable columns), ``unique_key``
    (the schema's ``unique`` key), ``value_rules`` (every column check); and ``row_count_change`` (warning:
    rows now against the previous evaluation). Then the table's own ``checks``.

    For a day-partitioned table (the schema's ``day_column``) written in a partitioned run, the value rules look at the
    run's partitions only (cost in proportion to the new data); key uniqueness still covers the whole table
    (the rows of the whole table that share a key with the run's rows). A blocking check that fails fails the
    step once every check of it was evaluated: the table stays written (as before the check), and nothing
    downstream runs.
    """

    def __init__(self, schema: pa.DataFrameSchema, checks: Sequence[TableCheck] = (), blocking: bool = True):
        self.key = key_of(schema)
        if encrypted_columns(schema):  # a table holding personal values checks that they are encrypted
            checks = (*checks, personal_data_encrypted(self.key, encrypted_columns(schema)))
        self.schema, self.blocking, self.extra = schema, blocking, tuple(checks)
        self.partition_expr = day_column(schema)
        self.has_rules = any(c.checks for c in schema.columns.values())
        key = self.key
        specs = [
            dg.AssetCheckSpec("columns_match_schema", asset=key, blocking=blocking,
                              description="Column names and types equal the table's pandera schema."),
            dg.AssetCheckSpec("not_null", asset=key, blocking=blocking,
                              description="Non-nullable columns of the schema hold no nulls."),
        ]
        if schema.unique:
            specs.append(dg.AssetCheckSpec("unique_key", asset=key, blocking=blocking,
                                           description=f"No two rows share the key ({', '.join(schema.unique)})."))
        if self.has_rules:
            specs.append(dg.AssetCheckSpec("value_rules", asset=key, blocking=blocking,
                                           description="Every value satisfies the schema's column checks."))
        specs.append(dg.AssetCheckSpec(
            "row_count_change", asset=key, blocking=False,
            description="Rows now against the previous evaluation; warns when the change exceeds the configured "
                        "ratio (ECOMMERCE_LAKE_ROW_COUNT_CHANGE_WARN_RATIO)."))
        for e in self.extra:
            specs.append(dg.AssetCheckSpec(e.name, asset=key, blocking=e.blocking, description=e.description))
        self.specs = specs

    def _selected(self, context: dg.AssetExecutionContext) -> set[str]:
        selected = context.selected_asset_check_keys
        return {k.name for k in selected if k.asset_key == self.key}

    def evaluate(self, context: dg.AssetExecutionContext, lake: LakeResource, quality: QualityResource,
                 **values: Any) -> Iterator[dg.AssetCheckResult]:
        """The results of this table's selected checks (none when the run deselected them: ``--no-checks``)."""
        yield from evaluate_checks(context, lake, quality, [self], **values)

    def tasks(self, context: dg.AssetExecutionContext, lake: LakeResource, quality: QualityResource,
              values: dict) -> tuple[list[Callable[[], list[dg.AssetCheckResult]]], CheckContext | None]:
        """The selected checks as independent pieces of work (each a list of results): the schema checks (one
        pass over the written rows), then each extra check. Their shared environment is released after all."""
        wanted = self._selected(context)
        if not wanted:
            return [], None
        key = self.key
        if not lake.exists(key):  # nothing was ever written (e.g. no inventory snapshot delivered yet)
            context.log.info(f"{self.schema.name}: no table yet (nothing written); its checks have nothing to check")
            return [lambda: [dg.AssetCheckResult(check_name=name, asset_key=key, passed=True,
                                                 metadata={"note": "no table yet: nothing has been written"})
                             for name in sorted(wanted)]], None
        env = CheckContext(context, lake, quality, values=values)
        work: list[Callable[[], list[dg.AssetCheckResult]]] = []
        if wanted & {"columns_match_schema", "not_null", "unique_key", "value_rules", "row_count_change"}:
            work.append(lambda: [r for r in self._schema_checks(context, lake, quality) if r.check_name in wanted])
        for e in self.extra:
            if e.name in wanted:
                work.append(lambda e=e: [self._extra(e, env)])
        return work, env

    def _extra(self, e: TableCheck, env: CheckContext) -> dg.AssetCheckResult:
        result = e.fn(env)
        return dg.AssetCheckResult(check_name=e.name, asset_key=self.key, passed=result.passed,
                                   metadata=result.metadata, severity=e.severity)

    def _schema_checks(self, context: dg.AssetExecutionContext, lake: LakeResource,
                       quality: QualityResource) -> list[dg.AssetCheckResult]:
        schema, key = self.schema, self.key
        severity = ERROR if self.blocking else WARN
        table = lake.read(key)
        where = scope_predicate(context, self.partition_expr)
        df = table.where(where) if where else table
        report = validate(df, schema, key_scope=table if where else None, narrow=not lake.is_small(key))
        table_rows = (lake.row_count(key) or 0) if where else report.rows  # from the Delta log: no Spark job
        results = [dg.AssetCheckResult(
            check_name="columns_match_schema", asset_key=key, passed=report.columns_ok, severity=severity,
            metadata={"problems": dg.MetadataValue.json(report.column_problems), "rows": report.rows,
                      "scope": where or "whole table"},
        )]
        groups = {
            "not_null": [r for r in report.rules if r.rule.startswith("not_null:")],
            "unique_key": [r for r in report.rules if r.rule.startswith("unique_key:")],
            "value_rules": [r for r in report.rules if not r.rule.startswith(("not_null:", "unique_key:"))],
        }
        for name, rules in groups.items():
            if name == "unique_key" and not schema.unique or name == "value_rules" and not self.has_rules:
                continue
            failing = [r for r in rules if not r.passed]
            metadata: dict[str, Any] = {
                "rows": report.rows,
                "failing_rows": sum(r.failures for r in failing),
                "rules_evaluated": len(rules),
            }
            for r in failing[:20]:
                metadata[f"failed/{r.rule}"] = r.failures
                metadata[f"sample/{r.rule}"] = dg.MetadataValue.json(r.samples)
            results.append(dg.AssetCheckResult(check_name=name, asset_key=key, passed=not failing,
                                               severity=severity, metadata=metadata))
        results.append(_row_count_change(context, key, table_rows, quality.row_count_change_warn_ratio))
        return results


def personal_data_encrypted(key: dg.AssetKey, columns: Sequence[str]) -> TableCheck:
    """Every personal value of the table is encrypted, with a key version the privacy keyring holds and has not
    retired. The step that wrote the table passes its ``privacy_keys`` resource (``values``)."""

    @table_check("personal_data_encrypted", "Every personal value (" + ", ".join(columns) + ") is encrypted "
                 "(k<version>:<base64 AES-GCM>) with a key of the privacy keyring that is not retired; the metadata "
                 "counts the values per key version.")
    def check(ctx: CheckContext) -> dg.AssetCheckResult:
        from ecommerce_lake.logic.refined.refine import key_version_counts

        ring = ctx.values["privacy_keys"].keyring()
        counts = key_version_counts(ctx.lake.read(key), columns)
        plain = counts.pop(-1, 0)
        retired = {v: n for v, n in counts.items() if v in ring.retired}
        unknown = {v: n for v, n in counts.items() if v not in ring.versions}
        return dg.AssetCheckResult(passed=not plain and not retired and not unknown, metadata={
            "values": sum(counts.values()) + plain,
            "not_encrypted": plain,
            "by_key_version": dg.MetadataValue.json({f"k{v}": n for v, n in sorted(counts.items())}),
            "under_retired_keys": dg.MetadataValue.json({f"k{v}": n for v, n in sorted(retired.items())}),
            "under_unknown_keys": dg.MetadataValue.json({f"k{v}": n for v, n in sorted(unknown.items())}),
            "active_key": f"k{ring.active.version}",
        })

    return check


CHECK_THREADS = 4  # checks of a step evaluated at once: each is a few small Spark queries, latency-bound


def evaluate_checks(context: dg.AssetExecutionContext, lake: LakeResource, quality: QualityResource,
                    checks: Sequence[TableChecks], **values: Any) -> Iterator[dg.AssetCheckResult]:
    """Every selected check of ``checks`` (tables written by this step), evaluated concurrently: on small data a
    check is a few Spark queries that wait on planning more than they compute, so several in flight keep the
    engine busy. Results are yielded table by table, in declaration order."""
    started = time.monotonic()
    plans = [(c, *c.tasks(context, lake, quality, values)) for c in checks]
    work = [(i, fn) for i, (_, fns, _) in enumerate(plans) for fn in fns]
    if not work:
        return
    results: dict[int, list[dg.AssetCheckResult]] = {i: [] for i in range(len(plans))}
    took: list[tuple[float, str]] = []  # (seconds, which checks): the slowest are named in the log

    def timed(i: int, fn: Callable[[], list[dg.AssetCheckResult]]) -> list[dg.AssetCheckResult]:
        t = time.monotonic()
        out = fn()
        names = "+".join(r.check_name for r in out) or "-"
        took.append((time.monotonic() - t, f"{plans[i][0].schema.name}:{names}"))
        return out

    try:
        if len(work) == 1:
            results[work[0][0]] = timed(*work[0])
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=CHECK_THREADS,
                                                       thread_name_prefix="checks") as pool:
                futures = [(i, pool.submit(timed, i, fn)) for i, fn in work]
                for i, future in futures:
                    results[i].extend(future.result())
    finally:
        for _, _, env in plans:
            if env is not None:
                env.held.release()
    for i, (c, _, _) in enumerate(plans):
        order = {spec.name: n for n, spec in enumerate(c.specs)}
        table_results = sorted(results[i], key=lambda r: order.get(r.check_name, len(order)))
        failed = [r.check_name for r in table_results if not r.passed]
        if table_results:
            context.log.info(f"{c.schema.name}: {len(table_results)} checks"
                             + (f"; not passing: {', '.join(failed)}" if failed else ", all passed"))
        yield from table_results
    slowest = ", ".join(f"{what} {seconds:.1f} s" for seconds, what in sorted(took, reverse=True)[:3])
    context.log.info(f"checks of {len(plans)} table(s) in {time.monotonic() - started:.1f} s (slowest: {slowest})")


def _row_count_change(
    context: dg.AssetExecutionContext, key: dg.AssetKey, rows: int, warn_ratio: float
) -> dg.AssetCheckResult:
    """Compare with the row count recorded by the previous evaluation of this check (no Spark work). The history
    holds this run's own planned evaluation too, and evaluations that never completed (a run killed, or running
    now beside this one: only planned): the latest of another run with a result is the previous one."""
    history = context.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, "row_count_change"), limit=10)
    previous = None
    for record in history:
        if record.run_id != context.run.run_id and isinstance(record.evaluation, dg.AssetCheckEvaluation):
            previous = getattr(record.evaluation.metadata.get("rows"), "value", None)
            break
    metadata: dict[str, Any] = {"rows": rows, "warn_ratio": dg.MetadataValue.float(warn_ratio)}
    if previous is None:
        metadata["note"] = "first evaluation: nothing to compare with"
        return dg.AssetCheckResult(check_name="row_count_change", asset_key=key, passed=True, metadata=metadata,
                                   severity=WARN)
    change = (rows - previous) / previous if previous else (0.0 if rows == 0 else 1.0)
    metadata.update({"previous_rows": int(previous), "change_ratio": dg.MetadataValue.float(round(change, 4))})
    return dg.AssetCheckResult(check_name="row_count_change", asset_key=key, passed=abs(change) <= warn_ratio,
                               severity=WARN, metadata=metadata)
