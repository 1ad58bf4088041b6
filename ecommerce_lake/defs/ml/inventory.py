"""Inventory recommendations (group ``ml``): an (s, Q) policy per product and county from the forecast and its
backtest errors, with its service level simulated on the backtest windows."""

import time

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.defs.keys import ML_KEYS, REFINED_KEYS
from ecommerce_lake.defs.ml.checks import CHECKS, metric
from ecommerce_lake.defs.resources import InventoryPolicyConfig, QualityResource
from ecommerce_lake.defs.tables import selected, table_asset
from ecommerce_lake.logic.ml import forecast as fc
from ecommerce_lake.logic.ml import inventory as inv
from ecommerce_lake.platform.lake import LakeResource


# the forecasts the policy is simulated with: the model's, and the baselines a planner would otherwise use
SIMULATED = ("model", "moving_average", "tsb")


def _in(key: dg.AssetKey, *columns: str) -> dg.AssetIn:
    return dg.AssetIn(key=key, metadata={"columns": list(columns)} if columns else None)


@dg.multi_asset(**table_asset(CHECKS["inventory_recommendations"]),
                ins={"forecast": _in(ML_KEYS["sales_forecast"]), "backtest": _in(ML_KEYS["forecast_backtest"]),
                     "products": _in(REFINED_KEYS["products"], "product_id", "unit_cost_kes", "list_price_kes")},
                deps=[REFINED_KEYS["inventory"]])
def inventory_recommendations(context: dg.AssetExecutionContext, forecast: DataFrame, backtest: DataFrame,
                              products: DataFrame, lake: LakeResource, inventory_policy: InventoryPolicyConfig,
                              quality: QualityResource):
    values = {}
    if selected(context, "inventory_recommendations"):
        out, metadata, values["simulation"] = _recommendations(context, forecast, backtest, products, lake,
                                                               inventory_policy)
        yield dg.Output(out, output_name="inventory_recommendations", metadata=metadata)
    yield from CHECKS["inventory_recommendations"].evaluate(context, lake, quality, **values)


def _recommendations(context, forecast, backtest, products, lake, inventory_policy):
    params = inventory_policy.params()
    snapshot = lake.read(REFINED_KEYS["inventory"]) if lake.exists(REFINED_KEYS["inventory"]) else None
    if snapshot is not None and snapshot.limit(1).count() == 0:
        snapshot = None
    errors = fc.residual_quantiles(backtest, fc.SERIES)
    out = inv.recommendations(forecast, errors, products, snapshot, params)
    started = time.monotonic()
    pdf = backtest.select("origin_date", "product_id", "county_code", "category", "target_date", "actual_units",
                          *[f"{m}_units" for m in SIMULATED]).toPandas()
    cost = {r["product_id"]: float(r["c"]) for r in products.select(
        "product_id", F.coalesce("unit_cost_kes", "list_price_kes").alias("c")).collect() if r["c"] is not None}
    context.log.info(f"backtest windows ({len(pdf):,} series-days) and unit costs read in "
                     f"{time.monotonic() - started:.1f} s")
    # the same policy driven by the model's forecasts and by each baseline's: what the forecast is worth in stock
    sims = {m: inv.simulate(pdf, cost, params, forecast=f"{m}_units") for m in SIMULATED}
    sim = sims["model"]
    for m, r in sims.items():
        context.log.info(f"policy simulation ({m}) on {r.series_windows:,} series-windows: cycle service level "
                         f"{r.achieved_cycle_service_level:.3f} (target {params.service_level}), fill rate "
                         f"{r.fill_rate:.3f}, average units on hand {r.average_on_hand_units:.3f}")
    stock_ma = sims["moving_average"].average_on_hand_units
    # the model's policy at the moving average's achieved service level: the stock each needs for the same service
    level_ma = sims["moving_average"].achieved_cycle_service_level
    stock_equal, curve = inv.stock_at_service_level(pdf, cost, params, "model_units", level_ma, known=sim)
    context.log.info(
        f"policy simulations in {time.monotonic() - started:.1f} s; at the moving average's service level "
        f"{level_ma:.3f} the model's policy holds " + (
            f"{stock_equal:.3f} units on average against {stock_ma:.3f} ({stock_equal / stock_ma - 1:+.1%})"
            if stock_equal is not None and stock_ma else "(not bracketed by the tried targets)"))
    ordering = (out.where(F.col("order_now")).agg(F.count(F.lit(1)), F.sum("order_quantity")).collect()[0]
                if snapshot is not None else (0, 0))
    return out, {
        "simulation/target_cycle_service_level": metric(sim.target_cycle_service_level),
        "simulation/achieved_cycle_service_level": metric(sim.achieved_cycle_service_level),
        "simulation/fill_rate": metric(sim.fill_rate),
        "simulation/cycles": sim.cycles,
        "simulation/stockout_cycles": sim.stockout_cycles,
        "simulation/series_windows": sim.series_windows,
        **{f"simulation/{m}/{k}": metric(v) for m, r in sims.items() for k, v in (
            ("cycle_service_level", r.achieved_cycle_service_level), ("fill_rate", r.fill_rate),
            ("average_on_hand_units", r.average_on_hand_units))},
        "simulation/stock_change_vs_moving_average": metric(
            sim.average_on_hand_units / stock_ma - 1 if stock_ma else None),
        "simulation/model/average_on_hand_units_at_moving_average_service_level": metric(stock_equal),
        "simulation/stock_change_at_equal_service_level": metric(
            stock_equal / stock_ma - 1 if stock_equal is not None and stock_ma else None),
        "simulation/model/service_curve": dg.MetadataValue.json(
            [{"target": t, "achieved": round(a, 5), "average_on_hand_units": round(u, 5)} for t, a, u in curve]),
        "policy": dg.MetadataValue.json({"service_level": params.service_level, "z": round(params.z, 4),
                                         "lead_time_days": params.lead_time_days,
                                         "lead_time_overrides": params.lead_time_overrides,
                                         "ordering_cost_kes": params.ordering_cost_kes,
                                         "holding_cost_rate": params.holding_cost_rate,
                                         "max_cover_days": params.max_cover_days}),
        "inventory_snapshot": snapshot is not None,
        "orders_now/series": int(ordering[0] or 0),
        "orders_now/units": int(ordering[1] or 0),
    }, sim


ASSETS = [inventory_recommendations]
