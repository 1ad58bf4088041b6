"""The inventory policy's stock against its achieved service level, for the model's forecasts and the moving
average's, over a range of target service levels (docs/forecasting.md, "Validating the policy"): to compare the
two at an equal achieved service level, with orders capped at 28 days of cover (the default) and with the plain
EOQ (``ECOMMERCE_LAKE_MAX_COVER_DAYS=0``). Reads the lake's ml.forecast_backtest and refined.products with
delta-rs and runs the policy simulation of ``logic/ml/inventory.py``.

    .venv/bin/python scripts/policy_at_service_levels.py [LAKE_ROOT]     (default: $ECOMMERCE_LAKE_HOME/lake)
"""

import os
import sys
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable

from ecommerce_lake.logic.ml import inventory as inv
from ecommerce_lake.logic.ml.inventory_params import PolicyParams

LEVELS = (0.80, 0.85, 0.90, 0.93, 0.95)


def lake_root() -> Path:
    home = Path(os.environ.get("ECOMMERCE_LAKE_HOME", Path.home() / ".ecommerce_lake"))
    return Path(sys.argv[1]) if len(sys.argv) > 1 else home / "lake"


def unit_costs(root: Path) -> dict[str, float]:
    """The unit cost of every product (its list price when the cost is unknown), as the inventory step takes it."""
    products = DeltaTable(str(root / "refined" / "products")).to_pandas(
        columns=["product_id", "unit_cost_kes", "list_price_kes"])
    return {r.product_id: float(r.unit_cost_kes if pd.notna(r.unit_cost_kes) else r.list_price_kes)
            for r in products.itertuples()}


def print_curves(title: str, frame: pd.DataFrame, cost: dict[str, float], columns: tuple[str, ...]) -> None:
    """The policy simulated on ``frame`` with each forecast column, at every target level, capped and not."""
    print(f"{title}: cover cap  forecast              target  achieved  fill rate  average units on hand")
    for cap in (28, 0):
        for column in columns:
            for level in LEVELS:
                r = inv.simulate(frame, cost, PolicyParams(service_level=level, max_cover_days=cap), forecast=column)
                print(f"{cap or 'none':9}  {column:20s}  {level:.2f}    {r.achieved_cycle_service_level:.4f}    "
                      f"{r.fill_rate:.4f}     {r.average_on_hand_units:.3f}", flush=True)


def main() -> None:
    root = lake_root()
    bt = DeltaTable(str(root / "ml" / "forecast_backtest")).to_pandas(columns=[
        "origin_date", "product_id", "county_code", "category", "target_date", "actual_units", "model_units",
        "moving_average_units"])
    print_curves("policy", bt, unit_costs(root), ("model_units", "moving_average_units"))


if __name__ == "__main__":
    main()
