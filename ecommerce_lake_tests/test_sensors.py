"""The landing sensor, declarative automation, the cron conditions and the run-failure recorder. The sensor
scenario runs on a lake of this module's own; no state is shared between tests."""

import csv
import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from ecommerce_lake.defs.ops.sensors import run_failure_recorder
from ecommerce_lake.defs.raw.sensors import BATCH_REFERENCE_RUN, BATCH_RUN, RAW_BATCH_OUTPUTS, landing_sensor
from ecommerce_lake.deployment import build_resources
from ecommerce_lake.defs.partitions import BATCH_TAG, RANGE_END_TAG, RANGE_START_TAG
from ecommerce_lake.runner import execute_request
from ecommerce_lake_tests.landing_fixtures import HEADERS


def _write_batch(root: Path, batch_id: str, files: dict[str, list[list[str]]], complete: bool = True,
                 headers: dict | None = None) -> None:
    folder = root / batch_id
    folder.mkdir(parents=True)
    for name, rows in files.items():
        with (folder / name).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow((headers or HEADERS)[name])
            w.writerows(rows)
    if complete:
        (folder / "_SUCCESS").write_text("")


def _tick(resources, cursor=None, instance=None):
    with dg.build_sensor_context(cursor=cursor, instance=instance, resources={
            k: resources[k] for k in ("landing", "lake_reader", "sensor_settings")}) as context:
        return landing_sensor(context), context


@pytest.fixture(scope="module")
def sensor_lake(tmp_path_factory, engine_url, spark):
    """A lake of this module's own (its own landing zone, lake root and Dagster instance, on the session's
    engine), built once from three generated days and the hand-made batches (2025-12-02 rejected, 2025-12-03
    incomplete): the scenario below adds batches to it without touching the lake other modules share."""

    from ecommerce_lake.generator.generate import GeneratorConfig, generate
    from ecommerce_lake.platform.dagster_storage import instance_yaml
    from ecommerce_lake.runner import execute
    from ecommerce_lake.settings import Settings
    from ecommerce_lake_tests.landing_fixtures import EXPECTED_REJECTS, add_handmade_batches

    home = tmp_path_factory.mktemp("sensor_lake")
    settings = Settings(home=str(home), env="local", spark_remote=engine_url)
    landing = Path(settings.landing_root)
    generate(GeneratorConfig(out=landing, seed=5, days=3, customers=60, products=12, lines=240, dirty_rate=0.0,
                             end_date=dt.date(2025, 11, 30)))
    kept = dict(EXPECTED_REJECTS)  # the shared lake's expectations stay as they were (add_handmade_batches resets them)
    add_handmade_batches(landing)
    if kept:
        EXPECTED_REJECTS.clear()
        EXPECTED_REJECTS.update(kept)
    dagster_home = home / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    report = execute(settings, instance=instance, log_level="WARNING",
                     selection="group:raw or group:refined or group:curated")
    assert report.exit_code == 0 and report.spark.startswith("engine sc://"), report
    return SimpleNamespace(settings=settings, instance=instance, resources=build_resources(settings),
                           table=lambda name: spark.read.format("delta").load(f"{settings.lake_root}/{name}"))


def test_a_day_of_the_landing_sensor_and_automation(sensor_lake):
    """One scenario, in order, on the module's own lake: nothing to do on an ingested zone (waits at the
    incomplete batch); a new batch gets one run for the days it touches, once; that run carries it from raw to the
    day-partitioned curated tables, and declarative automation then plans the all-time tables only (not the days
    the batch's run refreshed itself); a rejected batch, a late-completed one, and one without sales."""
    settings, instance, res = sensor_lake.settings, sensor_lake.instance, sensor_lake.resources
    landing = Path(settings.landing_root)

    # 1. an ingested landing zone: nothing to request, and the incomplete batch is named
    result, _ = _tick(res)
    assert not result.run_requests
    assert "2025-12-03" in result.skip_reason.skip_message
    assert json.loads(result.cursor)["after"] == "2025-12-02"  # never past the incomplete batch
    cursor = result.cursor

    # 2. a new batch: one run, for the days it touches
    _write_batch(landing, "2025-12-06", {
        "orders.csv": [["TO30", "T001", "2025-12-06T08:00:00+03:00", "paid", "app", "", "mpesa", "0.00",
                        "2025-12-06T08:00:00+03:00"],
                       ["TO31", "T001", "2025-12-05T23:30:00Z", "paid", "app", "", "mpesa", "0.00",
                        "2025-12-06T08:00:00+03:00"]],  # 02:30 on the 6th in Nairobi
        # a corrected line of TO09, an order of 2025-12-01 already in the lake: its day is recomputed
        "order_items.csv": [["TO30", "1", "P00001", "1", "100.00", ""], ["TO31", "1", "P00002", "1", "10.00", ""],
                            ["TO09", "1", "P00004", "1", "900.00", "0"]],
        "payments.csv": [["TPAY30", "TO30", "mpesa", "100.00", "2025-12-07T09:00:00+03:00", "completed", "QK7"]],
    })
    result, _ = _tick(res, cursor)
    assert [r.run_key for r in result.run_requests] == ["2025-12-06"]
    request = result.run_requests[0]
    assert request.tags[BATCH_TAG] == "2025-12-06"
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2025-12-01", "2025-12-07")
    assert set(request.asset_selection) == set(BATCH_RUN)
    assert {dg.AssetKey(["refined", "orders"]), dg.AssetKey(["curated", "daily_sales"])} <= set(BATCH_RUN)
    again, _ = _tick(res, result.cursor)
    assert not again.run_requests  # requested once only
    cursor = again.cursor

    # 3. the requested run carries the batch from raw to curated; automation then plans the all-time tables
    from ecommerce_lake.definitions import build_defs

    defs = build_defs(settings)
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    done = execute_request(settings, request, instance=instance)
    assert done.success
    assert set(instance.get_run_by_id(done.run_id).asset_selection) == set(BATCH_RUN)  # as the daemon launches it
    orders = sensor_lake.table("raw/orders").where("_batch_id = '2025-12-06'")
    assert {str(r["_order_date"]) for r in orders.collect()} == {"2025-12-06"}
    items = {r["order_id"]: str(r["_order_date"]) for r in
             sensor_lake.table("raw/order_items").where("_batch_id = '2025-12-06'").collect()}
    assert items == {"TO30": "2025-12-06", "TO31": "2025-12-06", "TO09": "2025-12-01"}
    log = sensor_lake.table("raw/batch_log").where("batch_id = '2025-12-06'").collect()[0]
    assert log["status"] == "accepted" and log["days"] == ["2025-12-01", "2025-12-06", "2025-12-07"]
    assert {r["order_id"] for r in sensor_lake.table("refined/orders").where("order_date = '2025-12-06'")
            .collect()} == {"TO30", "TO31"}
    fact = sensor_lake.table("curated/fact_sales").where("order_id IN ('TO30', 'TO31', 'TO09')").collect()
    assert {(r["order_id"], str(r["order_date"])) for r in fact} == {
        ("TO30", "2025-12-06"), ("TO31", "2025-12-06"), ("TO09", "2025-12-01")}
    assert any(r["order_id"] == "TO09" and r["product_id"] == "P00004" for r in fact)  # the corrected line
    daily = sensor_lake.table("curated/daily_sales").where("order_date = '2025-12-06'").collect()
    assert sum(r["units"] for r in daily) == 2
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor)
    for key in BATCH_RUN[len(RAW_BATCH_OUTPUTS):]:  # refreshed by the batch's run: nothing left for automation
        assert not evaluation.get_requested_partitions(key), key
    for table in ("county_monthly_kpis", "category_share_by_county", "top_products_by_county",
                  "product_performance"):
        assert evaluation.get_requested_partitions(dg.AssetKey(["curated", table])) == {None}, table

    # 4. a batch with a missing column (rejected whole) and the incomplete batch completing late
    bad_headers = {**HEADERS, "orders.csv": [h for h in HEADERS["orders.csv"] if h != "order_ts"]}
    _write_batch(landing, "2025-12-08", {"orders.csv": [["TO40", "T001", "paid", "app", "", "mpesa", "0", "x"]]},
                 headers=bad_headers)
    (landing / "2025-12-03" / "_SUCCESS").write_text("")
    result, _ = _tick(res, cursor)
    by_key = {r.run_key: r for r in result.run_requests}
    assert set(by_key) == {"2025-12-03", "2025-12-08"}
    assert set(by_key["2025-12-08"].asset_selection) == set(RAW_BATCH_OUTPUTS)  # records the rejection only
    assert RANGE_START_TAG not in by_key["2025-12-08"].tags
    assert by_key["2025-12-03"].tags[RANGE_START_TAG] == "2025-12-03"
    assert set(by_key["2025-12-03"].asset_selection) == set(BATCH_RUN)
    assert json.loads(result.cursor)["after"] == "2025-12-08"

    # 5. a batch of customers only: its run refreshes raw and the refined reference tables, no day partition
    _write_batch(landing, "2025-12-09", {"customers.csv": [["T099", "Wanjiru", "w@example.com", "+254700000099",
                                                             "Nyeri", "2025-12-01", "2025-12-09T08:00:00+03:00"]]})
    result, _ = _tick(res, result.cursor)
    assert [r.run_key for r in result.run_requests] == ["2025-12-09"]
    assert set(result.run_requests[0].asset_selection) == set(BATCH_REFERENCE_RUN)
    assert RANGE_START_TAG not in result.run_requests[0].tags


def test_thousands_of_batches_are_listed_and_requested_a_tick_at_a_time(tmp_path, settings):
    from ecommerce_lake.defs.resources import SensorSettingsResource
    from ecommerce_lake.platform.landing import LandingResource
    from ecommerce_lake.platform.lake_reader import LakeReaderResource

    landing = tmp_path / "landing"
    for i in range(3000):
        folder = landing / f"b{i:05d}"
        folder.mkdir(parents=True)
        (folder / "customers.csv").write_text("customer_id,updated_at\nC1,2025-01-01T00:00:00Z\n")
        if i != 1500:
            (folder / "_SUCCESS").write_text("")
    resources = {"landing": LandingResource(root=str(landing)),
                 "lake_reader": LakeReaderResource(root=str(tmp_path / "empty_lake")),
                 "sensor_settings": SensorSettingsResource(max_batches_per_tick=50)}
    cursor, seen = None, []
    for _ in range(100):
        result, _ = _tick(resources, cursor)
        seen += [r.run_key for r in result.run_requests]
        cursor = result.cursor
        if not result.run_requests:
            break
    assert len(seen) == len(set(seen)) == 2999 and "b01500" not in seen
    assert json.loads(cursor)["after"] == "b01499"  # waits at the incomplete batch


def test_run_failures_are_recorded_for_the_ui():
    instance = dg.DagsterInstance.ephemeral()

    @dg.asset(key=["sandbox", "always_fails"])
    def always_fails():
        raise RuntimeError("boom: the source system is down")

    result = dg.materialize([always_fails], instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0].dagster_event
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_recorder", dagster_event=failure, dagster_instance=instance, dagster_run=run,
    ).for_run_failure()
    run_failure_recorder(context)
    record = instance.fetch_observations(dg.AssetKey(["ops", "run_failures"]), limit=1).records[0]
    metadata = record.asset_observation.metadata
    assert metadata["run_id"].value == result.run_id
    assert "boom" in metadata["error"].value or "always_fails" in metadata["error"].value


def test_cron_conditions_fire_once_per_tick_at_fixed_nairobi_times(settings):
    """The lake's own cron conditions (nightly scoring 04:00, weekly training Monday 03:00, maintenance 01:30,
    all Africa/Nairobi = UTC+3), taken from the real definitions and evaluated at fixed instants on a fresh
    instance: each fires once after its tick, not before it, not again until the next tick, and not while an
    upstream blocking check has not passed."""
    from ecommerce_lake.definitions import build_defs

    specs = {spec.key: spec for a in build_defs(settings).resolve_asset_graph().assets_defs for spec in a.specs}
    conditions = {name: specs[dg.AssetKey(key)].automation_condition for name, key in (
        ("nightly", ["ml", "rfm_scores"]), ("weekly", ["ml", "forecast_model"]),
        ("maintenance", ["ops", "delta_maintenance"]))}
    assert conditions["nightly"].get_label() == "daily scoring at 04:00 Nairobi"
    assert conditions["weekly"].get_label() == "weekly training on Monday 03:00 Nairobi"
    assert conditions["maintenance"].get_label() == "daily maintenance at 01:30 Nairobi"

    passing = {"value": True}

    @dg.asset(key=["sandbox", "upstream"], check_specs=[dg.AssetCheckSpec("ok", asset=["sandbox", "upstream"],
                                                                          blocking=True)])
    def upstream():
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=passing["value"])])

    downstream = [dg.AssetSpec(["sandbox", name], deps=[upstream.key], automation_condition=c)
                  for name, c in conditions.items()]
    assets = [upstream, *[dg.AssetsDefinition(specs=[s]) for s in downstream]]
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([upstream], instance=instance).success

    # Fixed instants relative to the Monday after today (the upstream materialization, stamped with the wall
    # clock, must come before them): day 1 is that Monday; the times are UTC (Nairobi minus 3 hours).
    today = dt.datetime.now(dt.UTC).date()
    monday = today + dt.timedelta(days=7 - today.weekday())

    def utc(day: int, hour: int, minute: int) -> dt.datetime:
        return dt.datetime.combine(monday + dt.timedelta(days=day - 1), dt.time(hour, minute), tzinfo=dt.UTC)

    # evaluated every 30 minutes (the daemon evaluates every 30 s) from Sunday 23:05 UTC to the next Monday
    # 01:05 UTC: each asset is requested at the first evaluation after each of its ticks, and only then
    cursor, fired = None, {"weekly": [], "nightly": [], "maintenance": []}
    when = utc(0, 23, 5)
    while when <= utc(8, 1, 5):
        result = dg.evaluate_automation_conditions(defs=assets, instance=instance, evaluation_time=when,
                                                   cursor=cursor)
        cursor = result.cursor
        for spec in downstream:
            if result.get_num_requested(spec.key):
                fired[spec.key.path[1]].append(when)
        when += dt.timedelta(minutes=30)
    assert fired == {
        "weekly": [utc(1, 0, 5), utc(8, 0, 5)],                     # Monday 03:00 EAT = 00:00 UTC
        "nightly": [utc(day, 1, 5) for day in range(1, 9)],         # 04:00 EAT = 01:00 UTC, every day
        "maintenance": [utc(day, 22, 35) for day in range(1, 8)],   # 01:30 EAT = 22:30 UTC the day before
    }

    # an upstream blocking check that did not pass holds every cron asset back at its tick
    passing["value"] = False
    assert dg.materialize([upstream], instance=instance, raise_on_error=False)
    result = dg.evaluate_automation_conditions(defs=assets, instance=instance, evaluation_time=utc(8, 1, 35),
                                               cursor=cursor)
    assert not any(result.get_num_requested(s.key) for s in downstream)  # nothing due yet
    result = dg.evaluate_automation_conditions(defs=assets, instance=instance, evaluation_time=utc(9, 1, 5),
                                               cursor=result.cursor)
    assert all(result.get_num_requested(s.key) == 0 for s in downstream)
    # once the check passes again, the ticks held back (maintenance 22:30, scoring 01:00 UTC) are honoured
    passing["value"] = True
    assert dg.materialize([upstream], instance=instance).success
    result = dg.evaluate_automation_conditions(defs=assets, instance=instance, evaluation_time=utc(9, 1, 35),
                                               cursor=result.cursor)
    assert {s.key.path[1] for s in downstream if result.get_num_requested(s.key)} == {"nightly", "maintenance"}


REAPED_RUN = '''
import sys, time
import dagster as dg
from ecommerce_lake.platform.spark import SparkResource

@dg.asset(key=["sandbox", "slow_ingest"], pool="ecommerce_lake_ingest")
def slow_ingest(spark: SparkResource):
    time.sleep(600)

instance = dg.DagsterInstance.from_config(sys.argv[1])
# started as a retry is: with its parent's tags, whose process (here: a pid that is gone) is not its own
parent = {"ecommerce_lake/host": sys.argv[2], "ecommerce_lake/pid": sys.argv[3], "ecommerce_lake/pid_of_run": "parent"}
dg.materialize([slow_ingest], instance=instance, tags=parent,
               resources={"spark": SparkResource(warehouse_dir=sys.argv[1] + "/wh", jars_dir=sys.argv[1] + "/jars")})
'''


def test_a_run_killed_hard_is_failed_and_its_pool_slot_freed_by_the_reaper(tmp_path):
    """A run started the way the daemon starts a retry (its launcher sets no process tag of its own; it carries its
    parent's, whose process is gone) is tagged with its own process when its Spark resource is set up: until then
    the reaper leaves it alone, whatever the copied tags say. Killed with SIGKILL while its step holds the ingest
    pool's only slot, it stays STARTED and keeps the slot, so every later run of the pool, and the
    one-run-at-a-time queue, would wait for it; the ``dead_run_reaper`` sensor's next tick fails it, saying why,
    and frees the slot."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    from ecommerce_lake.defs.ops.sensors import dead_run_reaper
    from ecommerce_lake.platform.dagster_storage import instance_yaml
    from ecommerce_lake.platform.dead_runs import HOST_TAG, PID_TAG, RUN_TAG

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home) + "concurrency:\n  pools:\n    default_limit: 1\n")
    (tmp_path / "run.py").write_text(REAPED_RUN)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # a pid that was a process and is gone
    gone.wait()
    instance = dg.DagsterInstance.from_config(str(home))
    # a run carrying tags copied from another run, with that run's gone pid: not this run's process, left alone
    @dg.op
    def noop():
        pass

    @dg.job
    def retried():
        noop()

    copied = instance.create_run_for_job(retried, status=dg.DagsterRunStatus.STARTED, tags={
        HOST_TAG: socket.gethostname(), PID_TAG: str(gone.pid), RUN_TAG: "its-parent"})
    with dg.build_sensor_context(instance=instance) as context:
        assert dead_run_reaper(context).skip_message == "no dead run"
    assert instance.get_run_by_id(copied.run_id).status == dg.DagsterRunStatus.STARTED
    instance.report_run_canceled(copied)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(home), socket.gethostname(),
                             str(gone.pid)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
            if runs and runs[0].tags.get(PID_TAG) == str(proc.pid) and runs[0].tags.get(RUN_TAG) == runs[0].run_id \
                    and \
                    runs[0].run_id in instance.event_log_storage.get_concurrency_run_ids():
                run = runs[0]
                break
            time.sleep(0.2)
        assert run is not None, f"the run never held the pool's slot:\n{proc.stdout.read() if proc.poll() else ''}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # nobody said it ended
    assert run.run_id in instance.event_log_storage.get_concurrency_run_ids()

    with dg.build_sensor_context(instance=instance) as context:
        result = dead_run_reaper(context)
    assert result.skip_message == f"failed 1 dead run(s): {run.run_id}"
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    failure = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0]
    assert f"pid {proc.pid}" in failure.message and "ended without finishing" in failure.message
    assert run.run_id not in instance.event_log_storage.get_concurrency_run_ids()
    with dg.build_sensor_context(instance=instance) as context:
        assert dead_run_reaper(context).skip_message == "no dead run"
