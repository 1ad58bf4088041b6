"""``run_failure_recorder``: every failed run of this code location recorded as an observation of
``ops/run_failures`` (job, run, batch, partitions, failed steps, error), listed in the UI next to the data.
``dead_run_reaper``: runs whose process died without finishing are failed and their pool slots freed."""

import dagster as dg

from ecommerce_lake.defs.ops.assets import RUN_FAILURES
from ecommerce_lake.defs.partitions import BATCH_TAG
from ecommerce_lake.platform.dead_runs import reap


@dg.sensor(
    name="dead_run_reaper",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every minute: runs of this host whose process died without finishing (killed, out of memory) are "
    "marked failed and the pool slots they held freed, so the queue and the ingest pool do not wait for them "
    "(platform/dead_runs.py). Requests no run.",
)
def dead_run_reaper(context: dg.SensorEvaluationContext):
    failed = reap(context.instance, say=context.log.warning)
    return dg.SkipReason(f"failed {len(failed)} dead run(s): {', '.join(failed)}" if failed else "no dead run")


@dg.run_failure_sensor(
    name="run_failure_recorder",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
    description="Records every failed run as an observation of ops/run_failures (job, run, partitions, batch, "
    "error), shown in the UI on that asset.",
)
def run_failure_recorder(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    error = context.failure_event.message if context.failure_event else ""
    steps = [e.step_key for e in context.get_step_failure_events()] if hasattr(context, "get_step_failure_events") else []
    context.instance.report_runless_asset_event(
        dg.AssetObservation(
            asset_key=RUN_FAILURES,
            metadata={
                "run_id": run.run_id,
                "job": run.job_name,
                "batch_id": run.tags.get(BATCH_TAG, ""),
                "partitions": f"{run.tags.get('dagster/asset_partition_range_start', '')}.."
                              f"{run.tags.get('dagster/asset_partition_range_end', '')}",
                "failed_steps": dg.MetadataValue.json(steps),
                "error": (error or "")[:2000],
                "run": dg.MetadataValue.dagster_run(run.run_id),
            },
        )
    )
    context.log.info(f"recorded failure of run {run.run_id} ({run.job_name})")
