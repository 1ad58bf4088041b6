"""Sales forecasting (group ``ml``): the forecast with its rolling-origin backtest (weekly training), and county
demand (the reconciled sums of the product forecasts)."""

import base64
import datetime as dt
import time

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.defs.checks import evaluate_checks
from ecommerce_lake.defs.keys import CURATED_KEYS, ML_KEYS, REFINED_KEYS
from ecommerce_lake.defs.ml.checks import CHECKS, metric
from ecommerce_lake.defs.resources import AsOfConfig, ForecastConfig, QualityResource
from ecommerce_lake.defs.tables import asset_out, emit, selected, table_asset
from ecommerce_lake.logic.frames import Held
from ecommerce_lake.logic.ml import forecast as fc
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.schemas import ml as schemas


def _in(key: dg.AssetKey, *columns: str) -> dg.AssetIn:
    return dg.AssetIn(key=key, metadata={"columns": list(columns)} if columns else None)




def model_dir(lake: LakeResource, version: str) -> str:
    return f"{lake.root.rstrip('/')}/ml/_models/sales_forecast/{version}"


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
def sales_forecasting(context: dg.AssetExecutionContext, config: AsOfConfig, daily: DataFrame, fact: DataFrame,
                      counties: DataFrame, forecasting: ForecastConfig, lake: LakeResource, quality: QualityResource):
    if selected(context, "sales_forecast", "forecast_backtest"):
        written = []
        for output in _forecast(context, config.day(forecasting.as_of), daily, fact, counties, forecasting, lake):
            written.append(output.output_name)
            yield output
        if not written:  # too little history: nothing written, nothing to check (downstream steps are skipped)
            return
    yield from evaluate_checks(context, lake, quality, [CHECKS["sales_forecast"], CHECKS["forecast_backtest"]])


def _forecast(context: dg.AssetExecutionContext, as_of: dt.date | None, daily: DataFrame, fact: DataFrame,
              counties: DataFrame, forecasting: ForecastConfig, lake: LakeResource):
    started = time.monotonic()
    as_of = as_of or daily.agg(F.max("order_date")).collect()[0][0]
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
    with Held() as held:  # the feature table, backtest rows and forecast, until both outputs are written
        run = fc.forecast_sales(daily, fact, counties, as_of, params, version, held, progress=context.log.info)
        path = model_dir(lake, version)
        run.model.write().overwrite().save(path)
        context.log.info(f"model saved to {path}")
        chart_started = time.monotonic()
        png = fc.history_chart(run.backtest, run.forecast, daily, as_of)
        chart_seconds = time.monotonic() - chart_started
        metrics = {k: metric(v) for k, v in run.metrics.items()}
        common = {"origin_date": str(as_of), "model_version": version}
        chosen = selected(context, "sales_forecast", "forecast_backtest")
        if "sales_forecast" in chosen:
            yield dg.Output(run.forecast, output_name="sales_forecast", metadata=_forecast_metadata(
                common, metrics, path, params, run, chart_seconds, started, png))
        if "forecast_backtest" in chosen:
            yield dg.Output(run.backtest, output_name="forecast_backtest", metadata={
                **common, "origins": dg.MetadataValue.json([str(o) for o in fc.origins(as_of, params)]), **metrics})


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
        "zero_demand_sample_rate": metric(run.zero_rate),
        **{f"seconds/{k}": metric(v) for k, v in run.seconds.items()},
        "seconds/chart": metric(chart_seconds),
        "seconds/total_before_write": metric(time.monotonic() - started),
        "forecast_vs_actual": dg.MetadataValue.md(
            "![forecast vs actual](data:image/png;base64," + base64.b64encode(png).decode() + ")"),
    }


@dg.multi_asset(**table_asset(CHECKS["county_demand_forecast"]),
                ins={"forecast": _in(ML_KEYS["sales_forecast"]), "backtest": _in(ML_KEYS["forecast_backtest"])})
def county_demand_forecast(context: dg.AssetExecutionContext, forecast: DataFrame, backtest: DataFrame,
                           lake: LakeResource, quality: QualityResource):
    """The backtest metrics of the bottom-up levels were computed with the forecast (from the same backtest
    rows, with the training history for MASE); they are repeated here, where people look for them."""
    def compute():
        out = fc.county_category_forecast(forecast, backtest)
        event = context.instance.get_latest_materialization_event(ML_KEYS["sales_forecast"])
        md = event.asset_materialization.metadata if event else {}
        return dg.Output(out, output_name="county_demand_forecast", metadata={
            **{k: v for k, v in md.items()
               if k.startswith(("backtest/county_category/", "backtest/county/", "backtest/national/"))},
            "model_version": md["model_version"].value if "model_version" in md else "unknown",
        })

    yield from emit(context, lake, quality, {"county_demand_forecast": compute}, [CHECKS["county_demand_forecast"]])


ASSETS = [sales_forecasting, county_demand_forecast]
