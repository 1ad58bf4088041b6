"""Forecasting assets (group ``ml``): sales forecast with its backtest, county demand, inventory recommendations.

Training is weekly (Monday 03:00 Nairobi, cron condition); county demand and the inventory recommendations
follow the forecast (and a new stock snapshot) eagerly once its blocking checks passed.
"""


import base64
import datetime as dt
import math
import time

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.defs.common import (
    CheckEnv, ExtraCheck, QualityResource, TableChecks, evaluate_checks, asset_out, emit, key_of, selected, table_asset,
)
from ecommerce_lake.defs.conditions import ALL_TIME_CONDITION, cron_condition
from ecommerce_lake.defs.curated import CURATED_KEYS
from ecommerce_lake.defs.refined import REFINED_KEYS
from ecommerce_lake.logic import forecast as fc
from ecommerce_lake.logic import inventory as inv
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.schemas import ml as schemas

KEYS = {s.name.split(".")[1]: key_of(s) for s in schemas.FORECASTING}
WEEKLY_TRAINING = cron_condition("0 3 * * 1", "weekly training on Monday 03:00 Nairobi")


class ForecastConfig(dg.ConfigurableResource):
    """ECOMMERCE_LAKE_FORECAST_AS_OF (origin; default the latest order date), ..._FORECAST_TRAIN_DAYS,
    ..._FORECAST_ORIGINS, ..._FORECAST_MAX_ITER, ..._FORECAST_MAX_ZERO_ROWS."""

    as_of: str = ""
    train_days: int = 365
    origins: int = 3
    max_iter: int = fc.ForecastParams.max_iter
    max_zero_rows: int = fc.ForecastParams.max_zero_rows

    def params(self) -> fc.ForecastParams:
        return fc.ForecastParams(train_days=self.train_days, origins=self.origins, max_iter=self.max_iter,
                                 max_zero_rows=self.max_zero_rows)


class InventoryPolicyConfig(dg.ConfigurableResource):
    """ECOMMERCE_LAKE_SERVICE_LEVEL, ..._LEAD_TIME_DAYS, ..._LEAD_TIMES, ..._ORDERING_COST_KES,
    ..._HOLDING_COST_RATE."""

    service_level: float = 0.95
    lead_time_days: int = 7
    lead_times: str = ""
    ordering_cost_kes: float = 1000.0
    holding_cost_rate: float = 0.25

    def params(self) -> inv.PolicyParams:
        return inv.PolicyParams(service_level=self.service_level, lead_time_days=self.lead_time_days,
                                lead_time_overrides=inv.parse_overrides(self.lead_times),
                                ordering_cost_kes=self.ordering_cost_kes, holding_cost_rate=self.holding_cost_rate)


# ---- checks -------------------------------------------------------------------------------------------
def _model_beats_seasonal_naive(env: CheckEnv) -> dg.AssetCheckResult:
    """Recomputed from ml.forecast_backtest (not from the asset's own metadata)."""
    row = env.lake.read(KEYS["forecast_backtest"]).agg(
        F.sum("actual_units").cast("double").alias("a"),
        F.sum(F.abs(F.col("model_units") - F.col("actual_units"))).alias("m"),
        F.sum(F.abs(F.col("seasonal_naive_units") - F.col("actual_units"))).alias("s"),
        F.sum(F.abs(F.col("moving_average_units") - F.col("actual_units"))).alias("ma"),
    ).collect()[0]
    a = row["a"] or 0.0
    model, snaive, ma = (row["m"] / a, row["s"] / a, row["ma"] / a) if a else (math.nan,) * 3
    return dg.AssetCheckResult(
        passed=bool(a and model < snaive),
        metadata={"model_wape": _float(model), "seasonal_naive_wape": _float(snaive),
                  "moving_average_wape": _float(ma), "level": "product_county"},
    )


def _sums_match(env: CheckEnv) -> dg.AssetCheckResult:
    product = (env.lake.read(KEYS["sales_forecast"]).groupBy("county_code", "category", "forecast_date")
               .agg(F.sum("forecast_units").alias("p")))
    county = env.lake.read(KEYS["county_demand_forecast"]).select("county_code", "category", "forecast_date",
                                                                     "forecast_units")
    j = product.join(county, ["county_code", "category", "forecast_date"], "full")
    row = j.agg(F.max(F.abs(F.coalesce("p", F.lit(0.0)) - F.coalesce("forecast_units", F.lit(0.0)))).alias("d"),
                F.sum(F.when(F.col("p").isNull() | F.col("forecast_units").isNull(), 1).otherwise(0)).alias("x"),
                F.count(F.lit(1)).alias("n")).collect()[0]
    diff = float(row["d"] or 0.0)
    return dg.AssetCheckResult(passed=diff < 1e-6 and not row["x"],
                               metadata={"max_abs_difference": _float(diff), "unmatched_cells": int(row["x"] or 0),
                                         "cells": int(row["n"])})


def _service_level_achieved(env: CheckEnv) -> dg.AssetCheckResult:
    """From the simulation the step just ran (``values["simulation"]``), or, when only the check runs, from the
    latest materialization's figures."""
    sim = env.values.get("simulation")
    if sim is not None:
        t, a, fill = sim.target_cycle_service_level, sim.achieved_cycle_service_level, sim.fill_rate
    else:
        event = env.context.instance.get_latest_materialization_event(KEYS["inventory_recommendations"])
        md = event.asset_materialization.metadata if event else {}
        if "simulation/achieved_cycle_service_level" not in md:
            return dg.AssetCheckResult(passed=False, metadata={"error": "no simulation metadata on the latest "
                                                                        "materialization"})
        t, a, fill = (float(md[f"simulation/{k}"].value) for k in ("target_cycle_service_level",
                                                                  "achieved_cycle_service_level", "fill_rate"))
    return dg.AssetCheckResult(passed=bool(a >= t - 0.03), metadata={
        "target": _float(t), "achieved": _float(a), "shortfall_points": _float((t - a) * 100),
        "fill_rate": _float(fill)})


EXTRA = {
    "sales_forecast": [ExtraCheck(
        "model_beats_seasonal_naive", "The model's backtest WAPE (product x county) is below the seasonal-naive "
        "baseline's, recomputed from ml.forecast_backtest.", _model_beats_seasonal_naive, blocking=True)],
    "county_demand_forecast": [ExtraCheck(
        "sums_match_product_forecasts", "Every county x category x day equals the sum of its product forecasts.",
        _sums_match, blocking=True)],
    "inventory_recommendations": [ExtraCheck(
        "simulated_service_level", "The (s, Q) policy simulated on the backtest windows' actual demand achieves a "
        "cycle service level at most 3 points below target.", _service_level_achieved, blocking=True)],
}

CHECKS = {s.name.split(".")[1]: TableChecks(s, extra=EXTRA.get(s.name.split(".")[1], ()))
          for s in schemas.FORECASTING}


def _in(key: dg.AssetKey, *columns: str) -> dg.AssetIn:
    return dg.AssetIn(key=key, metadata={"columns": list(columns)} if columns else None)




def model_dir(lake: LakeResource, version: str) -> str:
    return f"{lake.root.rstrip('/')}/ml/_models/sales_forecast/{version}"


def _float(v: float) -> dg.MetadataValue:
    return dg.MetadataValue.float(float("nan") if v is None else round(float(v), 6))


@dg.multi_asset(
    name="sales_forecasting",
    # subsettable, so its outputs are optional: the step leaves them out with too little history (downstream
    # steps are then skipped)
    outs={"sales_forecast": asset_out(schemas.sales_forecast),
          "forecast_backtest": asset_out(schemas.forecast_backtest)},
    check_specs=[*CHECKS["sales_forecast"].specs, *CHECKS["forecast_backtest"].specs],
    can_subset=True,
    ins={
        "daily": _in(CURATED_KEYS["daily_sales"], "order_date", "county_code", "product_id", "category", "units",
                     "net_revenue_kes"),
        "fact": _in(CURATED_KEYS["fact_sales"], "order_date", "county_code", "product_id", "quantity",
                    "unit_price_kes", "discount_kes"),
        "counties": _in(REFINED_KEYS["counties"]),
    },
    description="Rolling-origin backtest (3 origins x 28 days, model retrained at each) against seasonal-naive and "
    "moving-average baselines, then one global Spark ML model trained up to the origin forecasts the next 28 days "
    "of every active product x county series. Metrics: backtest/<level>/<method>/<metric>.",
)
def sales_forecasting(context: dg.AssetExecutionContext, daily: DataFrame, fact: DataFrame, counties: DataFrame,
                      forecasting: ForecastConfig, lake: LakeResource, quality: QualityResource):
    if selected(context, "sales_forecast", "forecast_backtest"):
        written = []
        for output in _forecast(context, daily, fact, counties, forecasting, lake):
            written.append(output.output_name)
            yield output
        if not written:  # too little history: nothing written, nothing to check (downstream steps are skipped)
            return
    yield from evaluate_checks(context, lake, quality, [CHECKS["sales_forecast"], CHECKS["forecast_backtest"]])


def _forecast(context: dg.AssetExecutionContext, daily: DataFrame, fact: DataFrame, counties: DataFrame,
              forecasting: ForecastConfig, lake: LakeResource):
    started = time.monotonic()
    as_of = dt.date.fromisoformat(forecasting.as_of) if forecasting.as_of else \
        daily.agg(F.max("order_date")).collect()[0][0]
    if as_of is None:
        raise dg.Failure("curated.daily_sales is empty: nothing to forecast")
    first_day = daily.agg(F.min("order_date")).collect()[0][0]
    wanted = forecasting.params()
    params = fc.fit_to_history(wanted, first_day, as_of)
    if params is None:
        needed = wanted.history_needed + fc.MIN_TRAIN_DAYS
        context.log.warning(
            f"not forecasting: curated.daily_sales covers {first_day}..{as_of} "
            f"({(as_of - first_day).days + 1} days); an honest backtest needs at least {needed} days "
            f"({wanted.lookback} of feature look-back, {wanted.origins} x {wanted.horizon} of backtest origins, 7 for "
            f"the MASE scale, {fc.MIN_TRAIN_DAYS} of training). The forecast, county demand and inventory "
            "recommendations are skipped until then.")
        return
    if params.train_days < wanted.train_days:
        context.log.warning(f"training window shortened to the history there is: {params.train_days} days "
                            f"(configured {wanted.train_days})")
    version = f"{as_of:%Y%m%d}-{context.run_id[:8]}"
    context.log.info(f"forecast origin {as_of}, model version {version}, params {params}")
    run = fc.forecast_sales(daily, fact, counties, as_of, params, version, progress=context.log.info)
    path = model_dir(lake, version)
    run.model.write().overwrite().save(path)
    context.log.info(f"model saved to {path}")
    chart_started = time.monotonic()
    png = fc.history_chart(run.backtest, run.forecast, daily, as_of)
    chart_seconds = time.monotonic() - chart_started
    metrics = {k: _float(v) for k, v in run.metrics.items()}
    common = {"origin_date": str(as_of), "model_version": version}
    chosen = selected(context, "sales_forecast", "forecast_backtest")
    if "sales_forecast" in chosen:
        yield dg.Output(run.forecast, output_name="sales_forecast", metadata=_forecast_metadata(
            common, metrics, path, params, run, chart_seconds, started, png))
    if "forecast_backtest" in chosen:
        yield dg.Output(run.backtest, output_name="forecast_backtest", metadata={
            **common, "origins": dg.MetadataValue.json([str(o) for o in fc.origins(as_of, params)]), **metrics})
    run.release()


def _forecast_metadata(common, metrics, path, params, run, chart_seconds, started, png) -> dict:
    return {
        **common, **metrics,
        "model_path": path,
        "model": "Spark ML GBTRegressor (direct, lags >= horizon)",
        "model_params": dg.MetadataValue.json({k: getattr(params, k) for k in params.__dataclass_fields__}),
        "features": dg.MetadataValue.json(list(fc.FEATURES)),
        "series": run.series,
        "train_days": params.train_days,
        "training_rows": run.training_rows,
        "zero_demand_sample_rate": _float(run.zero_rate),
        **{f"seconds/{k}": _float(v) for k, v in run.seconds.items()},
        "seconds/chart": _float(chart_seconds),
        "seconds/total_before_write": _float(time.monotonic() - started),
        "forecast_vs_actual": dg.MetadataValue.md(
            "![forecast vs actual](data:image/png;base64," + base64.b64encode(png).decode() + ")"),
    }


@dg.multi_asset(**table_asset(CHECKS["county_demand_forecast"]),
                ins={"forecast": _in(KEYS["sales_forecast"]), "backtest": _in(KEYS["forecast_backtest"])})
def county_demand_forecast(context: dg.AssetExecutionContext, forecast: DataFrame, backtest: DataFrame,
                           lake: LakeResource, quality: QualityResource):
    """The backtest metrics of the bottom-up levels were computed with the forecast (from the same backtest
    rows, with the training history for MASE); they are repeated here, where people look for them."""
    def compute():
        out = fc.county_category_forecast(forecast, backtest)
        event = context.instance.get_latest_materialization_event(KEYS["sales_forecast"])
        md = event.asset_materialization.metadata if event else {}
        return dg.Output(out, output_name="county_demand_forecast", metadata={
            **{k: v for k, v in md.items()
               if k.startswith(("backtest/county_category/", "backtest/county/", "backtest/national/"))},
            "model_version": md["model_version"].value if "model_version" in md else "unknown",
        })

    yield from emit(context, lake, quality, {"county_demand_forecast": compute}, [CHECKS["county_demand_forecast"]])


@dg.multi_asset(**table_asset(CHECKS["inventory_recommendations"]),
                ins={"forecast": _in(KEYS["sales_forecast"]), "backtest": _in(KEYS["forecast_backtest"]),
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
                          "model_units").toPandas()
    cost = {r["product_id"]: float(r["c"]) for r in products.select(
        "product_id", F.coalesce("unit_cost_kes", "list_price_kes").alias("c")).collect() if r["c"] is not None}
    sim = inv.simulate(pdf, cost, params)
    context.log.info(f"policy simulation on {sim.series_windows:,} series-windows: cycle service level "
                     f"{sim.achieved_cycle_service_level:.3f} (target {params.service_level}), fill rate "
                     f"{sim.fill_rate:.3f}, in {time.monotonic() - started:.1f} s")
    ordering = (out.where(F.col("order_now")).agg(F.count(F.lit(1)), F.sum("order_quantity")).collect()[0]
                if snapshot is not None else (0, 0))
    return out, {
        "simulation/target_cycle_service_level": _float(sim.target_cycle_service_level),
        "simulation/achieved_cycle_service_level": _float(sim.achieved_cycle_service_level),
        "simulation/fill_rate": _float(sim.fill_rate),
        "simulation/cycles": sim.cycles,
        "simulation/stockout_cycles": sim.stockout_cycles,
        "simulation/series_windows": sim.series_windows,
        "policy": dg.MetadataValue.json({"service_level": params.service_level, "z": round(params.z, 4),
                                         "lead_time_days": params.lead_time_days,
                                         "lead_time_overrides": params.lead_time_overrides,
                                         "ordering_cost_kes": params.ordering_cost_kes,
                                         "holding_cost_rate": params.holding_cost_rate}),
        "inventory_snapshot": snapshot is not None,
        "orders_now/series": int(ordering[0] or 0),
        "orders_now/units": int(ordering[1] or 0),
    }, sim


ASSETS = [
    sales_forecasting.map_asset_specs(lambda s: s.replace_attributes(automation_condition=WEEKLY_TRAINING)),
    *[a.map_asset_specs(lambda s: s.replace_attributes(automation_condition=ALL_TIME_CONDITION))
      for a in (county_demand_forecast, inventory_recommendations)],
]
defs = dg.Definitions(assets=ASSETS)
