"""The lake: where every table lives, and how Delta tables are read, written and catalogued.

One rule maps an asset key to everything else: asset key ``[layer, table]`` is stored at
``<lake_root>/<layer>/<table>`` and registered in the catalog as ``<layer>.<table>``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from ecommerce_lake.platform.locations import delta_rs_location
from ecommerce_lake.platform.schema_meta import column_shape
from ecommerce_lake.platform.spark import SparkResource

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# what Delta's optimistic concurrency raises when another writer committed first (Delta 4.0 error classes and
# the exception names of older releases)
CONCURRENT_WRITE_ERRORS = (
    "DELTA_CONCURRENT_APPEND", "DELTA_CONCURRENT_DELETE_READ", "DELTA_CONCURRENT_DELETE_DELETE",
    "DELTA_CONCURRENT_TRANSACTION", "DELTA_CONCURRENT_WRITE", "DELTA_METADATA_CHANGED", "DELTA_PROTOCOL_CHANGED",
    "ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
    "ProtocolChangedException",
)
_REGISTERED: dict[str, str] = {}  # catalog name -> location registered by this process
_ROWS: dict[str, tuple[int, int | None]] = {}  # table URI -> (Delta version, rows)


class LakeError(RuntimeError):
    """A problem with a lake table; the message names the asset/table."""

# Day-partitioned tables are Delta-partitioned by month of their day column (a day's rewrite touches one month's
# files, and a two-year table holds 24 partitions, not 730): the IO manager adds this column on write, reads drop it
MONTH_COLUMN = "_month"


def table_parts(asset_key: dg.AssetKey) -> tuple[str, str]:
    path = asset_key.path
    if len(path) != 2 or not all(_NAME.match(p) for p in path):
        raise LakeError(
            f"asset {asset_key.to_user_string()!r}: lake tables need a key of the form [layer, table] "
            "in lower_snake_case (e.g. AssetKey(['curated', 'fact_sales']))"
        )
    return path[0], path[1]


def catalog_name(asset_key: dg.AssetKey) -> str:
    layer, table = table_parts(asset_key)
    return f"{layer}.{table}"


def _sql_path(uri: str) -> str:
    return "delta.`" + uri.replace("`", "``") + "`"


@dataclass
class WriteResult:
    uri: str
    table_name: str
    version: int
    operation: str
    rows: int | None
    files: int | None
    bytes: int | None
    seconds: float
    replace_where: str | None = None
    previous_version: int | None = None
    previous_rows: int | None = None
    schema_changed: bool = False
    metrics: dict = field(default_factory=dict)


class LakeResource(dg.ConfigurableResource):
    """Table locations, catalog registration and Delta I/O for the whole lake."""

    root: str = Field(description="Lake root: a local path or s3a://bucket/prefix.")
    spark: SparkResource
    s3: S3Resource = Field(default_factory=S3Resource, description="For verifying an s3a:// lake bucket.")
    verify_bucket: bool = Field(default=False, description="Verify the lake bucket when a run starts (prod).")
    configure_bucket: bool = Field(default=False, description="Configure what the bucket lacks (encryption, "
                                   "versioning, public access block, TLS-only policy) instead of failing.")
    kms_key_id: str = Field(default="", description="SSE-KMS key the bucket's default encryption must use "
                            "(empty: SSE-S3 or any SSE-KMS key).")
    require_tls: bool = Field(default=True, description="Require a bucket policy denying requests without TLS "
                              "(not with a plain http:// S3 endpoint, which it would lock out).")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.verify_bucket and self.root.startswith("s3a://"):
            from ecommerce_lake.platform.bucket import ensure_bucket

            bucket = self.root[len("s3a://"):].split("/", 1)[0]
            report = ensure_bucket(self.s3.get_client(), bucket, configure=self.configure_bucket,
                                   kms_key_id=self.kms_key_id, require_tls=self.require_tls)
            if context.log and report.configured:
                context.log.info(f"lake bucket s3://{bucket}: configured {', '.join(report.configured)}")

    # ---- naming -------------------------------------------------------------------------------
    def table_uri(self, asset_key: dg.AssetKey) -> str:
        layer, table = table_parts(asset_key)
        return f"{self.root.rstrip('/')}/{layer}/{table}"

    def session(self) -> SparkSession:
        return self.spark.get_session()

    # ---- reading ------------------------------------------------------------------------------
    def _delta_rs(self, uri: str):
        """The table's log read with delta-rs (versions, schema, history: no Spark job); None if no table."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        location, options = delta_rs_location(uri, self.spark.s3_endpoint, self.spark.s3_region,
                                              self.spark.s3_path_style)
        try:
            return DeltaTable(location, storage_options=options, without_files=True)
        except TableNotFoundError:
            return None

    def exists(self, asset_key: dg.AssetKey) -> bool:
        return self._delta_rs(self.table_uri(asset_key)) is not None

    def row_count(self, asset_key: dg.AssetKey) -> int | None:
        """The table's rows, from the statistics Delta keeps in its log (no Spark job); None without a table
        (or without statistics)."""
        from deltalake import DeltaTable

        uri = self.table_uri(asset_key)
        location, options = delta_rs_location(uri, self.spark.s3_endpoint, self.spark.s3_region,
                                              self.spark.s3_path_style)
        head = self._delta_rs(uri)
        if head is None:
            return None
        version = head.version()
        cached = _ROWS.get(uri)
        if cached is not None and cached[0] == version:
            return cached[1]
        actions = DeltaTable(location, storage_options=options, version=version).get_add_actions(flatten=True)
        counts = actions.column("num_records").to_pylist() if "num_records" in actions.schema.names else [None]
        rows = None if any(c is None for c in counts) else int(sum(counts))
        _ROWS[uri] = (version, rows)
        return rows

    def is_small(self, asset_key: dg.AssetKey) -> bool:
        """Fewer rows than ``frames.SMALL_TABLE_ROWS``: joins read it whole rather than narrowed to keys first."""
        from ecommerce_lake.logic.frames import SMALL_TABLE_ROWS

        rows = self.row_count(asset_key)
        return rows is not None and rows < SMALL_TABLE_ROWS

    def read(
        self,
        asset_key: dg.AssetKey,
        columns: Sequence[str] | None = None,
        where: str | None = None,
        version: int | None = None,
    ) -> DataFrame:
        uri = self.table_uri(asset_key)
        reader = self.session().read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        try:  # no separate existence check first: Delta reads the table's log once, here (over Spark Connect
            # the load is lazy: asking for the columns analyses it)
            df = reader.load(uri)
            present = df.columns
        except Exception as exc:
            if not self.exists(asset_key):
                raise LakeError(
                    f"asset {asset_key.to_user_string()!r} has not been materialized yet: no Delta table at {uri}. "
                    "Materialize it (and its upstream assets) first."
                ) from exc
            raise
        if MONTH_COLUMN in present:  # the physical layout's column, not part of the data
            df = df.drop(MONTH_COLUMN)
            present = [c for c in present if c != MONTH_COLUMN]
        if where:
            df = df.where(where)
        if columns:
            missing = [c for c in columns if c not in present]
            if missing:
                raise LakeError(
                    f"asset {asset_key.to_user_string()!r}: requested columns {missing} are not in the table "
                    f"(columns: {present})"
                )
            df = df.select(*columns)
        return df

    def history(self, asset_key: dg.AssetKey, limit: int = 20) -> list[dict]:
        """The table's latest commits, newest first (``version``, ``operation``, ``operationMetrics``,
        ``userMetadata``...), as Delta's ``DESCRIBE HISTORY`` gives them."""
        table = self._delta_rs(self.table_uri(asset_key))
        if table is None:
            raise LakeError(f"asset {asset_key.to_user_string()!r} has not been materialized yet: no Delta table at "
                            f"{self.table_uri(asset_key)}")
        return _history(table, limit)

    def current_version(self, asset_key: dg.AssetKey) -> int | None:
        table = self._delta_rs(self.table_uri(asset_key))
        return None if table is None else int(table.version())

    # ---- writing ------------------------------------------------------------------------------
    def write(
        self,
        df: DataFrame,
        asset_key: dg.AssetKey,
        *,
        replace_where: str | None = None,
        partition_by: Sequence[str] = (),
        commit_info: dict | None = None,
    ) -> WriteResult:
        """Write ``df`` as one atomic Delta commit.

        Without ``replace_where`` the table is overwritten (new version; history kept). With it, only
        rows matching the predicate are replaced, and Delta refuses (we re-raise with the asset named)
        any row of ``df`` that does not match it.
        """
        self.session()
        uri = self.table_uri(asset_key)
        name = catalog_name(asset_key)
        token = uuid.uuid4().hex
        before = self._delta_rs(uri)
        previous_schema = _spark_schema(before) if before is not None else None

        writer = (
            df.write.format("delta")
            .mode("overwrite")
            .option("userMetadata", json.dumps({"token": token, **(commit_info or {})}, sort_keys=True))
        )
        properties = _table_properties(name, df.dtypes)
        if properties and before is None:
            for k, v in properties.items():  # a new table takes them from the writer
                writer = writer.option(k, v)
        elif properties and {k: (before.metadata().configuration or {}).get(k) for k in properties} != properties:
            settings = ", ".join(f"'{k}' = '{v}'" for k, v in properties.items())
            self.session().sql(f"ALTER TABLE {_sql_path(uri)} SET TBLPROPERTIES ({settings})").collect()
        if replace_where is not None:
            writer = writer.option("replaceWhere", replace_where)
            if previous_schema is not None and _adds_columns(df.schema, previous_schema):
                # the table's schema grew by columns only (an upgrade, e.g. raw.batch_log's fingerprint): the
                # old rows read them as null
                writer = writer.option("mergeSchema", "true")
        else:
            writer = writer.option("overwriteSchema", "true")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        started = time.monotonic()
        try:
            writer.save(uri)
        except Exception as exc:
            text = str(exc)
            if replace_where is not None and ("replaceWhere" in text or "DELTA_REPLACE_WHERE_MISMATCH" in text
                                              or "does not conform to partial table overwrite" in text):
                raise LakeError(
                    f"asset {asset_key.to_user_string()!r}: refusing to write rows outside the partition being "
                    f"materialized (replaceWhere: {replace_where}). Nothing was written; the table stays at "
                    f"version {before.version() if before is not None else 'none'}. "
                    f"Delta said: {text.splitlines()[0]}"
                ) from exc
            conflict = next((c for c in CONCURRENT_WRITE_ERRORS if c in text), None)
            if conflict is not None:
                now = self._delta_rs(uri)
                raise LakeError(
                    f"asset {asset_key.to_user_string()!r}: another run committed to {uri} while this one was "
                    f"writing it ({conflict}); this write was not committed, so the table holds the other run's "
                    f"version {now.version() if now is not None else 'none'}, intact. Run again when the other "
                    f"run has finished: re-runs are idempotent. Delta said: {text.splitlines()[0][:300]}"
                ) from exc
            raise
        seconds = time.monotonic() - started
        commit, previous = self._commit_with_token(uri, token)
        metrics = {k: _to_int(v) for k, v in (commit.get("operationMetrics") or {}).items()}
        files = metrics.get("numFiles") if "numFiles" in metrics else metrics.get("numAddedFiles")
        if metrics.get("numOutputRows") is None and files == 0:
            metrics["numOutputRows"] = 0  # Delta leaves the row count out of a write of no files (an empty table)
        self.register_soon(asset_key)
        return WriteResult(
            uri=uri,
            table_name=name,
            version=int(commit["version"]),
            operation=str(commit.get("operation")),
            rows=metrics.get("numOutputRows"),
            files=files,
            bytes=metrics.get("numOutputBytes") if "numOutputBytes" in metrics else metrics.get("numAddedBytes"),
            seconds=seconds,
            replace_where=replace_where,
            previous_version=int(previous["version"]) if previous else None,
            previous_rows=_to_int((previous.get("operationMetrics") or {}).get("numOutputRows")) if previous else None,
            schema_changed=bool(previous_schema is not None
                                and column_shape(df.schema) != column_shape(previous_schema)),
            metrics=metrics,
        )

    def optimize(self, asset_key: dg.AssetKey, zorder_by: Sequence[str] = ()) -> dict:
        """Compact small files (and Z-order when asked) with Delta OPTIMIZE; returns Delta's metrics."""
        sql = f"OPTIMIZE {_sql_path(self.table_uri(asset_key))}"
        if zorder_by:
            sql += " ZORDER BY (" + ", ".join(f"`{c}`" for c in zorder_by) + ")"
        row = self.session().sql(sql).collect()[0]
        return row["metrics"].asDict(recursive=True) if row["metrics"] is not None else {}

    def vacuum(self, asset_key: dg.AssetKey, retention_hours: int, dry_run: bool = False) -> list[str]:
        """Delta VACUUM with ``retention_hours``; with ``dry_run``, the files it would delete."""
        sql = f"VACUUM {_sql_path(self.table_uri(asset_key))} RETAIN {int(retention_hours)} HOURS"
        rows = self.session().sql(sql + (" DRY RUN" if dry_run else "")).collect()
        return [r[0] for r in rows] if dry_run else []

    def detail(self, asset_key: dg.AssetKey) -> dict:
        """Delta's ``DESCRIBE DETAIL`` of the table (files, size, partition columns...)."""
        return self.session().sql(f"DESCRIBE DETAIL {_sql_path(self.table_uri(asset_key))}").collect()[0].asDict()

    # ---- catalog ------------------------------------------------------------------------------
    def register_soon(self, asset_key: dg.AssetKey) -> None:
        """Register the table on a background thread: the catalog's answer (a few hundred ms per table) is not
        on the step's path. ``flush_registrations`` (called when the run ends, and at exit) waits for them."""
        global _REGISTRAR
        with _REGISTRAR_LOCK:
            if _REGISTRAR is None or not _REGISTRAR.is_alive():
                _REGISTRAR = threading.Thread(target=_register_queued, name="catalog-registration", daemon=True)
                _REGISTRAR.start()
                atexit.register(flush_registrations)
        _QUEUE.put((self, asset_key))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        flush_registrations()

    def register(self, asset_key: dg.AssetKey) -> str:
        """Register the table in the catalog as ``<layer>.<table>`` (idempotent; re-points moved tables).

        With the embedded metastore, registrations are also noted in a small file next to its database (the
        engine's, when runs use the engine), so a new process does not ask the metastore (seconds, cold) only to
        learn a table is already there. Every process using that metastore reads and writes the same file, so it
        holds the registration the metastore holds; a process's own memory is trusted only without such a file.
        """
        layer, table = table_parts(asset_key)
        name = f"{layer}.{table}"
        uri = self.table_uri(asset_key)
        spark = self.session()
        registry = self._registry_file()
        if (self._noted(registry) if registry is not None else _REGISTERED).get(name) == uri:
            return name
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
        current = None
        if spark.catalog.tableExists(name):
            rows = spark.sql(f"DESCRIBE DETAIL {name}").select("location").collect()
            current = rows[0]["location"] if rows else None
        if current is not None and not _same_location(current, uri):
            log.info("re-registering %s: %s -> %s", name, current, uri)
            spark.sql(f"DROP TABLE IF EXISTS {name}")  # external table: drops the entry, never the data
            current = None
        if current is None:
            spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{uri}'")
        _REGISTERED[name] = uri
        if registry is not None:
            self._note(registry, name, uri)
        return name

    def _registry_file(self) -> Path | None:
        """The note of registrations beside the embedded metastore this process's Spark uses (None: a metastore
        server, always asked)."""
        from ecommerce_lake.platform.spark import session_info

        info = session_info()
        if info is not None and info.kind == "engine":
            path = Path(info.registry) if info.registry else None
        elif self.spark.metastore_uri or not self.spark.metastore_dir:
            path = None
        else:
            path = Path(self.spark.metastore_dir).expanduser() / "metastore_db" / "ecommerce_lake_tables.json"
        return path if path is not None and path.parent.is_dir() else None

    @staticmethod
    def _noted(path: Path) -> dict[str, str]:
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def _note(self, path: Path, name: str, uri: str) -> None:
        noted = {**self._noted(path), name: uri}
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(noted, sort_keys=True))
        os.replace(tmp, path)

    # ---- internals ----------------------------------------------------------------------------
    def _commit_with_token(self, uri: str, token: str) -> tuple[dict, dict | None]:
        """Our commit, found by its token, and the commit before it (None for a new table), from one read of the
        history. Delta records no commit for a write that changes nothing (no rows written, none replaced): then
        the table's current version, with no metrics, and that version as the previous one."""
        history = _history(self._delta_rs(uri), 10)
        for i, row in enumerate(history):
            meta = row.get("userMetadata")
            if meta and token in meta:
                return row, (history[i + 1] if i + 1 < len(history) else None)
        return ({"version": history[0]["version"], "operation": "NONE (nothing to change)",
                 "operationMetrics": {"numOutputRows": "0", "numFiles": "0", "numOutputBytes": "0"}}, history[0])


def _table_properties(name: str, dtypes: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Delta table properties a table's schema asks for. A table holding encrypted personal values keeps no
    statistics of them in its Delta log (min/max values would be ciphertext prefixes there, kept for the log's
    retention even after VACUUM): only its other columns have data-skipping statistics."""
    from ecommerce_lake.schemas import BY_NAME, encrypted_columns

    schema = BY_NAME.get(name)
    encrypted = set(encrypted_columns(schema)) if schema is not None else set()
    if not encrypted:
        return {}
    return {"delta.dataSkippingStatsColumns": ",".join(  # Delta keeps statistics of simple types only
        f"`{c}`" for c, t in dtypes if c not in encrypted and not t.startswith(("array", "map", "struct")))}


def _history(table, limit: int) -> list[dict]:
    """delta-rs history rows (commitInfo), newest first, with the fields Spark's DESCRIBE HISTORY names."""
    out = []
    for row in table.history(limit):
        row = dict(row)
        row.setdefault("operationMetrics", {})
        row.setdefault("userMetadata", None)
        out.append(row)
    return sorted(out, key=lambda r: -int(r["version"]))


def _adds_columns(new, old) -> bool:
    """``new`` holds every column of ``old`` and more."""
    old_names = {f.name for f in old.fields}
    new_names = {f.name for f in new.fields}
    return old_names < new_names


def _spark_schema(table):
    """The Spark schema of a Delta table, from its log (Delta stores the Spark StructType as JSON)."""
    from pyspark.sql import types as T

    return T.StructType.fromJson(json.loads(table.schema().to_json()))


_QUEUE: queue.Queue = queue.Queue()
_REGISTRAR: threading.Thread | None = None
_REGISTRAR_LOCK = threading.Lock()


def _register_queued() -> None:
    while True:
        lake, key = _QUEUE.get()
        try:
            lake.register(key)
        except Exception as exc:  # noqa: BLE001 - the table is written; only its catalog name is missing
            log.warning("could not register %s in the catalog: %s", catalog_name(key), str(exc).splitlines()[0])
        finally:
            _QUEUE.task_done()


def flush_registrations() -> None:
    """Wait until every table written by this process is registered in the catalog."""
    _QUEUE.join()


def _same_location(a: str, b: str) -> bool:
    def norm(x: str) -> str:
        x = x.rstrip("/")
        return x[len("file:") :] if x.startswith("file:") else x

    return norm(a) == norm(b)


def _to_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
