"""How the lake refreshes itself, in one place: the automation condition of every asset, applied to the whole
code location at the root (``definitions.py``), and the sensor that evaluates them.

* realtime: no condition; the Kafka sensor requests the stream when the topic holds unprocessed events;
* raw: no condition; the landing sensor requests one run per batch (``defs/raw/sensors.py``), carrying it from raw
  to the day-partitioned curated tables;
* a day partition of a refined or curated table refreshes when one of its upstream partitions was updated – any
  day, not only the latest, because status changes land in old days – by a run that did not refresh it too
  (Dagster's ``any_deps_updated`` leaves out updates of a run that also targeted the asset: a batch's own run),
  once the blocking checks upstream passed;
* all-time tables refresh when any upstream partition was updated, once nothing upstream runs (a backlog of
  batches ends in one refresh);
* the ml group and maintenance follow cron ticks (Africa/Nairobi): segments and the champion's forecast daily at
  04:00, the forecast model's training on Monday at 03:00 (county demand and the inventory recommendations follow
  a new forecast eagerly), Delta maintenance daily at 01:30.
"""

from __future__ import annotations

import dagster as dg

from ecommerce_lake.core.contract import NAIROBI_TZ
from ecommerce_lake.defs.keys import FORECAST_MODEL, ML_KEYS, OPS_KEYS
from ecommerce_lake.defs.raw.sensors import RAW_ALL

# A day partition refreshes when its upstream partitions were updated – whichever day (status updates land in old
# days) – once upstream blocking checks passed.
DAILY_CONDITION = (
    dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager (any day) after blocking checks")
# All-time tables read every day partition; days without data stay unmaterialized, so "missing" must not block.
ALL_TIME_CONDITION = (
    dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager after blocking checks")


def cron_condition(cron: str, label: str, timezone: str = NAIROBI_TZ) -> dg.AutomationCondition:
    """Refresh once per cron tick (e.g. nightly scoring, weekly training), when nothing upstream is running and
    upstream blocking checks passed – whatever partitions upstream updated in between."""
    return (
        dg.AutomationCondition.cron_tick_passed(cron, timezone).since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label(label)


DAILY_SCORING = cron_condition("0 4 * * *", "daily scoring at 04:00 Nairobi")
WEEKLY_TRAINING = cron_condition("0 3 * * 1", "weekly training on Monday 03:00 Nairobi")
DAILY_MAINTENANCE = cron_condition("30 1 * * *", "daily maintenance at 01:30 Nairobi")

# Assets whose condition is not their layer's default
CONDITIONS: dict[dg.AssetKey, dg.AutomationCondition] = {
    **{ML_KEYS[t]: DAILY_SCORING for t in ("rfm_scores", "customer_clusters", "segment_summary")},
    **{ML_KEYS[t]: WEEKLY_TRAINING for t in ("forecast_backtest",)},
    FORECAST_MODEL: WEEKLY_TRAINING,
    ML_KEYS["sales_forecast"]: DAILY_SCORING,
    OPS_KEYS["delta_maintenance"]: DAILY_MAINTENANCE,
}
NO_CONDITION_GROUPS = ("raw", "realtime")  # the landing sensor's; the Kafka sensor's


def condition_of(spec: dg.AssetSpec, partitioned: bool) -> dg.AutomationCondition | None:
    if spec.key in CONDITIONS:
        return CONDITIONS[spec.key]
    if spec.group_name in NO_CONDITION_GROUPS:
        return None
    return DAILY_CONDITION if partitioned else ALL_TIME_CONDITION


def with_conditions(assets: list) -> list:
    """``assets`` with every asset's automation condition set by the policy above (the only place that sets
    them); asset specs of external assets stay as they are."""
    def apply(asset):
        if not isinstance(asset, dg.AssetsDefinition):
            return asset
        partitioned = asset.partitions_def is not None
        return asset.map_asset_specs(lambda spec: spec.replace_attributes(
            automation_condition=condition_of(spec, partitioned)))

    return [apply(a) for a in assets]


automation_sensor = dg.AutomationConditionSensorDefinition(
    "lake_automation",
    target=dg.AssetSelection.all() - dg.AssetSelection.assets(*RAW_ALL),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Evaluates the assets' automation conditions: refreshes downstream partitions and tables after "
    "upstream updates whose blocking checks passed.",
)
