"""``ecommerce-lake bench --suite stream``: the real-time feed's figures on this machine, against a throw-away
broker and lake under a temporary ECOMMERCE_LAKE_HOME, on a warm engine.

* ``events_per_second``: ``events`` order events (47 counties, one day) already in the topic, drained by the
  stream (``availableNow``, ``max_offsets`` messages per micro-batch): messages / seconds of the query;
* ``latency_s``: the continuous query (a micro-batch every ``interval`` seconds) while a producer sends events
  stamped with the time they are sent, at ``rate`` per second for ``seconds``: per event, from its event time to
  the Delta commit that made its window visible in ``realtime.county_sales_5min``; p50 and p95;
* ``materialize_1000_s``: 1,000 new events, then ``ecommerce-lake stream run`` (a fresh process: the asset with
  its checks through Dagster, on the warm engine), wall time and the step's own time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ecommerce_lake.bench.suites import EXE, AttachedEngine, BenchEngine, _env

TARGETS = {"events_per_second": 5000, "latency_p95_s": 30, "materialize_1000_s": 15}
COUNTIES = ["Nairobi", "Mombasa", "Kisumu", "Nakuru", "Kiambu", "Machakos", "Uasin Gishu", "Kakamega", "Meru",
            "Nyeri", "Kilifi", "Bungoma", "Kajiado", "Kericho", "Embu", "Garissa", "Turkana", "Nyandarua"]
NAIROBI = dt.timezone(dt.timedelta(hours=3))


def _events(n: int, start: dt.datetime, spread_s: float, first: int = 0, seed: int = 3) -> list[dict]:
    rng = random.Random(seed + first)
    return [{"event_id": f"b{first + i}", "event_type": "order_placed", "order_id": f"B{first + i}",
             "county": rng.choice(COUNTIES), "net_amount_kes": round(rng.uniform(50, 5000), 2),
             "event_time": (start + dt.timedelta(seconds=spread_s * i / max(n, 1))).isoformat(), "schema_version": 1}
            for i in range(n)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


def bench_stream(events: int = 200_000, max_offsets: int = 50_000, rate: float = 500.0, seconds: float = 60.0,
                 interval: float = 2.0, engine_url: str | None = None, keep: str | None = None) -> dict:
    import deltalake

    from ecommerce_lake.bench.suites import _machine
    from ecommerce_lake.deployment import spark_resource
    from ecommerce_lake.platform import stream
    from ecommerce_lake.platform.engine import close, connect
    from ecommerce_lake.platform.kafka import Broker, ensure_topic, produce
    from ecommerce_lake.settings import Settings

    home = Path(keep or tempfile.mkdtemp(prefix="bench-stream-"))
    home.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": _machine(), "targets": TARGETS, "events": events, "max_offsets_per_trigger": max_offsets}
    bootstrap = f"127.0.0.1:{_free_port()}"
    env0 = _env(home)
    settings = Settings.from_env({k: v for k, v in env0.items() if k.startswith("ECOMMERCE_LAKE_")})
    broker = Broker(bootstrap, home / "kafka", settings.jars_dir, settings.maven_repo, partitions=3)
    broker.start(progress=lambda m: print(f"  {m}", flush=True))
    engine = AttachedEngine(engine_url) if engine_url else BenchEngine(home, warm=True)
    try:
        settings = Settings.from_env({k: v for k, v in _env(home, engine.url).items()
                                      if k.startswith("ECOMMERCE_LAKE_")})
        conn = connect(engine.url, spark_resource(settings).spark_conf())
        if conn.session is None:
            raise RuntimeError(f"no engine: {conn.reason}")
        spark = conn.session

        # 1. throughput: a backlog drained with availableNow
        ensure_topic(bootstrap, "bench_backlog", 3)
        start = dt.datetime(2026, 1, 15, 8, 0, tzinfo=NAIROBI)
        sent = produce(bootstrap, "bench_backlog", _events(events, start, 12 * 3600))
        print(f"  produced {sent.sent:,} events in {sent.seconds:.1f} s", flush=True)
        tables = stream.StreamTables(str(home / "lake_backlog"))
        report = stream.run(spark, tables, bootstrap=bootstrap, topic="bench_backlog", lateness_minutes=10,
                            max_offsets_per_trigger=max_offsets, progress=lambda m: None)
        result["backlog"] = report.as_dict()
        result["events_per_second"] = round(report.input_rows / report.seconds, 1)
        print(f"  backlog: {report.input_rows:,} events in {report.seconds:.1f} s ({report.batches} micro-batches): "
              f"{result['events_per_second']:,} events/s", flush=True)

        # 2. latency: the continuous query while events arrive at `rate` per second, stamped when sent
        ensure_topic(bootstrap, "bench_live", 3)
        live = stream.StreamTables(str(home / "lake_live"))
        stop = threading.Event()
        sent_live: list[int] = []

        def stamped():  # events stamped with the time they are handed to the producer, until stopped
            n = 0
            while not stop.is_set():
                now = dt.datetime.now(NAIROBI)
                yield {**_events(1, now, 0, first=10**9 + n)[0], "event_time": now.isoformat()}
                n += 1
            sent_live.append(n)

        def producer():
            produce(bootstrap, "bench_live", stamped(), rate=rate)

        thread = threading.Thread(target=producer, daemon=True)
        thread.start()
        stream.run(spark, live, bootstrap=bootstrap, topic="bench_live", lateness_minutes=10, continuous=True,
                   interval=f"{interval} seconds", timeout=seconds, progress=lambda m: None)
        stop.set()
        thread.join(10)
        ledger = deltalake.DeltaTable(live.path("events")).to_pyarrow_table(
            columns=["batch_id", "event_time"]).to_pylist()
        windows = deltalake.DeltaTable(live.path("county_sales_5min"))
        commits = sorted(h["timestamp"] for h in windows.history() if h.get("operation") == "WRITE")
        batches = sorted({r["batch_id"] for r in ledger})
        visible = dict(zip(batches, commits))  # the k-th micro-batch with events made the k-th windows commit
        lat = [visible[r["batch_id"]] / 1000 - r["event_time"].replace(tzinfo=dt.UTC).timestamp()
               for r in ledger if r["batch_id"] in visible]
        result["latency_s"] = {"events": len(lat), "p50": round(_percentile(lat, 0.5), 2),
                               "p95": round(_percentile(lat, 0.95), 2), "rate_per_s": rate, "seconds": seconds,
                               "interval_s": interval, "micro_batches": len(batches)}
        print(f"  continuous: {len(lat):,} events, latency p50 {result['latency_s']['p50']} s, p95 "
              f"{result['latency_s']['p95']} s", flush=True)
        close(spark)

        # 3. one materialization of 1,000 new events, as a user runs it (a fresh process, Dagster, checks)
        env = {**_env(home, engine.url), "ECOMMERCE_LAKE_KAFKA_BOOTSTRAP": bootstrap,
               "ECOMMERCE_LAKE_KAFKA_TOPIC": "bench_user"}
        ensure_topic(bootstrap, "bench_user", 3)
        produce(bootstrap, "bench_user", _events(20_000, start, 3600, first=2 * 10**9))
        first = subprocess.run([str(EXE), "stream", "run"], env=env, capture_output=True, text=True)
        if first.returncode != 0:
            raise RuntimeError(f"stream run failed:\n{first.stdout[-3000:]}{first.stderr[-3000:]}")
        produce(bootstrap, "bench_user", _events(1000, start + dt.timedelta(hours=1), 600, first=3 * 10**9))
        t = time.monotonic()
        second = subprocess.run([str(EXE), "stream", "run"], env=env, capture_output=True, text=True)
        wall = time.monotonic() - t
        if second.returncode != 0 or "engine sc://" not in second.stdout:
            raise RuntimeError(f"stream run failed or not on the engine:\n{second.stdout[-3000:]}")
        step = next((line for line in second.stdout.splitlines() if "time per layer" in line), "")
        result["materialize_1000_s"] = {"wall": round(wall, 1), "run_summary": step.strip()}
        print(f"  1,000 new events: `ecommerce-lake stream run` {wall:.1f} s ({step.strip()})", flush=True)
    finally:
        engine.close()
        broker.stop(progress=lambda m: None)
    result["met"] = {
        "events_per_second": result["events_per_second"] >= TARGETS["events_per_second"],
        "latency_p95_s": result["latency_s"]["p95"] <= TARGETS["latency_p95_s"],
        "materialize_1000_s": result["materialize_1000_s"]["wall"] <= TARGETS["materialize_1000_s"],
    }
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
    return result


def main_lines(r: dict) -> list[str]:
    return [
        f"machine: {r['machine']}",
        f"events/s (availableNow over {r['events']:,} events): {r['events_per_second']:,} "
        f"(target >= {TARGETS['events_per_second']:,})",
        f"latency continuous: p50 {r['latency_s']['p50']} s, p95 {r['latency_s']['p95']} s "
        f"(target p95 <= {TARGETS['latency_p95_s']} s)",
        f"1,000 new events, one materialization: {r['materialize_1000_s']['wall']} s "
        f"(target <= {TARGETS['materialize_1000_s']} s)",
        "targets met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["met"].items()),
        json.dumps({k: r[k] for k in ("latency_s", "materialize_1000_s")}),
    ]
