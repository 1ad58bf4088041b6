"""The Spark run worker: one long-lived process whose JVM stays up, and warm, from one run to the next.

A run in a fresh process pays for a cold JVM: the SparkSession start, the Hive catalog, and the first
execution of every query plan and Delta commit (class loading, JIT compilation, generated code). On one new day
of the 5M-line lake that fixed cost is most of the run (docs/performance.md, "A warm Spark driver"). The
worker keeps one SparkSession for its lifetime and executes runs in it, one at a time:

* **Dagster runs** (sensor, automation, the UI's Materialize): the instance's run launcher
  :class:`SparkWorkerRunLauncher` (``run_launcher`` in dagster.yaml) hands each launched run's id to the
  worker, which executes it exactly as ``dagster api execute_run`` does in a fresh process (the same Dagster
  function), in its main thread. Terminating a run from the UI cancels its Spark jobs and interrupts it.
* **CLI runs**: ``ecommerce-lake run --worker http://127.0.0.1:4050`` executes the lake run in the worker and
  prints the same report as a run in its own process (``ecommerce-lake bench`` measures the new day this way).

Start it with ``ecommerce-lake worker`` (default 127.0.0.1:4050). It reads the same ``ECOMMERCE_LAKE_*``
settings and ``DAGSTER_HOME`` as the code location. The HTTP interface is internal: JSON over plain HTTP,
meant for 127.0.0.1 or a private network (the docker-compose stack), like Dagster's own gRPC code servers.

* ``GET /health``: pid, runs done, the run in progress, the queue, SparkSessions started (1: one JVM).
* ``POST /runs`` ``{"run_id": ...}``: queue a Dagster run (202).
* ``GET /runs/<run_id>``: ``queued``, ``running``, ``finished`` or ``unknown`` (run monitoring asks this). The
  worker remembers the last ``FINISHED_KEPT`` finished runs; older ones answer ``unknown`` (Dagster has long
  recorded them as ended, and run monitoring asks only about runs in progress).
* ``POST /execute`` ``{"mode": "full"|"incremental", "selection": ..., "checks": true}``: a CLI run; the
  answer (when the run ends) is the run report.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster._check as check
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster._utils import send_interrupt

log = logging.getLogger("ecommerce_lake.run_worker")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4050
WORKER_TAG = "ecommerce_lake/run_worker"
CANCEL_POLL_SECONDS = 1.0
FINISHED_KEPT = 1000  # finished runs whose state GET /runs/<id> still answers: a long-lived worker stays bounded


class RunWorkerError(RuntimeError):
    """The run worker cannot be reached or refused a request."""


# ---- client --------------------------------------------------------------------------------------------
def call(url: str, path: str, body: Mapping[str, Any] | None = None, timeout: float | None = 10.0) -> dict:
    """One JSON request to the worker at ``url``; a clear RunWorkerError when it is not there."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[-2000:]
        raise RunWorkerError(f"run worker at {url} answered {exc.code} to {path}: {detail}") from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise RunWorkerError(
            f"no Spark run worker answers at {url} ({getattr(exc, 'reason', exc)}); start one with "
            "`ecommerce-lake worker` (same ECOMMERCE_LAKE_* settings and DAGSTER_HOME as the code location)"
        ) from exc


def execute_remote(url: str, mode: str = "full", selection: str | None = None, checks: bool = True):
    """A CLI lake run executed by the worker at ``url``; returns its RunReport."""
    from ecommerce_lake.runner import RunReport

    answer = call(url, "/execute", {"mode": mode, "selection": selection, "checks": checks}, timeout=None)
    if "error" in answer:
        raise RunWorkerError(f"the run worker at {url} could not run the lake: {answer['error']}")
    return RunReport(**{k: v for k, v in answer.items() if k in RunReport.__dataclass_fields__})


# ---- the launcher Dagster uses --------------------------------------------------------------------------
class SparkWorkerRunLauncher(RunLauncher, ConfigurableClass):
    """Launches every run in the Spark run worker at ``url`` (see the module docstring).

    dagster.yaml::

        run_launcher:
          module: ecommerce_lake.platform.run_worker
          class: SparkWorkerRunLauncher
          config:
            url:
              env: ECOMMERCE_LAKE_RUN_WORKER_URL
    """

    def __init__(self, url: str, inst_data: ConfigurableClassData | None = None):
        self._url = check.str_param(url, "url").rstrip("/")
        self._inst_data = inst_data
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        from dagster import Field, StringSource

        return {"url": Field(StringSource, is_required=True,
                             description="The run worker's address, e.g. http://127.0.0.1:4050.")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(url=config_value["url"], inst_data=inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if run.job_code_origin is None:
            raise DagsterLaunchFailedError(f"run {run.run_id} has no code origin; the run worker cannot load it")
        try:
            answer = call(self._url, "/runs", {"run_id": run.run_id})
        except RunWorkerError as exc:
            raise DagsterLaunchFailedError(str(exc)) from exc
        self._instance.add_run_tags(run.run_id, {WORKER_TAG: self._url})
        self._instance.report_engine_event(
            f"Run handed to the Spark run worker at {self._url} (pid {answer.get('pid')}, "
            f"{answer.get('position', 0)} run(s) ahead of it).", run, cls=self.__class__)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        # The worker watches the run's status: CANCELING cancels its Spark jobs and interrupts it (a run still
        # queued in the worker is marked canceled when its turn comes).
        self._instance.report_run_canceling(run)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        try:
            state = call(self._url, f"/runs/{run.run_id}").get("state")
        except RunWorkerError as exc:
            return CheckRunHealthResult(WorkerStatus.FAILED, str(exc))
        if state in ("queued", "running"):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        if state == "finished":
            return CheckRunHealthResult(WorkerStatus.SUCCESS)
        return CheckRunHealthResult(WorkerStatus.NOT_FOUND,
                                    f"the run worker at {self._url} does not know run {run.run_id} "
                                    "(restarted while the run was in progress?)")


# ---- the worker ------------------------------------------------------------------------------------------
@dataclass
class _Job:
    kind: str  # "dagster" | "cli"
    run_id: str = ""
    params: dict = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict = field(default_factory=dict)


class RunWorker:
    """Executes queued runs one at a time in the main thread; the HTTP server runs on a daemon thread."""

    def __init__(self, settings, instance: DagsterInstance):
        self.settings = settings
        self.instance = instance
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.states: dict[str, str] = {}  # queued and running runs, and the last FINISHED_KEPT finished ones
        self._finished: collections.deque[str] = collections.deque()
        self.current: str | None = None
        self.runs_done = 0
        self.started = time.time()
        self._lock = threading.Lock()

    # called from HTTP threads
    def submit(self, job: _Job) -> int:
        with self._lock:
            if job.run_id:
                self.states[job.run_id] = "queued"
            position = self.jobs.qsize() + (1 if self.current else 0)
            self.jobs.put(job)
        return position

    def health(self) -> dict:
        from ecommerce_lake.platform.spark import session_startup_seconds, sessions_started

        return {"status": "ok", "pid": os.getpid(), "runs_done": self.runs_done, "running": self.current,
                "queued": self.jobs.qsize(), "spark_sessions_started": sessions_started(),
                "spark_startup_seconds": session_startup_seconds(), "up_seconds": round(time.time() - self.started, 1)}

    def finish(self, run_id: str) -> None:
        """Record ``run_id`` as finished, forgetting the oldest finished runs beyond ``FINISHED_KEPT``."""
        with self._lock:
            self.states[run_id] = "finished"
            self._finished.append(run_id)
            while len(self._finished) > FINISHED_KEPT:
                old = self._finished.popleft()
                if self.states.get(old) == "finished" and old not in self._finished:
                    del self.states[old]

    # main thread
    def serve_forever(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            label = job.run_id or f"cli {job.params.get('mode', 'full')}"
            self.current = label
            if job.run_id:
                self.states[job.run_id] = "running"
            started = time.monotonic()
            log.info("run %s: started (run %d of this worker)", label, self.runs_done + 1)
            try:
                if job.kind == "dagster":
                    self._execute_dagster_run(job.run_id)
                else:
                    job.answer = self._execute_cli(job.params)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the worker stops (the run is interrupted)
                job.answer = {"error": "the run worker was stopped during the run"}
                raise
            except Exception as exc:  # noqa: BLE001 - one failed run must not stop the worker
                log.exception("run %s: failed in the worker", label)
                job.answer = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                self.runs_done += 1
                self.current = None
                if job.run_id:
                    self.finish(job.run_id)
                self._between_runs()
                log.info("run %s: finished in %.1f s", label, time.monotonic() - started)
                job.done.set()

    def _execute_cli(self, params: dict) -> dict:
        from ecommerce_lake.runner import execute

        report = execute(self.settings, selection=params.get("selection"), instance=self.instance,
                         mode=params.get("mode", "full"), checks=bool(params.get("checks", True)))
        return {**asdict(report), "exit_code": report.exit_code}

    def _execute_dagster_run(self, run_id: str) -> None:
        # The body of `dagster api execute_run` (what a fresh run process executes), here in the warm process.
        from dagster._cli.api import _execute_run_command_body
        from dagster._utils.interrupts import capture_interrupts

        run = self.instance.get_run_by_id(run_id)
        if run is None:
            log.error("run %s: not found in the instance (DAGSTER_HOME %s)", run_id, os.environ.get("DAGSTER_HOME"))
            return
        if run.status in (DagsterRunStatus.CANCELING, DagsterRunStatus.CANCELED):
            self.instance.report_run_canceled(run, message="Run canceled before the run worker started it.")
            return
        stop_watching = threading.Event()
        watcher = threading.Thread(target=self._cancel_on_request, args=(run_id, stop_watching),
                                   name=f"cancel-{run_id[:8]}", daemon=True)
        watcher.start()
        try:
            with capture_interrupts():
                _execute_run_command_body(run_id, self.instance, lambda _event: None,
                                          set_exit_code_on_failure=False)
        finally:
            stop_watching.set()
            watcher.join(timeout=5)
            # Dagster's interrupt handling maps SIGTERM to SIGINT's handler; SIGTERM stops the worker again
            signal.signal(signal.SIGTERM, _stop_on_sigterm)

    def _cancel_on_request(self, run_id: str, stop: threading.Event) -> None:
        while not stop.wait(CANCEL_POLL_SECONDS):
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.status == DagsterRunStatus.CANCELING and not stop.is_set():
                log.warning("run %s: termination requested; cancelling its Spark jobs", run_id)
                _cancel_spark_jobs()
                send_interrupt()
                return

    def _between_runs(self) -> None:
        """Nothing of one run stays cached for the next (the JVM and its compiled code do: that is the point)."""
        from ecommerce_lake.platform import spark as spark_module

        session = spark_module._SESSION
        if session is not None:
            _reset_py4j_connection(session)
            try:
                session.catalog.clearCache()
            except Exception as exc:  # noqa: BLE001 - a dead session is restarted by the next run's get_session()
                log.warning("could not clear the Spark cache between runs: %s", exc)


def _stop_on_sigterm(_signo, _frame) -> None:
    raise KeyboardInterrupt


def _reset_py4j_connection(session) -> None:
    """Give this thread a fresh socket to the JVM for the next run.

    Py4J pins one socket per Python thread. A run interrupted (terminated) while the thread waited for the JVM's
    answer leaves that answer unread on the socket, and the next call on it would read the stale answer (seen
    as ``SparkSession$ does not exist in the JVM``). Closing the socket makes Py4J open a new one on the next
    call; the JVM's objects, cache and compiled code are untouched."""
    try:
        client = session.sparkContext._gateway._gateway_client
        connection = client.get_thread_connection()
    except Exception as exc:  # noqa: BLE001 - not a Py4J ClientServer gateway: nothing to reset
        log.debug("no Py4J thread connection to reset: %s", exc)
        return
    if connection is not None:
        connection.close()


def _cancel_spark_jobs() -> None:
    from ecommerce_lake.platform import spark as spark_module

    session = spark_module._SESSION
    if session is not None:
        try:
            session.sparkContext.cancelAllJobs()
        except Exception as exc:  # noqa: BLE001
            log.warning("could not cancel the Spark jobs: %s", exc)


def _handler(worker: RunWorker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:  # requests at debug level, not on stderr
            log.debug("%s %s", self.address_string(), fmt % args)

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}") if length else {}

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
                self._send(200, worker.health())
            elif self.path.startswith("/runs/"):
                run_id = self.path[len("/runs/"):]
                self._send(200, {"run_id": run_id, "state": worker.states.get(run_id, "unknown")})
            else:
                self._send(404, {"error": f"no such endpoint: GET {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            try:
                body = self._body()
            except ValueError as exc:
                self._send(400, {"error": f"the request body is not JSON: {exc}"})
                return
            if self.path == "/runs":
                run_id = str(body.get("run_id") or "")
                if not run_id:
                    self._send(400, {"error": "POST /runs needs {\"run_id\": ...}"})
                    return
                position = worker.submit(_Job("dagster", run_id=run_id))
                self._send(202, {"run_id": run_id, "queued": True, "position": position, "pid": os.getpid()})
            elif self.path == "/execute":
                mode = body.get("mode", "full")
                if mode not in ("full", "incremental"):
                    self._send(400, {"error": f"mode must be full or incremental, not {mode!r}"})
                    return
                job = _Job("cli", params={"mode": mode, "selection": body.get("selection"),
                                          "checks": body.get("checks", True)})
                worker.submit(job)
                job.done.wait()
                self._send(200, job.answer)
            else:
                self._send(404, {"error": f"no such endpoint: POST {self.path}"})

    return Handler


def serve(settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    """Run the worker until SIGTERM or Ctrl-C (between runs; a run in progress is interrupted)."""
    from ecommerce_lake.defs.resources import spark_resource
    from ecommerce_lake.platform.spark import start_in_background

    instance = DagsterInstance.get()
    worker = RunWorker(settings, instance)
    server = ThreadingHTTPServer((host, port), _handler(worker))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="run-worker-http", daemon=True).start()
    start_in_background(spark_resource(settings))  # the JVM is up before the first run arrives

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    print(f"Spark run worker on http://{host}:{server.server_address[1]} (pid {os.getpid()}, "
          f"DAGSTER_HOME {os.environ.get('DAGSTER_HOME')}, lake {settings.lake_root})", flush=True)
    try:
        worker.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        instance.dispose()
        print(f"Spark run worker stopped after {worker.runs_done} run(s)", flush=True)
    return 0
