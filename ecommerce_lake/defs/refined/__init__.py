"""The refined layer: typed, deduplicated, conformed tables, their rejects and the county reference."""

import dagster as dg

from ecommerce_lake.defs.refined.assets import ASSETS

defs = dg.Definitions(assets=ASSETS)
