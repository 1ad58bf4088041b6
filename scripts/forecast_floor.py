"""How low can an unbiased forecast's WAPE go on this lake's data? (docs/forecasting.md, "Against issue 29's
targets")

Takes the model's backtest forecasts (ml.forecast_backtest) as the true mean units of every series-day, draws the
units of each series-day from them (orders Poisson with mean forecast / mean units per order line, units per line
from curated.fact_sales' own distribution), and scores against those draws: a perfect mean forecast, a 28-day
moving average of draws at the same means, a forecast of 0, and one that forecasts 0 on the days least likely to
sell. Three draws; prints the mean WAPE and bias of each.

    .venv/bin/python scripts/forecast_floor.py [LAKE_ROOT]     (default: $ECOMMERCE_LAKE_HOME/lake)
"""

import os
import sys
from pathlib import Path

import numpy as np
from deltalake import DeltaTable


def main() -> None:
    home = Path(os.environ.get("ECOMMERCE_LAKE_HOME", Path.home() / ".ecommerce_lake"))
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else home / "lake"
    bt = DeltaTable(str(root / "ml" / "forecast_backtest")).to_pandas(
        columns=["origin_date", "product_id", "county_code", "model_units", "actual_units"])
    q = DeltaTable(str(root / "curated" / "fact_sales")).to_pandas(columns=["quantity"])["quantity"].to_numpy()
    mean_q = q.mean()
    rng = np.random.default_rng(0)

    def draw(lam: np.ndarray) -> np.ndarray:
        n = rng.poisson(lam / mean_q)
        y = np.zeros(len(n))
        np.add.at(y, np.repeat(np.arange(len(n)), n), rng.choice(q, size=int(n.sum())))
        return y

    lam = bt["model_units"].to_numpy()
    window = bt.assign(lam=lam).groupby(["origin_date", "product_id", "county_code"])["lam"].transform("mean")
    scores: dict[str, list[tuple[float, float]]] = {k: [] for k in ("perfect mean", "moving average 28", "zero",
                                                                    "zero unless likely")}
    for _ in range(3):
        y = draw(lam)
        forecasts = {"perfect mean": lam, "moving average 28": draw(window.to_numpy() * 28) / 28,
                     "zero": np.zeros_like(lam), "zero unless likely": np.where(lam > 0.7 * mean_q, lam, 0.0)}
        for name, f in forecasts.items():
            scores[name].append((np.abs(f - y).sum() / y.sum(), (f - y).sum() / y.sum()))
    actual = bt["actual_units"].to_numpy()
    print(f"{len(bt):,} backtest series-days; the model on the real data: WAPE "
          f"{np.abs(lam - actual).sum() / actual.sum():.3f}, bias {(lam - actual).sum() / actual.sum():+.3f}")
    for name, values in scores.items():
        v = np.array(values)
        print(f"{name:20s} WAPE {v[:, 0].mean():.3f}  bias {v[:, 1].mean():+.3f}   (on draws from the model's means)")


if __name__ == "__main__":
    main()
