"""The real-time feed on real components: a Kafka broker (KRaft, started from the project's own jars on a free
port), the session's Spark engine, Delta tables, Dagster runs and the Kafka sensor.

Expected figures come from the oracle (plain Python over the landing CSV files) or from the events the test itself
sends, never from the stream's code."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from ecommerce_lake.deployment import build_resources
from ecommerce_lake.platform.kafka import Broker, end_offsets, ensure_topic, produce
from ecommerce_lake_tests.servers import BIN, free_port

NAIROBI = dt.timezone(dt.timedelta(hours=3))
STREAM = "group:realtime"


@pytest.fixture(scope="module")
def broker(tmp_path_factory, settings):
    b = Broker(f"127.0.0.1:{free_port()}", tmp_path_factory.mktemp("kafka"), settings.jars_dir, settings.maven_repo,
               partitions=3)
    b.start(progress=lambda m: print(m, flush=True))
    yield b
    b.stop(progress=lambda m: print(m, flush=True))


def _lake(tmp_path_factory, engine_url, name: str):
    from ecommerce_lake.platform.dagster_storage import instance_yaml
    from ecommerce_lake.settings import Settings

    home = tmp_path_factory.mktemp(name)
    settings = Settings(home=str(home), env="local", spark_remote=engine_url)
    dagster_home = home / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    return settings, dg.DagsterInstance.from_config(str(dagster_home))


def _use(monkeypatch, broker, topic: str, **extra: str) -> None:
    monkeypatch.setenv("ECOMMERCE_LAKE_KAFKA_BOOTSTRAP", broker.bootstrap)
    monkeypatch.setenv("ECOMMERCE_LAKE_KAFKA_TOPIC", topic)
    for key, value in extra.items():
        monkeypatch.setenv(f"ECOMMERCE_LAKE_KAFKA_{key.upper()}", value)


def _stream(settings, instance):
    from ecommerce_lake.runner import execute

    report = execute(settings, selection=STREAM, instance=instance, log_level="WARNING")
    assert report.spark.startswith("engine sc://"), report.spark  # the run went through the engine
    return report


def _table(spark, settings, name: str):
    return spark.read.format("delta").load(f"{settings.lake_root}/realtime/{name}")


def _check(instance, name: str, table: str = "county_sales_5min"):
    key = dg.AssetCheckKey(dg.AssetKey(["realtime", table]), name)
    record = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)[0]
    evaluation = record.event.dagster_event.event_specific_data
    return evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()}


def _sums(rows, county: str, day: str, amount: str) -> dict[tuple[int, dt.date], Decimal]:
    out: dict[tuple[int, dt.date], Decimal] = defaultdict(Decimal)
    for r in rows:
        out[(int(r[county]), r[day])] += Decimal(str(r[amount]))
    return {k: v for k, v in out.items() if v != 0}


@pytest.fixture(scope="module")
def stream_lake(tmp_path_factory, engine_url, spark):
    """A small lake of this module's own (raw, refined, curated), on the session's engine."""
    from ecommerce_lake.generator.generate import GeneratorConfig, generate
    from ecommerce_lake.runner import execute

    settings, instance = _lake(tmp_path_factory, engine_url, "stream_lake")
    generate(GeneratorConfig(out=Path(settings.landing_root), seed=11, days=4, customers=120, products=20,
                             lines=500, dirty_rate=0.02, end_date=dt.date(2025, 11, 30)))
    report = execute(settings, instance=instance, log_level="WARNING",
                     selection="group:raw or group:refined or group:curated")
    assert report.exit_code == 0, report
    return SimpleNamespace(settings=settings, instance=instance)


def test_order_events_reconcile_with_the_batch_lake_to_the_cent(stream_lake, broker, spark, monkeypatch):
    """The landing zone replayed as order events (5 % of them sent twice, as an at-least-once producer does), one
    materialization of the stream: per county and day, windows plus late events equal the oracle's net revenue to
    the cent; every event is in the ledger once; the blocking reconciliation check passed. Then the sensor: nothing
    to do, then a run request once new events arrived, and that run takes only them."""
    from ecommerce_lake.defs.realtime.sensors import kafka_events_sensor
    from ecommerce_lake.logic.realtime.replay import order_events
    from ecommerce_lake_tests import oracle

    settings, instance = stream_lake.settings, stream_lake.instance
    _use(monkeypatch, broker, "orders_replay")
    replay = order_events(settings.landing_root)
    ensure_topic(broker.bootstrap, "orders_replay", 3)
    sent = produce(broker.bootstrap, "orders_replay", replay.events, duplicates=0.05)
    assert sent.duplicates > 0 and sent.sent == len(replay.events) + sent.duplicates

    report = _stream(settings, instance)
    assert report.exit_code == 0, report
    events = _table(spark, settings, "events").collect()
    assert len(events) == len({e["event_id"] for e in replay.events}) == len({e["event_id"] for e in events})
    assert _table(spark, settings, "event_rejects").count() == 0

    landing = oracle.read_landing(Path(settings.landing_root))
    expected = oracle.expected_fact_sales(landing, dt.datetime.now(dt.UTC))
    want = _sums(expected.to_dict("records"), "county_code", "order_date", "net_revenue_kes")
    late = _table(spark, settings, "late_events").select("county_code", "event_date", "net_amount_kes").collect()
    windows = _table(spark, settings, "county_sales_5min").collect()
    got: dict = defaultdict(Decimal)
    for k, v in _sums(windows, "county_code", "window_date", "net_revenue_kes").items():
        got[k] += v
    for k, v in _sums(late, "county_code", "event_date", "net_amount_kes").items():
        got[k] += v
    assert {k: v for k, v in got.items() if v != 0} == want
    assert sum(w["events"] for w in windows) + len(late) == len(events)
    passed, meta = _check(instance, "reconciles_with_daily_sales")
    assert passed and meta["days_compared"] >= 3 and meta["county_days_differing"] == 0, meta

    res = build_resources(settings)
    with dg.build_sensor_context(instance=instance, resources={k: res[k] for k in ("kafka", "lake_reader")}) as ctx:
        result = kafka_events_sensor(ctx)
    assert not result.run_requests and "processed everything" in result.skip_reason.skip_message
    assert result.asset_events[0].metadata["consumer_lag"].value == 0
    new = [{**replay.events[-1], "event_id": f"late-arrival-{i}", "net_amount_kes": 10.0 + i} for i in range(3)]
    produce(broker.bootstrap, "orders_replay", new)
    with dg.build_sensor_context(instance=instance, resources={k: res[k] for k in ("kafka", "lake_reader")}) as ctx:
        result = kafka_events_sensor(ctx)
        assert len(result.run_requests) == 1 and result.asset_events[0].metadata["consumer_lag"].value == 3
        ctx.update_cursor(result.cursor)
        again = kafka_events_sensor(ctx)
    assert not again.run_requests  # the same end offsets are requested once
    report = _stream(settings, instance)
    events_after = _table(spark, settings, "events").count() + _table(spark, settings, "late_events").count()
    assert events_after == len(events) + 3
    print(f"\nstream: {sent.sent} messages; 3 new events materialized in {report.seconds:.1f} s on the engine")


def _event(n: int, county: str, amount: str, at: dt.datetime, **over) -> dict:
    return {"event_id": f"e{n}", "event_type": "order_placed", "order_id": f"O{n}", "county": county,
            "net_amount_kes": float(amount), "event_time": at.isoformat(), "schema_version": 1, **over}


def test_bad_duplicated_unknown_and_late_events_each_get_their_fate(tmp_path_factory, engine_url, broker, spark,
                                                                    monkeypatch):
    """Every message has exactly one fate: a window, the late-events table, a reject with its rule, or a collapse
    as a duplicate of an event already counted — on a lake with no curated tables (nothing to reconcile)."""
    settings, instance = _lake(tmp_path_factory, engine_url, "stream_faults")
    _use(monkeypatch, broker, "faults", watermark_minutes="10")
    ensure_topic(broker.bootstrap, "faults", 2)
    t0 = dt.datetime(2025, 11, 30, 12, 0, tzinfo=NAIROBI)
    good = [_event(1, "Nairobi", "100.50", t0), _event(2, "mombasa", "200.00", t0 + dt.timedelta(minutes=1)),
            _event(3, "Kisumu City", "-50.25", t0 + dt.timedelta(minutes=7)),
            _event(4, "Atlantis", "30.00", t0 + dt.timedelta(minutes=8)),  # no such county: county 0
            _event(5, "Atlantis", "12.00", t0 + dt.timedelta(minutes=9), customer_county="Nakuru")]
    bad = {
        "not_json": [b"{not json", b"[1, 2]", b'{"event_id": "\xff\xfe"}'],
        "missing_field": [json.dumps({**_event(6, "Nairobi", "1", t0), "order_id": "  "}).encode()],
        "wrong_schema_version": [json.dumps(_event(7, "Nairobi", "1", t0, schema_version=2)).encode()],
        "unknown_event_type": [json.dumps(_event(8, "Nairobi", "1", t0, event_type="order_teleported")).encode()],
        "bad_amount": [json.dumps({**_event(9, "Nairobi", "1", t0), "net_amount_kes": "12.345"}).encode()],
        "bad_event_time": [json.dumps({**_event(10, "Nairobi", "1", t0), "event_time": "2025-11-30T12:00:00"}).encode()],
    }
    produce(broker.bootstrap, "faults", [*good, good[0], good[1], *[m for ms in bad.values() for m in ms]])
    assert _stream(settings, instance).exit_code == 0

    windows = {(r["county_code"], r["window_start"]): r for r in _table(spark, settings, "county_sales_5min").collect()}
    utc = lambda ts: ts.astimezone(dt.UTC).replace(tzinfo=None)  # noqa: E731
    w0, w1 = utc(t0), utc(t0 + dt.timedelta(minutes=5))
    assert {k: (r["events"], r["net_revenue_kes"]) for k, r in windows.items()} == {
        (47, w0): (1, Decimal("100.50")), (1, w0): (1, Decimal("200.00")), (42, w1): (1, Decimal("-50.25")),
        (0, w1): (1, Decimal("30.00")), (32, w1): (1, Decimal("12.00"))}
    rejects = _table(spark, settings, "event_rejects").collect()
    assert sorted(r["rule"] for r in rejects) == sorted(rule for rule, ms in bad.items() for _ in ms)
    assert any("order_id" in r["message"] for r in rejects if r["rule"] == "missing_field")
    assert _table(spark, settings, "events").count() == 5  # the two re-sent events collapsed

    # the watermark moves to 13:00 - 10 min; an event of 12:30 is then late, kept and counted, not in a window;
    # its re-sent copy and a re-sent copy of an event already counted collapse
    produce(broker.bootstrap, "faults", [_event(11, "Nairobi", "5.00", t0 + dt.timedelta(hours=1))])
    assert _stream(settings, instance).exit_code == 0
    late = _event(12, "Nakuru", "7.00", t0 + dt.timedelta(minutes=30))
    produce(broker.bootstrap, "faults", [late, late, good[2]])
    from ecommerce_lake.defs.realtime import assets

    monkeypatch.setattr(assets, "COMPACT_AT_FILES", 2)  # this step also compacts the tables (same rows after)
    report = _stream(settings, instance)
    assert report.exit_code == 0
    late_rows = _table(spark, settings, "late_events").collect()
    assert [(r["event_id"], r["county_code"], r["net_amount_kes"]) for r in late_rows] == [("e12", 32, Decimal("7.00"))]
    assert late_rows[0]["watermark"] == utc(t0 + dt.timedelta(minutes=50))
    assert _table(spark, settings, "events").count() == 6
    assert sum(r["events"] for r in _table(spark, settings, "county_sales_5min").collect()) == 6
    history = spark.sql(f"DESCRIBE HISTORY delta.`{settings.lake_root}/realtime/events`").collect()
    assert "OPTIMIZE" in {h["operation"] for h in history}, [h["operation"] for h in history]
    passed, meta = _check(instance, "reconciles_with_daily_sales")
    assert passed and meta["days_compared"] == 0  # no curated.daily_sales in this lake
    assert _check(instance, "unique_key", "events")[0]


def _continuous(settings, broker, topic: str, log: Path) -> subprocess.Popen:
    """`ecommerce-lake stream run --continuous` in a process of its own, with in-process Spark (a client killed on
    the engine would leave its query running there until the next start stops it: docs/realtime.md), in Nairobi
    time: the micro-batches run in this process, and what they compute must not depend on its time zone."""
    env = {**os.environ, "TZ": "Africa/Nairobi", "ECOMMERCE_LAKE_HOME": settings.home,
           "ECOMMERCE_LAKE_SPARK_REMOTE": "off", "ECOMMERCE_LAKE_KAFKA_BOOTSTRAP": broker.bootstrap,
           "ECOMMERCE_LAKE_KAFKA_TOPIC": topic, "ECOMMERCE_LAKE_KAFKA_MAX_OFFSETS_PER_TRIGGER": "150"}
    with log.open("ab") as out:
        return subprocess.Popen([str(BIN / "ecommerce-lake"), "stream", "run", "--continuous", "--interval", "1",
                                 "--seconds", "600"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait(proc: subprocess.Popen, until, log: Path, timeout: float = 300) -> bool:
    """Wait until ``until()`` holds (True) or the process ended (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if until():
                return True
        except Exception:  # noqa: BLE001 - no table yet
            pass
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    raise AssertionError(f"timed out; the stream's log:\n{log.read_text()[-3000:]}")


def test_a_stream_killed_mid_batch_and_a_broker_restart_lose_nothing_and_count_nothing_twice(
        tmp_path_factory, engine_url, broker, spark, monkeypatch):
    """`stream run --continuous` (150 messages per micro-batch) is killed with SIGKILL once it has written some
    micro-batches; a second one resumes, and the broker is restarted under it while more events arrive; one
    materialization on the engine then catches up. Totals are exact: every event once, windows adding up to what
    was sent."""
    import deltalake

    settings, instance = _lake(tmp_path_factory, engine_url, "stream_kill")
    _use(monkeypatch, broker, "kill", max_offsets_per_trigger="150")
    ensure_topic(broker.bootstrap, "kill", 3)
    t0 = dt.datetime(2025, 11, 29, 8, 0, tzinfo=NAIROBI)
    counties = ["Nairobi", "Mombasa", "Kisumu", "Nakuru", "Kiambu"]
    first = [_event(n, counties[n % 5], f"{n % 97}.{n % 100:02d}", t0 + dt.timedelta(seconds=20 * n))
             for n in range(1500)]
    produce(broker.bootstrap, "kill", first, duplicates=0.05)
    log = Path(settings.home) / "stream.log"
    events_path, late_path = (f"{settings.lake_root}/realtime/{t}" for t in ("events", "late_events"))

    def version() -> int:
        return deltalake.DeltaTable(events_path).version()

    def counted() -> int:
        return sum(deltalake.DeltaTable(p).to_pyarrow_table(columns=["event_id"]).num_rows
                   for p in (events_path, late_path))

    proc = _continuous(settings, broker, "kill", log)
    try:
        assert _wait(proc, lambda: version() >= 2, log), log.read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed_at, killed_version = counted(), version()
    assert 0 < killed_at < 1500, f"the kill came too late to be mid-stream: {killed_at} events in"

    second = [_event(n, counties[n % 5], "1.00", t0 + dt.timedelta(seconds=20 * n)) for n in range(1500, 1800)]
    proc = _continuous(settings, broker, "kill", log)
    try:
        assert _wait(proc, lambda: version() > killed_version, log), log.read_text()[-3000:]  # it resumed
        broker.stop(progress=lambda m: None)  # under the running stream
        broker.start(progress=lambda m: None)
        produce(broker.bootstrap, "kill", second)
        survived = _wait(proc, lambda: counted() == 1800, log)
        if not survived:  # the stream may stop on the outage: then it says why, and the next run converges
            assert "Kafka" in log.read_text() or "kafka" in log.read_text(), log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # Ctrl-C: the query stops at a micro-batch boundary
            proc.wait(60)
    assert sum(end_offsets(broker.bootstrap, "kill").values()) > 1800
    assert _stream(settings, instance).exit_code == 0

    sent = {e["event_id"]: Decimal(str(e["net_amount_kes"])) for e in first + second}
    ledger = _table(spark, settings, "events").select("event_id", "net_amount_kes").collect()
    late = _table(spark, settings, "late_events").select("event_id", "net_amount_kes").collect()
    # partitions are read side by side, 150 messages per micro-batch in all: one may run more than the allowed
    # lateness ahead of another, and the other's events are then late (kept, counted apart): each event is in
    # exactly one of the two tables, once
    counted_rows = [(r["event_id"], r["net_amount_kes"]) for r in ledger + late]
    assert len(counted_rows) == len(dict(counted_rows)) == len(sent)
    assert dict(counted_rows) == sent
    windows = _table(spark, settings, "county_sales_5min").collect()
    assert sum(r["net_revenue_kes"] for r in windows) + sum(r["net_amount_kes"] for r in late) == sum(sent.values())
    assert sum(r["events"] for r in windows) == len(ledger)
    print(f"\nkilled after {killed_at} of 1,500 events; the stream {'rode out' if survived else 'stopped on'} the "
          f"broker's restart; {len(late)} arrived late")
