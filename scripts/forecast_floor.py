"""How good can any forecast be on this lake's data? (docs/forecasting.md, "Against issue 29's targets")

Takes the model's backtest forecasts (ml.forecast_backtest) as the *true* mean units of every series-day and asks
what a perfect forecast would score against demand drawn from those means (orders Poisson with mean forecast /
mean units per order line, units per line from curated.fact_sales' own distribution):

* WAPE and bias (three draws) of the true means themselves, a 28-day moving average of draws at the same means,
  a forecast of 0, and one that forecasts 0 on the days least likely to sell;
* the coverage of the *true* 90th percentile of each series-day's units (exact: the compound-Poisson
  distribution, computed by Panjer's recursion, no draws), against the model's recorded coverage;
* the inventory policy of logic/ml/inventory.py simulated on one draw, with the true means as the forecast and
  with the 28-day moving average of the draws, at target service levels from 0.80 to 0.95, with orders capped at
  28 days of cover (the default) and with the plain EOQ: the stock a perfect forecast holds against the moving
  average's at an equal achieved service level.

    .venv/bin/python scripts/forecast_floor.py [LAKE_ROOT]     (default: $ECOMMERCE_LAKE_HOME/lake)
"""

import numpy as np
import pandas as pd
from deltalake import DeltaTable

from policy_at_service_levels import lake_root, print_curves, unit_costs  # scripts/, beside this file


def p90_coverage(lam: np.ndarray, q: np.ndarray, mean_q: float) -> tuple[float, float]:
    """The mean over series-days of P(Y <= the true P90 of Y) and the share of series-days whose true P90 is 0,
    Y compound Poisson: N ~ Poisson(lam / mean_q) order lines, each of ``q``'s units distribution."""
    values, counts = np.unique(q.astype(int), return_counts=True)
    p = np.zeros(int(values.max()) + 1)
    p[values] = counts / counts.sum()
    # a geometric grid of means (0.1 % apart); each series-day takes the grid point at or above its mean
    lo, hi = max(float(lam[lam > 0].min()), 1e-6), float(lam.max())
    grid = np.exp(np.arange(np.log(lo), np.log(hi) + 1e-3, 1e-3))
    m = grid / mean_q
    kmax = int(hi * 4 + 60)
    f = np.zeros((len(grid), kmax + 1))
    f[:, 0] = np.exp(-m)
    j = np.arange(1, len(p))
    for k in range(1, kmax + 1):  # Panjer: f(k) = m / k * sum_j j p_j f(k - j)
        jj = j[j <= k]
        f[:, k] = m / k * (f[:, k - jj] * (jj * p[jj])).sum(axis=1)
    cdf = np.cumsum(f, axis=1)
    q90 = (cdf < 0.9).sum(axis=1)  # the smallest k with F(k) >= 0.9
    covered = cdf[np.arange(len(grid)), np.minimum(q90, kmax)]
    idx = np.minimum(np.searchsorted(grid, lam), len(grid) - 1)
    zero = lam <= 0
    cov = np.where(zero, 1.0, covered[idx])
    return float(cov.mean()), float(np.where(zero, True, q90[idx] == 0).mean())


def main() -> None:
    root = lake_root()
    bt = DeltaTable(str(root / "ml" / "forecast_backtest")).to_pandas(
        columns=["origin_date", "product_id", "county_code", "category", "target_date", "model_units",
                 "model_p90_units", "actual_units"])
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
    draws = []
    for _ in range(3):
        y = draw(lam)
        moving = draw(window.to_numpy() * 28) / 28
        draws.append((y, moving))
        forecasts = {"perfect mean": lam, "moving average 28": moving,
                     "zero": np.zeros_like(lam), "zero unless likely": np.where(lam > 0.7 * mean_q, lam, 0.0)}
        for name, f in forecasts.items():
            scores[name].append((np.abs(f - y).sum() / y.sum(), (f - y).sum() / y.sum()))
    actual = bt["actual_units"].to_numpy()
    print(f"{len(bt):,} backtest series-days; the model on the real data: WAPE "
          f"{np.abs(lam - actual).sum() / actual.sum():.3f}, bias {(lam - actual).sum() / actual.sum():+.3f}, "
          f"P90 coverage {(actual <= bt['model_p90_units'].to_numpy()).mean():.3f}")
    for name, values in scores.items():
        v = np.array(values)
        print(f"{name:20s} WAPE {v[:, 0].mean():.3f}  bias {v[:, 1].mean():+.3f}   (on draws from the model's means)")

    coverage, zero_share = p90_coverage(lam, q, mean_q)
    print(f"the true P90 covers {coverage:.3f} of the series-days (exact, compound Poisson at the model's means); "
          f"it is 0 units on {zero_share:.3f} of them")

    # one draw's windows, the policy of logic/ml/inventory.py with a perfect forecast and with the moving average
    # (one moving average per window, as the policy sees it: the mean of the 28 days before its origin)
    y = draws[0][0]
    keys = bt.assign(lam=lam).groupby(["origin_date", "product_id", "county_code"])["lam"]
    per_window = keys.mean()
    moving = pd.Series(draw(per_window.to_numpy() * 28) / 28, index=per_window.index).reindex(
        pd.MultiIndex.from_frame(bt[["origin_date", "product_id", "county_code"]])).to_numpy()
    sim = bt[["origin_date", "product_id", "county_code", "category", "target_date"]].assign(
        actual_units=y, perfect_units=lam, moving_units=moving)
    print_curves("policy on draws", sim, unit_costs(root), ("perfect_units", "moving_units"))

if __name__ == "__main__":
    main()
