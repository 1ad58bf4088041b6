"""The Spark resource: one SparkSession per process, shared by every asset and check of a run.

Dagster runs every step of our jobs in the run's own process (the in-process executor, see
``ecommerce_lake.definitions``), so the JVM starts once per run, not once per asset.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from ecommerce_lake.platform.jars import resolve_jars

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
AWS_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SECRET_CONF = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "secret", "password", "token")
_SESSION: SparkSession | None = None
_FINGERPRINT: tuple | None = None
_STARTUP_SECONDS: float | None = None
_STARTS = 0  # SparkSessions this process has started (a long-lived run worker reports it)


class SparkResource(dg.ConfigurableResource):
    """Builds (once per process) a SparkSession configured for Delta Lake and the Hive catalog."""

    master: str = Field(default="local[*]", description="Spark master URL: local[*] or spark://host:port.")
    app_name: str = "ecommerce_lake"
    shuffle_partitions: int = Field(default=4, description="spark.sql.shuffle.partitions (AQE coalesces further).")
    driver_memory: str = "4g"
    ui_enabled: bool = False
    warehouse_dir: str = Field(description="Catalog warehouse; lives under the lake root.")
    metastore_uri: str = Field(default="", description="thrift://host:port of a Hive metastore; empty = embedded.")
    metastore_dir: str = Field(default="", description="Where the embedded (Derby) metastore keeps its files.")
    jars_dir: str
    jar_groups: list[str] = Field(default_factory=lambda: ["delta"])
    maven_repo: str = "https://repo1.maven.org/maven2"
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_path_style: bool = False
    extra_conf: dict[str, str] = Field(default_factory=dict)

    def spark_conf(self) -> dict[str, str]:
        """The full Spark configuration this resource applies (also used by `ecommerce-lake config`)."""
        jars = resolve_jars(self.jar_groups, self.jars_dir, self.maven_repo)
        conf: dict[str, str] = {
            "spark.master": self.master,
            "spark.app.name": self.app_name,
            "spark.jars": ",".join(str(p) for p in jars),
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": self.warehouse_dir,
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.adaptive.coalescePartitions.enabled": "true",
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            # Delta rebuilds table state from its log with this many partitions (default 50): size it like
            # the shuffle, or every read of a small table pays for 50 tasks.
            "spark.databricks.delta.snapshotPartitions": str(self.shuffle_partitions),
            # VACUUM lists and deletes files with this many tasks (default 10,000: 15 s per small table here)
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(self.shuffle_partitions),
            "spark.sql.session.timeZone": "UTC",
            "spark.ui.enabled": str(self.ui_enabled).lower(),
            "spark.ui.showConsoleProgress": "false",
            "spark.redaction.regex": "(?i)secret|password|token|access[._]key",
            "spark.log.structuredLogging.enabled": "false",
            "spark.driver.memory": self.driver_memory,
            "spark.pyspark.python": sys.executable,
            "spark.pyspark.driver.python": sys.executable,
            "spark.databricks.delta.schema.autoMerge.enabled": "false",
            "spark.databricks.delta.replaceWhere.constraintCheck.enabled": "true",
            "spark.sql.sources.partitionOverwriteMode": "static",
            # DataFrame -> pandas (the inventory simulation, charts) through Arrow, not row by row
            "spark.sql.execution.arrow.pyspark.enabled": "true",
        }
        if self.metastore_uri:
            conf["spark.hadoop.hive.metastore.uris"] = self.metastore_uri
        else:
            metastore_dir = Path(self.metastore_dir).expanduser()
            metastore_dir.mkdir(parents=True, exist_ok=True)
            conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
                f"jdbc:derby:;databaseName={metastore_dir / 'metastore_db'};create=true"
            )
            conf["spark.driver.extraJavaOptions"] = f"-Dderby.system.home={metastore_dir}"
        if "s3" in self.jar_groups:
            conf.update(
                {
                    "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
                    "spark.hadoop.fs.s3a.path.style.access": str(self.s3_path_style).lower(),
                    "spark.hadoop.fs.s3a.endpoint.region": self.s3_region,
                    # Credentials come from the standard AWS environment variables / instance profile,
                    # never from this configuration (so they never show in the UI or in logs).
                    "spark.hadoop.fs.s3a.aws.credentials.provider": (
                        "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
                    ),
                    "spark.delta.logStore.s3a.impl": "io.delta.storage.S3SingleDriverLogStore",
                }
            )
            if not self.master.startswith("local"):
                # Executors on other machines take credentials from their own environment (instance profile,
                # or the standard variables passed on here); Spark redacts them in its UI and logs.
                for var in AWS_CREDENTIAL_VARS:
                    if os.environ.get(var):
                        conf[f"spark.executorEnv.{var}"] = os.environ[var]
            if self.s3_endpoint:
                conf["spark.hadoop.fs.s3a.endpoint"] = self.s3_endpoint
                if self.s3_endpoint.startswith("http://"):
                    conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "false"
        conf.update(self.extra_conf)
        return conf

    def get_session(self) -> SparkSession:
        """The process's SparkSession, created on first use and reused afterwards."""
        global _SESSION, _FINGERPRINT, _STARTUP_SECONDS, _STARTS
        conf = self.spark_conf()
        fingerprint = tuple(sorted(conf.items()))
        with _LOCK:
            if _SESSION is not None and _SESSION_alive(_SESSION):
                if fingerprint == _FINGERPRINT:
                    return _SESSION
                changed = sorted(k for k, v in conf.items() if dict(_FINGERPRINT or ()).get(k) != v)
                log.warning("Spark configuration changed (%s); restarting the SparkSession", ", ".join(changed))
                _SESSION.stop()
                _SESSION = None
            from dagster_pyspark.resources import spark_session_from_config

            started = time.monotonic()
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            session = spark_session_from_config(conf)
            session.sparkContext.setLogLevel("WARN")
            quiet_jvm_loggers(session)
            _STARTUP_SECONDS = time.monotonic() - started
            _STARTS += 1
            log.info("SparkSession started on %s in %.1f s", self.master, _STARTUP_SECONDS)
            _SESSION, _FINGERPRINT = session, fingerprint
            atexit.register(stop_session)  # a clean stop: cluster masters record the application as finished
            return session


def start_in_background(resource: SparkResource) -> threading.Thread:
    """Start the process's SparkSession on a daemon thread, so the JVM boots while the caller does other work
    (``ecommerce-lake run`` plans the run's partitions meanwhile). The first ``get_session()`` of the run waits
    for it (same lock, same configuration: the same session). A failure here is only logged at debug level: that
    first ``get_session()`` then starts Spark itself and raises the error where the run reports it."""

    def start() -> None:
        try:
            resource.get_session()
        except Exception as exc:  # noqa: BLE001 - re-raised by the run's own get_session()
            log.debug("starting Spark in the background failed (the run will retry and report): %s", exc)

    thread = threading.Thread(target=start, name="spark-start", daemon=True)
    thread.start()
    return thread


def _SESSION_alive(session: SparkSession) -> bool:
    try:
        return not session.sparkContext._jsc.sc().isStopped()  # type: ignore[union-attr]
    except Exception:
        return False


def session_startup_seconds() -> float | None:
    """Seconds the current process spent starting its SparkSession (None if none was started)."""
    return _STARTUP_SECONDS


def sessions_started() -> int:
    """How many SparkSessions this process has started (1 for a worker whose JVM served every run)."""
    return _STARTS


def stop_session() -> None:
    global _SESSION, _FINGERPRINT
    with _LOCK:
        if _SESSION is not None:
            _SESSION.stop()
        _SESSION, _FINGERPRINT = None, None


_QUIET_LOGGERS = (
    # Expected and harmless in this setup; they would bury the useful lines.
    "org.apache.spark.sql.catalyst.csv.CSVHeaderChecker",  # we read CSVs by position, with our own names
    "org.apache.spark.sql.hive.HiveExternalCatalog",  # "no Hive SerDe for delta" on every registration
    "org.apache.hadoop.hive.metastore.ObjectStore",
    "org.apache.hadoop.hive.metastore.RetryingHMSHandler",
    "org.apache.spark.util.SparkStringUtils",
    "org.apache.hadoop.util.NativeCodeLoader",
    "org.apache.spark.sql.internal.SharedState",
    "DataFrameQueryContextLogger",  # repeats every analysis error with a full JVM stack; Python raises it anyway
)


def quiet_jvm_loggers(session: SparkSession) -> None:
    jvm = session.sparkContext._jvm  # type: ignore[union-attr]
    level = jvm.org.apache.logging.log4j.Level.ERROR
    for name in _QUIET_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, level)


def redacted(conf: dict[str, str]) -> dict[str, str]:
    """The configuration with secret values hidden (for printing)."""
    return {k: ("*********(redacted)" if any(w.lower() in k.lower() for w in SECRET_CONF) else v)
            for k, v in conf.items()}
