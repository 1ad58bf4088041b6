"""A data steward's privacy commands (``ecommerce-lake privacy ...``): reveal a customer's personal data, erase it,
rotate and retire the keys that encrypt it. Each request is recorded in ``ops.privacy_audit``.

The personal values live encrypted (AES-GCM, ``logic/refined/pii.py``) in the tables whose schema marks columns
``pii="encrypted"``: raw.customers, refined.customers and refined.rejects. These commands need the privacy keyring
(``platform/secrets.py``); an environment without it is refused. They never print or log a key, and print
personal values only for ``reveal``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
import uuid
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake import schemas
from ecommerce_lake.defs.keys import OPS_KEYS, RAW_KEYS, REFINED_KEYS, key_of
from ecommerce_lake.logic.refined import pii
from ecommerce_lake.logic.refined.refine import key_version_counts, personal_entry, transform_encrypted
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.platform.secrets import KEYRING_ENV, Keyring, KeyringUnavailable, load_keyring
from ecommerce_lake.schemas import raw as raw_schemas
from ecommerce_lake.schemas.spark import conform

AUDIT = OPS_KEYS["privacy_audit"]
PERSONAL = [s for s in schemas.ALL if schemas.encrypted_columns(s)]  # raw.customers, refined.customers, rejects
ERASED = "[erased]"  # what an erased broken record or unknown column holds (encrypted, like any such value)
REVEALED = {"full_name": "full_name_encrypted", "email": "email_encrypted", "phone": "phone_encrypted"}


class PrivacyRefused(RuntimeError):
    """The request cannot be served here (no keyring, an unknown key version...); nothing was changed."""


@dataclass
class Outcome:
    message: str
    details: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str | None] = field(default_factory=dict)  # reveal only


def _keys(ring: Keyring) -> pii.Keys:
    return pii.Keys(ring.readable, ring.active.version, tuple(ring.retired))


def steward_keyring(keyring_file: str) -> Keyring:
    """The keyring of a steward's environment; never generated here."""
    try:
        return load_keyring(keyring_file, generate_if_missing=False)
    except KeyringUnavailable as exc:
        raise PrivacyRefused(f"refused: {exc}") from None


def audit(lake: LakeResource, action: str, actor: str, reason: str, outcome: str,
          customer_id: str | None = None, details: dict[str, str] | None = None) -> str:
    """Append one request to ops.privacy_audit (one Delta commit); returns its event id."""
    event_id = uuid.uuid4().hex
    row = [(event_id, action, customer_id, actor, reason, outcome, {k: str(v) for k, v in (details or {}).items()},
            dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0))]
    df = lake.session().createDataFrame(row, "event_id string, action string, customer_id string, actor string, "
                                             "reason string, outcome string, details map<string,string>, "
                                             "requested_at timestamp")
    lake.write(conform(df, schemas.ops.privacy_audit), AUDIT, replace_where=f"event_id = '{event_id}'",
               commit_info={"privacy": action})
    return event_id


def _customer_rows(df: DataFrame, customer_id: str, keys: pii.Keys) -> F.Column:
    """Rows of raw.customers that belong to the customer: by id, or (a broken record without a usable id) by the
    id appearing as a field of the decrypted record."""
    by_id = F.trim(F.col("customer_id")) == customer_id
    field_re = r'(^|,)\s*"?' + re.escape(customer_id) + r'"?\s*(,|$)'
    in_record = F.col("_corrupt_record").isNotNull() & pii.decrypt(F.col("_corrupt_record"), keys.readable).rlike(field_re)
    return by_id | F.coalesce(in_record, F.lit(False))


def reveal(lake: LakeResource, keyring_file: str, customer_id: str, reason: str, actor: str | None = None) -> Outcome:
    """The decrypted name, email and phone of a customer (refined.customers), audited."""
    actor = actor or getpass.getuser()
    _require_reason(reason)
    try:
        ring = steward_keyring(keyring_file)
    except PrivacyRefused as exc:
        audit(lake, "reveal", actor, reason, "refused: no keyring in this environment", customer_id)
        raise exc
    keys = _keys(ring)
    rows = (lake.read(REFINED_KEYS["customers"]).where(F.col("customer_id") == customer_id)
            .select("customer_id", "customer_pseudonym", "county_name", "signup_date",
                    *[pii.decrypt(F.col(c), keys.readable).alias(name) for name, c in REVEALED.items()],
                    *[pii.key_version(F.col(c)).alias(f"__v_{name}") for name, c in REVEALED.items()]).collect())
    if not rows:
        audit(lake, "reveal", actor, reason, "not_found", customer_id)
        return Outcome(f"no customer {customer_id!r} in refined.customers (request recorded)")
    row = rows[0].asDict()
    versions = sorted({f"k{row[f'__v_{n}']}" for n in REVEALED if row[f"__v_{n}"] is not None})
    # what arrived for this customer and was rejected: the offending rows' values, decrypted
    rejects = lake.read(REFINED_KEYS["rejects"]).where((F.col("table") == "customers")
                                                      & (F.col("record_key") == customer_id))
    rejected = transform_encrypted(rejects, ["original_values"], lambda v: pii.decrypt(v, keys.readable)).select(
        "source_file", "row_number", "rule", "original_values").orderBy("source_file", "row_number").collect()
    event = audit(lake, "reveal", actor, reason, "done", customer_id, {
        "fields": ",".join(REVEALED), "key_versions": ",".join(versions), "rejects": str(len(rejected))})
    fields = {"customer_id": row["customer_id"], **{n: row[n] for n in REVEALED},
              "county": row["county_name"], "signup_date": str(row["signup_date"] or ""),
              "customer_pseudonym": row["customer_pseudonym"]}
    for r in rejected:
        values = ", ".join(f"{k}={v!r}" for k, v in sorted(r["original_values"].items()))
        fields[f"rejected {r['source_file']}:{r['row_number']}"] = f"{r['rule']}: {values}"
    return Outcome(f"revealed to {actor}; recorded in ops.privacy_audit as {event}", {"event_id": event}, fields)


def _require_reason(reason: str) -> None:
    if not reason or len(reason.strip()) < 5:
        raise PrivacyRefused("refused: give the request's reason (--reason, at least 5 characters); it is audited")


def landing_files_naming(landing, customer_id: str) -> list[str]:
    """The landing zone's customers files with a row naming the customer (its id as a field): the lake does not
    change the source system's exports, so a steward is told where they still are."""
    import csv
    import io

    found = []
    for batch in landing.list_batches():
        for name in batch.files:
            if name.lower() != "customers.csv":
                continue
            rows = csv.reader(io.StringIO(landing.read_text(batch.batch_id, name)))
            if any(customer_id in (field.strip() for field in row) for row in rows):
                found.append(f"{batch.batch_id}/{name}")
    return found


def forget(lake: LakeResource, keyring_file: str, customer_id: str, reason: str, actor: str | None = None,
           retention_hours: int = 168, landing=None) -> Outcome:
    """Erase a customer's personal data from every table holding it, one Delta commit per table, and record the
    request. The customer's de-identified sales stay (the figures stay right); the pseudonym, county and sign-up
    day stay (no longer linked to a name, email or phone). Earlier table versions keep their files until VACUUM
    deletes them once older than the retention."""
    actor = actor or getpass.getuser()
    _require_reason(reason)
    ring = steward_keyring(keyring_file)
    keys = _keys(ring)
    marker = pii.encrypt(F.lit(ERASED), keys.key, keys.version)
    personal = set(raw_schemas.PII_COLUMNS["customers"])
    counts: dict[str, int] = {}

    raw_key = RAW_KEYS["customers"]
    raw = lake.read(raw_key)
    mine = _customer_rows(raw, customer_id, keys)
    matched = raw.where(mine).select("_source_file", "_row_number").collect()
    counts["raw.customers"] = len(matched)
    if matched:
        erased = raw.withColumns({
            **{c: F.when(mine, F.lit(None).cast("string")).otherwise(F.col(c)) for c in personal},
            "_corrupt_record": F.when(mine & F.col("_corrupt_record").isNotNull(), marker)
            .otherwise(F.col("_corrupt_record")),
            "_extra": F.when(mine, F.transform_values(F.col("_extra"), lambda k, v: marker)).otherwise(F.col("_extra")),
        })
        lake.write(erased, raw_key, commit_info={"privacy": "forget"})

    refined_key = REFINED_KEYS["customers"]
    refined = lake.read(refined_key)
    is_customer = F.col("customer_id") == customer_id
    counts["refined.customers"] = refined.where(is_customer).count()
    if counts["refined.customers"]:
        cleared = ["email_domain", "phone_hash", *REVEALED.values()]
        lake.write(refined.withColumns({c: F.when(is_customer, F.lit(None).cast("string")).otherwise(F.col(c))
                                        for c in cleared}), refined_key, commit_info={"privacy": "forget"})

    rejects_key = REFINED_KEYS["rejects"]
    rejects = lake.read(rejects_key)
    lineage = {(r["_source_file"], int(r["_row_number"])) for r in matched}
    of_rows = F.lit(False)
    for source_file, row_number in sorted(lineage):
        of_rows = of_rows | ((F.col("source_file") == source_file) & (F.col("row_number") == row_number))
    theirs = (F.col("table") == "customers") & ((F.col("record_key") == customer_id) | of_rows)
    counts["refined.rejects"] = rejects.where(theirs).count()
    if counts["refined.rejects"]:
        # as a re-refinement of the erased raw rows would write them: personal columns gone, the rest re-sealed
        values = F.map_filter(F.transform_values(
            F.col("original_values"),
            lambda k, v: F.when(k.isin(*personal), F.lit(None).cast("string"))
            .when(personal_entry(F.col("table"), k), marker).otherwise(v)), lambda k, v: v.isNotNull())
        lake.write(rejects.withColumn("original_values", F.when(theirs, values).otherwise(F.col("original_values"))),
                   rejects_key, commit_info={"privacy": "forget"})

    touched = {k: str(v) for k, v in counts.items()}
    found = any(counts.values())
    exports = landing_files_naming(landing, customer_id) if landing is not None else []
    event = audit(lake, "forget", actor, reason, "done" if found else "not_found", customer_id,
                  {**touched, "retention_hours": str(retention_hours), "landing_files_naming_it": str(len(exports))})
    if not found:
        return Outcome(f"no personal data of customer {customer_id!r} in the lake (request recorded as {event})",
                       {"event_id": event, **touched})
    purge = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=retention_hours)
    return Outcome(
        f"customer {customer_id!r}: personal data erased from the current versions of "
        + ", ".join(f"{t} ({n} row(s))" for t, n in counts.items())
        + f"; recorded as {event}. Earlier table versions still hold it until the Delta maintenance VACUUM deletes "
        f"their files, once older than the retention ({retention_hours} h): from {purge:%Y-%m-%d %H:%M} UTC "
        "(`ecommerce-lake run --select ops/delta_maintenance`, daily by schedule)."
        + (f" The landing zone (the source system's exports, which the lake does not change) still names the "
           f"customer in {len(exports)} file(s): {', '.join(exports[:10])}{' ...' if len(exports) > 10 else ''}; "
           "delete the rows there under the exports' retention." if exports else ""),
        {"event_id": event, **touched})


def _rotate_table(lake: LakeResource, schema, keys: pii.Keys) -> tuple[int, int]:
    """Re-encrypt every encrypted value of one table under the active key: one Delta commit. Returns (values
    re-encrypted, values already under the active key)."""
    key = key_of(schema)
    if not lake.exists(key):
        return 0, 0
    columns = schemas.encrypted_columns(schema)
    df = lake.read(key)
    counts = key_version_counts(df, columns)
    moved = sum(n for v, n in counts.items() if v != keys.version)
    kept = counts.get(keys.version, 0)
    if moved:
        out = transform_encrypted(df, columns, lambda v: pii.reencrypt(v, keys.readable, keys.key, keys.version))
        lake.write(out, key, commit_info={"privacy": "rotate_key", "key_version": keys.version})
    return moved, kept


def rotate_key(lake: LakeResource, keyring_file: str, reason: str, actor: str | None = None) -> Outcome:
    """Add a key version, then re-encrypt every encrypted value under it (one Delta commit per table). The old
    versions keep decrypting until retired (``retire_key``)."""
    actor = actor or getpass.getuser()
    _require_reason(reason)
    ring = steward_keyring(keyring_file)
    if ring.source == KEYRING_ENV:
        raise PrivacyRefused(
            f"refused: the keyring comes from {ring.source}; rotate where it is stored: write it to a file (set "
            "ECOMMERCE_LAKE_PRIVACY_KEYRING_FILE), rotate, then put the new keyring back in the secret store")
    new = ring.add_version()
    ring.save(ring.source)  # first: a key is never used before it is stored
    keys = _keys(ring)
    details = {"key_version": f"k{new.version}"}
    for schema in PERSONAL:
        moved, _ = _rotate_table(lake, schema, keys)
        details[schema.name] = str(moved)
    event = audit(lake, "rotate_key", actor, reason, "done", None, details)
    return Outcome(f"key k{new.version} added and active; re-encrypted "
                   + ", ".join(f"{t}: {details[t]} value(s)" for t in (s.name for s in PERSONAL))
                   + f". Keyring: {ring.describe()}. Recorded as {event}.", details)


def usage(lake: LakeResource) -> dict[str, dict[int, int]]:
    """Encrypted values per table and key version (-1: a value that is not encrypted)."""
    out = {}
    for schema in PERSONAL:
        key = key_of(schema)
        if not lake.exists(key):
            continue
        out[schema.name] = key_version_counts(lake.read(key), schemas.encrypted_columns(schema))
    return out


def retire_key(lake: LakeResource, keyring_file: str, version: int, reason: str, actor: str | None = None,
               force: bool = False) -> Outcome:
    """Retire a key version: its key material leaves the keyring, so values still under it could no longer be
    read. Refused while any value uses it (rotate first) unless ``force``."""
    actor = actor or getpass.getuser()
    _require_reason(reason)
    ring = steward_keyring(keyring_file)
    if version not in ring.versions:
        raise PrivacyRefused(f"refused: no key version k{version} in the keyring ({ring.describe()})")
    still = {t: c[version] for t, c in usage(lake).items() if c.get(version)}
    if still and not force:
        raise PrivacyRefused(f"refused: values are still encrypted with k{version}: "
                             + ", ".join(f"{t} {n}" for t, n in still.items())
                             + ". Rotate first (`ecommerce-lake privacy rotate-key`), or --force to make them "
                             "unreadable (their tables' personal_data_encrypted checks then fail)")
    try:
        ring.retire(version)
    except (KeyError, ValueError) as exc:
        raise PrivacyRefused(f"refused: {exc}") from None
    ring.save(ring.source)
    details = {"key_version": f"k{version}", **{t: str(n) for t, n in still.items()}}
    event = audit(lake, "retire_key", actor, reason, "done" + (" (forced)" if still else ""), None, details)
    return Outcome(f"k{version} retired. Keyring: {ring.describe()}. Recorded as {event}.", details)


def init_keyring(output: str) -> Outcome:
    """A new keyring (key k1) in the file ``output`` (mode 0600), for a production secret store; refused if the
    file exists. The keys are written to that file only, never printed."""
    from pathlib import Path

    path = Path(output).expanduser()
    if path.exists():
        raise PrivacyRefused(f"refused: {path} exists; a keyring is never overwritten (its keys decrypt the lake)")
    ring = Keyring({}, str(path))
    ring.add_version()
    ring.save(path)
    return Outcome(f"new privacy keyring with key k1 in {path} (mode 0600). Store it in your secret store or mount "
                   "it as ECOMMERCE_LAKE_PRIVACY_KEYRING_FILE; keep a backup: without it the encrypted values are lost.")


def status(lake: LakeResource, keyring_file: str) -> Outcome:
    """The keyring's versions (never the keys) and the encrypted values per table and version."""
    try:
        ring = load_keyring(keyring_file, generate_if_missing=False)
        described = f"keyring {ring.source}: {ring.describe()}"
    except KeyringUnavailable as exc:
        described = f"no keyring here ({exc})"
    lines = [described]
    for table, counts in usage(lake).items():
        parts = [("NOT ENCRYPTED" if v == -1 else f"k{v}") + f" {n:,}" for v, n in sorted(counts.items())]
        lines.append(f"  {table}: " + (", ".join(parts) or "no personal values"))
    return Outcome("\n".join(lines))
