"""Delta maintenance on real Delta tables: OPTIMIZE compacts small files (Z-ordered where the asset asks for it),
VACUUM removes unreferenced files older than the retention and keeps everything younger, and the figures it
records are the ones on disk."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ecommerce_lake.defs.resources import MaintenanceConfig

EXE = Path(sys.executable).parent / "ecommerce-lake"


def _run_maintenance(home: Path) -> dict:
    """``ecommerce-lake run --select group:ops`` in its own process (its own lake root, so its own Spark
    session); returns the run report."""
    env = {**os.environ, "ECOMMERCE_LAKE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    (home / "dagster_home").mkdir(exist_ok=True)
    report = home / "report.json"
    proc = subprocess.run([str(EXE), "run", "--select", "group:ops", "--report", str(report)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "vacuumed" in proc.stderr + proc.stdout  # the per-table progress lines
    return json.loads(report.read_text())


def _data_files(table: Path) -> set[str]:
    return {p.name for p in table.glob("*.parquet")}


@pytest.fixture
def small_lake(tmp_path, spark):
    """Two lake tables written in many small appends, and an orphan data file in one of them backdated 8 days."""
    root = tmp_path / "lake"
    for i in range(5):
        spark.createDataFrame([(f"c{i}-{j}", f"name {j}") for j in range(20)], "customer_id string, full_name string") \
            .coalesce(1).write.format("delta").mode("append").save(str(root / "raw" / "customers"))
    for i in range(4):
        spark.createDataFrame([(c, f"p{i}", c * 10 + i) for c in range(1, 48)],
                              "county_code int, product_id string, units long") \
            .coalesce(1).write.format("delta").mode("append").save(str(root / "curated" / "top_products_by_county"))
    orphan = root / "raw" / "customers" / "part-00000-orphan-from-a-killed-write.snappy.parquet"
    orphan.write_bytes(b"x" * 4104)
    old = time.time() - 8 * 24 * 3600
    os.utime(orphan, (old, old))
    young = root / "raw" / "customers" / "part-00000-young-orphan.snappy.parquet"
    young.write_bytes(b"y" * 100)
    return tmp_path, root, orphan, young


def test_optimize_and_vacuum(small_lake, spark):
    home, root, orphan, young = small_lake
    customers_before = _data_files(root / "raw" / "customers")
    rows_before = spark.read.format("delta").load(str(root / "raw" / "customers")).count()
    report = _run_maintenance(home)
    assert report["materialized"] == {"ops/delta_maintenance": 2}
    assert not report["failed_blocking_checks"] and not report["warnings"]

    # VACUUM: the 8-day-old orphan is gone, the young one (inside the 168 h retention) stays
    assert not orphan.exists()
    assert young.exists()
    # OPTIMIZE: raw.customers went from 5 small files to 1, same rows; the replaced files are still on disk
    # (younger than the retention, so time travel to the previous version keeps working)
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{root / 'raw' / 'customers'}`").collect()[0]
    assert detail["numFiles"] == 1
    assert spark.read.format("delta").load(str(root / "raw" / "customers")).count() == rows_before == 100
    assert spark.read.format("delta").option("versionAsOf", 4).load(str(root / "raw" / "customers")).count() == 100
    assert customers_before - {orphan.name, young.name} <= _data_files(root / "raw" / "customers")
    # Z-order where the asset asks for it (curated.top_products_by_county has zorder_by county_code)
    history = spark.sql(f"DESCRIBE HISTORY delta.`{root / 'curated' / 'top_products_by_county'}`") \
        .where("operation = 'OPTIMIZE'").collect()
    assert [(h["operation"], h["operationParameters"]["zOrderBy"]) for h in history] == [
        ("OPTIMIZE", '["county_code"]')]

    # the asset's own table tells the same story (its metadata sums these rows)
    table = spark.read.format("delta").load(str(root / "ops" / "delta_maintenance"))
    by_table = {r["table_name"]: r for r in table.collect()}
    assert set(by_table) == {"raw.customers", "curated.top_products_by_county"}
    assert by_table["raw.customers"]["files_before"] == 5 and by_table["raw.customers"]["files_vacuumed"] == 1
    assert by_table["raw.customers"]["bytes_vacuumed"] == 4104
    assert list(by_table["curated.top_products_by_county"]["zorder_by"]) == ["county_code"]
    # ... and so does the numeric materialization metadata the UI plots
    instance = dg.DagsterInstance.from_config(str(home / "dagster_home"))
    event = instance.get_latest_materialization_event(dg.AssetKey(["ops", "delta_maintenance"]))
    meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert meta["tables"] == 2
    assert meta["maintenance/files_compacted"] == 5 + 4
    assert meta["maintenance/files_after"] == 2
    assert meta["maintenance/files_vacuumed"] == 1 and meta["maintenance/bytes_vacuumed"] == 4104


def test_retention_below_a_week_is_refused(monkeypatch):
    from ecommerce_lake.settings import ConfigError

    monkeypatch.setenv("ECOMMERCE_LAKE_VACUUM_RETENTION_HOURS", "24")
    with pytest.raises(ConfigError, match="ECOMMERCE_LAKE_VACUUM_RETENTION_HOURS='24': .*greater than or equal to 168"):
        MaintenanceConfig.from_env()
