"""The benchmark's plain-PySpark baseline builds the same lake as the assets (the figures live in
docs/performance.md)."""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from ecommerce_lake_tests import oracle

EXE = Path(sys.executable).parent / "ecommerce-lake"


def test_bench_scales_reports_figures_and_ratios(tmp_path, spark, settings):
    """`bench --scales` at one tiny scale (800 lines over 3 days) (each scale costs four lake builds, here on the test session's engine:
    the figures' code paths, not cold costs): per-asset figures, the ratios of the same run, and the
    plain-PySpark baseline builds the same curated facts as the assets."""
    out, keep = tmp_path / "bench.json", tmp_path / "kept"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home"), "TMPDIR": str(tmp_path)}
    proc = subprocess.run([str(EXE), "bench", "--scales", "800", "--days", "3", "--no-ml", "--output", str(out),
                           "--keep", str(keep), "--engine", settings.spark_remote, "--end-date", "2025-11-30"],
                          env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["scales"]) == {"800"}
    assert report["machine"]["cpus"] == os.cpu_count()
    for lines, entry in report["scales"].items():
        full = entry["full"]
        assert full["wall_seconds"] > 0 and full["peak_rss_mb"] > 50  # the client's (the engine is not the bench's)
        # the full build holds every order line of the landing batches except the held-back last day (counted
        # from the files: the days are not evenly filled, e.g. a held-back Black Friday holds 3x a normal day)
        landed = sum((keep / lines / "landing" / b / "order_items.csv").read_text().count("\n") - 1
                     for b in os.listdir(keep / lines / "landing") if b != entry["held_back_batch"])
        assert entry["order_lines"] == landed and abs(landed - int(lines)) <= 0.6 * int(lines)
        assert entry["full_rows_per_second"] == round(entry["order_lines"] / full["wall_seconds"])
        steps = entry["per_asset"]
        assert {"raw_ingest_sales", "refine_sales"} <= set(steps)
        # rows written by the step: orders + lines + payments (about 2.5 per line), each output counted once
        # although a range run records a materialization per day partition
        assert entry["order_lines"] < steps["raw_ingest_sales"]["rows"] < 3 * entry["order_lines"]
        assert "ml" not in entry  # --no-ml
    reference = report["scales"]["800"]  # the scale closest to 1M is the reference for the overhead ratio
    ratios = report["ratios"]
    assert reference["plain_pyspark_seconds"] > 0  # JSON figures are rounded to 0.1 s, the ratio is not
    assert abs(ratios["orchestration_overhead"]
               - reference["dagster_no_checks_seconds"] / reference["plain_pyspark_seconds"]) < 0.02
    # one new day on the largest scale, against that scale's full rebuild: both through one engine of its own
    assert reference["incremental"]["wall_seconds"] > 0
    assert reference["incremental"]["executed_by"] == f"the engine (warm JVM), attached at {settings.spark_remote}"
    assert {"raw_ingest_sales", "refine_sales"} <= set(reference["incremental"]["per_asset"])
    assert abs(ratios["incremental_vs_full"] - reference["incremental"]["wall_seconds"]
               / reference["full"]["wall_seconds"]) < 0.01
    assert ratios["scaling"] is None and "1,000,000" in ratios["scaling_note"]  # needs 1M and a larger scale
    assert report["targets"] == {"orchestration_overhead": 1.15, "incremental_vs_full": 0.10, "scaling": 1.2}
    assert "ratio orchestration_overhead" in proc.stdout and "raw_ingest_sales" in proc.stdout

    # the plain-PySpark baseline (built before the held-back day arrived) holds the same facts as the landing
    held = reference["held_back_batch"]
    landing = tmp_path / "landing_without_held_day"
    shutil.copytree(keep / "800" / "landing", landing, ignore=lambda d, names: [n for n in names if n == held])
    expected = oracle.expected_fact_sales(oracle.read_landing(landing), dt.datetime.now(dt.UTC))
    fact = spark.read.format("delta").load(str(keep / "800" / "plain" / "lake" / "curated" / "fact_sales"))
    rows = fact.select("order_id", "line_number", "net_revenue_kes").collect()
    assert len(rows) == len(expected)
    assert sum((r["net_revenue_kes"] for r in rows), Decimal(0)) == sum(expected["net_revenue_kes"], Decimal(0))

    # the lake the engine built (the full rebuild, then the held-back day, as two clients of one JVM) holds the
    # facts of every landing batch, the held-back day's included
    expected = oracle.expected_fact_sales(oracle.read_landing(keep / "800" / "landing"), dt.datetime.now(dt.UTC))
    fact = spark.read.format("delta").load(str(keep / "800" / "lake" / "curated" / "fact_sales"))
    rows = fact.select("order_id", "line_number", "net_revenue_kes").collect()
    assert len(rows) == len(expected)
    assert sum((r["net_revenue_kes"] for r in rows), Decimal(0)) == sum(expected["net_revenue_kes"], Decimal(0))
