"""The ops group: Delta maintenance of every lake table, the record of failed runs, the reaper of dead runs, the
privacy audit (written by `ecommerce-lake privacy`)."""

import dagster as dg

from ecommerce_lake.defs.ops.assets import build_maintenance, privacy_audit, run_failures
from ecommerce_lake.defs.ops.sensors import dead_run_reaper, run_failure_recorder


def ops_defs(lake_assets: list[dg.AssetsDefinition]) -> dg.Definitions:
    """The ops group over the Delta tables of ``lake_assets``."""
    return dg.Definitions(assets=[build_maintenance(lake_assets), run_failures, privacy_audit], sensors=[run_failure_recorder, dead_run_reaper])
