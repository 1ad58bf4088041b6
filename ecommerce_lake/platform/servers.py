"""What the local servers the CLI starts in the background have in common (the engine, ``engine.py``; the Kafka
broker, ``kafka.py``): a state directory with a JSON state file (pid, addresses, start time) and a log, a process
group to stop (SIGTERM, then SIGKILL after a timeout), and a few probes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path


def listening(host: str, port: int, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def free_port(host: str, preferred: int) -> int:
    """``preferred`` when it is free on ``host``, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((host if host != "0.0.0.0" else "", port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise OSError(f"no free port on {host}")


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child, exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


class LocalServer:
    """A server's state directory: ``state_file`` (JSON) and ``log_file`` in ``self.dir``."""

    state_file = "server.json"
    log_file = "server.log"
    dir: Path

    @property
    def state_path(self) -> Path:
        return self.dir / self.state_file

    @property
    def log_path(self) -> Path:
        return self.dir / self.log_file

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def _write_state(self, state: dict) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_path)

    def _clear_state(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)

    def _terminate(self, pid: int, timeout: float) -> None:
        """SIGTERM to the server's process group (a clean shutdown), SIGKILL if it is still alive after
        ``timeout`` seconds; then the state is cleared."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if process_alive(pid):
            self._kill(pid)
        self._clear_state()
