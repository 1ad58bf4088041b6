"""From a table's pandera (pyspark) schema to its Dagster metadata.

A table's ``pandera.pyspark.DataFrameSchema`` (``ecommerce_lake/schemas/``) is the single source of truth for its
columns, types and constraints. This module turns it into the Dagster ``dagster/column_schema``
(:func:`table_schema`) and ``dagster/column_lineage`` (from each column's ``metadata={"lineage": [...]}``,
:func:`column_lineage`), and compares written Spark schemas with the declared one. The same schema gives the
Spark types and rules (``schemas/spark.py``), the schema checks (``logic/validation.py``) and the data dictionary
(``schemas/dictionary.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg

from ecommerce_lake.schemas.spark import assert_supported, describe_check, type_string

if TYPE_CHECKING:
    import pandera.pyspark as pa
    from pyspark.sql.types import StructType


def table_schema(schema: pa.DataFrameSchema) -> dg.TableSchema:
    assert_supported(schema)
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


