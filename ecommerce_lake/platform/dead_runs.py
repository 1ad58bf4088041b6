"""Runs whose process died without finishing: failed, and their pool slots freed.

A run killed with SIGKILL (or by the OOM killer, or a power cut) never reports its end: Dagster's storage keeps
it STARTED, and the pool slots its steps claimed (the ingest pool, ``default_limit: 1``) stay taken, so every
later run of that pool waits for a slot forever, saying nothing. With one run at a time (``max_concurrent_runs: 1``) the
queue stalls behind it too. Dagster's run monitoring cannot see a dead run worker of the default run launcher (it
only fails the run after ``max_runtime_seconds``, hours later), and nothing at all watches a run of
``ecommerce-lake run``, which is its own process. So every run is tagged with its host and process id, and
with its own run id (``ecommerce-lake run`` before it starts; a run the daemon or the UI launched when its Spark
resource is set up, :func:`claim`; a retry or re-execution carries its parent's tags until then, which the run id
tells apart), and :func:`reap` marks the runs of this host whose own process is gone as failed and frees the slots
of every run that has ended (or is gone) but still holds one. It runs before each ``ecommerce-lake run`` and every
minute in the daemon (the ``dead_run_reaper`` sensor). Runs on other hosts are left to their own host and to
run monitoring (production).
Public Dagster APIs only: ``DagsterInstance.get_runs``, ``report_run_failed`` and the event log storage's
``get_concurrency_run_ids`` / ``free_concurrency_slots_for_run``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

import dagster as dg

HOST_TAG = "ecommerce_lake/host"
PID_TAG = "ecommerce_lake/pid"
# The run the host and pid tags were written for. A retry or a re-execution copies its parent's tags, whose
# process is not its own (and is gone): only tags written for the run itself say which process executes it.
RUN_TAG = "ecommerce_lake/pid_of_run"
# When that process started (clock ticks since boot, /proc/<pid>/stat): a pid reused by another process after the
# run's died has another start time. (The process's command line cannot say it: a run the code server launches is
# a multiprocessing "spawn" child whose command line names neither Dagster nor this project.)
START_TAG = "ecommerce_lake/pid_started"
_UNFINISHED = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]

log = logging.getLogger(__name__)


def process_tags(run_id: str) -> dict[str, str]:
    """Tags that say that this process executes run ``run_id`` (``ecommerce-lake run`` executes it in its own
    process)."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), RUN_TAG: run_id}
    started = _start_time(os.getpid())
    if started is not None:
        tags[START_TAG] = started
    return tags


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat), None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def claim(instance: dg.DagsterInstance, run_id: str) -> None:
    """Tag the run with this process, unless it is tagged already (``ecommerce-lake run`` tags its runs itself).
    Called in the run's own process: the code location's runs execute their steps in it (in-process executor)."""
    run = instance.get_run_by_id(run_id)
    if run is not None and run.tags.get(RUN_TAG) != run_id:  # untagged, or tags copied from the run it retries
        instance.add_run_tags(run_id, process_tags(run_id))


def _alive(pid: int, started: str | None = None) -> bool:
    """The process exists and is still the one that was tagged (a reused pid is not): the same start time when the
    tags have it; otherwise (tags of an older version) a Python process of Dagster or of this project."""
    from ecommerce_lake.platform.servers import process_alive

    if not process_alive(pid):
        return False
    now = _start_time(pid)
    if started and now is not None:
        return now == started
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            text = cmdline.read_bytes()
        except OSError:
            return False
        return b"ecommerce" in text or b"dagster" in text or b"multiprocessing" in text
    return True


def reap(instance: dg.DagsterInstance, say: Callable[[str], None] = log.warning) -> list[str]:
    """Fail this host's runs whose process is gone; free the pool slots of runs that can no longer use them.
    Returns the ids of the runs it failed."""
    failed: list[str] = []
    host = socket.gethostname()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_UNFINISHED, tags={HOST_TAG: host})):
        if run.tags.get(RUN_TAG) != run.run_id:  # not (yet) tagged by its own process: nothing says which it is
            continue
        try:
            pid = int(run.tags.get(PID_TAG, "0"))
        except ValueError:
            continue
        if pid <= 0 or pid == os.getpid() or _alive(pid, run.tags.get(START_TAG)):
            continue
        # read again now that the process is known to be gone: a run that ended normally wrote its end before its
        # process exited, perhaps after the list above was read
        run = instance.get_run_by_id(run.run_id)
        if run is None or run.is_finished:
            continue
        instance.report_run_failed(
            run, message=f"the process of this run (pid {pid} on {host}) ended without finishing it (killed?); "
                         "marked failed by the dead-run reaper (before the next `ecommerce-lake run`, and every "
                         "minute in the daemon), which freed its pool slots")
        failed.append(run.run_id)
        say(f"run {run.run_id} (pid {pid}) died without finishing (killed?): marked failed, its pool slots freed")
    storage = instance.event_log_storage
    for run_id in storage.get_concurrency_run_ids():
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            storage.free_concurrency_slots_for_run(run_id)
            if run_id not in failed:
                say(f"freed the pool slots still held by run {run_id}, which has "
                    + ("ended" if run is not None else "been deleted"))
    return failed
