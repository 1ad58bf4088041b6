"""The Spark engine: one long-lived Spark Connect server that every run uses as a thin client.

A run in its own process used to start a JVM and compile every query cold; most of a small run was that fixed
cost. The engine is Spark's own answer: a Spark Connect server (``org.apache.spark.sql.connect.service.
SparkConnectServer``, shipped in the pyspark wheel) started once with the Delta jars and extension, the catalog and
the S3 settings of the lake. Runs, ``ecommerce-lake sql`` and the tests connect to it with
``SparkSession.builder.remote(...)``: the run process starts no JVM, and the engine's JIT-compiled code, Delta
log caches and catalog client stay warm between runs.

* ``ecommerce-lake engine start|stop|status`` manage it; its state (pid, ports, log) is in
  ``<ECOMMERCE_LAKE_HOME>/engine/``. Locally it listens on 127.0.0.1 only (the port of
  ``ECOMMERCE_LAKE_SPARK_REMOTE``, default ``sc://127.0.0.1:15002``); in production it is the ``engine``
  service of docker/docker-compose.yml, pointed at the standalone cluster and the metastore.
* A client uses the engine only when the engine was started for the same *static* configuration: the Spark
  master, the jars, the catalog (metastore) and the S3 settings, which a Connect client cannot change. The
  engine publishes a fingerprint of them in its Spark conf (``spark.ecommerce_lake.engine.fingerprint``); a
  client whose fingerprint differs falls back to in-process Spark and says why. Session settings (shuffle
  partitions, time zone, Delta write options) are per client session and set on connect.
* Nothing else listening on the port: the client falls back to in-process local Spark (the behaviour before the
  engine existed) and says so in the log.

Every Spark feature this project uses works over Connect except the Delta Python API (``DeltaTable``: "No
handler found for extension"; it needs Delta's own Connect plugin), and the JVM handles of ``sparkContext``.
The lake therefore uses SQL for Delta history, OPTIMIZE and VACUUM, delta-rs for existence and versions, and
the engine's status REST API for the Spark metrics of a step (see docs/performance.md, "The warm engine").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ecommerce_lake.platform.servers import LocalServer, free_port, listening, process_alive
from ecommerce_lake.platform.servers import tail as _tail

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecommerce_lake.platform.spark import SparkResource

log = logging.getLogger(__name__)

DEFAULT_REMOTE = "sc://127.0.0.1:15002"
DISABLED = ("off", "none", "local", "no", "false")
CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
FINGERPRINT_CONF = "spark.ecommerce_lake.engine.fingerprint"
UI_CONF = "spark.ecommerce_lake.engine.ui"  # the engine's Spark UI / status REST API (metrics of a step)
REGISTRY_CONF = "spark.ecommerce_lake.engine.registry"  # catalog registrations noted beside its embedded metastore
STARTED_CONF = "spark.ecommerce_lake.engine.started"
STATE_FILE = "engine.json"
LOG_FILE = "engine.log"

# Spark SQL settings a client sets on its own Connect session (everything else is fixed when the engine starts)
SESSION_CONF_PREFIXES = ("spark.sql.", "spark.databricks.delta.")
STATIC_SQL_CONF = {"spark.sql.extensions", "spark.sql.catalog.spark_catalog", "spark.sql.catalogImplementation",
                   "spark.sql.warehouse.dir"}
# Not part of what makes an engine "the same": where this client's own embedded metastore and warehouse would be
# (the engine has its own), its JVM's memory and name, and the client's Python (the engine runs its own workers)
NOT_FINGERPRINTED = {"spark.app.name", "spark.driver.memory", "spark.sql.warehouse.dir", "spark.ui.enabled",
                     "spark.ui.showConsoleProgress", "spark.pyspark.python", "spark.pyspark.driver.python",
                     "spark.hadoop.javax.jdo.option.ConnectionURL", "spark.driver.extraJavaOptions"}


class EngineError(RuntimeError):
    """The engine could not be started, reached or stopped; the message says what to do."""


def is_disabled(remote: str) -> bool:
    return not remote or remote.strip().lower() in DISABLED


def parse_remote(remote: str) -> tuple[str, int]:
    """Host and port of ``sc://host:port`` (default port 15002)."""
    parsed = urlparse(remote.strip())
    if parsed.scheme != "sc" or not parsed.hostname:
        raise EngineError(f"ECOMMERCE_LAKE_SPARK_REMOTE={remote!r} is not a Spark Connect URL (sc://host:port), "
                          "or 'off' for in-process Spark only")
    return parsed.hostname, parsed.port or 15002


def session_conf(conf: dict[str, str]) -> dict[str, str]:
    """The part of a Spark configuration that belongs to a session (set by each client on connect)."""
    return {k: v for k, v in conf.items() if k.startswith(SESSION_CONF_PREFIXES) and k not in STATIC_SQL_CONF}


def fingerprint(conf: dict[str, str]) -> str:
    """What a client and the engine must agree on: the static configuration (master, jars by name, catalog,
    Hadoop/S3 settings), not paths of the client's own metastore or session settings."""
    static = {}
    for key, value in conf.items():
        if key in NOT_FINGERPRINTED or key in session_conf(conf) or key.startswith("spark.ecommerce_lake."):
            continue
        if key == "spark.jars":
            value = ",".join(sorted(Path(p).name for p in value.split(",") if p))
        static[key] = value
    return hashlib.sha256(json.dumps(static, sort_keys=True).encode()).hexdigest()[:16]


def _differences(ours: dict[str, str], theirs: dict[str, str]) -> list[str]:
    keys = [k for k in sorted(set(ours) | set(theirs)) if k not in NOT_FINGERPRINTED and k not in session_conf(ours)
            and not k.startswith("spark.ecommerce_lake.") and k.startswith(("spark.master", "spark.jars",
                                                                              "spark.hadoop.", "spark.sql.",
                                                                              "spark.delta."))]
    out = []
    for k in keys:
        a, b = ours.get(k), theirs.get(k)
        if k == "spark.jars":
            a = ",".join(sorted(Path(p).name for p in (a or "").split(",") if p))
            b = ",".join(sorted(Path(p).name for p in (b or "").split(",") if p))
        if a != b:
            if any(w in k.lower() for w in ("secret", "password", "token", "key")):
                a, b = ("*****" if a else None), ("*****" if b else None)
            out.append(f"{k}: engine {b!r}, this process {a!r}")
    return out


# ---- connecting ---------------------------------------------------------------------------------------
@dataclass
class Connection:
    session: SparkSession | None
    url: str
    reason: str = ""  # why there is no session (the log says it)
    warn: bool = False  # an engine answered but cannot serve this process (a warning, not an info)
    ui_url: str = ""
    registry: str = ""
    seconds: float = 0.0


def connect(remote: str, conf: dict[str, str], timeout: float = 0.5) -> Connection:
    """A Spark Connect session on the engine at ``remote`` when it is up and serves ``conf``'s static
    configuration, with ``conf``'s session settings applied; otherwise no session and the reason."""
    started = time.monotonic()
    host, port = parse_remote(remote)
    if not listening(host, port, timeout):
        return Connection(None, remote, f"no Spark engine is listening at {remote}")
    try:
        from pyspark.sql.connect.session import SparkSession as RemoteSparkSession

        session = RemoteSparkSession.builder.remote(remote).create()
        theirs = session.conf.getAll
    except Exception as exc:  # noqa: BLE001 - something listens there but is not a usable Spark Connect server
        return Connection(None, remote, f"the server at {remote} did not answer as a Spark Connect server "
                                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})", warn=True)
    ours = fingerprint(conf)
    if theirs.get(FINGERPRINT_CONF) != ours:
        diff = _differences(conf, theirs)
        close(session)
        what = ("was not started by `ecommerce-lake engine start`" if FINGERPRINT_CONF not in theirs
                else "serves another configuration (" + ("; ".join(diff[:6]) or "fingerprint differs") + ")")
        return Connection(None, remote, f"the Spark Connect server at {remote} {what}", warn=True)
    wanted = session_conf(conf)
    for key, value in wanted.items():
        if theirs.get(key) != value:
            session.conf.set(key, value)
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"  # pyspark.sql.functions build Connect columns from now on
    return Connection(session, remote, ui_url=theirs.get(UI_CONF, ""), registry=theirs.get(REGISTRY_CONF, ""),
                      seconds=time.monotonic() - started)


def close(session) -> None:
    """Close a Connect session: first the client's pending releases of finished executions (sent on a thread
    pool), then the session on the engine (and the cached data it holds) — in the other order, the engine logs
    an error for every release that arrives after its session was closed."""
    from pyspark.sql.connect.client.reattach import ExecutePlanResponseReattachableIterator

    with contextlib.suppress(Exception):
        ExecutePlanResponseReattachableIterator.shutdown()
    with contextlib.suppress(Exception):
        session.stop()


# ---- the server ---------------------------------------------------------------------------------------
LOG4J = """# Written by `ecommerce-lake engine start`: the engine's own log (engine.log beside this file).
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.connect.name = org.apache.spark.sql.connect.service.SparkConnectServer
logger.connect.level = info
logger.connectservice.name = org.apache.spark.sql.connect.service.SparkConnectService
logger.connectservice.level = info
"""
# Expected and harmless in this setup; they would bury the useful lines (the same as in-process Spark)
QUIET_LOGGERS = (
    "org.apache.spark.sql.catalyst.csv.CSVHeaderChecker",  # we read CSVs by position, with our own names
    "org.apache.spark.sql.hive.HiveExternalCatalog",  # "no Hive SerDe for delta" on every registration
    "org.apache.hadoop.hive.metastore.ObjectStore",
    "org.apache.hadoop.hive.metastore.RetryingHMSHandler",
    "org.apache.spark.util.SparkStringUtils",
    "org.apache.hadoop.util.NativeCodeLoader",
    "org.apache.spark.sql.internal.SharedState",
    "DataFrameQueryContextLogger",  # repeats every analysis error with a full JVM stack; the client raises it
    # Windows over a whole small table (a ranking of 47 counties, a running total of a few dozen months) are
    # meant to run in one partition; Spark says so once per query plan.
    "org.apache.spark.sql.execution.window.WindowExec",
    "org.apache.spark.sql.connect.execution.ExecuteGrpcResponseSender",
)


def log4j_properties() -> str:
    text = LOG4J
    for i, name in enumerate(QUIET_LOGGERS):
        text += f"logger.quiet{i}.name = {name}\nlogger.quiet{i}.level = error\n"
    return text


@dataclass
class EngineStatus:
    up: bool
    url: str
    pid: int | None = None
    started_at: str | None = None
    ui_url: str = ""
    log: str = ""
    serves_this_configuration: bool | None = None
    detail: str = ""
    answer_seconds: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _free_port(host: str, preferred: int) -> int:
    try:
        return free_port(host, preferred)
    except OSError as exc:
        raise EngineError(str(exc)) from None


class Engine(LocalServer):
    """The engine of one Spark configuration (a :class:`SparkResource`), its state kept in ``state_dir``."""

    state_file, log_file = STATE_FILE, LOG_FILE

    def __init__(self, spark: SparkResource, state_dir: str | Path):
        self.spark = spark
        self.dir = Path(state_dir).expanduser()
        self.url = spark.remote if not is_disabled(spark.remote) else DEFAULT_REMOTE

    def command(self, bind: str, port: int, ui_port: int) -> list[str]:
        """``spark-submit`` of the Connect server with this configuration (the Delta jars, extension, catalog,
        S3 settings and session defaults), its gRPC endpoint bound to ``bind:port``."""
        import pyspark

        conf = self.spark.spark_conf()
        spark_home = Path(pyspark.__file__).parent
        java_options = [f"-Dlog4j.configurationFile=file:{self.dir / 'log4j2.properties'}"]
        if conf.get("spark.driver.extraJavaOptions"):
            java_options.insert(0, conf["spark.driver.extraJavaOptions"])
        registry = ""
        if not self.spark.metastore_uri and self.spark.metastore_dir:
            registry = str(Path(self.spark.metastore_dir).expanduser() / "metastore_db" / "ecommerce_lake_tables.json")
        conf.update({
            "spark.app.name": "ecommerce_lake engine",
            "spark.connect.grpc.binding.address": bind,
            "spark.connect.grpc.binding.port": str(port),
            # The status REST API gives each run the Spark metrics of its own steps (by the session's job tags)
            "spark.ui.enabled": "true",
            "spark.ui.port": str(ui_port),
            "spark.ui.retainedJobs": "500",
            "spark.ui.retainedStages": "1000",
            "spark.driver.extraJavaOptions": " ".join(java_options),
            FINGERPRINT_CONF: fingerprint(self.spark.spark_conf()),
            UI_CONF: f"http://{'127.0.0.1' if bind in ('0.0.0.0', '') else bind}:{ui_port}",
            REGISTRY_CONF: registry,
            STARTED_CONF: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            # Sessions of finished runs are closed by their client; idle ones expire after an hour. An operation
            # whose client went away (killed) is interrupted a minute later, not left running.
            "spark.connect.session.manager.defaultSessionTimeout": "60min",
            "spark.connect.execute.manager.detachedTimeout": "60s",
            "spark.connect.execute.manager.maintenanceInterval": "10s",
            # a run re-reads the same tables: keep their analysed plans
            "spark.connect.session.planCache.maxSize": "256",
        })
        jars = conf.pop("spark.jars", "")
        memory = conf.pop("spark.driver.memory", "4g")
        master = conf.pop("spark.master", "local[*]")
        cmd = [str(spark_home / "bin" / "spark-submit"), "--class", CONNECT_SERVER_CLASS, "--master", master,
               "--driver-memory", memory, "--name", conf.pop("spark.app.name")]
        if jars:
            cmd += ["--jars", jars]
        for key, value in sorted(conf.items()):
            cmd += ["--conf", f"{key}={value}"]
        return [*cmd, "spark-internal"]

    def _env(self, bind: str) -> dict[str, str]:
        import pyspark

        env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "PYSPARK_PYTHON": sys.executable}
        if bind not in ("0.0.0.0", ""):
            env["SPARK_LOCAL_IP"] = bind  # the driver's ports (UI, block manager) on the same interface only
        env.pop("SPARK_CONNECT_MODE_ENABLED", None)
        env.pop("SPARK_REMOTE", None)
        return env

    def status(self, timeout: float = 0.5) -> EngineStatus:
        host, port = parse_remote(self.url)
        state = self.state()
        st = EngineStatus(up=False, url=self.url, pid=state.get("pid"), started_at=state.get("started_at"),
                          ui_url=state.get("ui_url", ""), log=str(self.log_path))
        if not listening(host, port, timeout):
            st.detail = "not running" + (f" (stale state of pid {st.pid})" if st.pid and not process_alive(st.pid) else "")
            return st
        started = time.monotonic()
        conn = connect(self.url, self.spark.spark_conf(), timeout)
        if conn.session is None:
            st.up, st.serves_this_configuration, st.detail = True, False, conn.reason
            return st
        try:
            conn.session.sql("SELECT 1").collect()
            st.answer_seconds = round(time.monotonic() - started, 3)
        finally:
            close(conn.session)
        st.up, st.serves_this_configuration, st.ui_url = True, True, conn.ui_url or st.ui_url
        st.detail = "running"
        return st

    def start(self, wait: float = 300.0, warm: bool = True, foreground: bool = False, bind: str | None = None,
              progress=print) -> EngineStatus:
        """Start the engine (unless it already runs), wait until it answers, and warm it up with a small Delta
        workload (its first queries pay the JVM's class loading and JIT, not the first run's)."""
        host, port = parse_remote(self.url)
        bind = bind or host
        if listening(host, port):
            st = self.status()
            if st.serves_this_configuration:
                progress(f"engine already running at {self.url} (pid {st.pid})")
                return st
            raise EngineError(f"port {port} is in use and {st.detail}; stop it or choose another port in "
                              "ECOMMERCE_LAKE_SPARK_REMOTE")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "log4j2.properties").write_text(log4j_properties())
        if self.spark.metastore_dir and not self.spark.metastore_uri:
            Path(self.spark.metastore_dir).expanduser().mkdir(parents=True, exist_ok=True)
        ui_port = _free_port(bind, port + 1)  # the engine's Spark UI, next to its gRPC port when free
        cmd = self.command(bind, port, ui_port)
        ui_url = f"http://{'127.0.0.1' if bind in ('0.0.0.0', '') else bind}:{ui_port}"
        if foreground:  # a container's main process: the server itself, logging to stderr
            progress(f"engine: Spark Connect server on {bind}:{port} (UI {ui_url})")
            os.execve(cmd[0], cmd, self._env(bind))
        started = time.monotonic()
        with self.log_path.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self._env(bind),
                                    start_new_session=True, cwd=self.dir)
        self._write_state({"pid": proc.pid, "url": self.url, "ui_url": ui_url, "log": str(self.log_path),
                           "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        progress(f"engine: starting a Spark Connect server at {self.url} (pid {proc.pid}, log {self.log_path})")
        deadline = started + wait
        while not listening(host, port):
            if proc.poll() is not None:
                self._clear_state()
                raise EngineError(f"the engine exited with {proc.returncode} while starting:\n{_tail(self.log_path)}")
            if time.monotonic() > deadline:
                self._kill(proc.pid)
                raise EngineError(f"the engine did not listen at {self.url} within {wait:.0f} s:\n"
                                  f"{_tail(self.log_path)}")
            time.sleep(0.25)
        up = time.monotonic() - started
        warm_seconds = self.warm_up() if warm else 0.0
        progress(f"engine: up in {up:.1f} s" + (f", warmed up in {warm_seconds:.1f} s" if warm else "")
                 + f"; Spark UI {ui_url}")
        return self.status()

    def warm_up(self) -> float:
        """The kinds of query a run makes, once, on a scratch table (then removed): a partitioned Delta write,
        a replaceWhere overwrite, a read with a join and an aggregation, the table's history."""
        import shutil
        import tempfile

        started = time.monotonic()
        conn = connect(self.url, self.spark.spark_conf(), timeout=2)
        if conn.session is None:
            raise EngineError(f"the engine started but cannot serve this configuration: {conn.reason}")
        s = conn.session
        scratch = Path(tempfile.mkdtemp(prefix="warm-", dir=self.dir))
        uri = str(scratch / "t")
        try:
            from pyspark.sql import functions as F

            base = s.range(2000).select(F.col("id"), (F.col("id") % 7).alias("k"),
                                        F.expr("date_add(DATE'2024-01-01', CAST(id % 5 AS INT))").alias("d"),
                                        (F.col("id") * 1.5).cast("decimal(12,2)").alias("v"))
            base.write.format("delta").mode("overwrite").partitionBy("d").save(uri)
            (base.where("d = DATE'2024-01-02'").write.format("delta").mode("overwrite")
             .option("replaceWhere", "d >= '2024-01-02' AND d < '2024-01-03'").save(uri))
            t = s.read.format("delta").load(uri)
            t.join(t.groupBy("k").agg(F.sum("v").alias("s")), "k").groupBy("d").agg(F.count("*"), F.sum("s")).collect()
            s.sql(f"DESCRIBE HISTORY delta.`{uri}` LIMIT 2").collect()
        finally:
            close(s)
            shutil.rmtree(scratch, ignore_errors=True)
        return time.monotonic() - started

    def stop(self, timeout: float = 60.0, progress=print) -> bool:
        """Stop the engine started from this state directory; True if one was running."""
        state = self.state()
        pid = state.get("pid")
        host, port = parse_remote(self.url)
        if not pid or not process_alive(pid):
            self._clear_state()
            if listening(host, port):
                raise EngineError(f"something listens at {self.url} but no engine was started from {self.dir}; "
                                  "stop it where it was started")
            progress("engine: not running")
            return False
        self._terminate(pid, timeout)
        progress(f"engine: stopped (pid {pid})")
        return True


# ---- the metrics of a client's own Spark jobs ------------------------------------------------------------
def engine_jobs(ui_url: str, session_id: str, since_ms: int, timeout: float = 5.0) -> tuple[list[dict], list[dict]]:
    """The jobs this Connect session submitted at or after ``since_ms`` (epoch ms), and their stages, from the
    engine's status REST API (the Connect server tags every job with the session id)."""
    def get(path: str):
        with urllib.request.urlopen(f"{ui_url.rstrip('/')}/api/v1/applications{path}", timeout=timeout) as r:
            return json.loads(r.read())

    apps = get("")
    if not apps:
        return [], []
    app = apps[0]["id"]
    tag = f"_Session_{session_id}"
    jobs = [j for j in get(f"/{app}/jobs") if any(tag in t for t in j.get("jobTags") or ())
            and _epoch_ms(j.get("submissionTime")) >= since_ms]
    wanted = sorted({sid for j in jobs for sid in j.get("stageIds") or ()})
    if len(wanted) <= 100:  # one small request per stage, rather than every retained stage
        stages = []
        for sid in wanted:
            try:
                stages += get(f"/{app}/stages/{sid}?details=false")
            except urllib.error.HTTPError:  # evicted from the status store (spark.ui.retainedStages)
                continue
    else:
        stages = [s for s in get(f"/{app}/stages?details=false") if s["stageId"] in set(wanted)]
    return jobs, stages


def _epoch_ms(text: str | None) -> int:
    if not text:
        return -1
    import datetime as dt

    return int(dt.datetime.strptime(text.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)
