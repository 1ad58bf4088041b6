"""The landing sensor, declarative automation and the run-failure recorder, on the real lake built by
the ``lake_run`` fixture (batches 2025-11-11 .. 2025-12-05, 2025-12-02 rejected, 2025-12-03 incomplete)."""

import csv
import json
from pathlib import Path

import dagster as dg
import pytest

from ecommerce_lake.defs.automation import RAW_ALL, RAW_BATCH_OUTPUTS, landing_sensor, run_failure_recorder
from ecommerce_lake.defs.resources import build_resources
from ecommerce_lake.partitions import BATCH_TAG, RANGE_END_TAG, RANGE_START_TAG
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
def res(settings, lake_run):
    return build_resources(settings)


@pytest.fixture(scope="module")
def state():
    return {}


def test_nothing_to_do_on_an_ingested_landing_zone(res, lake_run, state, caplog):
    result, _ = _tick(res)
    assert not result.run_requests
    assert "2025-12-03" in result.skip_reason.skip_message  # the incomplete batch is named
    cursor = json.loads(result.cursor)
    assert cursor["after"] == "2025-12-02"  # never past the incomplete batch
    state["cursor"] = result.cursor


def test_a_new_batch_gets_one_run_for_the_days_it_touches(res, settings, state):
    landing = Path(settings.landing_root)
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
    result, _ = _tick(res, state["cursor"])
    assert [r.run_key for r in result.run_requests] == ["2025-12-06"]
    request = result.run_requests[0]
    assert request.tags[BATCH_TAG] == "2025-12-06"
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2025-12-01", "2025-12-07")
    assert set(request.asset_selection) == set(RAW_ALL)
    again, _ = _tick(res, result.cursor)
    assert not again.run_requests  # requested once only
    state["cursor"], state["request"] = again.cursor, request


def test_the_requested_run_ingests_the_batch_and_automation_picks_up_its_days(res, settings, state, lake_run):
    from ecommerce_lake.definitions import build_defs

    instance = dg.DagsterInstance.get()
    defs = build_defs(settings)
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    result = execute_request(settings, state["request"], instance=instance)
    assert result.success
    orders = lake_run.table("raw/orders").where("_batch_id = '2025-12-06'")
    assert {str(r["_order_date"]) for r in orders.collect()} == {"2025-12-06"}
    items = {r["order_id"]: str(r["_order_date"]) for r in
             lake_run.table("raw/order_items").where("_batch_id = '2025-12-06'").collect()}
    assert items == {"TO30": "2025-12-06", "TO31": "2025-12-06", "TO09": "2025-12-01"}
    log = lake_run.table("raw/batch_log").where("batch_id = '2025-12-06'").collect()[0]
    assert log["status"] == "accepted" and log["days"] == ["2025-12-01", "2025-12-06", "2025-12-07"]

    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor)
    refined = evaluation.get_requested_partitions(dg.AssetKey(["refined", "orders"]))
    assert {"2025-12-01", "2025-12-06", "2025-12-07"} <= refined
    assert "2025-11-15" not in refined  # days the batch did not touch stay as they are
    # the whole chain downstream is planned in the same evaluation, for the same days
    fact = evaluation.get_requested_partitions(dg.AssetKey(["curated", "fact_sales"]))
    assert {"2025-12-01", "2025-12-06", "2025-12-07"} <= fact and "2025-11-15" not in fact
    assert evaluation.get_requested_partitions(dg.AssetKey(["curated", "product_performance"])) == {None}


def test_rejected_and_late_completed_batches(res, settings, state):
    landing = Path(settings.landing_root)
    bad_headers = {**HEADERS, "orders.csv": [h for h in HEADERS["orders.csv"] if h != "order_ts"]}
    _write_batch(landing, "2025-12-08", {"orders.csv": [["TO40", "T001", "paid", "app", "", "mpesa", "0", "x"]]},
                 headers=bad_headers)
    (landing / "2025-12-03" / "_SUCCESS").write_text("")  # the incomplete batch completes
    result, _ = _tick(res, state["cursor"])
    by_key = {r.run_key: r for r in result.run_requests}
    assert set(by_key) == {"2025-12-03", "2025-12-08"}
    assert set(by_key["2025-12-08"].asset_selection) == set(RAW_BATCH_OUTPUTS)  # records the rejection only
    assert RANGE_START_TAG not in by_key["2025-12-08"].tags
    assert by_key["2025-12-03"].tags[RANGE_START_TAG] == "2025-12-03"
    assert json.loads(result.cursor)["after"] == "2025-12-08"


def test_thousands_of_batches_are_listed_and_requested_a_tick_at_a_time(tmp_path, settings):
    from ecommerce_lake.defs.automation import SensorSettingsResource
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


def test_run_failures_are_recorded_for_the_ui(settings):
    instance = dg.DagsterInstance.get()

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
