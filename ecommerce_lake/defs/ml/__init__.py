"""The ml group: customer segments, sales forecasting and inventory recommendations."""

import dagster as dg

from ecommerce_lake.defs.ml import forecasting, inventory, segmentation

defs = dg.Definitions(assets=[*segmentation.ASSETS, *forecasting.ASSETS, *inventory.ASSETS])
