"""How the lake refreshes itself: the landing sensor, declarative automation, and run-failure recording.

* ``landing_sensor`` finds new complete batches (cursor + the batch log) and requests one run per batch
  (run key = batch id) that carries the batch from raw to curated for the day partitions it touches: the raw
  assets, the refined tables and the day-partitioned curated tables (``BATCH_RUN``). One run, not a run per
  layer: each automation hop would cost a daemon tick and a run process of its own.
* Every other asset carries an automation condition: the all-time curated tables refresh once the batch's days
  are in (declarative automation gathers the batches of a backlog into one refresh); a day partition refreshes
  when its upstream partitions were updated by anything but a run that refreshed it too (a manual
  materialization of a refined table, say) and the upstream blocking checks passed.
* ``run_failure_recorder`` records every failed run as an observation of the ``ops/run_failures`` asset, so
  failures are listed in the UI next to the data.
"""

import json

import dagster as dg

from ecommerce_lake.defs.curated import CURATED_KEYS, PARTITION_COLUMN
from ecommerce_lake.defs.raw import BATCH_TABLES, RAW_KEYS, SALES
from ecommerce_lake.defs.refined import REFERENCE, REFINED_KEYS, SALES_OUTS
from ecommerce_lake.logic.plan import plan_new_batches
from ecommerce_lake.partitions import BATCH_TAG, range_tags
from ecommerce_lake.platform.landing import LandingResource
from ecommerce_lake.platform.lake_reader import LakeReaderResource

RAW_BATCH_OUTPUTS = [*[RAW_KEYS[n] for n in BATCH_TABLES], dg.AssetKey(["raw", "batch_log"])]
RAW_ALL = [*RAW_BATCH_OUTPUTS, *[RAW_KEYS[n] for n in SALES]]
# What a batch's run refreshes: without sales days, the reference tables it can change; with them, its days from
# raw to curated (declarative automation skips what the batch's run refreshed itself: the run that updated raw
# also targeted these)
BATCH_REFERENCE_RUN = [*RAW_BATCH_OUTPUTS, *[REFINED_KEYS[t] for t in REFERENCE]]
BATCH_RUN = [*RAW_ALL, *[REFINED_KEYS[t] for t in (*REFERENCE, *SALES_OUTS)],
             *[CURATED_KEYS[t] for t in PARTITION_COLUMN]]
# The county reference (package data, no upstream): declarative automation never builds an asset that was
# missing when its condition was first evaluated, so a lake's first accepted batch builds it with its own run
COUNTIES = REFINED_KEYS["counties"]
RUN_FAILURES = dg.AssetKey(["ops", "run_failures"])


class SensorSettingsResource(dg.ConfigurableResource):
    """Limits of the landing sensor (ECOMMERCE_LAKE_SENSOR_MAX_BATCHES_PER_TICK)."""

    max_batches_per_tick: int = 20


@dg.sensor(
    name="landing_sensor",
    minimum_interval_seconds=5,  # a tick lists only what follows its cursor: cheap, so new batches wait little
    default_status=dg.DefaultSensorStatus.RUNNING,
    target=dg.AssetSelection.assets(*BATCH_RUN, COUNTIES),
    description="Requests one run per new complete landing batch (run key = batch id) that carries it from raw "
    "to the day-partitioned curated tables, for the day partitions the batch touches (declarative automation then "
    "refreshes the all-time tables). Skips incomplete batches (no _SUCCESS) and says so in its tick log.",
)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingResource, lake_reader: LakeReaderResource,
                   sensor_settings: SensorSettingsResource):
    cursor = json.loads(context.cursor) if context.cursor else {}
    after = cursor.get("after")
    requested = set(cursor.get("requested", []))
    ingested = lake_reader.ingested_batches()
    found = plan_new_batches(landing, ingested | requested, lake_reader.order_days, after=after,
                             limit=sensor_settings.max_batches_per_tick)
    for batch_id in found.incomplete:
        context.log.info(f"batch {batch_id}: skipped, incomplete (no _SUCCESS marker yet); checked again next tick")
    requests = []
    first_reference = [COUNTIES] if found.planned and not lake_reader.exists(COUNTIES) else []
    for p in found.planned:
        batch_id = p.batch.batch_id
        tags = {BATCH_TAG: batch_id}
        if p.accepted and p.days:
            tags.update(range_tags(p.days))
            selection = [*BATCH_RUN, *first_reference]
            context.log.info(f"batch {batch_id}: requesting its run, raw to curated, over days "
                             f"{min(p.days)}..{max(p.days)} ({len(p.days)} touched)")
        elif p.accepted:
            selection = [*BATCH_REFERENCE_RUN, *first_reference]
            context.log.info(f"batch {batch_id}: no sales rows; requesting its run (raw and the refined reference "
                             "tables)")
        else:
            selection = RAW_BATCH_OUTPUTS
            context.log.info(f"batch {batch_id}: rejected ({p.reason}); recording it in raw.batch_log")
        if p.accepted:
            first_reference = []  # one run builds it
        requests.append(dg.RunRequest(run_key=batch_id, asset_selection=selection, tags=tags))
        requested.add(batch_id)
    if found.truncated:
        context.log.info(f"more than {sensor_settings.max_batches_per_tick} new batches: the rest next tick")
    # The watermark moves over the listed batches that are ingested or requested, up to the first one that is
    # not (incomplete, or left for the next tick); batches behind it are never listed again.
    watermark = after
    for batch_id in found.listed:
        if batch_id in ingested or batch_id in requested:
            watermark = batch_id
        else:
            break
    new_cursor = json.dumps({"after": watermark,
                             "requested": sorted(b for b in requested if watermark is None or b > watermark)})
    if not requests:
        reason = "no new complete batches"
        if found.incomplete:
            reason += f"; {len(found.incomplete)} incomplete: {', '.join(found.incomplete[:5])}"
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=new_cursor)
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)


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


run_failures = dg.AssetSpec(
    RUN_FAILURES,
    group_name="ops",
    kinds={"dagster"},
    owners=["team:data-platform"],
    description="Failed runs of this code location, one observation per failure (recorded by the "
    "run_failure_recorder sensor): job, run, batch, partitions, failed steps and the error.",
)

automation_sensor = dg.AutomationConditionSensorDefinition(
    "lake_automation",
    target=dg.AssetSelection.all() - dg.AssetSelection.assets(*RAW_ALL),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Evaluates the assets' automation conditions: refreshes downstream partitions and tables after "
    "upstream updates whose blocking checks passed.",
)

defs = dg.Definitions(
    assets=[run_failures],
    sensors=[landing_sensor, run_failure_recorder, automation_sensor],
)
