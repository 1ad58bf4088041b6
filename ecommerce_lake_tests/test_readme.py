"""The README's commands, run literally as a newcomer types them (``.venv/bin/ecommerce-lake ...`` from the
repository root, with nothing of the virtual environment on PATH), against a small lake of their own: the demo
with smaller sample data, a query, the UI (webserver, daemon, engine), and the walk-through of a new export
arriving while the UI is up: ``generate --next``, then the landing sensor's run refreshes that day up to
curated.daily_sales and declarative automation the all-time tables, each run on the engine."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request

import dagster as dg
import pytest

from ecommerce_lake_tests.servers import REPO, port_open, wait_for

README = (REPO / "README.md").read_text()
DEMO_ARGS = "--days 8 --lines 800 --customers 300 --products 25 --end-date 2025-11-30"


def readme_commands() -> list[str]:
    """Every command line of the README's shell blocks that calls the installed CLI, in order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(".venv/bin/ecommerce-lake"):
                commands.append(line)
    return commands


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory, engine):
    """The environment of a shell in the repository: its own ECOMMERCE_LAKE_HOME, no virtualenv on PATH."""
    home = tmp_path_factory.mktemp("readme_home")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if ".venv" not in p and "/venv" not in p)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "DAGSTER_HOME", "PYTHONPATH")}
    env.update(PATH=path, ECOMMERCE_LAKE_HOME=str(home), ECOMMERCE_LAKE_DEMO_GENERATE_ARGS=DEMO_ARGS)
    return env, home


def _sh(command: str, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_readme_names_the_commands_this_test_runs():
    commands = readme_commands()
    for expected in ("ecommerce-lake sql", "ecommerce-lake ui", "ecommerce-lake generate --next",
                     "ecommerce-lake engine start", "ecommerce-lake kafka start", "ecommerce-lake stream run"):
        assert any(c.startswith(f".venv/bin/{expected}") for c in commands), (expected, commands)
    assert 'ECOMMERCE_LAKE_DEMO_GENERATE_ARGS="--days 90 --lines 50000" bash scripts/demo' in README


def test_the_demo_then_every_readme_command_as_written(newcomer):
    env, home = newcomer
    # the README's smaller demo, with smaller sample data still (install, generate, run: all on the engine)
    demo = _sh("bash scripts/demo", env, timeout=1800)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    assert "SUCCESS" in demo.stdout and "(Spark: engine sc://" in demo.stdout, demo.stdout[-3000:]
    try:
        for command in readme_commands():
            if " ui" in command or "generate --next" in command:
                continue  # below: the UI walk-through
            if " dashboard" in command:  # a server: it answers with the page the demo's run wrote
                _dashboard(command, env)
                continue
            result = _sh(command, env)
            assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
            _assert_output(command, result)
    finally:
        _sh(".venv/bin/ecommerce-lake kafka stop", env)  # the README's broker, if a command above failed
    status = _sh(".venv/bin/ecommerce-lake engine status", env)
    assert status.returncode == 0 and "running" in status.stdout, status.stdout + status.stderr


def _dashboard(command: str, env: dict) -> None:
    server = subprocess.Popen(["bash", "-c", command.split("  #")[0]], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: port_open(8050), 60, command, server)
        with urllib.request.urlopen("http://127.0.0.1:8050/", timeout=30) as page:
            body = page.read().decode()
        assert page.status == 200 and 'id="chart-county_ranking"' in body and "Plotly" in body, body[:500]
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)


def _assert_output(command: str, result: subprocess.CompletedProcess) -> None:
    if " sql --engine duckdb " in command:
        assert "county_name" in result.stdout and "on DuckDB over delta-rs" in result.stderr, result.stderr
    elif " sql " in command:
        assert "county_code" in result.stdout and "on engine sc://" in result.stderr, result.stderr
    if "engine start" in command:  # the test session's engine serves this lake's configuration
        assert "already running" in result.stdout, result.stdout
    if "privacy status" in command:  # the demo's lake: encrypted with the local keyring's first key
        assert "k1 (active)" in result.stdout and "refined.customers: k1" in result.stdout, result.stdout
    if "privacy reveal" in command:
        assert "recorded in ops.privacy_audit" in result.stdout, result.stdout
    if "stream run" in command:  # the replayed landing zone reconciles with curated.daily_sales (blocking)
        assert "SUCCESS" in result.stdout and "realtime/county_sales_5min" in result.stdout, result.stdout


def test_the_ui_walk_through_a_new_export_reaches_curated(newcomer):
    """``.venv/bin/ecommerce-lake ui`` (it used to exec ``dagster`` by name and crash without the venv on PATH),
    then ``generate --next``: the sensor's run for the batch refreshes that day up to curated.daily_sales, and
    declarative automation the all-time tables, while we watch."""
    env, home = newcomer
    if port_open(3000):
        pytest.fail("port 3000 (the README's UI address) is in use on this machine")
    log = home / "ui.log"
    with log.open("w") as out:
        ui = subprocess.Popen(["bash", "-c", ".venv/bin/ecommerce-lake ui"], cwd=REPO, env=env, stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: urllib.request.urlopen("http://127.0.0.1:3000/server_info", timeout=5).status == 200, 240,
                 "ecommerce-lake ui on http://127.0.0.1:3000", ui, log)
        assert "engine: already running" in log.read_text()  # the session's engine: ui did not start another
        time.sleep(15)  # the daemon's first sensor tick sees the lake as the demo left it
        nxt = _sh(".venv/bin/ecommerce-lake generate --next", env)
        assert nxt.returncode == 0, nxt.stderr
        batch = re.search(r"generated batch (\S+)", nxt.stdout).group(1)
        day = batch[:10]
        instance = dg.DagsterInstance.from_config(str(home / "dagster_home"))
        try:
            def refreshed(table: str, partition: str | None = None, after: float = 0.0):
                def latest():
                    records = instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["curated", table]), after_timestamp=after,
                                              asset_partitions=[partition] if partition else None), limit=1).records
                    return records[0] if records else None
                return latest

            # the batch's own run (the sensor's) carries the day from raw to curated.daily_sales
            record = wait_for(refreshed("daily_sales", day), 600, f"curated/daily_sales {day} refreshed by the "
                              "batch's run", ui, log)
            run = instance.get_run_by_id(record.run_id)
            assert run.tags.get("ecommerce_lake/batch_id") == batch, run.tags
            # declarative automation then refreshes the all-time tables
            kpis = wait_for(refreshed("county_monthly_kpis", after=record.timestamp), 600,
                            "curated/county_monthly_kpis refreshed by automation", ui, log)
            auto = instance.get_run_by_id(kpis.run_id)
            assert auto.tags.get("dagster/from_automation_condition") == "true", auto.tags
            wait_for(lambda: instance.get_run_by_id(auto.run_id).is_finished, 600, "the automation run finished",
                     ui, log)
            for r in (run, auto):  # every run of the walk-through went through the engine
                r = instance.get_run_by_id(r.run_id)
                assert r.status == dg.DagsterRunStatus.SUCCESS, r.run_id
                assert r.tags.get("ecommerce_lake/spark", "").startswith("engine sc://"), r.tags
            failed = [r.run_id for r in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))]
            assert not failed, f"runs failed during the walk-through: {failed}"
        finally:
            instance.dispose()
    finally:
        shutdown = log.stat().st_size  # what the UI printed before Ctrl-C
        os.killpg(ui.pid, signal.SIGINT)
        try:
            ui.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()
    # Ctrl-C (SIGINT to the whole process group, as a terminal sends it) interrupts whatever automation still has
    # in flight, and Dagster's own helper processes print tracebacks as they die; before it, no traceback
    text = log.read_bytes()[:shutdown].decode(errors="replace")
    assert "Traceback" not in text, text[-4000:]
