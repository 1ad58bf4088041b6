"""The Spark resource: one SparkSession per process, shared by every asset and check of a run.

When the engine (``ecommerce_lake.platform.engine``, a Spark Connect server) is up for this configuration, the
session is a thin client of it: the run process starts no JVM and finds the engine's JIT warm. Otherwise the
process starts its own local SparkSession, once: Dagster runs every step of our jobs in the run's own process
(the in-process executor, see ``ecommerce_lake.definitions``), so that JVM starts once per run, not per asset.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from ecommerce_lake.platform import engine
from ecommerce_lake.platform.jars import resolve_jars

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
AWS_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SECRET_CONF = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "secret", "password", "token")
_SESSION: SparkSession | None = None
_FINGERPRINT: tuple | None = None
_CONF: dict[str, str] = {}


def _session_key(remote: str, conf: dict[str, str], on_engine: bool) -> tuple:
    """When the process's session can serve a configuration again. In-process: the whole Spark configuration.
    On the engine: the engine's static configuration (its fingerprint) and the session settings; the paths of a
    client's own embedded metastore and warehouse do not matter there (the engine has its own), so one process
    can run lakes under two roots on one engine (the tests do) without dropping its session."""
    if on_engine:
        return (remote, engine.fingerprint(conf), tuple(sorted(engine.session_conf(conf).items())))
    return (remote, tuple(sorted(conf.items())))
_STARTUP_SECONDS: float | None = None
_STARTS = 0  # in-process SparkSessions (JVMs) this process has started
_INFO: SessionInfo | None = None
_RUN: tuple[Any, str, Any] | None = None  # (instance, run id, log) of the Dagster run this process executes
_TAGGED: tuple[str, str] | None = None
SPARK_TAG = "ecommerce_lake/spark"  # run tag: the Spark a run used ("engine sc://..." or "in-process local[*]")
SPARK_SESSION_TAG = "ecommerce_lake/spark_session"


SMALL_LANDING_BYTES = 16 * 1024 * 1024  # below this, whole-stage code generation costs more than it saves


@functools.lru_cache(maxsize=8)
def small_landing(root: str) -> bool:
    """Whether a local landing zone holds less than SMALL_LANDING_BYTES (measured once per process; a remote one
    counts as big, a local one not there yet as small). Measured on a warm engine (docs/performance.md): an
    815-line lake (0.3 MB of landing files) rebuilt in 68-71 s without whole-stage code generation against 91 s
    with it; a 150,000-line lake (27 MB) in 117 s without against 110-126 s with it."""
    if not root or "://" in root:
        return False
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
            if total >= SMALL_LANDING_BYTES:
                return False
    return True


class SparkResource(dg.ConfigurableResource):
    """Builds (once per process) a SparkSession configured for Delta Lake and the Hive catalog."""

    master: str = Field(default="local[*]", description="Spark master URL: local[*] or spark://host:port.")
    remote: str = Field(default="", description="Spark Connect URL of the engine (sc://host:port) used when it is "
                        "up; empty or 'off': in-process Spark only.")
    app_name: str = "ecommerce_lake"
    shuffle_partitions: int = Field(default=4, description="spark.sql.shuffle.partitions (AQE coalesces further).")
    driver_memory: str = "4g"
    ui_enabled: bool = False
    warehouse_dir: str = Field(description="Catalog warehouse; lives under the lake root.")
    metastore_uri: str = Field(default="", description="thrift://host:port of a Hive metastore; empty = embedded.")
    metastore_dir: str = Field(default="", description="Where the embedded (Derby) metastore keeps its files.")
    jars_dir: str
    jar_groups: list[str] = Field(default_factory=lambda: ["delta", "kafka"])
    maven_repo: str = "https://repo1.maven.org/maven2"
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_path_style: bool = False
    java_options: str = Field(default="", description="JVM options of the Spark driver (the engine's or this "
                              "process's), e.g. -XX:TieredStopAtLevel=1.")
    whole_stage_codegen: str = Field(default="true", description="spark.sql.codegen.wholeStage: true (Spark's "
                                     "default), false, or auto: off while the local landing zone is small (no code "
                                     "compiled per query pays on small data).")
    landing_root: str = Field(default="", description="The landing zone whose size decides whole_stage_codegen=auto.")
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
            "spark.sql.codegen.wholeStage": self._whole_stage_codegen(),
            # Delta rebuilds table state from its log with this many partitions (default 50): size it like
            # the shuffle, or every read of a small table pays for 50 tasks.
            "spark.databricks.delta.snapshotPartitions": str(self.shuffle_partitions),
            # VACUUM lists and deletes files with this many tasks (default 10,000: 15 s per small table here)
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(self.shuffle_partitions),
            "spark.sql.session.timeZone": "UTC",
            "spark.ui.enabled": str(self.ui_enabled).lower(),
            "spark.ui.showConsoleProgress": "false",
            "spark.redaction.regex": "(?i)secret|password|token|access[._]key",
            # key material in query plans (the AES keys of the personal columns, the HMAC pads): binary literals of
            # 32 bytes or more are redacted in EXPLAIN output and the Spark UI
            "spark.sql.redaction.string.regex": "(?i)X'[0-9a-f]{64,}'",
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
        if self.java_options.strip():
            conf["spark.driver.extraJavaOptions"] = " ".join(
                o for o in (conf.get("spark.driver.extraJavaOptions", ""), self.java_options.strip()) if o)
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

    def _whole_stage_codegen(self) -> str:
        if self.whole_stage_codegen != "auto":
            return self.whole_stage_codegen
        return "false" if small_landing(self.landing_root) else "true"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Remember the run, so the run's log says which Spark it uses and the run is tagged with it; tag the run
        with this process, so that a run killed hard is failed and its pool slots freed (``dead_runs``)."""
        global _RUN
        if context.instance is not None and context.run_id:
            _RUN = (context.instance, context.run_id, context.log)
            from ecommerce_lake.platform.dead_runs import claim

            claim(context.instance, context.run_id)

    def get_session(self) -> SparkSession:
        """The process's SparkSession, created on first use and reused afterwards: a client session on the engine
        (``ECOMMERCE_LAKE_SPARK_REMOTE``) when one is up for this configuration, else in-process local Spark."""
        global _SESSION, _FINGERPRINT, _CONF, _STARTUP_SECONDS, _STARTS, _INFO
        conf = self.spark_conf()
        with _LOCK:
            if _SESSION is not None and _session_alive(_SESSION):
                if _session_key(self.remote, conf, _INFO is not None and _INFO.kind == "engine") == _FINGERPRINT:
                    _activate(_SESSION)
                    _tag_run()
                    return _SESSION
                changed = sorted(k for k, v in conf.items() if _CONF.get(k) != v)
                log.warning("Spark configuration changed (%s); restarting the SparkSession", ", ".join(changed))
                _stop(_SESSION)
                _SESSION = None
            started = time.monotonic()
            fallback = ""
            if not engine.is_disabled(self.remote):
                conn = engine.connect(self.remote, conf)
                if conn.session is not None:
                    _STARTUP_SECONDS = time.monotonic() - started
                    _INFO = SessionInfo("engine", self.remote, conn.session.session_id, conn.ui_url, conn.registry)
                    _SESSION, _FINGERPRINT, _CONF = conn.session, _session_key(self.remote, conf, True), conf
                    _say(f"Spark: the engine at {self.remote} (Spark Connect session {conn.session.session_id}, "
                         f"connected in {_STARTUP_SECONDS:.2f} s)")
                    atexit.register(stop_session)  # closes the session on the engine (its cached data too)
                    _tag_run()
                    return conn.session
                fallback = conn.reason
            from dagster_pyspark.resources import spark_session_from_config

            os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            session = spark_session_from_config(conf)
            session.sparkContext.setLogLevel("WARN")
            quiet_jvm_loggers(session)
            _STARTUP_SECONDS = time.monotonic() - started
            _STARTS += 1
            _INFO = SessionInfo("in-process", self.master, session.sparkContext.applicationId, "", "")
            _SESSION, _FINGERPRINT, _CONF = session, _session_key(self.remote, conf, False), conf
            why = (f"{fallback}; " if fallback else "") if not engine.is_disabled(self.remote) else \
                "ECOMMERCE_LAKE_SPARK_REMOTE is off; "
            _say(f"Spark: {why}started in-process Spark on {self.master} in {_STARTUP_SECONDS:.1f} s"
                 + (" (`ecommerce-lake engine start` keeps a warm engine for every run)"
                    if fallback and "listening" in fallback else ""),
                 warn=bool(fallback) and "listening" not in fallback)
            atexit.register(stop_session)  # a clean stop: cluster masters record the application as finished
            _tag_run()
            return session


@dataclass(frozen=True)
class SessionInfo:
    """Which Spark the process uses: ``engine`` (a Spark Connect client) or ``in-process`` (its own JVM)."""

    kind: str
    address: str  # the engine's sc:// URL, or the in-process master
    session_id: str  # Connect session id, or the in-process application id
    ui_url: str  # the engine's status REST API ("" in-process: read through the JVM)
    registry: str  # the engine's catalog registry file ("" when none)

    @property
    def label(self) -> str:
        return (f"engine {self.address}" if self.kind == "engine" else f"in-process {self.address}")


def session_info() -> SessionInfo | None:
    """How this process reaches Spark (None before the first ``get_session``)."""
    return _INFO


def is_remote(session) -> bool:
    return type(session).__module__.startswith("pyspark.sql.connect")


# The one Spark notice silenced on the client (the engine and in-process Spark silence WindowExec's): a window
# without a partition. The lake's only such windows rank one row per customer for the RFM quintiles
# (logic/ml/segments.py; 20,000 customers in the sample data, three numbers each); test_logic keeps that list.
warnings.filterwarnings("ignore", message="WARN WindowExpression: No Partition Defined for Window operation",
                        category=UserWarning)


def _activate(session) -> None:
    """Make a Connect session the calling thread's active session too. Connect keeps the active session per
    thread; Spark ML's remote calls (a fitted model's attributes) look it up there, and the session may have been
    created on another thread (``start_in_background``)."""
    if is_remote(session):
        type(session)._set_default_and_active_session(session)  # pyspark's own helper; sets only what is unset


def _say(message: str, warn: bool = False) -> None:
    (log.warning if warn else log.info)(message)
    if _RUN is not None and _RUN[2] is not None:
        with contextlib.suppress(Exception):
            (_RUN[2].warning if warn else _RUN[2].info)(message)


def _tag_run() -> None:
    """Tag the current Dagster run with the Spark it ran on (``ecommerce_lake/spark``): the UI shows it on the
    run, and tests prove a run went through the engine."""
    global _TAGGED
    if _RUN is None or _INFO is None or _TAGGED == (_RUN[1], _INFO.session_id):
        return
    instance, run_id, _ = _RUN
    with contextlib.suppress(Exception):
        instance.add_run_tags(run_id, {SPARK_TAG: _INFO.label, SPARK_SESSION_TAG: _INFO.session_id})
        _TAGGED = (run_id, _INFO.session_id)


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


def _session_alive(session: SparkSession) -> bool:
    try:
        if is_remote(session):
            return not session.is_stopped
        return not session.sparkContext._jsc.sc().isStopped()  # type: ignore[union-attr]
    except Exception:
        return False


def _stop(session) -> None:
    if is_remote(session):
        with contextlib.suppress(Exception):
            session.interruptAll()  # a run that ends (or is terminated) leaves nothing running on the engine
        engine.close(session)
        return
    with contextlib.suppress(Exception):
        session.stop()


def session_startup_seconds() -> float | None:
    """Seconds the current process spent starting its SparkSession (None if none was started)."""
    return _STARTUP_SECONDS


def sessions_started() -> int:
    """How many SparkSessions this process has started (1 for a worker whose JVM served every run)."""
    return _STARTS


def stop_session() -> None:
    global _SESSION, _FINGERPRINT, _INFO
    with _LOCK:
        if _SESSION is not None:
            _stop(_SESSION)
            if is_remote(_SESSION):
                os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
        _SESSION, _FINGERPRINT, _INFO = None, None, None


def quiet_jvm_loggers(session: SparkSession) -> None:
    jvm = session.sparkContext._jvm  # type: ignore[union-attr]
    level = jvm.org.apache.logging.log4j.Level.ERROR
    for name in engine.QUIET_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, level)


def redacted(conf: dict[str, str]) -> dict[str, str]:
    """The configuration with secret values hidden (for printing)."""
    return {k: ("*********(redacted)" if any(w.lower() in k.lower() for w in SECRET_CONF) else v)
            for k, v in conf.items()}
