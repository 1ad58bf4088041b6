"""A table's pandera (pyspark) schema as Spark sees it: types, the rules compiled to Spark SQL, conforming a
DataFrame to it. No Dagster here (``platform/schema_meta.py`` turns schemas into Dagster metadata).

Only pandera's built-in checks are supported, each compiled to a Spark SQL expression (:func:`fail_expr`); an
unsupported check fails when the schema is first used rather than being silently ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandera.pyspark as pa
    from pyspark.sql import Column, DataFrame

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


def assert_supported(schema: pa.DataFrameSchema) -> None:
    for name, column in schema.columns.items():
        for check in column.checks:
            if check.name not in SUPPORTED_CHECKS:
                raise ValueError(f"{schema.name}.{name}: check {check.name!r} cannot be compiled to Spark SQL")


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


def fail_expr(col: Column, check) -> Column:
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
    else:  # pragma: no cover - guarded by assert_supported
        raise ValueError(f"unsupported check {n}")
    return F.coalesce(e, F.lit(False))  # nulls are the nullable rule's business


