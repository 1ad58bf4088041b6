"""Inventory policy per product x county from the demand forecast: a continuous-review (s, Q) policy with
safety stock from the backtest forecast errors and Q the EOQ capped at a number of days of forecast demand, and a
day-by-day simulation of that policy on the held-out actual demand of the backtest windows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ecommerce_lake.logic.ml.inventory_params import PolicyParams
from ecommerce_lake.schemas.spark import conform
from ecommerce_lake.schemas import ml as schemas


def lead_time_column(params: PolicyParams) -> F.Column:
    col = F.lit(params.lead_time_days)
    # least specific first, so that the most specific override is applied last
    items = sorted(params.lead_time_overrides.items(), key=lambda kv: ("@" in kv[0]) * 2 + kv[0].startswith("county:"))
    for key, days in items:
        if "@" in key:
            cat, code = key.rsplit("@", 1)
            cond = (F.col("category") == cat) & (F.col("county_code") == int(code))
        elif key.startswith("county:"):
            cond = F.col("county_code") == int(key.split(":", 1)[1])
        else:
            cond = F.col("category") == key
        col = F.when(cond, F.lit(days)).otherwise(col)
    return col


def order_size(eoq, daily_demand, max_cover_days: int):
    """Q: the EOQ, capped at ``max_cover_days`` of the daily demand (0: no cap), at least one unit. Works on
    numpy arrays and on Spark columns alike (the simulation and the recommendations share it)."""
    if isinstance(eoq, np.ndarray):
        capped = np.minimum(eoq, daily_demand * max_cover_days) if max_cover_days else eoq
        return np.maximum(np.ceil(np.nan_to_num(capped)), 1.0)
    capped = F.least(eoq, daily_demand * F.lit(float(max_cover_days))) if max_cover_days else eoq
    return F.greatest(F.ceil(capped), F.lit(1)).cast("double")


def recommendations(forecast: DataFrame, errors: DataFrame, products: DataFrame, inventory: DataFrame | None,
                    params: PolicyParams) -> DataFrame:
    """One row per forecast series: demand, safety stock, reorder point, EOQ, the order size and, with a stock
    snapshot, whether to order now and how much.

    ``errors``: per series ``sigma_error`` (standard deviation of daily backtest errors)."""
    per = forecast.groupBy("product_id", "county_code", "county_name", "category").agg(
        F.avg("forecast_units").alias("avg_daily_demand"), F.min("origin_date").alias("origin_date"))
    cost = products.select("product_id", F.coalesce("unit_cost_kes", "list_price_kes").cast("double").alias("unit_cost_kes"))
    df = (per.join(errors.select("product_id", "county_code", "sigma_error"), ["product_id", "county_code"], "left")
          .join(cost, "product_id", "left")
          .withColumn("sigma_daily_error", F.coalesce("sigma_error", F.lit(0.0)))
          .withColumn("lead_time_days", lead_time_column(params))
          .withColumn("service_level", F.lit(params.service_level))
          .withColumn("safety_stock", F.lit(params.z) * F.col("sigma_daily_error") * F.sqrt("lead_time_days"))
          .withColumn("reorder_point", F.col("avg_daily_demand") * F.col("lead_time_days") + F.col("safety_stock"))
          .withColumn("annual_demand", F.col("avg_daily_demand") * 365)
          .withColumn("eoq", F.when(
              (F.col("unit_cost_kes") > 0) & (F.col("annual_demand") > 0),
              F.sqrt(2 * F.col("annual_demand") * F.lit(params.ordering_cost_kes)
                     / (F.lit(params.holding_cost_rate) * F.col("unit_cost_kes")))).otherwise(F.lit(0.0)))
          .withColumn("order_size", order_size(F.col("eoq"), F.col("avg_daily_demand"), params.max_cover_days)))
    if inventory is not None:
        latest = (inventory.where(F.col("county_code") != 0)
                  .withColumn("__r", F.row_number().over(Window.partitionBy("product_id", "county_code").orderBy(
                      F.col("as_of").desc(), F.col("_batch_id").desc(), F.col("_row_number").desc())))
                  .where("__r = 1").select("product_id", "county_code", "on_hand",
                                           F.col("as_of").alias("inventory_as_of")))
        df = df.join(latest, ["product_id", "county_code"], "left")
    else:
        df = df.withColumn("on_hand", F.lit(None).cast("int")).withColumn("inventory_as_of", F.lit(None).cast("date"))
    q = F.col("order_size")
    s = F.ceil(F.col("reorder_point"))
    below = F.col("on_hand") <= s
    orders = F.floor((s - F.col("on_hand")) / q) + 1  # enough Q-sized orders to lift the position above s
    out = (df.withColumn("order_now", F.when(F.col("on_hand").isNotNull(), below & (F.col("annual_demand") > 0)))
           .withColumn("order_quantity", F.when(F.col("on_hand").isNull(), F.lit(None).cast("long"))
                       .when(F.col("order_now"), (orders * q).cast("long")).otherwise(F.lit(0).cast("long"))))
    return conform(out, schemas.inventory_recommendations)


# ---- simulation ---------------------------------------------------------------------------------------------
@dataclass
class SimulationResult:
    target_cycle_service_level: float
    achieved_cycle_service_level: float
    fill_rate: float
    cycles: int
    stockout_cycles: int
    series_windows: int
    demand_units: float
    average_on_hand_units: float = math.nan  # stock at the end of a day, per series and day, over every window


def simulate(backtest: pd.DataFrame, unit_cost: dict[str, float], params: PolicyParams,
             forecast: str = "model_units") -> SimulationResult:
    """Run the (s, Q) policy (Q: ``order_size``) day by day on each backtest window's actual demand, per series.

    For window ``w`` the policy uses what was known at its origin: the mean forecast of the window (column
    ``forecast``: the model's, or a baseline's, to compare them under the same policy) as the demand rate, and
    the standard deviation of the series' daily errors of that forecast in the *other* windows (leave one
    window out). Start: stock = s, so an order of Q is placed before day 1; orders arrive after the lead time.
    A cycle is the lead time after an order; it is a stockout cycle when any demand in it goes unmet. Cycles
    cut off by the end of a window are not counted. Fill rate = units sold / units demanded."""
    z = params.z
    bt = backtest.sort_values(["product_id", "county_code", "origin_date", "target_date"])
    bt["err"] = bt["actual_units"] - bt[forecast]
    g = bt.groupby(["product_id", "county_code", "origin_date"], sort=True)
    win = g.agg(rate=(forecast, "mean"), n=("err", "size"), s1=("err", "sum"),
                s2=("err", lambda e: float((e * e).sum())), category=("category", "first")).reset_index()
    tot = win.groupby(["product_id", "county_code"])[["n", "s1", "s2"]].transform("sum")
    n_o, s1_o, s2_o = tot["n"] - win["n"], tot["s1"] - win["s1"], tot["s2"] - win["s2"]
    var = np.where(n_o > 0, s2_o / np.maximum(n_o, 1) - (s1_o / np.maximum(n_o, 1)) ** 2, 0.0)
    sigma = np.sqrt(np.maximum(var, 0.0))
    lead = np.array([params.lead_time(c, int(k)) for c, k in zip(win["category"], win["county_code"], strict=True)])
    cost = win["product_id"].map(unit_cost).astype(float).to_numpy()
    rate = win["rate"].to_numpy()
    s = np.ceil(rate * lead + z * sigma * np.sqrt(lead))
    annual = rate * 365
    with np.errstate(divide="ignore", invalid="ignore"):
        eoq = np.where((cost > 0) & (annual > 0),
                       np.sqrt(2 * annual * params.ordering_cost_kes / (params.holding_cost_rate * cost)), 0.0)
    q = order_size(eoq, rate, params.max_cover_days)
    horizon = int(win["n"].max())
    demand = np.zeros((len(win), horizon))
    # every window holds the same number of days (the horizon), in date order
    demand[:, :] = bt["actual_units"].to_numpy(dtype=float).reshape(len(win), horizon)
    n = len(win)
    max_lead = int(lead.max())
    arrivals = np.zeros((n, horizon + max_lead + 1))
    on_hand = s.copy()
    on_order = np.zeros(n)
    unmet = np.zeros((n, horizon))
    sold_total = 0.0
    stock_total = 0.0
    cycles_ok = cycles_bad = 0
    events: list[tuple[np.ndarray, int]] = []
    rows = np.arange(n)
    for t in range(horizon):
        on_hand += arrivals[:, t]
        on_order -= arrivals[:, t]
        position = on_hand + on_order
        need = position <= s
        if need.any():
            k = np.floor((s[need] - position[need]) / q[need]) + 1
            qty = k * q[need]
            arrivals[rows[need], t + lead[need]] += qty
            on_order[need] += qty
            events.append((rows[need], t))
        sold = np.minimum(on_hand, demand[:, t])
        unmet[:, t] = demand[:, t] - sold
        on_hand -= sold
        sold_total += float(sold.sum())
        stock_total += float(on_hand.sum())
    for idx, t in events:
        ends = t + lead[idx]
        complete = ends <= horizon
        for i, end in zip(idx[complete], ends[complete], strict=True):
            if unmet[i, t:end].sum() > 0:
                cycles_bad += 1
            else:
                cycles_ok += 1
    cycles = cycles_ok + cycles_bad
    total_demand = float(demand.sum())
    return SimulationResult(
        target_cycle_service_level=params.service_level,
        achieved_cycle_service_level=cycles_ok / cycles if cycles else math.nan,
        fill_rate=sold_total / total_demand if total_demand else math.nan,
        cycles=cycles, stockout_cycles=cycles_bad, series_windows=n, demand_units=total_demand,
        average_on_hand_units=stock_total / (n * horizon) if n else math.nan,
    )


def as_of_of(forecast: DataFrame) -> dt.date:
    return forecast.agg(F.min("origin_date")).collect()[0][0]


# target service levels the policy is tried at, to compare two forecasts at an equal *achieved* service level
TRIED_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)


def stock_at_service_level(backtest: pd.DataFrame, unit_cost: dict[str, float], params: PolicyParams, forecast: str,
                           level: float, known: SimulationResult | None = None
                           ) -> tuple[float | None, list[tuple[float, float, float]]]:
    """The average stock the policy holds with ``forecast`` when it *achieves* the cycle service level ``level``.

    From the configured target (``known``: its simulation, when already run) the target is moved through
    ``TRIED_LEVELS`` towards ``level`` until two achieved levels bracket it; the stock is interpolated linearly
    between those two. Returns (the stock, or None when no tried target brackets ``level``; the points
    simulated: (target, achieved, stock))."""
    def point(target: float, result: SimulationResult | None = None) -> tuple[float, float, float]:
        r = result or simulate(backtest, unit_cost, dataclasses.replace(params, service_level=target), forecast)
        return target, r.achieved_cycle_service_level, r.average_on_hand_units

    points = [point(params.service_level, known)]
    if math.isnan(level) or math.isnan(points[0][1]):
        return None, points
    if points[0][1] == level:
        return points[0][2], points
    down = points[0][1] > level
    for target in sorted((t for t in TRIED_LEVELS if (t < params.service_level if down else t > params.service_level)),
                         reverse=down):
        previous, current = points[-1], point(target)
        points.append(current)
        lo, hi = sorted((previous, current), key=lambda p: p[1])
        if lo[1] <= level <= hi[1]:
            if hi[1] == lo[1]:
                return lo[2], points
            return lo[2] + (hi[2] - lo[2]) * (level - lo[1]) / (hi[1] - lo[1]), points
    return None, points
