"""Spark task metrics of the jobs a Dagster step ran, read from Spark's own status store.

Steps of a run execute one after the other in one process (in-process executor) and share one SparkSession, so
the Spark jobs submitted since the step started are the step's jobs. Spark keeps the figures whether or not its
UI is on (``spark.ui.retainedJobs`` / ``retainedStages`` bound how many).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class StepSparkMetrics:
    jobs: int = 0
    stages: int = 0
    tasks: int = 0
    executor_run_time_ms: int = 0
    executor_cpu_time_ns: int = 0
    input_records: int = 0
    input_bytes: int = 0
    shuffle_read_bytes: int = 0
    shuffle_write_bytes: int = 0
    memory_spilled_bytes: int = 0
    disk_spilled_bytes: int = 0


def jobs_since(spark, since_ms: int) -> StepSparkMetrics:
    """Sum the task metrics of every stage of every job submitted at or after ``since_ms`` (epoch ms)."""
    out = StepSparkMetrics()
    sc = spark.sparkContext._jsc.sc()
    try:
        sc.listenerBus().waitUntilEmpty(5000)  # the status store is fed asynchronously by the listener bus
    except Exception:  # noqa: BLE001 - a late event only makes the figures slightly low
        log.debug("Spark listener bus did not drain within 5 s")
    store = sc.statusStore()
    jobs = store.jobsList(None)
    seen: set[int] = set()
    for i in range(jobs.size()):  # newest first: stop at the first job older than the step
        job = jobs.apply(i)
        submitted = job.submissionTime()
        if not submitted.isDefined():
            continue
        if submitted.get().getTime() < since_ms:
            break
        out.jobs += 1
        ids = job.stageIds()
        for k in range(ids.size()):
            sid = int(ids.apply(k))
            if sid in seen:
                continue
            seen.add(sid)
            try:
                stage = store.lastStageAttempt(sid)
            except Exception:  # noqa: BLE001 - evicted from the store (retainedStages)
                continue
            if str(stage.status()) == "SKIPPED":
                continue
            out.stages += 1
            out.tasks += int(stage.numCompleteTasks())
            out.executor_run_time_ms += int(stage.executorRunTime())
            out.executor_cpu_time_ns += int(stage.executorCpuTime())
            out.input_records += int(stage.inputRecords())
            out.input_bytes += int(stage.inputBytes())
            out.shuffle_read_bytes += int(stage.shuffleReadBytes())
            out.shuffle_write_bytes += int(stage.shuffleWriteBytes())
            out.memory_spilled_bytes += int(stage.memoryBytesSpilled())
            out.disk_spilled_bytes += int(stage.diskBytesSpilled())
    return out


def step_started_ms(context) -> int | None:
    """Epoch ms of this step's STEP_START event (None outside a run, e.g. direct IO manager calls)."""
    import dagster as dg

    try:
        instance = context.step_context.instance
        records = instance.get_records_for_run(run_id=context.run_id,
                                               of_type=dg.DagsterEventType.STEP_START).records
    except Exception:  # noqa: BLE001
        return None
    for record in reversed(records):
        if record.event_log_entry.step_key == context.step_key:
            return int(record.event_log_entry.timestamp * 1000)
    return None


def performance_metadata(context, spark, rows_out: int) -> dict:
    """Numeric metadata the UI plots over time: the step's wall time so far, rows in (records its Spark jobs
    read) and out, rows per second, and the task metrics of its Spark jobs."""
    import dagster as dg

    started = step_started_ms(context)
    if started is None:
        return {}
    seconds = max(time.time() - started / 1000, 1e-3)
    m = jobs_since(spark, started)
    return {
        "perf/step_seconds": dg.MetadataValue.float(round(seconds, 3)),
        "perf/rows_in": dg.MetadataValue.int(m.input_records),
        "perf/rows_out": dg.MetadataValue.int(rows_out),
        "perf/rows_per_second": dg.MetadataValue.float(round(rows_out / seconds, 1)),
        "spark/jobs": dg.MetadataValue.int(m.jobs),
        "spark/tasks": dg.MetadataValue.int(m.tasks),
        "spark/executor_run_time_seconds": dg.MetadataValue.float(round(m.executor_run_time_ms / 1000, 3)),
        "spark/executor_cpu_time_seconds": dg.MetadataValue.float(round(m.executor_cpu_time_ns / 1e9, 3)),
        "spark/input_bytes": dg.MetadataValue.int(m.input_bytes),
        "spark/shuffle_read_bytes": dg.MetadataValue.int(m.shuffle_read_bytes),
        "spark/shuffle_write_bytes": dg.MetadataValue.int(m.shuffle_write_bytes),
        "spark/memory_spilled_bytes": dg.MetadataValue.int(m.memory_spilled_bytes),
        "spark/disk_spilled_bytes": dg.MetadataValue.int(m.disk_spilled_bytes),
    }
