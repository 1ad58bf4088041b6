"""From a pandera (pyspark) schema to everything derived from it.

A table's ``pandera.pyspark.DataFrameSchema`` is the single source of truth for its columns, types and
constraints. This module turns it into:

* the Dagster ``dagster/column_schema`` (:func:`table_schema`),
* the Dagster ``dagster/column_lineage`` from each column's ``metadata={"lineage": [...]}``
  (:func:`column_lineage`),
* a conformed DataFrame (columns selected and cast in schema order, :func:`conform`),
* asset-check results: one Spark aggregation evaluates every column rule, plus key uniqueness, with failing
  counts and sample failing keys (:func:`validate`),
* the data-dictionary entry in ``docs/tables.md`` (:func:`dictionary_markdown`).

Only pandera's built-in checks are supported, each compiled to a Spark SQL expression; an unsupported check
fails at import time rather than being silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    import pandera.pyspark as pa
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

SUPPORTED_CHECKS = {
    "equal_to", "not_equal_to", "greater_than", "greater_than_or_equal_to", "less_than",
    "less_than_or_equal_to", "in_range", "isin", "notin", "str_matches", "str_contains", "str_startswith",
    "str_endswith", "str_length",
}


def spark_type(column: pa.Column):
    return column.dtype.type


def type_string(column: pa.Column) -> str:
    return spark_type(column).simpleString()


def describe_check(check) -> str:
    stats = check.statistics or {}
    name = check.name
    if name == "isin":
        return "in {" + ", ".join(map(str, stats["allowed_values"])) + "}"
    if name == "notin":
        return "not in {" + ", ".join(map(str, stats["forbidden_values"])) + "}"
    symbols = {
        "greater_than": ">", "greater_than_or_equal_to": ">=", "less_than": "<",
        "less_than_or_equal_to": "<=", "equal_to": "==", "not_equal_to": "!=",
    }
    if name in symbols:
        (value,) = stats.values()
        return f"{symbols[name]} {value}"
    if name == "in_range":
        lo = "[" if stats.get("include_min", True) else "("
        hi = "]" if stats.get("include_max", True) else ")"
        return f"in {lo}{stats['min_value']}, {stats['max_value']}{hi}"
    if name == "str_matches":
        return f"matches /{stats['pattern']}/"
    if name == "str_length":
        return f"length in [{stats.get('min_value')}, {stats.get('max_value')}]"
    return f"{name}({', '.join(f'{k}={v}' for k, v in stats.items())})"


def _assert_supported(schema: pa.DataFrameSchema) -> None:
    for name, column in schema.columns.items():
        for check in column.checks:
            if check.name not in SUPPORTED_CHECKS:
                raise ValueError(f"{schema.name}.{name}: check {check.name!r} cannot be compiled to Spark SQL")


# ---- Dagster metadata ---------------------------------------------------------------------------
def table_schema(schema: pa.DataFrameSchema) -> dg.TableSchema:
    _assert_supported(schema)
    unique = set(schema.unique or []) if schema.unique and len(schema.unique) == 1 else set()
    columns = []
    for name, column in schema.columns.items():
        other = [describe_check(c) for c in column.checks]
        if schema.unique and name in schema.unique and len(schema.unique) > 1:
            other.append("part of key (" + ", ".join(schema.unique) + ")")
        tags = {}
        if (column.metadata or {}).get("pii"):
            tags["pii"] = str(column.metadata["pii"])
        columns.append(
            dg.TableColumn(
                name=name,
                type=type_string(column),
                description=column.description,
                constraints=dg.TableColumnConstraints(
                    nullable=bool(column.nullable), unique=name in unique, other=other
                ),
                tags=tags or None,
            )
        )
    constraints = None
    if schema.unique:
        constraints = dg.TableConstraints(other=["unique key: (" + ", ".join(schema.unique) + ")"])
    return dg.TableSchema(columns=columns, constraints=constraints)


def column_lineage(schema: pa.DataFrameSchema) -> dg.TableColumnLineage | None:
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for name, column in schema.columns.items():
        for ref in (column.metadata or {}).get("lineage", []):
            layer, table, source_column = ref.split(".")
            deps.setdefault(name, []).append(dg.TableColumnDep(dg.AssetKey([layer, table]), source_column))
    return dg.TableColumnLineage(deps_by_column=deps) if deps else None


def asset_metadata(schema: pa.DataFrameSchema, **extra: Any) -> dict[str, Any]:
    """Static definition metadata for an asset whose output follows ``schema``."""
    md: dict[str, Any] = {"dagster/column_schema": table_schema(schema), "dagster/table_name": schema.name}
    lineage = column_lineage(schema)
    if lineage is not None:
        md["dagster/column_lineage"] = lineage
    if schema.unique:
        md["lake/key"] = list(schema.unique)
    md.update(extra)
    return md


def dataframe_table_schema(spark_schema: StructType, declared: dg.TableSchema | None = None) -> dg.TableSchema:
    """The schema actually written, with descriptions and constraints from the declared schema."""
    by_name = {c.name: c for c in (declared.columns if declared else [])}
    columns = []
    for f in spark_schema.fields:
        d = by_name.get(f.name)
        columns.append(
            dg.TableColumn(
                name=f.name,
                type=f.dataType.simpleString(),
                description=d.description if d else None,
                constraints=d.constraints if d else dg.TableColumnConstraints(nullable=f.nullable),
                tags=d.tags if d else None,
            )
        )
    return dg.TableSchema(columns=columns, constraints=declared.constraints if declared else None)


def column_shape(schema: dg.TableSchema | StructType) -> list[tuple[str, str]]:
    """(name, Spark type) of each column, in order: what "the same schema" means when the IO manager compares the
    written schema with the declared one, and the lake the new one with the previous version's."""
    if isinstance(schema, dg.TableSchema):
        return [(c.name, c.type) for c in schema.columns]
    return [(f.name, f.dataType.simpleString()) for f in schema.fields]


# ---- DataFrame helpers --------------------------------------------------------------------------
def struct_type(schema: pa.DataFrameSchema):
    """The Spark StructType of a schema (column order as declared)."""
    from pyspark.sql import types as T

    return T.StructType(
        [T.StructField(n, spark_type(c), bool(c.nullable)) for n, c in schema.columns.items()]
    )


def conform(df: DataFrame, schema: pa.DataFrameSchema) -> DataFrame:
    """Select the schema's columns in order, cast to the declared types. Missing columns are an error."""
    from pyspark.sql import functions as F

    missing = [c for c in schema.columns if c not in df.columns]
    if missing:
        raise ValueError(f"{schema.name}: the transformation did not produce columns {missing}")
    return df.select(*[F.col(n).cast(spark_type(c)).alias(n) for n, c in schema.columns.items()])


def _fail_expr(col: Column, check) -> Column:
    from pyspark.sql import functions as F

    s = check.statistics or {}
    n = check.name
    if n == "greater_than":
        e = col <= F.lit(s["min_value"])
    elif n == "greater_than_or_equal_to":
        e = col < F.lit(s["min_value"])
    elif n == "less_than":
        e = col >= F.lit(s["max_value"])
    elif n == "less_than_or_equal_to":
        e = col > F.lit(s["max_value"])
    elif n == "equal_to":
        e = col != F.lit(s["value"])
    elif n == "not_equal_to":
        e = col == F.lit(s["value"])
    elif n == "isin":
        e = ~col.isin(list(s["allowed_values"]))
    elif n == "notin":
        e = col.isin(list(s["forbidden_values"]))
    elif n == "in_range":
        lo = col < F.lit(s["min_value"]) if s.get("include_min", True) else col <= F.lit(s["min_value"])
        hi = col > F.lit(s["max_value"]) if s.get("include_max", True) else col >= F.lit(s["max_value"])
        e = lo | hi
    elif n == "str_matches":
        pattern = s["pattern"] if str(s["pattern"]).startswith("^") else "^" + str(s["pattern"])
        e = ~col.rlike(pattern)
    elif n == "str_contains":
        e = ~col.rlike(str(s["pattern"]))
    elif n == "str_startswith":
        e = ~col.startswith(s["string"])
    elif n == "str_endswith":
        e = ~col.endswith(s["string"])
    elif n == "str_length":
        length = F.length(col)
        e = F.lit(False)
        if s.get("min_value") is not None:
            e = e | (length < s["min_value"])
        if s.get("max_value") is not None:
            e = e | (length > s["max_value"])
    else:  # pragma: no cover - guarded by _assert_supported
        raise ValueError(f"unsupported check {n}")
    return F.coalesce(e, F.lit(False))  # nulls are the nullable rule's business


@dataclass
class RuleResult:
    rule: str
    column: str | None
    failures: int
    samples: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failures == 0


@dataclass
class ValidationReport:
    table: str
    rows: int
    columns_ok: bool
    column_problems: list[str]
    rules: list[RuleResult]

    def by_kind(self, kind: str) -> list[RuleResult]:
        return [r for r in self.rules if r.rule.split(":")[0] == kind]


def validate(
    df: DataFrame, schema: pa.DataFrameSchema, sample_size: int = 5, key_scope: DataFrame | None = None,
    narrow: bool = True,
) -> ValidationReport:
    """Evaluate every rule of ``schema`` on ``df`` in one aggregation.

    Key uniqueness is evaluated on ``key_scope`` when given (e.g. the whole table, when ``df`` holds only the
    partitions just written: a key must be unique across partitions too), else in the same aggregation; on the
    rows of ``key_scope`` that share a key with ``df`` (``narrow``: a big table), or on all of it (a small one).
    """
    from pyspark.sql import functions as F

    from ecommerce_lake.platform.frames import release, semi_join_keys

    _assert_supported(schema)
    problems: list[str] = []
    actual = {f.name: f.dataType for f in df.schema.fields}
    for name, column in schema.columns.items():
        if name not in actual:
            problems.append(f"missing column {name} ({type_string(column)})")
        elif actual[name] != spark_type(column):
            problems.append(f"column {name} is {actual[name].simpleString()}, schema says {type_string(column)}")
    extra = [c for c in actual if c not in schema.columns]
    if extra:
        problems.append(f"unexpected columns {extra}")

    rules: list[tuple[str, str, Column]] = []
    for name, column in schema.columns.items():
        if name not in actual:
            continue
        c = F.col(name)
        if not column.nullable:
            rules.append((f"not_null:{name}", name, c.isNull()))
        for check in column.checks:
            rules.append((f"{check.name}:{name}", name, _fail_expr(c, check)))
    key = [k for k in (schema.unique or []) if k in actual]
    held: list[DataFrame] = []  # the checked keys, kept while the key check runs
    try:
        aggs = [F.count(F.lit(1)).alias("__rows")]
        aggs += [F.sum(F.when(expr, 1).otherwise(0)).alias(f"r{i}") for i, (_, _, expr) in enumerate(rules)]
        if key and key_scope is None:  # rows minus distinct keys = rows that repeat a key
            aggs.append(F.count_distinct(F.struct(*[F.col(k) for k in key])).alias("__keys"))
        row = df.agg(*aggs).collect()[0]  # one Spark job evaluates every rule
        rows = int(row["__rows"])
        key_df, key_rows, distinct_keys = df, rows, row["__keys"] if key and key_scope is None else None
        if key and key_scope is not None:
            # rows of the whole table sharing a key with the checked rows (a key must be unique across partitions)
            # (the checked keys are computed first: Spark then broadcasts a few days' keys instead of shuffling
            # the whole table)
            key_df = semi_join_keys(key_scope.select(*key), df, key, held) if narrow else key_scope.select(*key)
            krow = key_df.agg(F.count(F.lit(1)).alias("n"),
                              F.count_distinct(F.struct(*[F.col(k) for k in key])).alias("d")).collect()[0]
            key_rows, distinct_keys = int(krow["n"]), krow["d"]
        results: list[RuleResult] = []
        for i, (rule, column_name, expr) in enumerate(rules):
            failures = int(row[f"r{i}"] or 0)
            samples: list[dict] = []
            if failures:
                shown = list(dict.fromkeys([*key, column_name]))
                samples = [r.asDict() for r in df.where(expr).select(*shown).limit(sample_size).collect()]
            results.append(RuleResult(rule, column_name, failures, _jsonable(samples)))
        if key:
            repeated = key_rows - int(distinct_keys)
            samples = []
            if repeated:
                dup = key_df.groupBy(*key).count().where(F.col("count") > 1)
                samples = [r.asDict() for r in dup.orderBy(F.col("count").desc()).limit(sample_size).collect()]
            results.append(RuleResult("unique_key:" + ",".join(key), None, repeated, _jsonable(samples)))
    finally:
        release(held)
    return ValidationReport(schema.name, rows, not problems, problems, results)


def _jsonable(rows: Iterable[dict]) -> list[dict]:
    out = []
    for r in rows:
        out.append({k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in r.items()})
    return out


# ---- data dictionary ----------------------------------------------------------------------------
def dictionary_markdown(schema: pa.DataFrameSchema) -> str:
    lines = [f"### `{schema.name}`", ""]
    if schema.description:
        lines += [schema.description.strip(), ""]
    if schema.unique:
        lines += [f"Key: ({', '.join(schema.unique)})", ""]
    lines += ["| column | type | nullable | rules | description |", "|---|---|---|---|---|"]
    for name, column in schema.columns.items():
        rules = "; ".join(describe_check(c) for c in column.checks)
        desc = (column.description or "").replace("|", "\\|")
        lineage = (column.metadata or {}).get("lineage")
        if lineage:
            desc += f" (from {', '.join(lineage)})"
        lines.append(
            f"| `{name}` | {type_string(column)} | {'yes' if column.nullable else 'no'} | "
            f"{rules.replace('|', chr(92) + '|')} | {desc} |"
        )
    return "\n".join(lines) + "\n"
