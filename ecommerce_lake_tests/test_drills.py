"""Failure drills on real components (issue 26): a run killed with SIGKILL in the middle of a Delta write, two runs
over the same partitions at once, a batch id delivered again with other content, and batch ids and file names
that try to leave the landing root. Each drill is real ``ecommerce-lake run`` processes (raw and refined layers,
with their checks) on a small generated landing zone; the lake is read with delta-rs, not with the Spark code
under test, and compared with the tables one uninterrupted run writes (the module's reference lake).
docs/reliability.md records what was measured."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from ecommerce_lake.generator.generate import GeneratorConfig, generate

EXE = Path(sys.executable).parent / "ecommerce-lake"
SELECT = "group:raw or group:refined"
VOLATILE = {"_ingested_at", "ingested_at", "run_id"}  # when and by which run: differ between any two runs


# ---- helpers ----------------------------------------------------------------------------------------------------
def _home(tmp: Path, landing: Path, **extra: str) -> dict:
    """A fresh ECOMMERCE_LAKE_HOME with a copy of ``landing``; the environment of a run against it."""
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copytree(landing, tmp / "landing", symlinks=True)
    (tmp / "dagster_home").mkdir()
    return {**os.environ, "ECOMMERCE_LAKE_HOME": str(tmp), "DAGSTER_HOME": str(tmp / "dagster_home"),
            "ECOMMERCE_LAKE_LANDING": str(tmp / "landing"), "ECOMMERCE_LAKE_ROOT": str(tmp / "lake"),
            # one pseudonymisation key for every drill lake, so that their tables compare equal
            "ECOMMERCE_LAKE_PSEUDONYM_KEY": "drill-pseudonym-key-0123456789abcdef", **extra}


def _start(env: dict, log: Path) -> subprocess.Popen:
    """``ecommerce-lake run`` in a process group of its own (so SIGKILL reaches its JVM, when it has one)."""
    return subprocess.Popen([str(EXE), "run", "--select", SELECT], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _run(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), "run", "--select", SELECT], env=env, capture_output=True, text=True,
                          timeout=900)


def _table_dirs(lake: Path) -> list[Path]:
    """Every table folder (``<lake>/<layer>/<table>``), committed or not yet."""
    return sorted(p for layer in lake.glob("*") if layer.is_dir() for p in layer.glob("*") if p.is_dir())


def _committed(table: Path) -> bool:
    """The table has a commit (Spark creates ``_delta_log`` before the first one)."""
    return any((table / "_delta_log").glob("*.json"))


def _ever_added(table: Path) -> set[str]:
    """Every data file any commit of the table ever added (read from the Delta log's JSON commits)."""
    added: set[str] = set()
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                added.add(action["add"]["path"])
    return added


def _uncommitted(table: Path) -> set[str]:
    """Data files on disk that no commit ever added: a write in progress, or one that died before its commit."""
    on_disk = {p.relative_to(table).as_posix() for p in table.rglob("*.parquet") if "_delta_log" not in p.parts}
    from urllib.parse import unquote

    return on_disk - {unquote(p) for p in _ever_added(table)}


def _read(table: Path):
    return DeltaTable(str(table)).to_pandas()


def _snapshot(lake: Path) -> dict[str, list[tuple]]:
    """Every table's rows (without the columns that say when and by which run), sorted: equal snapshots mean
    equal tables."""
    out = {}
    for table in _table_dirs(lake):
        if not _committed(table):
            continue
        df = _read(table)
        df = df[[c for c in df.columns if c not in VOLATILE]]
        out[table.relative_to(lake).as_posix()] = sorted(
            (tuple(str(v) for v in row) for row in df.itertuples(index=False)))
    return out


def _versions(lake: Path) -> dict[str, int]:
    return {t.relative_to(lake).as_posix(): DeltaTable(str(t)).version()
            for t in _table_dirs(lake) if _committed(t)}


def _diff(got: dict, want: dict) -> str:
    lines = [f"tables only in one: {sorted(set(got) ^ set(want))}"]
    for name in sorted(set(got) & set(want)):
        if got[name] != want[name]:
            lines.append(f"{name}: {len(got[name])} rows vs {len(want[name])}; first differing: "
                         f"{sorted(set(got[name]) ^ set(want[name]))[:2]}")
    return "\n".join(lines)


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (symbolic links not followed) with its content digest."""
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
                                            and not p.is_symlink() else "link" if p.is_symlink() else "dir")
            for p in sorted(root.rglob("*"))}


# ---- the shared landing zone and the reference lake ------------------------------------------------------------
@pytest.fixture(scope="module")
def drill_landing(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("drills") / "landing"
    generate(GeneratorConfig(out=out, seed=23, days=4, customers=80, products=20, lines=600, dirty_rate=0.05,
                             end_date=dt.date(2025, 11, 30)))
    return out


@pytest.fixture(scope="module")
def reference(drill_landing, tmp_path_factory, engine_url, engine) -> dict:
    """The tables one uninterrupted run writes."""
    env = _home(tmp_path_factory.mktemp("reference"), drill_landing)
    result = _run(env)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    snap = _snapshot(Path(env["ECOMMERCE_LAKE_ROOT"]))
    assert snap["raw/orders"] and snap["refined/orders"] and snap["raw/batch_log"]
    return snap


# ---- drills -----------------------------------------------------------------------------------------------------
def test_sigkill_in_the_middle_of_a_delta_write_then_a_rerun_converges(drill_landing, reference, tmp_path):
    """The run uses in-process Spark (``ECOMMERCE_LAKE_SPARK_REMOTE=off``), so SIGKILL to its process group kills
    the JVM that is writing: the kill lands when a table holds data files no commit has added yet. Every table
    stays readable at its previous version throughout, the dead write's files stay invisible, and a re-run (on
    the engine) ends with exactly the reference tables."""
    env = _home(tmp_path / "home", drill_landing, ECOMMERCE_LAKE_SPARK_REMOTE="off")
    lake = Path(env["ECOMMERCE_LAKE_ROOT"])
    proc = _start(env, tmp_path / "killed.log")
    killed: tuple | None = None
    unreadable: list = []
    last_read = 0.0
    deadline = time.monotonic() + 900
    try:
        while proc.poll() is None and time.monotonic() < deadline and killed is None:
            for table in _table_dirs(lake):
                pending = _uncommitted(table)
                if pending:
                    version = DeltaTable(str(table)).version() if _committed(table) else None
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = (table.relative_to(lake).as_posix(), version, pending)
                    break
            if time.monotonic() - last_read > 0.5:  # readers see a whole version at every moment of the run
                for table in _table_dirs(lake):
                    if _committed(table):
                        try:
                            _read(table)
                        except Exception as exc:  # noqa: BLE001 - recorded, asserted below
                            unreadable.append((table.name, repr(exc)[:300]))
                last_read = time.monotonic()
            time.sleep(0.02)
    finally:
        if proc.poll() is None and killed is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    log = (tmp_path / "killed.log").read_text(errors="replace")
    assert killed is not None, f"the run ended (rc {proc.returncode}) before a write was caught mid-way\n{log[-3000:]}"
    assert proc.returncode == -signal.SIGKILL
    name, version, pending = killed
    print(f"killed during the write of {name} (committed version {version}, {len(pending)} uncommitted files)")
    assert not unreadable, unreadable

    table = lake / name
    time.sleep(2)  # nothing is left to finish the write: the JVM died with the run
    if version is None:  # the table's first write: there is still no table, and readers find none
        assert not _committed(table)
    else:
        assert DeltaTable(str(table)).version() == version, "the killed write was committed"
    assert pending <= _uncommitted(table), "the dead write's files are not in any commit"
    for other in _table_dirs(lake):
        if _committed(other):
            _read(other)  # every table readable after the kill

    rerun = _run({**env, "ECOMMERCE_LAKE_SPARK_REMOTE": os.environ["ECOMMERCE_LAKE_SPARK_REMOTE"]})
    assert rerun.returncode == 0, rerun.stdout[-5000:] + rerun.stderr[-5000:]
    got = _snapshot(lake)
    assert got == reference, _diff(got, reference)


def test_two_runs_over_the_same_partitions_at_once(drill_landing, reference, tmp_path):
    """Two ``ecommerce-lake run`` processes on one lake and one Dagster instance, started together over the same
    batches and day partitions. No table is corrupted: each is readable, and none holds a batch twice. A run that
    loses a Delta conflict fails naming it; a third run then converges to the reference tables."""
    env = _home(tmp_path / "home", drill_landing)
    lake = Path(env["ECOMMERCE_LAKE_ROOT"])
    procs = [_start(env, tmp_path / f"run{i}.log") for i in (1, 2)]
    for p in procs:
        p.wait(timeout=900)
    logs = [(tmp_path / f"run{i}.log").read_text(errors="replace") for i in (1, 2)]
    outcome = [p.returncode for p in procs]
    print(f"exit codes of the two concurrent runs: {outcome}")
    for table in _table_dirs(lake):
        if _committed(table):
            _read(table)
    for rc, log in zip(outcome, logs):
        if rc != 0:  # the loser says what happened and what to do
            assert "another run committed to" in log and "Run again" in log, log[-5000:]
    assert 0 in outcome, logs
    raw_orders = _read(lake / "raw" / "orders")
    assert not raw_orders.duplicated(["_batch_id", "_source_file", "_row_number"]).any(), "a batch ingested twice"
    if outcome == [0, 0]:
        got = _snapshot(lake)
        assert got == reference, _diff(got, reference)
    final = _run(env)
    assert final.returncode == 0, final.stdout[-5000:] + final.stderr[-5000:]
    got = _snapshot(lake)
    assert got == reference, _diff(got, reference)


def test_hostile_batch_ids_and_file_names_and_a_redelivered_batch(drill_landing, tmp_path):
    """Batch ids with spaces or control characters, a batch folder and a file that are symbolic links out of
    the landing root, a folder where a contract file belongs: each batch is rejected with its reason in
    raw.batch_log, nothing outside the landing root is read, nothing outside the lake root is written. Then a
    batch already ingested is delivered again with other content: refused, logged, and no table changes; a
    delivery of the same bytes again is not refused."""
    outside = tmp_path / "outside"
    (outside / "batch").mkdir(parents=True)
    sentinel = "CUST-FROM-OUTSIDE"
    customers_csv = f"customer_id,updated_at,county\n{sentinel},2025-11-20T10:00:00Z,Nairobi\n"
    (outside / "customers.csv").write_text(customers_csv)
    (outside / "batch" / "customers.csv").write_text(customers_csv)
    (outside / "batch" / "_SUCCESS").write_text("")
    env = _home(tmp_path / "home", drill_landing)
    landing, lake = Path(env["ECOMMERCE_LAKE_LANDING"]), Path(env["ECOMMERCE_LAKE_ROOT"])
    first = sorted(p.name for p in landing.iterdir())[0]
    hostile = {
        "2025-12-01 evening": "has characters outside",
        "bad\x07bell": "has characters outside",
        "2025-12-02": "the batch folder (symbolic link)",
        "2025-12-03": "'customers.csv' (symbolic link)",
        "2025-12-04": "'customers.csv' (directory)",
    }
    for batch_id in ("2025-12-01 evening", "bad\x07bell"):
        shutil.copytree(landing / first, landing / batch_id)
    (landing / "2025-12-02").symlink_to(outside / "batch", target_is_directory=True)
    (landing / "2025-12-03").mkdir()
    (landing / "2025-12-03" / "customers.csv").symlink_to(outside / "customers.csv")
    (landing / "2025-12-03" / "_SUCCESS").write_text("")
    (landing / "2025-12-04" / "customers.csv").mkdir(parents=True)
    (landing / "2025-12-04" / "_SUCCESS").write_text("")
    outside_before, landing_before = _tree(outside), _tree(landing)

    result = _run(env)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    log = _read(lake / "raw" / "batch_log").set_index("batch_id")
    for batch_id, reason in hostile.items():
        assert log.loc[batch_id, "status"] == "rejected" and reason in log.loc[batch_id, "reason"], (
            batch_id, log.loc[batch_id, "reason"])
    assert "\x07" not in out and "bad\\x07bell" in out, out[-3000:]  # a control character is escaped in logs
    assert sentinel not in set(_read(lake / "raw" / "customers")["customer_id"])
    assert _tree(outside) == outside_before and _tree(landing) == landing_before  # read-only, and not followed
    home = Path(env["ECOMMERCE_LAKE_HOME"])
    named = [p for p in home.rglob("*") if any(h in p.as_posix() for h in ("evening", "\x07", "2025-12-0"))]
    assert all(landing in p.parents for p in named), [p for p in named if landing not in p.parents]
    assert log.loc[first, "fingerprint"].startswith("sha256:")

    # the first batch again, with other content; the second again with the same bytes (re-copied)
    versions, tables = _versions(lake), _snapshot(lake)
    with (landing / first / "customers.csv").open("a") as fh:
        fh.write("CUST-REDELIVERED,2025-11-20T10:00:00Z,Nairobi\n")
    second = sorted(p.name for p in landing.iterdir())[1]
    copy = (landing / second / "orders.csv").read_bytes()
    (landing / second / "orders.csv").unlink()
    (landing / second / "orders.csv").write_bytes(copy)
    again = _run(env)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-5000:]
    assert f"batch {first}: REFUSED – delivered again with other content" in out, out[-5000:]
    assert f"batch {second}: REFUSED" not in out
    # raw and the batch log get no new version; refined tables are rebuilt by the run, to the same rows
    raw_versions = {k: v for k, v in _versions(lake).items() if k.startswith("raw/")}
    assert raw_versions == {k: v for k, v in versions.items() if k.startswith("raw/")}, "a raw table changed"
    got = _snapshot(lake)
    assert got == tables, _diff(got, tables)
    assert "CUST-REDELIVERED" not in set(_read(lake / "raw" / "customers")["customer_id"])
