"""Declarative automation conditions of the lake's assets (see ecommerce_lake.defs.automation)."""

import dagster as dg

# A day partition refreshes when its upstream partitions were updated – whichever day (status updates land
# in old days) – once upstream blocking checks passed.
DAILY_CONDITION = (
    dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager (any day) after blocking checks")
# All-time tables read every day partition; days without data stay unmaterialized, so "missing" must not block.
ALL_TIME_CONDITION = (
    dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager after blocking checks")

def with_automation(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """Attach the right condition to every asset (daily or all-time), unless it already has one."""
    out = []
    for asset in assets:
        condition = DAILY_CONDITION if asset.partitions_def is not None else ALL_TIME_CONDITION
        out.append(asset.map_asset_specs(
            lambda spec, c=condition: spec if spec.automation_condition else spec.replace_attributes(
                automation_condition=c)))
    return out


def cron_condition(cron: str, label: str, timezone: str = "Africa/Nairobi") -> dg.AutomationCondition:
    """Refresh once per cron tick (e.g. nightly scoring, weekly training), when nothing upstream is running and
    upstream blocking checks passed – whatever partitions upstream updated in between."""
    return (
        dg.AutomationCondition.cron_tick_passed(cron, timezone).since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label(label)
