"""Spark task metrics of the jobs a Dagster step ran, read from Spark's own status store.

Steps of a run execute one after the other in one process (in-process executor) and share one SparkSession, so
the Spark jobs submitted since the step started are the step's jobs. Spark keeps the figures whether or not its
UI is on (``spark.ui.retainedJobs`` / ``retainedStages`` bound how many).
"""

from __future__ import annotations

import json
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


def _status_json(spark, what: str) -> list[dict]:
    """Spark's status store as the REST API shows it (``jobs`` or ``stages``), serialised to JSON inside the JVM:
    one py4j call instead of one per field of every stage (a GBT step runs a thousand jobs)."""
    jvm = spark.sparkContext._jvm
    store = spark.sparkContext._jsc.sc().statusStore()
    if what == "jobs":
        data = store.jobsList(None)
    else:  # every attempt of every retained stage, without task details
        data = store.stageList(None, False, False, spark.sparkContext._gateway.new_array(jvm.double, 0), None)
    mapper = jvm.com.fasterxml.jackson.databind.ObjectMapper()
    mapper.registerModule(jvm.com.fasterxml.jackson.module.scala.DefaultScalaModule())
    return json.loads(mapper.writeValueAsString(data))


def jobs_since(spark, since_ms: int) -> StepSparkMetrics:
    """Sum the task metrics of every stage of every job submitted at or after ``since_ms`` (epoch ms): this
    process's jobs in its own JVM, or, on the engine, the jobs the engine ran for this process's session (read
    from the engine's status REST API, which lists each job with its Connect session's tag)."""
    from ecommerce_lake.platform.spark import is_remote

    if is_remote(spark):
        return _engine_jobs_since(since_ms)
    out = StepSparkMetrics()
    sc = spark.sparkContext._jsc.sc()
    try:
        sc.listenerBus().waitUntilEmpty(5000)  # the status store is fed asynchronously by the listener bus
    except Exception:  # noqa: BLE001 - a late event only makes the figures slightly low
        log.debug("Spark listener bus did not drain within 5 s")
    stage_ids: set[int] = set()
    for job in _status_json(spark, "jobs"):
        submitted = job.get("submissionTime")
        if submitted is None or submitted < since_ms:
            continue
        out.jobs += 1
        stage_ids.update(job.get("stageIds") or ())
    if not stage_ids:
        return out
    return _add_stages(out, stage_ids, _status_json(spark, "stages"))


def _engine_jobs_since(since_ms: int) -> StepSparkMetrics:
    from ecommerce_lake.platform.engine import engine_jobs
    from ecommerce_lake.platform.spark import session_info

    out = StepSparkMetrics()
    info = session_info()
    if info is None or not info.ui_url:
        return out
    try:
        jobs, stages = engine_jobs(info.ui_url, info.session_id, since_ms)
    except Exception as exc:  # noqa: BLE001 - figures, not results: a missing figure must not fail a write
        log.debug("no Spark metrics from the engine's REST API at %s: %s", info.ui_url, exc)
        return out
    out.jobs = len(jobs)
    return _add_stages(out, {sid for j in jobs for sid in j.get("stageIds") or ()}, stages)


def _add_stages(out: StepSparkMetrics, stage_ids: set[int], stages: list[dict]) -> StepSparkMetrics:
    last_attempt: dict[int, dict] = {}
    for stage in stages:
        sid = stage["stageId"]
        if sid in stage_ids and (sid not in last_attempt or stage["attemptId"] > last_attempt[sid]["attemptId"]):
            last_attempt[sid] = stage
    for stage in last_attempt.values():  # stages evicted from the store (retainedStages) are not counted
        if stage.get("status") == "SKIPPED":
            continue
        out.stages += 1
        out.tasks += int(stage.get("numCompleteTasks") or 0)
        out.executor_run_time_ms += int(stage.get("executorRunTime") or 0)
        out.executor_cpu_time_ns += int(stage.get("executorCpuTime") or 0)
        out.input_records += int(stage.get("inputRecords") or 0)
        out.input_bytes += int(stage.get("inputBytes") or 0)
        out.shuffle_read_bytes += int(stage.get("shuffleReadBytes") or 0)
        out.shuffle_write_bytes += int(stage.get("shuffleWriteBytes") or 0)
        out.memory_spilled_bytes += int(stage.get("memoryBytesSpilled") or 0)
        out.disk_spilled_bytes += int(stage.get("diskBytesSpilled") or 0)
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
