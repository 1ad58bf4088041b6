"""Benchmarks that print figures (``ecommerce-lake bench``), against a throw-away lake under a temporary
ECOMMERCE_LAKE_HOME. A measured run is a fresh process (cold JVM), except the new day after a full rebuild: that
pair runs in one Spark run worker, the new day with the JVM the full rebuild warmed (see run_worker.py).

* ``lake``: generate ``days + 1`` days of sample data, hold the last day back, run the whole lake (full
  rebuild), then deliver the last day and run again with ``--incremental`` (ingest and refresh one new day).
  Both runs execute in one Spark run worker (``ecommerce-lake worker``), as sensor runs do in production: cold
  for the full rebuild, warm for the new day.
  Reports both wall times, the ratio, the time per layer, rows per second and the peak memory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ecommerce_lake.generator.generate import GeneratorConfig, generate
from ecommerce_lake.platform.dagster_storage import instance_yaml


def _env(home: Path) -> dict:
    env = {**os.environ, "ECOMMERCE_LAKE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    (home / "dagster_home" / "dagster.yaml").write_text(instance_yaml(home / "dagster_home"))
    return env


EXE = Path(sys.executable).parent / "ecommerce-lake"


def _run(home: Path, args: list[str], command: str = "run", worker: Worker | None = None) -> dict:
    """``ecommerce-lake <command> <args>`` in a fresh process (cold JVM), or, with ``worker``, executed by that
    Spark run worker (``run --worker``; warm after its first run). Wall time, report and peak memory (the
    process's, or the worker's and the client's)."""
    report = home / f"report-{int(time.time() * 1000)}.json"
    env = _env(home)
    if worker:
        args = [*args, "--worker", worker.url]
    log = home / "run.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen([str(EXE), command, *args, "--report", str(report)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, session_rss(proc.pid) + (session_rss(worker.pid) if worker else 0))
            time.sleep(0.5)
    wall = time.monotonic() - started
    if proc.returncode != 0 or not report.exists():
        raise RuntimeError(f"`ecommerce-lake {command} {' '.join(args)}` failed:\n{log.read_text()[-6000:]}")
    data = json.loads(report.read_text())
    data["wall_seconds"] = wall
    data["peak_rss_mb"] = peak / 2**20
    return data


class Worker:
    """A Spark run worker (``ecommerce-lake worker``) for one bench home, started cold, stopped on exit."""

    def __init__(self, home: Path):
        from ecommerce_lake.platform.run_worker import call

        self._call = call
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = home / "worker.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen([str(EXE), "worker", "--port", str(port)], env=_env(home), stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the run worker exited at start:\n{self.log.read_text()[-4000:]}")
            try:
                self._call(self.url, "/health", timeout=2)
                return
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"the run worker did not answer in 120 s:\n{self.log.read_text()[-4000:]}")
                time.sleep(0.5)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
        with Worker(home) as worker:  # full rebuild (cold) and new day (warm) in one run worker, as in production
            full = _run(home, ["--select", lake], worker=worker)
            print(f"  {full['wall_seconds']:.1f} s; one new day, incremental ...", flush=True)
            shutil.move(str(held / last.name), landing / last.name)
            incremental = _run(home, ["--incremental"], worker=worker)
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


LAKE_GROUPS = "group:raw or group:refined or group:curated"


def _prepare(home: Path, lines: int, days: int, seed: int) -> tuple[Path, Path]:
    """Generate ``days + 1`` days of data with ``lines`` order lines over ``days``; hold the last batch back."""
    landing = home / "landing"
    summary = generate(GeneratorConfig(out=landing, seed=seed, days=days + 1, lines=int(lines * (days + 1) / days),
                                       overwrite=True))
    held = home / "held"
    held.mkdir(exist_ok=True)
    shutil.move(str(landing / summary.last_batch), held / summary.last_batch)
    return landing, held / summary.last_batch


def _per_asset(report: dict) -> dict:
    """Per step: wall seconds, rows written and rows written per second."""
    out = {}
    for step, secs in sorted(report["step_seconds"].items(), key=lambda kv: -kv[1]):
        rows = report.get("step_rows", {}).get(step)
        out[step] = {"seconds": round(secs, 2), "rows": rows,
                     "rows_per_second": round(rows / secs) if rows and secs > 0 else None}
    return out


def bench_scales(scales: list[int], days: int = 730, seed: int = 42, ml: bool = True,
                 keep: str | None = None) -> dict:
    """For each scale (order lines): generate, build the whole graph through Dagster (lake, then ml), print
    per-asset and total wall time, rows per second and peak memory. Ratios measured in the same run:

    * orchestration_overhead: the lake (raw, refined, curated; no checks) through Dagster vs the same
      transformation functions in one plain PySpark process (``ecommerce-lake plain-build``), at the scale
      closest to 1M lines;
    * incremental_vs_full: one new day vs the full rebuild of the lake, at the largest scale, both executed by
      one Spark run worker (started cold for the full rebuild; warm for the new day, as in production);
    * scaling: full-rebuild seconds per million lines at the largest scale vs at 1M lines (needs 1M in scales).

    With ``keep``, each scale's landing zone and lakes stay in ``<keep>/<lines>/`` (the Dagster-built lake in
    ``lake/``, the plain-PySpark one in ``plain/lake/``); otherwise they are deleted.
    """
    import contextlib
    import platform as _platform

    scales = sorted(scales)
    reference = min(scales, key=lambda s: abs(s - 1_000_000))
    out: dict = {"machine": {"cpus": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") *
                                                                          os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                             "python": _platform.python_version(), "system": _platform.platform()},
                 "days": days, "scales": {}, "ratios": {}}
    for lines in scales:
        if keep:
            kept = Path(keep) / str(lines)
            kept.mkdir(parents=True, exist_ok=False)
            place = contextlib.nullcontext(str(kept))
        else:
            place = tempfile.TemporaryDirectory(prefix=f"ecommerce_lake_bench_{lines}_")
        with place as tmp:
            home = Path(tmp)
            started = time.monotonic()
            landing, held = _prepare(home, lines, days, seed)
            entry: dict = {"generate_seconds": round(time.monotonic() - started, 1), "held_back_batch": held.name}
            print(f"[{lines:,} lines] generated in {entry['generate_seconds']} s; full build of the lake ...",
                  flush=True)
            largest = lines == scales[-1]
            # At the largest scale the full build and then the new day run in one Spark run worker, as the
            # sensor's runs do in production: the full build starts it cold (like a fresh process), the new
            # day finds its JVM warm. The worker holds the lake's (embedded) metastore, so the ml run (a fresh
            # process) comes after it stops, on the data with the new day.
            worker = Worker(home) if largest else None
            try:
                full = _run(home, ["--select", LAKE_GROUPS], worker=worker)
                order_lines = full["materialized"].get("raw/order_items") or lines
                entry.update(order_lines=order_lines, full=_summary(full), per_asset=_per_asset(full),
                             full_rows_per_second=round(order_lines / full["wall_seconds"]))
                print(f"  lake {full['wall_seconds']:.1f} s ({entry['full_rows_per_second']:,} lines/s, peak "
                      f"{full['peak_rss_mb']:.0f} MB)" + (" in a fresh run worker" if worker else ""), flush=True)
                if lines == reference:  # on the same landing data as the full build (before the new day)
                    dagster_home = home / "no_checks"
                    dagster_home.mkdir()
                    (dagster_home / "landing").symlink_to(landing)
                    bare = _run(dagster_home, ["--select", LAKE_GROUPS, "--no-checks"])
                    plain_home = home / "plain"
                    plain_home.mkdir()
                    (plain_home / "landing").symlink_to(landing)
                    plain = _run(plain_home, [], command="plain-build")
                    entry["dagster_no_checks_seconds"] = round(bare["wall_seconds"], 1)
                    entry["plain_pyspark_seconds"] = round(plain["wall_seconds"], 1)
                    out["ratios"]["orchestration_overhead"] = round(bare["wall_seconds"] / plain["wall_seconds"], 3)
                    print(f"  Dagster without checks {bare['wall_seconds']:.1f} s vs plain PySpark "
                          f"{plain['wall_seconds']:.1f} s", flush=True)
                if largest:
                    shutil.move(str(held), landing / held.name)
                    incremental = _run(home, ["--incremental"], worker=worker)
                    entry["incremental"] = {**_summary(incremental), "executed_by": "run worker (warm JVM)",
                                            "per_asset": _per_asset(incremental)}
                    out["ratios"]["incremental_vs_full"] = round(incremental["wall_seconds"] / full["wall_seconds"], 3)
                    print(f"  one new day {incremental['wall_seconds']:.1f} s in the same run worker", flush=True)
            finally:
                if worker:
                    worker.close()
            if ml:
                ml_run = _run(home, ["--select", "group:ml"])
                entry["ml"] = _summary(ml_run)
                entry["ml_per_asset"] = _per_asset(ml_run)
                print(f"  ml {ml_run['wall_seconds']:.1f} s (peak {ml_run['peak_rss_mb']:.0f} MB)", flush=True)
            entry["total_seconds"] = round(full["wall_seconds"] + (entry["ml"]["wall_seconds"] if ml else 0), 1)
            out["scales"][str(lines)] = entry
    per_million = {s: out["scales"][str(s)]["full"]["wall_seconds"] / (s / 1e6) for s in scales}
    if 1_000_000 in per_million and scales[-1] > 1_000_000:
        out["ratios"]["scaling"] = round(per_million[scales[-1]] / per_million[1_000_000], 3)
    else:
        out["ratios"]["scaling"] = None
        out["ratios"]["scaling_note"] = "needs 1,000,000 and a larger scale in --scales"
    out["targets"] = {"orchestration_overhead": 1.15, "incremental_vs_full": 0.10, "scaling": 1.2}
    return out
