"""The curated layer: the analysts' tables."""

import dagster as dg

from ecommerce_lake.defs.curated.assets import ASSETS

defs = dg.Definitions(assets=ASSETS)
