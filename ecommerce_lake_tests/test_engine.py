"""The engine (a real Spark Connect server) and the in-process fallback: who uses it, who must not, what a client
leaves behind when it stops, and the commands that manage it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ecommerce_lake.deployment import spark_resource
from ecommerce_lake.platform.engine import connect, engine_jobs, fingerprint
from ecommerce_lake.settings import Settings
from ecommerce_lake_tests.servers import REPO, free_port, port_open, wait_for  # noqa: F401

EXE = Path(sys.executable).parent / "ecommerce-lake"


def _env(home: Path, remote: str) -> dict:
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    return {**os.environ, "ECOMMERCE_LAKE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"),
            "ECOMMERCE_LAKE_SPARK_REMOTE": remote}


def test_without_an_engine_a_run_starts_in_process_spark_and_says_so(tmp_path):
    """The in-process path itself: nothing listens at the configured address."""
    remote = f"sc://127.0.0.1:{free_port()}"
    report = tmp_path / "report.json"
    proc = subprocess.run([str(EXE), "run", "--select", "refined/counties", "--report", str(report)],
                          env=_env(tmp_path, remote), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert f"no Spark engine is listening at {remote}" in out and "started in-process Spark on local[*]" in out
    assert json.loads(report.read_text())["spark"] == "in-process local[*]"
    assert "(Spark: in-process local[*])" in proc.stdout


def test_an_engine_serves_only_its_own_static_configuration(settings, engine):
    """A client that needs another master (or jars, catalog, S3 settings) must not use this engine: it would
    silently run with the engine's. Lake paths and session settings do not matter."""
    ours = spark_resource(settings).spark_conf()
    other_lake = spark_resource(Settings(home=str(Path(settings.home) / "elsewhere"), env="local",
                                         spark_remote=settings.spark_remote)).spark_conf()
    assert fingerprint(other_lake) == fingerprint(ours)  # another lake root: the same engine serves it
    tuned = spark_resource(Settings(home=settings.home, env="local", spark_remote=settings.spark_remote,
                                    spark_shuffle_partitions=3)).spark_conf()
    assert fingerprint(tuned) == fingerprint(ours)  # a session setting
    conn = connect(settings.spark_remote, tuned)
    try:
        assert conn.session is not None and conn.session.conf.get("spark.sql.shuffle.partitions") == "3"
    finally:
        conn.session.stop()
    other = spark_resource(Settings(home=settings.home, env="local", spark_remote=settings.spark_remote,
                                    spark_master="local[1]")).spark_conf()
    refused = connect(settings.spark_remote, other)
    assert refused.session is None and refused.warn
    assert "serves another configuration" in refused.reason and "spark.master" in refused.reason


def test_a_client_that_is_stopped_leaves_nothing_running_on_the_engine(settings, engine, tmp_path):
    """SIGTERM to a client in the middle of a long Spark job (as terminating a run does to its process): the
    client interrupts its operations on the engine before it exits, and the engine serves the next client."""
    script = tmp_path / "long_query.py"
    script.write_text(
        "import signal\n"
        "signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))  # as Dagster does\n"
        "from ecommerce_lake.deployment import spark_resource\n"
        "from ecommerce_lake.settings import Settings\n"
        "from ecommerce_lake.platform.spark import session_info\n"
        f"spark = spark_resource(Settings(home={settings.home!r}, spark_remote={settings.spark_remote!r}))"
        ".get_session()\n"
        "print('SESSION', session_info().session_id, flush=True)\n"
        "spark.range(10**11).selectExpr('sum(id * 7 % 13)').collect()  # minutes of work\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=REPO)
    ui = engine.status().ui_url
    session_id = None
    try:
        for line in proc.stdout:
            if line.startswith("SESSION "):
                session_id = line.split()[1]
                break
        assert session_id, "the client did not connect"
        wait_for(lambda: [j for j in engine_jobs(ui, session_id, 0)[0] if j["status"] == "RUNNING"], 120,
                 "the client's job running on the engine")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        wait_for(lambda: not [j for j in engine_jobs(ui, session_id, 0)[0] if j["status"] == "RUNNING"], 60,
                 "the engine to interrupt the stopped client's job")
        assert {j["status"] for j in engine_jobs(ui, session_id, 0)[0]} <= {"FAILED", "SUCCEEDED"}
    finally:
        if proc.poll() is None:
            proc.kill()
        if session_id:  # never leave minutes of work behind on the session's engine, whatever failed above
            for job in engine_jobs(ui, session_id, 0)[0]:
                if job["status"] == "RUNNING":
                    urllib.request.urlopen(f"{ui}/jobs/job/kill/?id={job['jobId']}", timeout=10)
    conn = connect(settings.spark_remote, spark_resource(settings).spark_conf())
    try:
        assert conn.session.sql("SELECT 41 + 1 AS x").collect()[0]["x"] == 42
    finally:
        conn.session.stop()


def test_ui_starts_the_engine_when_none_runs_and_stops_it_with_the_ui(tmp_path):
    """``ecommerce-lake ui`` on a machine without an engine: it starts one (cold), `engine status` sees it, the
    UI's code location loads; Ctrl-C stops both."""
    remote, port = f"sc://127.0.0.1:{free_port()}", free_port()
    env = _env(tmp_path, remote)
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        ui = subprocess.Popen([str(EXE), "ui", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True, cwd=REPO)
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).status == 200,
                 300, "the UI", ui, log)
        status = subprocess.run([str(EXE), "engine", "status", "--json"], env=env, capture_output=True, text=True,
                                timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
        st = json.loads(status.stdout)
        assert st["up"] and st["serves_this_configuration"] and st["pid"]
        assert (tmp_path / "engine" / "engine.log").exists() and st["ui_url"].startswith("http://127.0.0.1:")
        assert "engine: starting a Spark Connect server" in log.read_text()
    finally:
        os.killpg(ui.pid, signal.SIGINT)
        ui.wait(timeout=120)
    assert "engine: stopped" in log.read_text(), log.read_text()[-3000:]
    host_port = int(remote.rsplit(":", 1)[1])
    deadline = time.monotonic() + 30
    while port_open(host_port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not port_open(host_port)
    again = subprocess.run([str(EXE), "engine", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 3 and "not running" in again.stdout


@pytest.mark.parametrize("value", ["http://127.0.0.1:15002", "127.0.0.1:15002"])
def test_a_bad_engine_address_is_a_configuration_error(value, tmp_path):
    proc = subprocess.run([str(EXE), "config"], env=_env(tmp_path, value), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "ECOMMERCE_LAKE_SPARK_REMOTE" in proc.stderr
