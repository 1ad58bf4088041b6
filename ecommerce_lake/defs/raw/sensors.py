"""The landing sensor: one run per new complete landing batch (run key = batch id) that carries the batch from raw
to the day-partitioned curated tables, for the day partitions it touches (``BATCH_RUN``). One run, not a run per
layer: each automation hop would cost a daemon tick and a run process of its own. Declarative automation then
refreshes the all-time tables (``defs/automation.py``)."""

import json

import dagster as dg

from ecommerce_lake.defs.curated.checks import DAY_TABLES as CURATED_DAY_TABLES
from ecommerce_lake.defs.keys import CURATED_KEYS, RAW_KEYS, REFINED_KEYS
from ecommerce_lake.defs.partitions import BATCH_TAG, FIRST_DAY, range_tags
from ecommerce_lake.defs.raw.checks import BATCH_TABLES, SALES
from ecommerce_lake.defs.refined.checks import REFERENCE, SALES_TABLES
from ecommerce_lake.defs.resources import SensorSettingsResource
from ecommerce_lake.logic.raw.plan import plan_new_batches
from ecommerce_lake.platform.lake_reader import LakeReaderResource
from ecommerce_lake.platform.landing import LandingResource

RAW_BATCH_OUTPUTS = [*[RAW_KEYS[n] for n in BATCH_TABLES], RAW_KEYS["batch_log"]]
RAW_ALL = [*RAW_BATCH_OUTPUTS, *[RAW_KEYS[n] for n in SALES]]
# What a batch's run refreshes: without sales days, the reference tables it can change; with them, its days from
# raw to curated (declarative automation skips what the batch's run refreshed itself: the run that updated raw
# also targeted these)
BATCH_REFERENCE_RUN = [*RAW_BATCH_OUTPUTS, *[REFINED_KEYS[t] for t in REFERENCE]]
BATCH_RUN = [*RAW_ALL, *[REFINED_KEYS[t] for t in (*REFERENCE, *SALES_TABLES)],
             *[CURATED_KEYS[t] for t in CURATED_DAY_TABLES]]
# The county reference (package data, no upstream): declarative automation never builds an asset that was
# missing when its condition was first evaluated, so a lake's first accepted batch builds it with its own run
COUNTIES = REFINED_KEYS["counties"]


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
    found = plan_new_batches(landing, ingested | requested, lake_reader.order_days, first_day=FIRST_DAY,
                             after=after, limit=sensor_settings.max_batches_per_tick)
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
