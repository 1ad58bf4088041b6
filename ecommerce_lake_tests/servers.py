"""Real servers on 127.0.0.1 for the tests: an S3 API (moto server), PostgreSQL, a Spark standalone cluster, a
Hive metastore, and Dagster's webserver/daemon/code server. Each is a subprocess stopped by its fixture."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except AssertionError:  # the predicate saw a definite failure: say so now, not after the timeout
            raise
        except Exception:  # not ready yet (connection refused, ...)
            value = None
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{_tail(log)}")
        time.sleep(1)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s\n{_tail(log)}")


def _tail(log: Path | None, n: int = 4000) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-n:]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_json(url: str, data: dict | None = None):
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


@contextlib.contextmanager
def process(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None,
            user: str | None = None) -> Iterator[subprocess.Popen]:
    log.parent.mkdir(parents=True, exist_ok=True)
    if user and os.geteuid() == 0:
        cmd = ["runuser", "-u", user, "--", *cmd]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                cwd=cwd or REPO, start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@contextlib.contextmanager
def moto_s3(workdir: Path) -> Iterator[str]:
    """A real S3 API server (moto in server mode) on 127.0.0.1; yields its endpoint URL."""
    port = free_port()
    with process([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], workdir / "moto.log",
                 env=S3_ENV) as proc:
        wait_for(lambda: port_open(port), 60, "moto S3 server", proc, workdir / "moto.log")
        yield f"http://127.0.0.1:{port}"


def postgres_bin() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: install the Debian package `postgresql` "
                       "(.ci/run does)")


@contextlib.contextmanager
def postgres(workdir: Path) -> Iterator[dict]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (run as the `postgres` user when we are root)."""
    import tempfile

    pg = postgres_bin()
    user = "postgres" if os.geteuid() == 0 else None
    # the server's own directory must be reachable by its user (pytest's tmp dirs are private to root)
    base = Path(tempfile.mkdtemp(prefix="ecommerce_lake_pg_"))
    data = base / "data"
    data.mkdir()
    if user:
        for path in (base, data):
            shutil.chown(path, user)
    runuser = ["runuser", "-u", user, "--"] if user else []
    init = subprocess.run([*runuser, str(pg / "initdb"), "-D", str(data), "-U", "dagster", "--auth=trust",
                           "-E", "UTF8"], capture_output=True, text=True)
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stdout}{init.stderr}")
    port = free_port()
    try:
        with process([str(pg / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base), "-h", "127.0.0.1"],
                     workdir / "postgres.log", user=user) as proc:
            wait_for(lambda: port_open(port), 60, "postgres", proc, workdir / "postgres.log")
            wait_for(lambda: subprocess.run([str(pg / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster",
                                             "-d", "postgres", "-c", "select 1"], capture_output=True).returncode == 0,
                     60, "postgres accepting connections", proc, workdir / "postgres.log")
            subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"],
                           check=True, capture_output=True)
            yield {"DAGSTER_POSTGRES_HOST": "127.0.0.1", "DAGSTER_POSTGRES_PORT": str(port),
                   "DAGSTER_POSTGRES_DB": "dagster", "DAGSTER_POSTGRES_USER": "dagster",
                   "DAGSTER_POSTGRES_PASSWORD": ""}
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def spark_cluster(workdir: Path, cores: int = 2, memory: str = "3g") -> Iterator[tuple[str, str]]:
    """A Spark standalone master and worker (docker/bin/spark-master, spark-worker); yields the master URL."""
    port, ui, worker_ui = free_port(), free_port(), free_port()
    env = {"SPARK_LOG_DIR": str(workdir / "spark-logs"), "SPARK_WORKER_DIR": str(workdir / "spark-work"),
           "SPARK_LOCAL_IP": "127.0.0.1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    master = f"spark://127.0.0.1:{port}"
    with process([str(REPO / "docker/bin/spark-master"), "--host", "127.0.0.1", "--port", str(port),
                  "--webui-port", str(ui)], workdir / "spark-master.log", env=env) as m:
        wait_for(lambda: http_json(f"http://127.0.0.1:{ui}/json/")["status"] == "ALIVE", 90, "spark master", m,
                 workdir / "spark-master.log")
        with process([str(REPO / "docker/bin/spark-worker"), master, "--host", "127.0.0.1", "--cores", str(cores),
                      "--memory", memory, "--webui-port", str(worker_ui)], workdir / "spark-worker.log", env=env) as w:
            wait_for(lambda: http_json(f"http://127.0.0.1:{ui}/json/")["aliveworkers"] >= 1, 90, "spark worker", w,
                     workdir / "spark-worker.log")
            yield master, f"http://127.0.0.1:{ui}/json/"  # master URL, master status (JSON)


@contextlib.contextmanager
def hive_metastore(workdir: Path, env: dict | None = None) -> Iterator[str]:
    """A standalone Hive metastore (docker/bin/hive-metastore, embedded Derby); yields its thrift URI."""
    port = free_port()
    env = {**(env or {}), "HIVE_METASTORE_HOME": str(workdir / "hive-metastore"),
           "PATH": f"{BIN}:{os.environ['PATH']}"}
    with process([str(REPO / "docker/bin/hive-metastore"), str(port)], workdir / "hive-metastore.log",
                 env=env) as proc:
        wait_for(lambda: port_open(port), 120, "hive metastore", proc, workdir / "hive-metastore.log")
        yield f"thrift://127.0.0.1:{port}"


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of a server: ``stop()`` closes its port and cuts every open connection
    (the server looks down to its clients, as an S3 outage does), ``start()`` opens the same port again. The
    server behind it keeps its state (moto keeps its buckets in memory: stopping moto itself would lose them)."""

    def __init__(self, target_port: int, port: int | None = None):
        import threading

        self.target_port, self.port = target_port, port or free_port()
        self._lock = threading.Lock()
        self._listener = None
        self._open: set = set()
        self.connections = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import socket
        import threading

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        import socket

        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = list(self._open), set()
        if listener is not None:
            listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._open |= {client, upstream}
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst) -> None:
        import socket

        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with self._lock:
                self._open.discard(src)
            with contextlib.suppress(OSError):
                src.close()
