"""The inventory policy's stock against its achieved service level, for the model's forecasts and the moving
average's, over a range of target service levels (docs/forecasting.md, "Validating the policy"): to compare the
two at an equal achieved service level. Reads the lake's ml.forecast_backtest and refined.products with delta-rs
and runs the policy simulation of ``logic/ml/inventory.py``.

    .venv/bin/python scripts/policy_at_service_levels.py [LAKE_ROOT]     (default: $ECOMMERCE_LAKE_HOME/lake)
"""

import os
import sys
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable

from ecommerce_lake.logic.ml import inventory as inv
from ecommerce_lake.logic.ml.inventory_params import PolicyParams


def main() -> None:
    home = Path(os.environ.get("ECOMMERCE_LAKE_HOME", Path.home() / ".ecommerce_lake"))
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else home / "lake"
    bt = DeltaTable(str(root / "ml" / "forecast_backtest")).to_pandas(columns=[
        "origin_date", "product_id", "county_code", "category", "target_date", "actual_units", "model_units",
        "moving_average_units"])
    products = DeltaTable(str(root / "refined" / "products")).to_pandas(
        columns=["product_id", "unit_cost_kes", "list_price_kes"])
    cost = {r.product_id: float(r.unit_cost_kes if pd.notna(r.unit_cost_kes) else r.list_price_kes)
            for r in products.itertuples()}
    print("forecast          target  achieved  fill rate  average units on hand")
    for column in ("model_units", "moving_average_units"):
        for level in (0.80, 0.85, 0.90, 0.93, 0.95):
            r = inv.simulate(bt, cost, PolicyParams(service_level=level), forecast=column)
            print(f"{column:17s} {level:.2f}    {r.achieved_cycle_service_level:.4f}    {r.fill_rate:.4f}     "
                  f"{r.average_on_hand_units:.3f}", flush=True)


if __name__ == "__main__":
    main()
