"""The code location: every domain's definitions, merged, with resources for the configured environment.

Loaded by ``dagster dev`` through workspace.yaml. Steps run in the run's own process (in-process executor)
so that one SparkSession serves every asset and check of a run.
"""

from __future__ import annotations

import dagster as dg

from ecommerce_lake.defs import automation, curated, forecasting, ml, raw, refined
from ecommerce_lake.defs.maintenance import build_maintenance
from ecommerce_lake.defs.resources import build_resources
from ecommerce_lake.settings import Settings

LAKE_DOMAINS = (raw.defs, refined.defs, curated.defs, ml.defs, forecasting.defs)


def _domains() -> tuple[dg.Definitions, ...]:
    """Every domain, plus the Delta maintenance of every table the lake domains store."""
    tables = [a for d in LAKE_DOMAINS for a in (d.assets or []) if isinstance(a, dg.AssetsDefinition)]
    return (*LAKE_DOMAINS, build_maintenance(tables), automation.defs)


lake_job = dg.define_asset_job(
    "lake_job",
    selection=dg.AssetSelection.groups("raw", "refined", "curated", "ml"),
    description="Ingest new landing batches and rebuild refined and curated tables, with every check. "
    "Daily-partitioned assets take the run's partition range (`ecommerce-lake run` sets it).",
)


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    return dg.Definitions.merge(
        *_domains(),
        dg.Definitions(
            jobs=[lake_job],
            resources=build_resources(settings),
            executor=dg.in_process_executor,
        ),
    )


defs = build_defs()
