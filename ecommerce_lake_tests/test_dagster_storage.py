"""The local instance's SQLite storage with pooled event log connections (ecommerce_lake.platform.dagster_storage):
the repository's dagster.yaml selects it, it keeps Dagster's files and layout, and several processes see each
other's events while its connections stay open."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ecommerce_lake.platform.dagster_storage import (
    LOCAL_STORAGE_YAML,
    MAX_OPEN_RUN_DATABASES,
    PooledSqliteEventLogStorage,
    PooledSqliteStorage,
    pinned,
)

REPO = Path(__file__).resolve().parents[1]
DAYS = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-03-02")  # 60 days


@dg.multi_asset(outs={n: dg.AssetOut(io_manager_key="nothing") for n in ("a", "b")}, partitions_def=DAYS,
                backfill_policy=dg.BackfillPolicy.single_run())
def two_outputs(context):
    for name in ("a", "b"):
        yield dg.Output(None, output_name=name)


class Nothing(dg.IOManager):
    def handle_output(self, context, obj):
        pass

    def load_input(self, context):
        return None


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home))


def _run_all_days(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    keys = DAYS.get_partition_keys()
    return dg.materialize([two_outputs], instance=instance, resources={"nothing": Nothing()},
                          tags={"dagster/asset_partition_range_start": keys[0],
                                "dagster/asset_partition_range_end": keys[-1]})


def _other_process(home: Path, code: str) -> str:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_repository_dagster_yaml_selects_the_pooled_storage_in_dagsters_layout(tmp_path, monkeypatch):
    # the instances bench and the tests create use the same storage as the repository's dagster.yaml
    repo_config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert repo_config["storage"] == yaml.safe_load(LOCAL_STORAGE_YAML)["storage"]
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # the file reads base_dir from DAGSTER_HOME
    instance = _instance(tmp_path)
    assert instance.get_ref().storage_data.class_name == PooledSqliteStorage.__name__
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    result = _run_all_days(instance)
    assert result.success
    # Dagster's own layout: run storage, the event log's index and one database per run
    assert (tmp_path / "history" / "runs.db").is_file()
    assert (tmp_path / "history" / "runs" / "index.db").is_file()
    assert (tmp_path / "history" / "runs" / f"{result.run_id}.db").is_file()
    # ...so Dagster's stock SQLite storage reads what the pooled one wrote
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    stock = _instance(tmp_path)
    assert type(stock.event_log_storage).__name__ == "SqliteEventLogStorage"
    assert len(stock.fetch_materializations(dg.AssetKey("a"), limit=1000).records) == 60
    instance.dispose()
    stock.dispose()


def test_processes_see_each_others_events_while_connections_stay_open(tmp_path, monkeypatch):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = _instance(tmp_path)
    first = _run_all_days(instance)
    assert first.success
    assert len(instance.fetch_materializations(dg.AssetKey("b"), limit=1000).records) == 60

    # another process, with its own pooled storage, reads all 60 + 60 materializations and every event of the run
    seen = _other_process(tmp_path, f"""
        import dagster as dg
        instance = dg.DagsterInstance.get()
        a = len(instance.fetch_materializations(dg.AssetKey("a"), limit=1000).records)
        b = len(instance.fetch_materializations(dg.AssetKey("b"), limit=1000).records)
        print(a, b, len(instance.all_logs("{first.run_id}")))
    """)
    assert seen == f"60 60 {len(instance.all_logs(first.run_id))}"

    # the other process writes; this one, whose connections stayed open, sees it
    _other_process(tmp_path, """
        import dagster as dg
        instance = dg.DagsterInstance.get()
        instance.report_runless_asset_event(dg.AssetMaterialization("from_other_process", metadata={"n": 7}))
        print("ok")
    """)
    record = instance.fetch_materializations(dg.AssetKey("from_other_process"), limit=1).records[0]
    assert record.asset_materialization.metadata["n"].value == 7

    # a forked child does not use its parent's connections, and its event is stored
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            instance.report_runless_asset_event(dg.AssetMaterialization("from_fork"))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(instance.fetch_materializations(dg.AssetKey("from_fork"), limit=5).records) == 1
    instance.dispose()


def test_open_run_databases_are_bounded_and_wipe_starts_afresh(tmp_path, monkeypatch):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = _instance(tmp_path)
    storage = instance.event_log_storage
    runs = []
    for _ in range(MAX_OPEN_RUN_DATABASES + 3):
        result = dg.materialize([two_outputs], partition_key="2025-01-05", instance=instance,
                                resources={"nothing": Nothing()})
        assert result.success
        runs.append(result.run_id)
    open_runs = [s for s in storage._engines if s != "index"]
    assert len(open_runs) == MAX_OPEN_RUN_DATABASES
    assert runs[0] not in open_runs and runs[-1] in open_runs
    # a run whose database was closed is still read in full
    assert any(r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.RUN_SUCCESS for r in instance.all_logs(runs[0]))
    assert len(instance.fetch_materializations(dg.AssetKey("a"), limit=100).records) == len(runs)

    instance.wipe()
    assert not list((tmp_path / "history" / "runs").glob("*-*-*-*-*.db"))
    assert _run_all_days(instance).success
    assert len(instance.fetch_materializations(dg.AssetKey("a"), limit=1000).records) == 60
    instance.dispose()


def test_a_pinned_instance_reads_its_own_directory_whatever_dagster_home_says(tmp_path, monkeypatch):
    own, other = tmp_path / "own", tmp_path / "other"
    own.mkdir(), other.mkdir()
    (own / "dagster.yaml").write_text(pinned((REPO / "dagster.yaml").read_text(), own))
    monkeypatch.setenv("DAGSTER_HOME", str(other))
    instance = _instance(own)
    assert _run_all_days(instance).success
    assert (own / "history" / "runs" / "index.db").is_file() and not (other / "history").exists()
    assert len(_instance(own).fetch_materializations(dg.AssetKey("a"), limit=1000).records) == 60
    instance.dispose()


def test_pinning_reads_the_storage_block_however_it_is_laid_out_and_refuses_a_file_without_one(tmp_path):
    home = tmp_path / "h"
    reformatted = LOCAL_STORAGE_YAML.replace("base_dir:\n", "base_dir:   \n").replace("env: DAGSTER_HOME",
                                                                                      "env:  DAGSTER_HOME  ")
    for text in (LOCAL_STORAGE_YAML, reformatted, "# comment\n" + (REPO / "dagster.yaml").read_text()):
        config = yaml.safe_load(pinned(text, home))
        assert config["storage"]["custom"]["config"]["base_dir"] == str(home)
        assert config["storage"]["custom"]["class"] == "PooledSqliteStorage"
    for text in ("storage:\n  sqlite:\n    base_dir: /elsewhere\n", LOCAL_STORAGE_YAML + LOCAL_STORAGE_YAML):
        with pytest.raises(ValueError, match="expected one storage `base_dir:` taken from `env: DAGSTER_HOME`"):
            pinned(text, home)


def test_the_private_dagster_apis_are_still_there(tmp_path):
    """Every private Dagster API the project uses goes through ecommerce_lake.platform.dagster_private: after a
    Dagster upgrade this names what moved, before any run meets it."""
    import inspect

    from ecommerce_lake.platform import dagster_private as private

    for name in private.__all__:
        assert getattr(private, name, None) is not None, f"dagster_private.{name} is gone"
    for member in private.SQLITE_EVENT_LOG_MEMBERS:
        assert callable(getattr(private.SqliteEventLogStorage, member, None)), f"SqliteEventLogStorage.{member}"
    assert list(inspect.signature(private.SqliteEventLogStorage.__init__).parameters)[:3] == [
        "self", "base_dir", "inst_data"]
    assert list(inspect.signature(private.DagsterSqliteStorage.__init__).parameters)[:3] == [
        "self", "base_dir", "inst_data"]
    assert isinstance(private.SQLITE_BUSY_TIMEOUT_SECONDS, int)
    storage = PooledSqliteStorage(str(tmp_path / "storage"))
    try:
        for attribute in private.SQLITE_EVENT_LOG_ATTRIBUTES:
            assert hasattr(storage.event_log_storage, attribute), f"SqliteEventLogStorage().{attribute}"
        for attribute in private.SQLITE_STORAGE_ATTRIBUTES:
            assert hasattr(storage, attribute), f"DagsterSqliteStorage().{attribute}"
        assert isinstance(storage.event_log_storage, PooledSqliteEventLogStorage)
    finally:
        storage.event_log_storage.dispose()


def test_only_one_module_imports_private_dagster_apis():
    """``dagster._`` imports live in ecommerce_lake/platform/dagster_private.py only (the project's code and its
    tests alike)."""
    import re

    offenders = []
    for path in sorted([*(REPO / "ecommerce_lake").rglob("*.py"), *(REPO / "ecommerce_lake_tests").rglob("*.py")]):
        if path.name == "dagster_private.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"^\s*(from|import)\s+dagster\._", line):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
