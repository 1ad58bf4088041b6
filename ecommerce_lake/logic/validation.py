"""Every rule of a table's schema evaluated on a DataFrame in one Spark aggregation (the schema-derived asset
checks: columns and types, not-null, value rules, key uniqueness), with failing counts and sample failing keys."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ecommerce_lake.schemas.spark import assert_supported, fail_expr, spark_type, type_string

if TYPE_CHECKING:
    import pandera.pyspark as pa
    from pyspark.sql import Column, DataFrame


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

    from ecommerce_lake.logic.frames import Held, semi_join_keys

    assert_supported(schema)
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
            rules.append((f"{check.name}:{name}", name, fail_expr(c, check)))
    key = [k for k in (schema.unique or []) if k in actual]
    with Held() as held:  # the checked keys, kept while the key check runs
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
    return ValidationReport(schema.name, rows, not problems, problems, results)


def _jsonable(rows: Iterable[dict]) -> list[dict]:
    out = []
    for r in rows:
        out.append({k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in r.items()})
    return out


