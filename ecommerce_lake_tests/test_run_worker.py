"""The Spark run worker's interface, errors and lifecycle, on a real worker process on 127.0.0.1.

Runs executed by it: ``test_bench.py`` (``run --worker``: a full rebuild, then the new day, checked against
the landing files) and ``test_production.py`` (the daemon's runs through SparkWorkerRunLauncher)."""

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request

import dagster as dg
import pytest

from ecommerce_lake.platform.run_worker import RunWorkerError, SparkWorkerRunLauncher, call
from ecommerce_lake_tests.servers import BIN, free_port, http_json, process, wait_for

KEY = "test-pseudonym-key-0123456789abcdef"


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _failures(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """A failed run's error events, with the step's error and its cause, for the assertion message."""
    out = []
    for event in instance.all_logs(run_id):
        if event.level < 40:
            continue
        out.append(event.message)
        if event.dagster_event and event.dagster_event.is_step_failure:
            out.append(event.dagster_event.step_failure_data.error.to_string())
    return out


def test_no_worker_listening_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RunWorkerError, match="no Spark run worker answers at .*start one with `ecommerce-lake worker`"):
        call(url, "/health")
    # run monitoring sees a worker that is gone as a failed run worker, with the reason
    health = SparkWorkerRunLauncher(url=url).check_run_worker_health(dg.DagsterRun(job_name="lake", run_id="r1"))
    assert health.status.value == "FAILED" and "ecommerce-lake worker" in health.msg
    # the CLI says so and exits 2, without running anything in its own process
    env = {**os.environ, "ECOMMERCE_LAKE_HOME": str(tmp_path), "ECOMMERCE_LAKE_PSEUDONYM_KEY": KEY}
    proc = subprocess.run([str(BIN / "ecommerce-lake"), "run", "--incremental", "--worker", url], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"no Spark run worker answers at {url}" in proc.stderr, proc.stderr


def test_a_long_lived_worker_remembers_a_bounded_number_of_finished_runs():
    """Run states stay bounded in a worker that lives for months: the last FINISHED_KEPT finished runs are
    remembered, older ones are forgotten; queued and running runs are never dropped."""
    from ecommerce_lake.platform.run_worker import FINISHED_KEPT, RunWorker, _Job

    worker = RunWorker(settings=None, instance=None)
    worker.submit(_Job("dagster", run_id="waiting"))
    for i in range(FINISHED_KEPT + 25):
        worker.finish(f"run-{i}")
    assert worker.states["waiting"] == "queued"
    assert worker.states[f"run-{FINISHED_KEPT + 24}"] == "finished"
    assert worker.states["run-25"] == "finished"
    assert "run-24" not in worker.states and "run-0" not in worker.states
    assert len(worker.states) == FINISHED_KEPT + 1
    worker.finish("run-25")  # a run id finished twice is kept by its latest finish
    for i in range(FINISHED_KEPT - 1):
        worker.finish(f"later-{i}")
    assert worker.states["run-25"] == "finished" and "run-26" not in worker.states


def test_worker_answers_health_and_refuses_bad_requests_then_stops_on_sigterm(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"ECOMMERCE_LAKE_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
           "ECOMMERCE_LAKE_PSEUDONYM_KEY": KEY}
    log = tmp_path / "worker.log"
    with process([str(BIN / "ecommerce-lake"), "worker", "--port", str(port)], log, env=env) as worker:
        # Spark starts with the worker, before any run arrives
        health = wait_for(lambda: (h := http_json(f"{url}/health"))["spark_sessions_started"] == 1 and h,
                          180, "run worker with Spark up", worker, log)
        assert health["pid"] == worker.pid and health["runs_done"] == 0 and health["running"] is None
        assert health["spark_startup_seconds"] > 0
        assert http_json(f"{url}/runs/no-such-run") == {"run_id": "no-such-run", "state": "unknown"}
        assert _post(f"{url}/runs", b"{}") == (400, {"error": 'POST /runs needs {"run_id": ...}'})
        status, answer = _post(f"{url}/execute", json.dumps({"mode": "sideways"}).encode())
        assert status == 400 and "mode must be full or incremental" in answer["error"]
        status, answer = _post(f"{url}/execute", b"not json")
        assert status == 400 and "not JSON" in answer["error"]
        with pytest.raises(RunWorkerError, match="answered 404"):
            call(url, "/nothing-here")
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    text = log.read_text()
    assert f"Spark run worker on {url} (pid {health['pid']}" in text
    assert "Spark run worker stopped after 0 run(s)" in text


def test_runs_launched_into_the_worker_terminate_and_the_next_run_reuses_its_jvm(tmp_path):
    """SparkWorkerRunLauncher against a real worker, as the daemon uses it: a run of the raw sales assets is
    terminated while it executes (its Spark jobs cancelled, the run CANCELED), then a second run succeeds in the
    same process and the same SparkSession."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.launcher import LaunchRunContext

    from ecommerce_lake.generator.generate import GeneratorConfig, generate
    from ecommerce_lake.partitions import RANGE_END_TAG, RANGE_START_TAG
    from ecommerce_lake.platform.dagster_storage import instance_yaml
    from ecommerce_lake_tests.servers import REPO

    home, dagster_home = tmp_path / "home", tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    generate(GeneratorConfig(out=home / "landing", seed=7, days=5, lines=4000, overwrite=True))
    days = sorted(p.name for p in (home / "landing").iterdir())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"ECOMMERCE_LAKE_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "ECOMMERCE_LAKE_PSEUDONYM_KEY": KEY}
    log = tmp_path / "worker.log"
    with process([str(BIN / "ecommerce-lake"), "worker", "--port", str(port)], log, env=env) as worker, \
            dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        wait_for(lambda: http_json(f"{url}/health")["spark_sessions_started"] == 1, 180, "run worker", worker, log)
        launcher = SparkWorkerRunLauncher(url=url)
        launcher.register_instance(instance)
        recon = ReconstructableRepository.for_module("ecommerce_lake.definitions", "defs",
                                                     working_directory=str(REPO)).get_reconstructable_job("__ASSET_JOB")

        def launch(keys: set[dg.AssetKey], tags: dict[str, str]) -> str:
            job = recon.get_definition().get_subset(asset_selection=keys)
            run = instance.create_run_for_job(job_def=job, asset_selection=frozenset(keys), tags=tags,
                                              job_code_origin=recon.get_python_origin())
            launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
            return run.run_id

        def status(run_id: str) -> dg.DagsterRunStatus:
            return instance.get_run_by_id(run_id).status

        raw_sales = {dg.AssetKey(["raw", t]) for t in ("orders", "order_items", "payments")}
        first = launch(raw_sales, {RANGE_START_TAG: days[0], RANGE_END_TAG: days[-1]})
        assert instance.get_run_by_id(first).tags["ecommerce_lake/run_worker"] == url
        wait_for(lambda: instance.get_records_for_run(first, of_type=dg.DagsterEventType.STEP_START).records,
                 180, "the first run's first step", worker, log)
        assert http_json(f"{url}/runs/{first}")["state"] == "running"
        assert launcher.check_run_worker_health(instance.get_run_by_id(first)).status.value == "RUNNING"
        assert launcher.terminate(first)
        wait_for(lambda: status(first) == dg.DagsterRunStatus.CANCELED, 120, "the terminated run canceled",
                 worker, log)
        assert "termination requested; cancelling its Spark jobs" in log.read_text()

        second = launch({dg.AssetKey(["refined", "counties"])}, {})
        wait_for(lambda: status(second) in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE), 300,
                 "the second run", worker, log)
        assert status(second) == dg.DagsterRunStatus.SUCCESS, _failures(instance, second)
        assert instance.get_latest_materialization_event(dg.AssetKey(["refined", "counties"])).run_id == second
        health = http_json(f"{url}/health")
        assert health["pid"] == worker.pid and health["runs_done"] == 2
        assert health["spark_sessions_started"] == 1  # the same JVM served both runs
        assert launcher.check_run_worker_health(instance.get_run_by_id(second)).status.value == "SUCCESS"
