"""Sales forecasting (group ``ml``): weekly training of the forecast model, gated before it becomes champion; the
forecast the champion scores; county demand (the reconciled sums of the product forecasts).

* ``forecast_training`` (weekly): the rolling-origin backtest and a candidate model fitted up to the origin, logged
  to MLflow as a run and registered as a new version of the model (``ml/forecast_model``). Its blocking check
  ``no_worse_than_champion`` compares it with the champion on the same backtest; only when it passes does the
  step move the alias ``champion`` to the new version and write its backtest rows (``ml/forecast_backtest``).
* ``ml__sales_forecast`` (daily, and after a promotion): the champion scores the next 28 days.
"""

import base64
import dataclasses
import datetime as dt
import json
import time

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.defs.checks import evaluate_checks
from ecommerce_lake.defs.keys import CURATED_KEYS, FORECAST_MODEL, ML_KEYS, REFINED_KEYS
from ecommerce_lake.defs.ml.checks import CHECKS, GATE, metric
from ecommerce_lake.defs.resources import AsOfConfig, ForecastConfig, QualityResource
from ecommerce_lake.defs.tables import OWNERS, asset_out, emit, selected, table_asset
from ecommerce_lake.logic.frames import Held
from ecommerce_lake.logic.ml import forecast as fc
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.platform.models import ModelRegistryResource
from ecommerce_lake.schemas import ml as schemas

# what the gate compares: the product x county WAPE (where stock is decided) and the county MASE
GATE_METRICS = ("backtest/product_county/model/wape", "backtest/county/model/mase")


def _in(key: dg.AssetKey, *columns: str) -> dg.AssetIn:
    return dg.AssetIn(key=key, metadata={"columns": list(columns)} if columns else None)


def model_dir(lake: LakeResource, version: str) -> str:
    return f"{lake.root.rstrip('/')}/ml/_models/sales_forecast/{version}"


DAILY = _in(CURATED_KEYS["daily_sales"], "order_date", "county_code", "product_id", "category", "units")


def _as_of(config: AsOfConfig, forecasting: ForecastConfig, daily: DataFrame) -> tuple[dt.date, dt.date]:
    """The origin (the run's or the deployment's as_of, else the latest order date) and the first order date, in
    one aggregation."""
    first, latest = daily.agg(F.min("order_date"), F.max("order_date")).collect()[0]
    as_of = config.day(forecasting.as_of) or latest
    if as_of is None:
        raise dg.Failure("curated.daily_sales is empty: nothing to forecast")
    return as_of, first


@dg.multi_asset(
    name="forecast_training",
    # subsettable, so its outputs are optional: the step leaves them out with too little history, and leaves the
    # backtest out when the gate refused the candidate (downstream steps are then skipped)
    outs={"forecast_backtest": asset_out(schemas.forecast_backtest),
          "forecast_model": dg.AssetOut(
              key=FORECAST_MODEL, dagster_type=dg.Nothing, group_name="ml", is_required=False,
              kinds={"mlflow", "spark"}, owners=OWNERS["ml"],
              description="The forecast model: a version of the registered MLflow model per training (parameters, "
              "the Delta versions of its inputs, backtest metrics, coefficients, the fitted model). The alias "
              "`champion` moves to it only when the blocking check no_worse_than_champion passed.")},
    check_specs=[*CHECKS["forecast_backtest"].specs, GATE],
    can_subset=True,
    ins={"daily": DAILY, "counties": _in(REFINED_KEYS["counties"])},
    description="Weekly training: the rolling-origin backtest (3 origins x 28 days, the model retrained at each) "
    "against five baselines (seasonal naive, moving average, TSB, Croston-SBA, ADIDA), then a Poisson regression "
    "fitted up to the origin, logged to MLflow and registered; promoted to champion when no worse than the "
    "current one on the same backtest. Metrics: backtest/<level>/<method>/<metric>.",
)
def forecast_training(context: dg.AssetExecutionContext, config: AsOfConfig, daily: DataFrame, counties: DataFrame,
                      forecasting: ForecastConfig, lake: LakeResource, quality: QualityResource,
                      model_registry: ModelRegistryResource):
    if not selected(context, "forecast_model", "forecast_backtest"):
        yield from evaluate_checks(context, lake, quality, [CHECKS["forecast_backtest"]])
        if dg.AssetCheckKey(FORECAST_MODEL, GATE.name) in context.selected_asset_check_keys:
            raise dg.Failure(
                f"{GATE.name} judges a training's candidate against the champion, so it runs only with a training: "
                f"materialize {FORECAST_MODEL.to_user_string()} (it trains, logs the candidate to MLflow and "
                "evaluates this check) instead of running the check alone. Its latest result is on the latest "
                f"materialization of {FORECAST_MODEL.to_user_string()}.",
                metadata={"check": GATE.name, "asset": FORECAST_MODEL.to_user_string()})
        return
    as_of, first_day = _as_of(config, forecasting, daily)
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
    started = time.monotonic()
    version = f"{as_of:%Y%m%d}-{context.run_id[:8]}"
    context.log.info(f"training for origin {as_of}, model version {version}, params {params}")
    with Held() as held:  # the feature tables and backtest rows, until the backtest is written
        run = fc.train(daily, counties, as_of, params, held, progress=context.log.info)
        path = model_dir(lake, version)
        run.model.write().overwrite().save(path)
        context.log.info(f"model saved to {path}")
        coefficients = fc.coefficients(run.model)
        inputs = {k.to_user_string(): lake.current_version(k)
                  for k in (CURATED_KEYS["daily_sales"], REFINED_KEYS["counties"])}
        run_id, registered, url = model_registry.log_training(
            params={"spec": json.dumps(fc.spec(params), sort_keys=True), **dataclasses.asdict(params),
                    "origin_date": str(as_of)},
            inputs=inputs, metrics=run.metrics, coefficients=coefficients, model_dir=path,
            tags={"model_version": version, "origin_date": str(as_of), "dagster_run_id": context.run_id,
                  "dagster_asset": FORECAST_MODEL.to_user_string()})
        context.log.info(f"MLflow: run {run_id}, registered {model_registry.model_name} version {registered} ({url})")
        gate = _gate(context, model_registry, params, run, held, registered, daily, counties)
        common = {"origin_date": str(as_of), "model_version": version}
        metrics = {k: metric(v) for k, v in run.metrics.items()}
        if gate.passed and "forecast_backtest" in context.selected_output_names:
            yield dg.Output(run.backtest, output_name="forecast_backtest", metadata={
                **common, "origins": dg.MetadataValue.json([str(o) for o in fc.origins(as_of, params)]), **metrics})
        yield dg.Output(None, output_name="forecast_model", metadata={
            **common, **metrics,
            "mlflow_run": dg.MetadataValue.url(url) if url.startswith("http") else url,
            "mlflow_run_id": run_id,
            "registered_model": model_registry.model_name,
            "registered_version": registered,
            "promoted": gate.passed,
            "model_path": path,
            "model": "Spark ML GeneralizedLinearRegression (Poisson, log link; direct, lags >= horizon)",
            "coefficients": dg.MetadataValue.json({k: round(v, 6) for k, v in coefficients.items()}),
            "model_params": dg.MetadataValue.json(dataclasses.asdict(params)),
            "features": dg.MetadataValue.json(list(fc.FEATURES)),
            "inputs": dg.MetadataValue.json(inputs),
            "series": run.series,
            "train_days": params.train_days,
            "training_rows": run.training_rows,
            "zero_demand_sample_rate": metric(run.zero_rate),
            **{f"seconds/{k}": metric(v) for k, v in run.seconds.items()},
            "seconds/total": metric(time.monotonic() - started),
        })
        if gate.passed:
            yield from evaluate_checks(context, lake, quality, [CHECKS["forecast_backtest"]])
        yield gate
    if gate.passed:
        model_registry.promote(registered)
        context.log.info(f"version {registered} is now the champion of {model_registry.model_name}")
    else:
        context.log.error(f"version {registered} stays a candidate: {gate.metadata['reason'].value}")


def _gate(context, registry: ModelRegistryResource, params: fc.ForecastParams, run: fc.Training, held: Held,
          candidate: str, daily: DataFrame, counties: DataFrame) -> dg.AssetCheckResult:
    """no_worse_than_champion: the candidate's product x county WAPE and county MASE against the champion's on
    the same backtest (the same origins and data). A champion with the candidate's spec has the candidate's
    backtest (same data, same spec: the same numbers); one with another spec of this code has its backtest run
    again here; one of older code (other features) cannot be, and the candidate replaces it."""
    champion = registry.champion()
    mine = {k: run.metrics[k] for k in GATE_METRICS}

    def result(passed: bool, reason: str, theirs: dict | None = None, **extra) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            check_name=GATE.name, asset_key=FORECAST_MODEL, passed=passed,
            metadata={"reason": reason, "candidate_version": candidate,
                      "champion_version": champion.version if champion else "none",
                      **{f"candidate/{k}": metric(v) for k, v in mine.items()},
                      **{f"champion/{k}": metric(v) for k, v in (theirs or {}).items()}, **extra})

    if champion is None:
        return result(True, "no champion yet: the first model becomes champion")
    recorded = champion.spec
    theirs_params = fc.params_of(recorded)
    if recorded == fc.spec(params):
        return result(True, f"the champion (version {champion.version}) has the candidate's spec: on the same "
                      "backtest its figures are the candidate's", mine)
    if theirs_params is None:
        return result(True, f"the champion (version {champion.version}) is a model of other features or another "
                      "class, whose backtest cannot be run again: the candidate replaces it", comparable=False)
    if (theirs_params.origins, theirs_params.horizon) != (params.origins, params.horizon):
        return result(True, f"the champion (version {champion.version}) was backtested on other origins "
                      f"({theirs_params.origins} x {theirs_params.horizon} days): the candidate replaces it",
                      comparable=False)
    context.log.info(f"gate: backtesting the champion's spec (version {champion.version}) on the same origins")
    same_table = ((theirs_params.train_days, theirs_params.active_days) == (params.train_days, params.active_days))
    features = run.features if same_table else fc.build_features(daily, counties, run.features.as_of,
                                                                theirs_params, held)
    _, their_metrics, _ = fc.evaluate(features, theirs_params, held, progress=context.log.info)
    theirs = {k: their_metrics[k] for k in GATE_METRICS}
    worse = [k for k in GATE_METRICS if mine[k] > theirs[k] + 1e-9]
    if worse:
        return result(False, "the candidate is worse than the champion on the same backtest: " + ", ".join(
            f"{k} {mine[k]:.4f} > {theirs[k]:.4f}" for k in worse), theirs)
    return result(True, "the candidate is no worse than the champion on the same backtest", theirs)


@dg.multi_asset(**table_asset(CHECKS["sales_forecast"]),
                ins={"daily": DAILY, "counties": _in(REFINED_KEYS["counties"]),
                     "backtest": _in(ML_KEYS["forecast_backtest"])},
                deps=[FORECAST_MODEL])
def sales_forecast(context: dg.AssetExecutionContext, config: AsOfConfig, daily: DataFrame, counties: DataFrame,
                   backtest: DataFrame, forecasting: ForecastConfig, lake: LakeResource, quality: QualityResource,
                   model_registry: ModelRegistryResource):
    """The champion (the registered model's alias) scores the 28 days after the origin (the latest order date,
    or the run's as_of); the P90 comes from the errors of its backtest (ml.forecast_backtest, written with its
    promotion)."""
    if selected(context, "sales_forecast"):
        with Held() as held:  # the feature rows and the forecast, until it is written
            yield _score(context, config, daily, counties, backtest, forecasting, model_registry, held)
    yield from evaluate_checks(context, lake, quality, [CHECKS["sales_forecast"]])


def _score(context, config, daily, counties, backtest, forecasting, model_registry, held) -> dg.Output:
    from pyspark.ml.regression import GeneralizedLinearRegressionModel

    started = time.monotonic()
    champion = model_registry.champion()
    if champion is None:
        raise dg.Failure(f"no champion in the model registry ({model_registry.model_name} at "
                         f"{model_registry.tracking_uri}): materialize ml/forecast_model first")
    params = fc.params_of(champion.spec)
    if params is None:
        raise dg.Failure(f"the champion (version {champion.version}) is a model of other features than this code "
                         "computes: train a new one (materialize ml/forecast_model)")
    as_of, _ = _as_of(config, forecasting, daily)
    version = champion.tags.get("model_version", champion.version)
    model = GeneralizedLinearRegressionModel.load(model_registry.local_model_dir(champion))
    features = fc.scoring_features(daily, counties, as_of, params, held)
    forecast = fc.score(model, features, backtest, counties, params, version, held)
    chart_started = time.monotonic()
    png = fc.history_chart(backtest, forecast, daily, as_of)
    context.log.info(f"champion version {champion.version} ({version}, trained for origin "
                     f"{champion.params.get('origin_date', '?')}) forecast the 28 days after {as_of}")
    return dg.Output(forecast, output_name="sales_forecast", metadata={
        "origin_date": str(as_of), "model_version": version,
        "registered_version": champion.version,
        "mlflow_run_id": champion.run_id,
        "trained_for_origin": champion.params.get("origin_date", ""),
        "seconds/chart": metric(time.monotonic() - chart_started),
        "seconds/total_before_write": metric(time.monotonic() - started),
        "forecast_vs_actual": dg.MetadataValue.md(
            "![forecast vs actual](data:image/png;base64," + base64.b64encode(png).decode() + ")"),
    })


@dg.multi_asset(**table_asset(CHECKS["county_demand_forecast"]),
                ins={"forecast": _in(ML_KEYS["sales_forecast"]), "backtest": _in(ML_KEYS["forecast_backtest"])})
def county_demand_forecast(context: dg.AssetExecutionContext, forecast: DataFrame, backtest: DataFrame,
                           lake: LakeResource, quality: QualityResource):
    """The backtest metrics of the bottom-up levels were computed with the model (from the same backtest rows,
    with the training history for MASE); they are repeated here, where people look for them."""
    def compute():
        out = fc.county_category_forecast(forecast, backtest)
        event = context.instance.get_latest_materialization_event(ML_KEYS["forecast_backtest"])
        md = event.asset_materialization.metadata if event else {}
        return dg.Output(out, output_name="county_demand_forecast", metadata={
            **{k: v for k, v in md.items()
               if k.startswith(("backtest/county_category/", "backtest/county/", "backtest/national/"))},
            "model_version": md["model_version"].value if "model_version" in md else "unknown",
        })

    yield from emit(context, lake, quality, {"county_demand_forecast": compute}, [CHECKS["county_demand_forecast"]])


ASSETS = [forecast_training, sales_forecast, county_demand_forecast]
