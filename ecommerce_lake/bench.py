"""Benchmarks that print figures (``ecommerce-lake bench``). Each measured run is a fresh process, as in
production (a cold JVM), against a throw-away lake under a temporary ECOMMERCE_LAKE_HOME.

* ``lake``: generate ``days + 1`` days of sample data, hold the last day back, run the whole lake (full
  rebuild), then deliver the last day and run again with ``--incremental`` (ingest and refresh one new day).
  Reports both wall times, the ratio, the time per layer, rows per second and the peak memory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ecommerce_lake.generator.generate import GeneratorConfig, generate


def _run(home: Path, args: list[str]) -> dict:
    report = home / f"report-{int(time.time() * 1000)}.json"
    env = {**os.environ, "ECOMMERCE_LAKE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    (home / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    exe = Path(sys.executable).parent / "ecommerce-lake"
    log = home / "run.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen([str(exe), "run", *args, "--report", str(report)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, session_rss(proc.pid))
            time.sleep(0.5)
    wall = time.monotonic() - started
    if proc.returncode != 0 or not report.exists():
        raise RuntimeError(f"`ecommerce-lake run {' '.join(args)}` failed:\n{log.read_text()[-6000:]}")
    data = json.loads(report.read_text())
    data["wall_seconds"] = wall
    data["peak_rss_mb"] = peak / 2**20
    return data


def session_rss(sid: int) -> int:
    """Resident memory (bytes) of every process in session ``sid``: the CLI, its JVM, Python workers."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:  # field 6 of stat (session id), after the command name
                continue
            with open(f"/proc/{entry}/statm") as fh:
                total += int(fh.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total


def bench_lake(days: int = 730, lines: int = 1_000_000, customers: int = 20000, products: int = 500,
               seed: int = 42, keep: str | None = None) -> dict:
    home = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="ecommerce_lake_bench_"))
    try:
        landing = home / "landing"
        started = time.monotonic()
        summary = generate(GeneratorConfig(out=landing, seed=seed, days=days + 1, customers=customers,
                                           products=products, lines=int(lines * (days + 1) / days), overwrite=True))
        generate_seconds = time.monotonic() - started
        held = home / "held"
        held.mkdir(exist_ok=True)
        last = landing / summary.last_batch
        shutil.move(str(last), held / last.name)

        lake = "group:raw or group:refined or group:curated"
        print(f"generated {summary.batches} batches in {generate_seconds:.1f} s; full rebuild of the lake "
              f"({days} days, the last day held back) ...", flush=True)
        full = _run(home, ["--select", lake])
        print(f"  {full['wall_seconds']:.1f} s; one new day, incremental ...", flush=True)
        shutil.move(str(held / last.name), landing / last.name)
        incremental = _run(home, ["--incremental"])
        print(f"  {incremental['wall_seconds']:.1f} s; the ml group (forecasts, inventory, segments) ...", flush=True)
        ml = _run(home, ["--select", "group:ml"])
        print(f"  {ml['wall_seconds']:.1f} s", flush=True)

        order_lines = full["materialized"].get("raw/order_items") or 0
        forecast = ml["figures"].get("ml/sales_forecast", {})
        return {
            "days": days,
            "order_lines": order_lines,
            "generate_seconds": round(generate_seconds, 1),
            "full": _summary(full),
            "incremental": _summary(incremental),
            "incremental_vs_full": round(incremental["wall_seconds"] / full["wall_seconds"], 3),
            "full_rows_per_second": round(order_lines / full["wall_seconds"]) if order_lines else None,
            "ml": {
                **_summary(ml),
                "forecast_phase_seconds": {k.split("/", 1)[1]: round(v, 1) for k, v in forecast.items()
                                           if k.startswith("seconds/")},
                "backtest_wape_product_county": {
                    m: round(forecast.get(f"backtest/product_county/{m}/wape", float("nan")), 4)
                    for m in ("model", "seasonal_naive", "moving_average")},
                "simulation": ml["figures"].get("ml/inventory_recommendations", {}),
            },
        }
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def _summary(report: dict) -> dict:
    return {
        "wall_seconds": round(report["wall_seconds"], 1),
        "run_seconds": round(report["seconds"], 1),
        "layer_seconds": {k: round(v, 1) for k, v in sorted(report["group_seconds"].items())},
        "slowest_steps": {k: round(v, 1) for k, v in sorted(report["step_seconds"].items(),
                                                             key=lambda kv: -kv[1])[:8]},
        "peak_rss_mb": round(report["peak_rss_mb"]),
    }
