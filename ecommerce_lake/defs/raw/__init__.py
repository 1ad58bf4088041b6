"""The raw layer: ingestion of landing batches (assets), their checks, and the landing sensor."""

import dagster as dg

from ecommerce_lake.defs.raw.assets import ASSETS
from ecommerce_lake.defs.raw.sensors import landing_sensor

defs = dg.Definitions(assets=ASSETS, sensors=[landing_sensor])
