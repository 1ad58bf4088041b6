"""The code location: every domain's definitions, each asset's automation condition from one policy
(``defs/automation.py``), and the resources of the configured environment (``deployment.py``).

Loaded by ``dagster dev`` through workspace.yaml. Steps run in the run's own process (in-process executor)
so that one SparkSession serves every asset and check of a run.
"""

from __future__ import annotations

import dagster as dg

from ecommerce_lake.defs import automation, curated, insights, ml, raw, realtime, refined
from ecommerce_lake.defs.ops import ops_defs
from ecommerce_lake.deployment import build_resources
from ecommerce_lake.settings import Settings

LAKE_DOMAINS = (raw.defs, refined.defs, curated.defs, insights.defs, ml.defs, realtime.defs)

lake_job = dg.define_asset_job(
    "lake_job",
    selection=dg.AssetSelection.groups("raw", "refined", "curated", "insights", "ml"),
    description="Ingest new landing batches and rebuild refined and curated tables, with every check. "
    "Daily-partitioned assets take the run's partition range (`ecommerce-lake run` sets it).",
)


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    lake_assets = [a for d in LAKE_DOMAINS for a in d.assets or [] if isinstance(a, dg.AssetsDefinition)]
    domains = dg.Definitions.merge(*LAKE_DOMAINS, ops_defs(lake_assets))
    return dg.Definitions(
        assets=automation.with_conditions(list(domains.assets or [])),
        sensors=[*(domains.sensors or []), automation.automation_sensor],
        jobs=[lake_job],
        resources=build_resources(settings),
        executor=dg.in_process_executor,
    )


defs = build_defs()
