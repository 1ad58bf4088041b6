"""Personal data under control, on the shared lake (real Spark over the engine, real Delta tables): name, email and
phone are encrypted wherever they are stored and decrypt (with Python's own AES-GCM, not Spark's) to what landed;
no landing personal value is anywhere else in any file of any table; a steward reveals (audited), rotates and
retires keys, and erases a customer so that, after VACUUM, no file of any table version holds their data."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from ecommerce_lake.defs.checks import TableChecks
from ecommerce_lake.defs.keys import REFINED_KEYS
from ecommerce_lake.defs.resources import QualityResource
from ecommerce_lake.logic.refined import pii
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.platform.secrets import Keyring, PrivacyKeysResource
from ecommerce_lake.schemas import refined as refined_schemas
from ecommerce_lake_tests import privacy_oracle
from ecommerce_lake_tests.servers import BIN, REPO

PERSONAL = ("full_name", "email", "phone")
TABLES = ("raw/customers", "refined/customers", "refined/rejects")


def _landing_values(lake_run) -> dict[str, set[str]]:
    """Each customer's personal values as they landed (lower case, stripped; phones also as bare digits)."""
    out: dict[str, set[str]] = {}
    for r in lake_run.landing.rows["customers"]:
        cid = (r.values.get("customer_id") or "").strip()
        for col in PERSONAL:
            value = (r.values.get(col) or "").strip()
            if len(value) >= 5:  # shorter fragments would match by chance
                out.setdefault(cid, set()).add(value.lower())
                if col == "phone":
                    out[cid].add("".join(ch for ch in value if ch.isdigit()))
    return out


def _table_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("_delta_log") if p.is_dir())


def _cells(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _cells(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _cells(v)


def _scan_files(root: Path, keys: dict[int, bytes]) -> tuple[set[str], set[str]]:
    """Every string in every file of every table (each Parquet file, current or not, and the Delta log's text):
    (encrypted values decrypted, every other string), lower case."""
    opened, plain = set(), set()
    for table in _table_dirs(root):
        for path in table.rglob("*"):
            if path.suffix == ".parquet":
                for row in pq.read_table(path).to_pylist():
                    for cell in _cells(list(row.values())):
                        if privacy_oracle.ENCRYPTED.match(cell):
                            opened.add(privacy_oracle.decrypt(cell, keys).lower())
                        else:
                            plain.add(cell.lower())
            elif path.suffix in (".json", ".crc") or path.name.endswith(".checkpoint"):
                plain.add(path.read_text(errors="replace").lower())
    return opened, plain


def _found(secrets: set[str], texts: set[str]) -> set[str]:
    if not secrets:
        return set()
    pattern = re.compile("|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True)))
    return {m.group(0) for t in texts for m in [pattern.search(t)] if m}


@pytest.fixture(scope="module")
def keyring(settings) -> Keyring:
    from ecommerce_lake.platform.secrets import load_keyring

    return load_keyring(settings.privacy_keyring_file)


def test_personal_values_are_encrypted_and_nowhere_else(lake_run, settings, keyring):
    """Outside the encrypted columns no file of any table (raw, refined, curated, insights, ml, ops; the Delta logs
    included) holds a landing personal value; the encrypted values decrypt to exactly what landed, row by row."""
    values = _landing_values(lake_run)
    secrets = set().union(*values.values())
    assert len(secrets) > 300
    opened, plain = _scan_files(Path(settings.lake_root), keyring.readable)
    leaked = _found(secrets, plain)
    assert not leaked, f"personal values outside the encrypted columns: {sorted(leaked)[:5]}"
    assert _found(secrets, opened)  # the scan can find them: they are there, encrypted

    # raw: every row's encrypted value is the landing file's value at that row
    landing = {(f"{r.batch}/customers.csv", r.row): r for r in lake_run.landing.rows["customers"]}
    raw = DeltaTable(f"{settings.lake_root}/raw/customers").to_pyarrow_table().to_pylist()
    compared = 0
    for row in raw:
        src = landing[(row["_source_file"], row["_row_number"])]
        if src.ragged:
            continue
        for col in PERSONAL:
            want = src.values.get(col)
            got = row[col] and privacy_oracle.decrypt(row[col], keyring.readable)
            assert got == (want if want != "" else None), (row["_source_file"], row["_row_number"], col)
            compared += 1
    assert compared > 900
    # refined: the kept version's values as they landed
    refined = DeltaTable(f"{settings.lake_root}/refined/customers").to_pyarrow_table().to_pylist()
    assert refined
    for row in refined:
        src = landing[(row["_source_file"], row["_row_number"])]
        for col in PERSONAL:
            want = src.values.get(col) or None
            got = row[f"{col}_encrypted"] and privacy_oracle.decrypt(row[f"{col}_encrypted"], keyring.readable)
            assert got == want, (row["customer_id"], col)
    # rejects: a customer reject's personal values are the encrypted landing values, not placeholders
    rejects = [r for r in DeltaTable(f"{settings.lake_root}/refined/rejects").to_pyarrow_table().to_pylist()
               if r["table"] == "customers"]
    assert rejects
    for r in rejects:
        original = dict(r["original_values"])
        src = landing[(r["source_file"], r["row_number"])]
        for col in PERSONAL:
            if col in original and not src.ragged:
                assert privacy_oracle.decrypt(original[col], keyring.readable) == src.values[col]


def test_no_key_material_in_any_log(lake_run, settings, session_home, keyring):
    """The keys are literals of Spark plans: neither the engine's log nor Dagster's storage (event logs, compute
    logs) holds them, in hex or base64; nor the pseudonymisation key."""
    import base64

    forms = {settings.pseudonym_key_file and Path(settings.pseudonym_key_file).read_text().strip()}
    for key in keyring.readable.values():
        forms |= {key.hex(), key.hex().upper(), base64.b64encode(key).decode()}
    files = [p for p in (session_home / "dagster_home").rglob("*") if p.is_file()]
    files += [p for p in Path(settings.engine_dir).rglob("*") if p.is_file()]
    assert any(p.name == "engine.log" for p in files) and any(p.suffix == ".db" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not [f for f in forms if f and f.encode() in data], path


def test_the_definitions_never_load_the_keyring(tmp_path, monkeypatch):
    """Loading the code location (what the webserver, daemon and code server do) reads no keyring and creates none."""
    from ecommerce_lake.definitions import build_defs
    from ecommerce_lake.settings import Settings

    monkeypatch.delenv("ECOMMERCE_LAKE_PRIVACY_KEYRING", raising=False)
    ring = tmp_path / "secrets" / "privacy_keyring.json"
    defs = build_defs(Settings(home=str(tmp_path), privacy_keyring_file=str(ring)))
    assert defs.resolve_asset_graph().get(dg.AssetKey(["ops", "privacy_audit"]))
    assert not ring.exists()


def _copy(settings, tmp_path: Path, keyring: Keyring) -> tuple[Path, Path]:
    copy = tmp_path / "lake"
    for table in TABLES:
        shutil.copytree(Path(settings.lake_root) / table, copy / table)
    ring = tmp_path / "steward" / "privacy_keyring.json"
    Keyring(dict(keyring.versions), "copy").save(ring)
    return copy, ring


def _check(lake: LakeResource, ring: Path, schema) -> dict:
    checks = TableChecks(schema)
    context = dg.build_asset_context()
    check = next(e for e in checks.extra if e.name == "personal_data_encrypted")
    from ecommerce_lake.defs.checks import CheckContext

    result = check.fn(CheckContext(context, lake, QualityResource(),
                                   values={"privacy_keys": PrivacyKeysResource(keyring_file=str(ring))}))
    return {"passed": result.passed, **{k: v.value for k, v in result.metadata.items()}}


def _audit(lake: LakeResource) -> list[dict]:
    return [r.asDict() for r in lake.read(dg.AssetKey(["ops", "privacy_audit"])).orderBy("requested_at").collect()]


def _cli(args: list[str], root: Path, ring: Path, engine_url: str, landing: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ECOMMERCE_LAKE_PRIVACY_KEYRING"}
    env.update({"ECOMMERCE_LAKE_ROOT": str(root), "ECOMMERCE_LAKE_PRIVACY_KEYRING_FILE": str(ring),
                "ECOMMERCE_LAKE_SPARK_REMOTE": engine_url, "ECOMMERCE_LAKE_LANDING": landing})
    return subprocess.run([str(BIN / "ecommerce-lake"), "privacy", *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=REPO)


def test_a_steward_reveals_rotates_retires_and_forgets(lake_run, settings, resources, keyring, engine_url, spark,
                                                       tmp_path):
    from ecommerce_lake import privacy

    root, ring = _copy(settings, tmp_path, keyring)
    lake = LakeResource(root=str(root), spark=resources["spark"])  # the session's engine, another root
    landing = {(f"{r.batch}/customers.csv", r.row): r for r in lake_run.landing.rows["customers"]}
    customers = lake.read(REFINED_KEYS["customers"]).orderBy("customer_id").collect()
    rejected_ids = {r["record_key"] for r in lake.read(REFINED_KEYS["rejects"]).where("`table` = 'customers'")
                    .select("record_key").collect()}
    # a customer with a kept row and a rejected one: reveal and forget must cover both
    victim = next(c for c in customers if c["email_encrypted"] and c["phone_encrypted"]
                  and c["customer_id"] in rejected_ids)
    src = landing[(victim["_source_file"], victim["_row_number"])].values

    # reveal: refused without the keyring (and the attempt recorded), then the landed values, audited
    out = _cli(["reveal", "--customer-id", victim["customer_id"], "--reason", "delivery follow-up"], root,
               tmp_path / "nowhere.json", engine_url, settings.landing_root)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "no privacy keyring in this environment" in out.stderr
    assert src["email"].strip() not in out.stdout + out.stderr
    out = _cli(["reveal", "--customer-id", victim["customer_id"], "--reason", "delivery follow-up",
                "--actor", "steward-1"], root, ring, engine_url, settings.landing_root)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    for col in PERSONAL:
        assert f": {src[col]}" in out.stdout, col
    assert f"rejected {victim['customer_id']}" not in out.stdout and "rejected " in out.stdout  # its reject shown
    audit = _audit(lake)
    assert [(a["action"], a["outcome"].split(":")[0], a["customer_id"]) for a in audit] == [
        ("reveal", "refused", victim["customer_id"]), ("reveal", "done", victim["customer_id"])]
    assert audit[1]["actor"] == "steward-1" and audit[1]["reason"] == "delivery follow-up"
    assert not any(src["email"].strip().lower() in str(a).lower() for a in audit)
    with pytest.raises(privacy.PrivacyRefused, match="reason"):
        privacy.reveal(lake, str(ring), victim["customer_id"], "")

    # rotation: k2 added, every value re-encrypted under it in one commit per table, the plaintexts unchanged
    before = {t: DeltaTable(str(root / t)).version() for t in TABLES}
    plain_before = {t: _plaintexts(root / t, keyring.readable) for t in TABLES}
    outcome = privacy.rotate_key(lake, str(ring), "yearly rotation", "steward-1")
    assert "k2 added" in outcome.message
    rotated = Keyring.from_json(ring.read_text(), str(ring))
    assert rotated.active.version == 2 and oct(ring.stat().st_mode & 0o777) == "0o600"
    for t in TABLES:
        assert DeltaTable(str(root / t)).version() == before[t] + 1, t
        assert _plaintexts(root / t, rotated.readable) == plain_before[t], t
    usage = privacy.usage(lake)
    assert all(set(counts) == {2} for counts in usage.values()), usage
    assert _check(lake, ring, refined_schemas.customers)["passed"]

    # a value still under k1: retiring k1 is refused; forced, the check fails naming the retired key
    df = lake.read(REFINED_KEYS["customers"], version=DeltaTable(str(root / "refined/customers")).version())
    k1 = keyring.readable[1]
    stale = df.withColumn("email_encrypted", F.when(F.col("customer_id") == victim["customer_id"],
                                                    pii.encrypt(F.lit("stale@example.com"), k1, 1))
                          .otherwise(F.col("email_encrypted")))
    lake.write(stale, REFINED_KEYS["customers"])
    with pytest.raises(privacy.PrivacyRefused, match=r"still encrypted with k1: refined.customers 1"):
        privacy.retire_key(lake, str(ring), 1, "rotation done", "steward-1")
    privacy.retire_key(lake, str(ring), 1, "rotation done", "steward-1", force=True)
    failed = _check(lake, ring, refined_schemas.customers)
    assert not failed["passed"] and failed["under_retired_keys"] == {"k1": 1}, failed
    plain = df.withColumn("email_encrypted", F.when(F.col("customer_id") == victim["customer_id"],
                                                    F.lit("someone@example.com")).otherwise(F.col("email_encrypted")))
    lake.write(plain, REFINED_KEYS["customers"])
    failed = _check(lake, ring, refined_schemas.customers)
    assert not failed["passed"] and failed["not_encrypted"] == 1, failed
    lake.write(df, REFINED_KEYS["customers"])  # back to the rotated table
    assert _check(lake, ring, refined_schemas.customers)["passed"]

    # erasure: the victim's values are in the files until forget + VACUUM, then in no file of any version
    # the scans read every file, old versions included: k1 (retired from the keyring, kept by the test) and k2
    keys = {**keyring.readable, **Keyring.from_json(ring.read_text(), str(ring)).readable}
    others = set().union(*(v for cid, v in _landing_values(lake_run).items() if cid != victim["customer_id"]))
    theirs = _landing_values(lake_run)[victim["customer_id"]] - others
    assert theirs
    opened, plain_text = _scan_files(root, keys)
    assert _found(theirs, opened) and not _found(theirs, plain_text)
    rows_before = lake.read(REFINED_KEYS["customers"]).count()
    out = _cli(["forget", "--customer-id", victim["customer_id"], "--reason", "erasure request 2026-118"], root, ring,
               engine_url, settings.landing_root)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "personal data erased" in out.stdout and "VACUUM" in out.stdout
    assert re.search(r"refined\.rejects \([1-9][0-9]* row", out.stdout), out.stdout
    exports = {f"{r.batch}/customers.csv" for r in lake_run.landing.rows["customers"]
               if (r.values.get("customer_id") or "").strip() == victim["customer_id"]}
    assert exports and all(e in out.stdout for e in exports), out.stdout  # where the exports still name them
    now = lake.read(REFINED_KEYS["customers"]).where(F.col("customer_id") == victim["customer_id"]).collect()
    assert len(now) == 1 and lake.read(REFINED_KEYS["customers"]).count() == rows_before  # the customer stays
    kept = now[0]
    assert kept["customer_pseudonym"] == victim["customer_pseudonym"] and kept["county_code"] == victim["county_code"]
    assert kept["email_encrypted"] is None and kept["phone_hash"] is None and kept["email_domain"] is None
    current = set()
    for t in TABLES:
        for row in DeltaTable(str(root / t)).to_pyarrow_table().to_pylist():
            current |= {privacy_oracle.opened(c, keys).lower() for c in _cells(list(row.values()))}
    assert not _found(theirs, current)  # gone from every current version
    opened, _ = _scan_files(root, keys)
    assert _found(theirs, opened)  # still in the files of earlier versions: VACUUM deletes them
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        for t in TABLES:  # the maintenance VACUUM, with the retention a test can wait for
            spark.sql(f"VACUUM delta.`{root / t}` RETAIN 0 HOURS").collect()
    finally:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")
    opened, plain_text = _scan_files(root, keys)
    assert not _found(theirs, opened | plain_text)
    assert _audit(lake)[-1]["action"] == "forget" and _audit(lake)[-1]["customer_id"] == victim["customer_id"]

    status = _cli(["status"], root, ring, engine_url, settings.landing_root)
    assert status.returncode == 0, status.stderr[-3000:]
    assert "k1 (retired" in status.stdout and "k2 (active)" in status.stdout and "refined.customers: k2" in status.stdout


def _plaintexts(table: Path, keys: dict[int, bytes]) -> list:
    rows = DeltaTable(str(table)).to_pyarrow_table().to_pylist()
    return sorted(repr(sorted((k, privacy_oracle.opened(v, keys)) for k, v in r.items())) for r in rows)
