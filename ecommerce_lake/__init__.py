"""ecommerce_lake: the data lake of a Kenyan online retailer, as Dagster assets on PySpark and Delta Lake."""

import warnings

# Single-run backfill policies and asset-check partitions are marked beta in Dagster 1.13; we rely on them.
warnings.filterwarnings("ignore", message=r".*(backfill_policy|is currently in beta).*")
