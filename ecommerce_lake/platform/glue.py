"""Register the lake's Delta tables in the AWS Glue Data Catalog, so Athena (and any Glue-aware engine) can query
them under ``<prefix>_<layer>.<table>``: a database per layer, and per table an external table at the table's
S3 location with ``table_type=DELTA`` (what Athena's ``CREATE EXTERNAL TABLE ... TBLPROPERTIES ('table_type' =
'DELTA')`` registers: Athena reads the schema and the files from the Delta log), the columns from the table's
schema (for the Glue console, Lake Formation and crawlers), and the Parquet SerDe with the ``path`` parameter that
Spark's Glue integration reads.

Idempotent: a table already registered as it should be is left alone, one that differs is updated, a missing one
is created; only tables that exist in the lake are registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ecommerce_lake.schemas import ALL, layer_of, table_of
from ecommerce_lake.schemas.spark import spark_type

PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_IN = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"


class GlueError(RuntimeError):
    pass


@dataclass
class SyncReport:
    databases_created: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # tables not (yet) in the lake


def database_name(prefix: str, layer: str) -> str:
    return f"{prefix}_{layer}".lower()


def table_input(schema, location: str) -> dict:
    """The Glue ``TableInput`` of a lake table at ``location`` (s3://...)."""
    columns = [{"Name": name, "Type": spark_type(col).simpleString(),
                "Comment": (col.description or "")[:255]} for name, col in schema.columns.items()]
    return {
        "Name": table_of(schema),
        "Description": (schema.description or "")[:2048],
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", "table_type": "DELTA", "classification": "delta",
                       "spark.sql.sources.provider": "delta", "ecommerce_lake.table": schema.name},
        "StorageDescriptor": {
            "Columns": columns, "Location": location,
            "InputFormat": PARQUET_IN, "OutputFormat": PARQUET_OUT,
            "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"path": location}},
        },
    }


def _same(current: dict, wanted: dict) -> bool:
    sd, want_sd = current.get("StorageDescriptor", {}), wanted["StorageDescriptor"]
    return (current.get("TableType") == wanted["TableType"]
            and current.get("Description", "") == wanted["Description"]
            and all(current.get("Parameters", {}).get(k) == v for k, v in wanted["Parameters"].items())
            and sd.get("Location") == want_sd["Location"]
            and [(c["Name"], c["Type"]) for c in sd.get("Columns", [])]
            == [(c["Name"], c["Type"]) for c in want_sd["Columns"]]
            and sd.get("SerdeInfo", {}).get("Parameters", {}).get("path") == want_sd["Location"])


def sync(glue, lake_root: str, exists, prefix: str, progress=print) -> SyncReport:
    """Register every table of the lake at ``lake_root`` (``s3a://bucket/prefix``) that ``exists(layer, table)``
    in Glue (``glue``: a boto3 Glue client)."""
    if not lake_root.startswith(("s3a://", "s3://")):
        raise GlueError(f"the AWS Glue catalog registers tables on S3; the lake root is {lake_root!r} "
                        "(set ECOMMERCE_LAKE_ROOT=s3a://bucket/prefix)")
    base = "s3://" + lake_root.split("://", 1)[1].rstrip("/")
    report = SyncReport()
    databases: set[str] = set()
    for schema in ALL:
        layer, table = layer_of(schema), table_of(schema)
        if not exists(layer, table):
            report.absent.append(schema.name)
            continue
        database = database_name(prefix, layer)
        if database not in databases:
            try:
                glue.get_database(Name=database)
            except glue.exceptions.EntityNotFoundException:
                glue.create_database(DatabaseInput={
                    "Name": database, "Description": f"ecommerce_lake: the {layer} layer (Delta tables)",
                    "LocationUri": f"{base}/{layer}"})
                report.databases_created.append(database)
                progress(f"glue: created database {database}")
            databases.add(database)
        wanted = table_input(schema, f"{base}/{layer}/{table}")
        name = f"{database}.{table}"
        try:
            current = glue.get_table(DatabaseName=database, Name=table)["Table"]
        except glue.exceptions.EntityNotFoundException:
            glue.create_table(DatabaseName=database, TableInput=wanted)
            report.created.append(name)
            progress(f"glue: registered {name} -> {wanted['StorageDescriptor']['Location']}")
            continue
        if _same(current, wanted):
            report.unchanged.append(name)
        else:
            glue.update_table(DatabaseName=database, TableInput=wanted)
            report.updated.append(name)
            progress(f"glue: updated {name}")
    return report
