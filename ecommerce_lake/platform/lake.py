"""The lake: where every table lives, and how Delta tables are read, written and catalogued.

One rule maps an asset key to everything else: asset key ``[layer, table]`` is stored at
``<lake_root>/<layer>/<table>`` and registered in the catalog as ``<layer>.<table>``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from ecommerce_lake.platform.schema_meta import column_shape
from ecommerce_lake.platform.spark import SparkResource

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REGISTERED: dict[str, str] = {}  # catalog name -> location registered by this process


class LakeError(RuntimeError):
    """A problem with a lake table; the message names the asset/table."""


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
                                   "versioning, public access block) instead of failing.")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.verify_bucket and self.root.startswith("s3a://"):
            from ecommerce_lake.platform.bucket import ensure_bucket

            bucket = self.root[len("s3a://"):].split("/", 1)[0]
            report = ensure_bucket(self.s3.get_client(), bucket, configure=self.configure_bucket)
            if context.log and report.configured:
                context.log.info(f"lake bucket s3://{bucket}: configured {', '.join(report.configured)}")

    # ---- naming -------------------------------------------------------------------------------
    def table_uri(self, asset_key: dg.AssetKey) -> str:
        layer, table = table_parts(asset_key)
        return f"{self.root.rstrip('/')}/{layer}/{table}"

    def session(self) -> SparkSession:
        return self.spark.get_session()

    # ---- reading ------------------------------------------------------------------------------
    def exists(self, asset_key: dg.AssetKey) -> bool:
        from delta.tables import DeltaTable

        return bool(DeltaTable.isDeltaTable(self.session(), self.table_uri(asset_key)))

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
        try:  # no separate existence check first: Delta reads the table's log once, here
            df = reader.load(uri)
        except Exception as exc:
            if not self.exists(asset_key):
                raise LakeError(
                    f"asset {asset_key.to_user_string()!r} has not been materialized yet: no Delta table at {uri}. "
                    "Materialize it (and its upstream assets) first."
                ) from exc
            raise
        if "_month" in df.columns:  # physical partition column managed by the IO manager, not part of the data
            df = df.drop("_month")
        if where:
            df = df.where(where)
        if columns:
            missing = [c for c in columns if c not in df.columns]
            if missing:
                raise LakeError(
                    f"asset {asset_key.to_user_string()!r}: requested columns {missing} are not in the table "
                    f"(columns: {df.columns})"
                )
            df = df.select(*columns)
        return df

    def history(self, asset_key: dg.AssetKey, limit: int = 20) -> list[dict]:
        from delta.tables import DeltaTable

        rows = DeltaTable.forPath(self.session(), self.table_uri(asset_key)).history(limit).collect()
        return [r.asDict(recursive=True) for r in rows]

    def current_version(self, asset_key: dg.AssetKey) -> int | None:
        if not self.exists(asset_key):
            return None
        return int(self.history(asset_key, 1)[0]["version"])

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
        from delta.tables import DeltaTable

        spark = self.session()
        uri = self.table_uri(asset_key)
        name = catalog_name(asset_key)
        token = uuid.uuid4().hex
        previous_schema = None
        if DeltaTable.isDeltaTable(spark, uri):
            previous_schema = spark.read.format("delta").load(uri).schema

        writer = (
            df.write.format("delta")
            .mode("overwrite")
            .option("userMetadata", json.dumps({"token": token, **(commit_info or {})}, sort_keys=True))
        )
        if replace_where is not None:
            writer = writer.option("replaceWhere", replace_where)
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
                    f"version {self.current_version(asset_key) if previous_schema is not None else 'none'}. "
                    f"Delta said: {text.splitlines()[0]}"
                ) from exc
            raise
        seconds = time.monotonic() - started
        commit, previous = self._commit_with_token(uri, token)
        metrics = {k: _to_int(v) for k, v in (commit.get("operationMetrics") or {}).items()}
        files = metrics.get("numFiles") if "numFiles" in metrics else metrics.get("numAddedFiles")
        if metrics.get("numOutputRows") is None and files == 0:
            metrics["numOutputRows"] = 0  # Delta leaves the row count out of a write of no files (an empty table)
        self.register(asset_key)
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
        from delta.tables import DeltaTable

        table = DeltaTable.forPath(self.session(), self.table_uri(asset_key))
        builder = table.optimize()
        result = builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()
        row = result.collect()[0]
        return row["metrics"].asDict(recursive=True) if row["metrics"] is not None else {}

    # ---- catalog ------------------------------------------------------------------------------
    def register(self, asset_key: dg.AssetKey) -> str:
        """Register the table in the catalog as ``<layer>.<table>`` (idempotent; re-points moved tables).

        With the embedded metastore, registrations are also noted in a small file next to its database, so a
        new process does not start the metastore client (seconds) only to learn a table is already there.
        """
        layer, table = table_parts(asset_key)
        name = f"{layer}.{table}"
        uri = self.table_uri(asset_key)
        if _REGISTERED.get(name) == uri or self._noted().get(name) == uri:
            _REGISTERED[name] = uri
            return name
        spark = self.session()
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
        self._note(name, uri)
        return name

    def _registry_file(self) -> Path | None:
        if self.spark.metastore_uri or not self.spark.metastore_dir:
            return None  # a shared metastore server: always ask it
        db = Path(self.spark.metastore_dir).expanduser() / "metastore_db"
        return db / "ecommerce_lake_tables.json" if db.is_dir() else None

    def _noted(self) -> dict[str, str]:
        path = self._registry_file()
        if path is None or not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def _note(self, name: str, uri: str) -> None:
        path = self._registry_file()
        if path is None:
            return
        noted = {**self._noted(), name: uri}
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(noted, sort_keys=True))
        os.replace(tmp, path)

    # ---- internals ----------------------------------------------------------------------------
    def _commit_with_token(self, uri: str, token: str) -> tuple[dict, dict | None]:
        """Our commit, found by its token, and the commit before it (None for a new table), from one read of the
        history. Delta records no commit for a write that changes nothing (no rows written, none replaced): then
        the table's current version, with no metrics, and that version as the previous one."""
        from delta.tables import DeltaTable

        history = [r.asDict(recursive=True) for r in DeltaTable.forPath(self.session(), uri).history(10).collect()]
        for i, row in enumerate(history):
            meta = row["userMetadata"]
            if meta and token in meta:
                return row, (history[i + 1] if i + 1 < len(history) else None)
        return ({"version": history[0]["version"], "operation": "NONE (nothing to change)",
                 "operationMetrics": {"numOutputRows": "0", "numFiles": "0", "numOutputBytes": "0"}}, history[0])


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
