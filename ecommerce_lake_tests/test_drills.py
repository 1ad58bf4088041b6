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
from ecommerce_lake_tests import privacy_oracle

EXE = Path(sys.executable).parent / "ecommerce-lake"
SELECT = "group:raw or group:refined"
VOLATILE = {"_ingested_at", "ingested_at", "run_id"}  # when and by which run: differ between any two runs


KEYRING = privacy_oracle.test_keyring()


# ---- helpers ----------------------------------------------------------------------------------------------------
def _home(tmp: Path, landing: Path, **extra: str) -> dict:
    """A fresh ECOMMERCE_LAKE_HOME with a copy of ``landing``; the environment of a run against it."""
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copytree(landing, tmp / "landing", symlinks=True)
    (tmp / "dagster_home").mkdir()
    return {**os.environ, "ECOMMERCE_LAKE_HOME": str(tmp), "DAGSTER_HOME": str(tmp / "dagster_home"),
            "ECOMMERCE_LAKE_LANDING": str(tmp / "landing"), "ECOMMERCE_LAKE_ROOT": str(tmp / "lake"),
            # one pseudonymisation key and privacy keyring for every drill lake, so that their tables compare equal
            "ECOMMERCE_LAKE_PSEUDONYM_KEY": "drill-pseudonym-key-0123456789abcdef",
            "ECOMMERCE_LAKE_PRIVACY_KEYRING": KEYRING.to_json(), **extra}


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
        # personal values compared decrypted: each encryption of a value differs (a random IV)
        out[table.relative_to(lake).as_posix()] = sorted(
            (tuple(str(privacy_oracle.opened(v, KEYRING.readable)) for v in row) for row in df.itertuples(index=False)))
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
def reference_env(drill_landing, tmp_path_factory, engine_url, engine) -> dict:
    """The environment of the reference lake: one uninterrupted run of the raw and refined layers."""
    env = _home(tmp_path_factory.mktemp("reference"), drill_landing)
    result = _run(env)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return env


@pytest.fixture(scope="module")
def reference(reference_env) -> dict:
    """The tables one uninterrupted run writes."""
    snap = _snapshot(Path(reference_env["ECOMMERCE_LAKE_ROOT"]))
    assert snap["raw/orders"] and snap["refined/orders"] and snap["raw/batch_log"]
    return snap


def _copy_home(env: dict, to: Path) -> dict:
    """A copy of a lake home (landing zone, lake, Dagster instance) and the environment of runs against it."""
    shutil.copytree(env["ECOMMERCE_LAKE_HOME"], to, symlinks=True)
    config = to / "dagster_home" / "dagster.yaml"
    if config.exists():  # the instance's storage paths are absolute: point them at the copy
        config.write_text(config.read_text().replace(env["ECOMMERCE_LAKE_HOME"], str(to)))
    return {**env, "ECOMMERCE_LAKE_HOME": str(to), "DAGSTER_HOME": str(to / "dagster_home"),
            "ECOMMERCE_LAKE_LANDING": str(to / "landing"), "ECOMMERCE_LAKE_ROOT": str(to / "lake")}


@pytest.fixture(scope="module")
def curated_env(reference_env, tmp_path_factory) -> dict:
    """A copy of the reference lake with its curated layer (and checks) built on top: what the check drills
    below copy again and corrupt."""
    env = _copy_home(reference_env, tmp_path_factory.mktemp("curated") / "home")
    result = _cli_run(env, "group:curated", tmp_path_factory.mktemp("curated_report") / "report.json")
    assert result["exit_code"] == 0, result
    return env


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
    loses a Delta conflict fails naming it; a third run then converges to the reference tables. When both succeed,
    the lake already holds exactly the reference tables (a third run would rebuild the same rows: re-running a built
    lake changes nothing, test_lake.py::test_rematerializing_changes_nothing)."""
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
    if outcome != [0, 0]:  # the loser's work is redone by a third run
        final = _run(env)
        assert final.returncode == 0, final.stdout[-5000:] + final.stderr[-5000:]
    got = _snapshot(lake)
    assert got == reference, _diff(got, reference)


def test_hostile_batch_ids_and_file_names_and_a_redelivered_batch(reference_env, tmp_path):
    """Batch ids with spaces or control characters, a batch folder and a file that are symbolic links out of
    the landing root, a folder where a contract file belongs: each batch is rejected with its reason in
    raw.batch_log, nothing outside the landing root is read, nothing outside the lake root is written. Then a
    batch already ingested is delivered again with other content: refused, logged, and no table changes; a
    delivery of the same bytes again is not refused. (On a copy of the reference lake: the hostile batches arrive
    after the others were ingested, as they would in production.)"""
    outside = tmp_path / "outside"
    (outside / "batch").mkdir(parents=True)
    sentinel = "CUST-FROM-OUTSIDE"
    customers_csv = f"customer_id,updated_at,county\n{sentinel},2025-11-20T10:00:00Z,Nairobi\n"
    (outside / "customers.csv").write_text(customers_csv)
    (outside / "batch" / "customers.csv").write_text(customers_csv)
    (outside / "batch" / "_SUCCESS").write_text("")
    env = _copy_home(reference_env, tmp_path / "home")
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


# ---- checks shown failing: one bad-data fixture per check and per batch rule -----------------------------------
def _cli_run(env: dict, select: str, report: Path) -> dict:
    """``ecommerce-lake run --select SELECT --report FILE``: the report, with the exit code and the output."""
    proc = subprocess.run([str(EXE), "run", "--select", select, "--report", str(report)], env=env,
                          capture_output=True, text=True, timeout=900)
    out = json.loads(report.read_text()) if report.exists() else {}
    return {**out, "exit_code": proc.returncode, "output": proc.stdout[-6000:] + proc.stderr[-3000:]}


def _check(env: dict, asset: str, name: str):
    """The latest evaluation of check ``name`` of ``asset`` in the lake home's Dagster instance."""
    import dagster as dg

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        record = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey(asset.split("/")), name))
    return record.evaluation if record else None


FACT_DOWNSTREAM = ["curated/daily_sales", "curated/customer_orders", "curated/county_monthly_kpis",
                   "curated/product_performance", "curated/category_share_by_county",
                   "curated/top_products_by_county"]


# each corruption breaks one blocking check of fact_sales, on an order of its own
CORRUPTIONS = [
    # an order line with quantity 0 reaches fact_sales: its value rule quantity >= 1 fails
    ("order_items", "quantity = 0", "value_rules"),
    # a sold order whose customer pseudonym is gone: fact_sales' non-nullable customer_pseudonym
    ("orders", "customer_pseudonym = NULL", "not_null"),
]


def test_failing_blocking_checks_stop_the_assets_downstream(curated_env, tmp_path, spark):
    """Refined tables corrupted behind the lake's back (as a bad manual fix would), one order per blocking check:
    rebuilding fact_sales and everything downstream fails each of those checks of fact_sales (and no other), leaves
    every downstream table at its previous version, and `run` exits non-zero naming the checks. (One run for both
    corruptions: a failing blocking check holds its downstream back whatever the other checks say, and each check's
    own evaluation is asserted.)"""
    env = _copy_home(curated_env, tmp_path / "home")
    lake = Path(env["ECOMMERCE_LAKE_ROOT"])
    victims = sorted(set(_read(lake / "curated" / "fact_sales").order_id))[:len(CORRUPTIONS)]  # sold orders
    for (table, assignment, _), victim in zip(CORRUPTIONS, victims):
        spark.sql(f"UPDATE delta.`{lake}/refined/{table}` SET {assignment} WHERE order_id = '{victim}'")
    before = _versions(lake)
    result = _cli_run(env, 'key:"curated/fact_sales"+', tmp_path / "report.json")
    assert result["exit_code"] == 1, result["output"]
    assert sorted(result["failed_blocking_checks"]) == sorted(
        f"curated/fact_sales:{check}" for _, _, check in CORRUPTIONS), result
    for _, _, check in CORRUPTIONS:
        evaluation = _check(env, "curated/fact_sales", check)
        assert evaluation is not None and not evaluation.passed, check
        assert evaluation.severity.value == "ERROR"
        assert evaluation.metadata["failing_rows"].value >= 1, (check, evaluation.metadata)
    assert "curated/fact_sales" in result["materialized"]  # written, then found wrong by its checks
    assert not set(FACT_DOWNSTREAM) & set(result["materialized"]), result["materialized"]
    after = _versions(lake)
    assert all(after[t] == before[t] for t in FACT_DOWNSTREAM), (before, after)


def test_warning_checks_fail_and_say_so_without_stopping_the_lake(curated_env, tmp_path, spark):
    """The warning checks, each made to fail on real data: unknown_county_share above a threshold of 0 (the
    landing zone has orders without a resolvable county), row_count_change after a third of fact_sales' lines
    disappear upstream (threshold 0.1), and segment_changes when the RFM day moves two days back (threshold 0). Each
    fails with severity WARN, is listed in the run's warnings, and the run goes on: downstream is built, exit 0."""
    env = _copy_home(curated_env, tmp_path / "home")
    lake = Path(env["ECOMMERCE_LAKE_ROOT"])
    fact = _read(lake / "curated" / "fact_sales")
    unknown_share = float(fact.loc[fact.county_code == 0, "net_revenue_kes"].sum() / fact.net_revenue_kes.sum())
    assert unknown_share > 0  # from the generated data (dirty counties), read with delta-rs
    spark.sql(f"DELETE FROM delta.`{lake}/refined/order_items` WHERE pmod(hash(order_id), 3) = 0")
    env = {**env, "ECOMMERCE_LAKE_UNKNOWN_COUNTY_WARN_SHARE": "0", "ECOMMERCE_LAKE_ROW_COUNT_CHANGE_WARN_RATIO": "0.1",
           "ECOMMERCE_LAKE_SEGMENT_CHANGE_WARN_SHARE": "0", "ECOMMERCE_LAKE_RFM_AS_OF": "2025-11-30"}
    result = _cli_run(env, 'key:"curated/fact_sales"+ or key:"ml/rfm_scores"', tmp_path / "first.json")
    assert result["exit_code"] == 0, result["output"]
    assert {"curated/fact_sales:unknown_county_share", "curated/fact_sales:row_count_change"} <= set(
        result["warnings"]), result["warnings"]
    assert set(FACT_DOWNSTREAM) <= set(result["materialized"])  # warnings do not hold anything back
    share = _check(env, "curated/fact_sales", "unknown_county_share")
    assert not share.passed and share.severity.value == "WARN"
    change = _check(env, "curated/fact_sales", "row_count_change")
    assert not change.passed and change.severity.value == "WARN"
    rows_now, rows_before = len(_read(lake / "curated" / "fact_sales")), len(fact)
    assert rows_now < 0.9 * rows_before  # the third of the lines deleted upstream
    assert _check(env, "ml/rfm_scores", "segment_changes").passed  # the first scores: nothing to compare
    # scored again as of two days earlier: the last two days' orders drop out, recency, frequency and spend move
    # (a constant shift of the day alone would not: the scores are quintiles)
    later = {**env, "ECOMMERCE_LAKE_RFM_AS_OF": "2025-11-28"}
    result = _cli_run(later, 'key:"ml/rfm_scores"', tmp_path / "second.json")
    assert result["exit_code"] == 0, result["output"]
    assert "ml/rfm_scores:segment_changes" in result["warnings"], result["warnings"]
    segments = _check(env, "ml/rfm_scores", "segment_changes")
    assert not segments.passed and segments.severity.value == "WARN"
    assert segments.metadata["changed_share"].value > 0


@pytest.mark.parametrize("files, rule", [
    ({"customers.csv": b""}, "customers.csv: empty file (no header row)"),
    ({"customers.csv": b"customer_id,full_name,email,phone,county,signup_date,updated_at,EMAIL\n"
                       b"C9001,A B,a@b.ke,0712,Nairobi,2025-12-01,2025-12-01T10:00:00Z,x@y.ke\n"},
     "customers.csv: duplicate column name(s) email"),
], ids=["empty_file", "repeated_column"])
def test_a_batch_that_breaks_a_batch_rule_is_rejected_whole(reference_env, tmp_path, files, rule):
    """A batch with a 0-byte file, or with a column named twice (in another case): rejected whole in
    raw.batch_log with a reason naming the file and the rule; none of its rows reach raw or refined; every other
    table stays at its version with the same rows; the run's plan names the batch and the reason."""
    env = _copy_home(reference_env, tmp_path / "home")
    lake, landing = Path(env["ECOMMERCE_LAKE_ROOT"]), Path(env["ECOMMERCE_LAKE_LANDING"])
    batch = landing / "2025-12-09"
    batch.mkdir()
    for name, content in files.items():
        (batch / name).write_bytes(content)
    (batch / "orders.csv").write_text("order_id,customer_id,order_ts,status,channel,delivery_county,payment_method,"
                                      "shipping_fee_kes,updated_at\nO9001,C9001,2025-12-09T10:00:00+03:00,paid,web,"
                                      "Nairobi,mpesa,0.00,2025-12-09T10:00:00+03:00\n")
    (batch / "_SUCCESS").write_text("")
    before, tables_before = _versions(lake), _snapshot(lake)
    result = _cli_run(env, "group:raw", tmp_path / "report.json")  # where a batch is accepted or rejected
    log = _read(lake / "raw" / "batch_log")
    row = log[log.batch_id == "2025-12-09"].iloc[0]
    assert row.status == "rejected" and rule in row.reason, (row.status, row.reason)
    for table in ("raw/orders", "raw/customers"):
        assert "2025-12-09" not in set(_read(lake / table)._batch_id)
    assert "O9001" not in set(_read(lake / "refined" / "orders").order_id)
    after, tables_after = _versions(lake), _snapshot(lake)
    assert after["raw/batch_log"] == before["raw/batch_log"] + 1
    changed = {t for t in after if after[t] != before.get(t)}
    assert changed == {"raw/batch_log"}, (before, after)
    # every other table holds exactly what it held
    assert {t: v for t, v in tables_after.items() if t != "raw/batch_log"} == {
        t: v for t, v in tables_before.items() if t != "raw/batch_log"}
    assert result["exit_code"] == 0, result["output"]  # rejecting it whole is its designed fate
    assert f"batch 2025-12-09 breaks the landing contract and will be rejected whole (recorded in raw.batch_log): " \
           f"{rule}" in result["output"], result["output"]
