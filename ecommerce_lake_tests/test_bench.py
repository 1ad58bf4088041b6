"""The benchmark's plain-PySpark baseline builds the same lake as the assets (the figures live in
docs/performance.md)."""

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from ecommerce_lake.generator.generate import GeneratorConfig, generate
from ecommerce_lake_tests import oracle

EXE = Path(sys.executable).parent / "ecommerce-lake"


def test_plain_build_makes_the_same_curated_tables(tmp_path, spark):
    generate(GeneratorConfig(out=tmp_path / "landing", seed=3, days=6, customers=200, products=20, lines=1200,
                             end_date=dt.date(2025, 11, 30)))
    env = {**os.environ, "ECOMMERCE_LAKE_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    proc = subprocess.run([str(EXE), "plain-build", "--report", str(tmp_path / "plain.json")], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "plain.json").read_text())
    assert report["seconds"] > 0 and "curated/fact_sales" in report["tables"]
    expected = oracle.expected_fact_sales(oracle.read_landing(tmp_path / "landing"), dt.datetime.now(dt.UTC))
    fact = spark.read.format("delta").load(str(tmp_path / "lake" / "curated" / "fact_sales"))
    rows = fact.select("order_id", "line_number", "net_revenue_kes").collect()
    assert len(rows) == len(expected)
    assert sum((r["net_revenue_kes"] for r in rows), Decimal(0)) == sum(expected["net_revenue_kes"], Decimal(0))
