"""The ops group: Delta maintenance as a scheduled asset, and the record of failed runs.

* ``ops/delta_maintenance``: OPTIMIZE every lake table (Z-ordered by its schema's ``zorder_by``), then VACUUM with
  a safe retention (at least 7 days, so no reader or time-travel query of the last week loses files). Daily at
  01:30 Nairobi (``defs/automation.py``).
* ``ops/run_failures``: one observation per failed run, recorded by the ``run_failure_recorder`` sensor.
"""

import datetime as dt
import time

import dagster as dg

from ecommerce_lake.defs.checks import TableChecks
from ecommerce_lake.defs.keys import OPS_KEYS
from ecommerce_lake.defs.resources import MIN_RETENTION_HOURS, MaintenanceConfig, QualityResource
from ecommerce_lake.defs.tables import asset_kwargs, emit, table_asset
from ecommerce_lake.platform.lake import LakeResource, catalog_name
from ecommerce_lake.schemas import ops as schemas
from ecommerce_lake.schemas import BY_NAME

MAINTENANCE_KEY = OPS_KEYS["delta_maintenance"]
RUN_FAILURES = dg.AssetKey(["ops", "run_failures"])
CHECKS = TableChecks(schemas.delta_maintenance)


def _file_sizes(spark, paths: list[str]) -> int:
    """Sum of the sizes of ``paths`` (local disk and S3A alike), read by Spark's binaryFile source: it lists
    the files' lengths without reading their content."""
    if not paths:
        return 0
    from pyspark.sql import functions as F

    total = spark.read.format("binaryFile").load(paths).select(F.sum("length")).collect()[0][0]
    return int(total or 0)


def maintain_table(lake: LakeResource, key: dg.AssetKey, zorder_by: list[str], retention_hours: int) -> dict:
    spark = lake.session()
    started = time.monotonic()
    files_before = int(lake.detail(key)["numFiles"])
    metrics = lake.optimize(key, zorder_by=zorder_by)
    removed = metrics.get("filesRemoved") or {}
    doomed = lake.vacuum(key, retention_hours, dry_run=True)
    doomed_bytes = _file_sizes(spark, doomed)
    lake.vacuum(key, retention_hours)
    files_after = int(lake.detail(key)["numFiles"])
    return {
        "table_name": catalog_name(key),
        "zorder_by": list(zorder_by),
        "files_before": files_before,
        "files_after": files_after,
        "files_compacted": int(metrics.get("numFilesRemoved") or 0),
        "files_added": int(metrics.get("numFilesAdded") or 0),
        "bytes_compacted": int(removed.get("totalSize") or 0),
        "files_vacuumed": len(doomed),
        "bytes_vacuumed": doomed_bytes,
        "retention_hours": retention_hours,
        "seconds": round(time.monotonic() - started, 3),
        "maintained_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
    }


def build_maintenance(assets: list[dg.AssetsDefinition]) -> dg.AssetsDefinition:
    """The maintenance asset for the Delta tables of ``assets`` (those stored by the Delta IO manager)."""
    tables: dict[dg.AssetKey, list[str]] = {}
    for asset in assets:
        for spec in asset.specs:
            # the Delta tables (a schema each); not the dashboard (a file), realtime (the stream compacts its own)
            if spec.key.path[0] in ("raw", "refined", "curated", "insights", "ml") \
                    and ".".join(spec.key.path) in BY_NAME:
                tables[spec.key] = list((spec.metadata or {}).get("zorder_by") or [])

    @dg.multi_asset(**table_asset(CHECKS), deps=sorted(tables, key=lambda k: k.to_user_string()))
    def delta_maintenance(context: dg.AssetExecutionContext, lake: LakeResource, maintenance: MaintenanceConfig,
                          quality: QualityResource):
        yield from emit(context, lake, quality, {"delta_maintenance": lambda: _maintain(context, lake, maintenance)},
                        [CHECKS])

    def _maintain(context: dg.AssetExecutionContext, lake: LakeResource, maintenance: MaintenanceConfig):
        if maintenance.retention_hours < MIN_RETENTION_HOURS:
            raise dg.Failure(f"VACUUM retention {maintenance.retention_hours} h is below the safe minimum of "
                             f"{MIN_RETENTION_HOURS} h (ECOMMERCE_LAKE_VACUUM_RETENTION_HOURS)")
        rows = []
        for key in sorted(tables, key=lambda k: k.to_user_string()):
            if not lake.exists(key):
                continue
            row = maintain_table(lake, key, tables[key], maintenance.retention_hours)
            context.log.info(
                f"{row['table_name']}: {row['files_before']} -> {row['files_after']} files (compacted "
                f"{row['files_compacted']}{', Z-order ' + ','.join(row['zorder_by']) if row['zorder_by'] else ''}), "
                f"vacuumed {row['files_vacuumed']} files / {row['bytes_vacuumed']:,} bytes in {row['seconds']:.1f} s")
            rows.append(row)
        spark = lake.session()
        from ecommerce_lake.schemas.spark import conform, struct_type

        df = spark.createDataFrame(rows, struct_type(schemas.delta_maintenance))
        return dg.Output(conform(df, schemas.delta_maintenance), output_name="delta_maintenance", metadata={
            "tables": len(rows),
            "maintenance/files_compacted": sum(r["files_compacted"] for r in rows),
            "maintenance/bytes_compacted": sum(r["bytes_compacted"] for r in rows),
            "maintenance/files_vacuumed": sum(r["files_vacuumed"] for r in rows),
            "maintenance/bytes_vacuumed": sum(r["bytes_vacuumed"] for r in rows),
            "maintenance/files_before": sum(r["files_before"] for r in rows),
            "maintenance/files_after": sum(r["files_after"] for r in rows),
            "retention_hours": maintenance.retention_hours,
        })

    return delta_maintenance


run_failures = dg.AssetSpec(
    RUN_FAILURES,
    group_name="ops",
    kinds={"dagster"},
    owners=["team:data-platform"],
    description="Failed runs of this code location, one observation per failure (recorded by the "
    "run_failure_recorder sensor): job, run, batch, partitions, failed steps and the error.",
)


privacy_audit = dg.AssetSpec(**{**asset_kwargs(schemas.privacy_audit), "kinds": {"delta"}})
