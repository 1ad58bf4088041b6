"""The insights group: the business's monthly questions, and the county dashboard."""

import dagster as dg

from ecommerce_lake.defs.insights.assets import ASSETS

defs = dg.Definitions(assets=ASSETS)
