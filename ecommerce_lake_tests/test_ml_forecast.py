"""Sales forecast, backtest, county demand and inventory recommendations, against independent pandas
computations from the landing files (and hand-worked examples for the policy simulation).

The lake here has its own home (270 days of generated history, enough for three 28-day backtest origins and a
90-day training window) and is built by the real command line in its own process: `ecommerce-lake run`."""

import base64
import dataclasses
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from ecommerce_lake.generator.generate import GeneratorConfig, generate
from ecommerce_lake.logic.frames import Held
from ecommerce_lake.logic.ml import forecast as fc
from ecommerce_lake.logic.ml import inventory as inv
from ecommerce_lake.logic.ml.inventory_params import PolicyParams, parse_overrides
from ecommerce_lake.platform.dagster_storage import instance_yaml
from ecommerce_lake.defs.resources import InventoryPolicyConfig
from ecommerce_lake.settings import ConfigError
from ecommerce_lake_tests import oracle
from ecommerce_lake_tests.servers import free_port, port_open, wait_for

TRAIN_DAYS = 60  # 270 days of history: 119 look-back + 3 x 28 origins + 7 (MASE) + 60
LEAD_TIMES = "Phones=10;county:47=3"
AS_OF = dt.date(2025, 11, 30)
ARTIFACTS = Path(os.environ.get("ECOMMERCE_LAKE_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts")) / "insights"


@pytest.fixture(scope="module")
def flake(tmp_path_factory, spark):
    home = tmp_path_factory.mktemp("forecast_home")
    landing = home / "landing"
    generate(GeneratorConfig(out=landing, seed=11, days=270, customers=2500, products=40, lines=30000,
                             dirty_rate=0.02, end_date=AS_OF))
    dagster_home = home / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    env = {**os.environ, "ECOMMERCE_LAKE_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
           "ECOMMERCE_LAKE_FORECAST_TRAIN_DAYS": str(TRAIN_DAYS), "ECOMMERCE_LAKE_LEAD_TIMES": LEAD_TIMES}
    exe = Path(sys.executable).parent / "ecommerce-lake"
    # the lake beneath, without its checks (they run on the shared test lake, test_lake.py), then the forecast
    # assets with theirs (the segments have their own tests, test_ml_segments.py)
    lake_only = subprocess.run([str(exe), "run", "--select", "group:raw or group:refined or group:curated",
                                "--no-checks"], env=env, capture_output=True, text=True, timeout=1800)
    assert lake_only.returncode == 0, lake_only.stdout[-5000:] + lake_only.stderr[-5000:]
    forecasts = 'group:ml and not key:"ml/rfm_scores" and not key:"ml/customer_clusters" and not key:"ml/segment_summary"'
    proc = subprocess.run([str(exe), "run", "--select", forecasts, "--report", str(home / "report.json")], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    # the insight tables and the dashboard, which draws the forecast (test_the_dashboard_renders_in_a_browser)
    board = subprocess.run([str(exe), "run", "--select", "group:insights"], env=env, capture_output=True, text=True,
                           timeout=1800)
    assert board.returncode == 0, board.stdout[-5000:] + board.stderr[-5000:]
    assert "(Spark: engine sc://" in lake_only.stdout and "(Spark: engine sc://" in proc.stdout
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    fact = oracle.expected_fact_sales(oracle.read_landing(landing), dt.datetime.now(dt.UTC))
    known = fact[fact["county_code"] != 0]
    daily = known.groupby(["product_id", "county_code", "order_date"])["quantity"].sum().astype(int)
    lake = home / "lake"

    def table(name: str):
        return spark.read.format("delta").load(str(lake / name))

    def metadata(key: str) -> dict:
        event = instance.get_latest_materialization_event(dg.AssetKey(key.split("/")))
        return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}

    def check(key: str, name: str):
        return instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey(key.split("/")), name)).evaluation

    return SimpleNamespace(home=home, landing=landing, lake=lake, instance=instance, fact=fact, daily=daily,
                           table=table, metadata=metadata, check=check, stdout=proc.stdout)


def _units(flake, product: str, county: int, day: dt.date) -> int:
    return int(flake.daily.get((product, county, day), 0))


def test_series_are_those_that_sold_in_the_last_90_days(flake):
    since = AS_OF - dt.timedelta(days=89)
    recent = flake.daily[[since <= d <= AS_OF for d in flake.daily.index.get_level_values("order_date")]]
    expected = {(p, c) for p, c, _ in recent[recent > 0].index}
    forecast = flake.table("ml/sales_forecast").toPandas()
    assert set(zip(forecast["product_id"], forecast["county_code"], strict=True)) == expected
    per_series = forecast.groupby(["product_id", "county_code"])
    assert (per_series.size() == 28).all()
    assert sorted(forecast["horizon_days"].unique()) == list(range(1, 29))
    assert set(forecast["forecast_date"]) == {AS_OF + dt.timedelta(days=h) for h in range(1, 29)}
    assert (forecast["origin_date"] == AS_OF).all()
    assert (forecast["forecast_units"] >= 0).all()
    assert (forecast["forecast_p90_units"] >= forecast["forecast_units"]).all()


def test_backtest_actuals_and_baselines_match_pandas(flake):
    bt = flake.table("ml/forecast_backtest").toPandas()
    origins = sorted(bt["origin_date"].unique())
    assert origins == [AS_OF - dt.timedelta(days=28 * k) for k in (3, 2, 1)]
    assert (bt.groupby(["origin_date", "product_id", "county_code"]).size() == 28).all()
    # each origin forecasts the series that sold in the 90 days up to that origin (not those active at as_of,
    # chosen for having sold in the windows being forecast)
    sold = flake.daily[flake.daily > 0].reset_index()
    for origin in origins:
        recent = sold[(sold["order_date"] > origin - dt.timedelta(days=90)) & (sold["order_date"] <= origin)]
        expected = set(zip(recent["product_id"], recent["county_code"], strict=True))
        mine = bt[bt["origin_date"] == origin]
        assert set(zip(mine["product_id"], mine["county_code"], strict=True)) == expected, origin
    for row in bt.itertuples():
        assert row.actual_units == _units(flake, row.product_id, row.county_code, row.target_date), row
        weeks = math.ceil(row.horizon_days / 7)
        snaive = _units(flake, row.product_id, row.county_code, row.target_date - dt.timedelta(days=7 * weeks))
        assert row.seasonal_naive_units == snaive, row
        assert row.target_date - dt.timedelta(days=7 * weeks) <= row.origin_date
    sample = bt.drop_duplicates(["origin_date", "product_id", "county_code"]).head(200)
    for row in sample.itertuples():
        window = [_units(flake, row.product_id, row.county_code, row.origin_date - dt.timedelta(days=k))
                  for k in range(28)]
        assert row.moving_average_units == pytest.approx(sum(window) / 28), row


def _metrics(bt: pd.DataFrame, keys: list[str], flake, train_days: int) -> dict[str, float]:
    """WAPE, bias and MASE from the backtest rows and the pandas daily history, independently of Spark."""
    cols = ["actual_units", *[f"{m}_units" for m in fc.METHODS]]
    agg = bt.groupby(["origin_date", *keys, "target_date"])[cols].sum().reset_index()
    out = {}
    actual = agg["actual_units"].sum()
    for m in fc.METHODS:
        err = agg[f"{m}_units"] - agg["actual_units"]
        out[f"{m}/wape"] = err.abs().sum() / actual
        out[f"{m}/bias"] = err.sum() / actual
    # MASE: mean over series and origins of MAE / (mean |y_t - y_t-7| over the training days up to the origin)
    history = flake.daily.reset_index()
    # a level's scale sums every series the forecast step tracks: those active at any backtest origin or at as_of
    forecast = flake.table("ml/sales_forecast").select("product_id", "county_code").toPandas()
    series = pd.concat([bt[["product_id", "county_code"]], forecast]).drop_duplicates()
    history = history.merge(series, on=["product_id", "county_code"])
    first = min(bt["origin_date"]) - dt.timedelta(days=train_days + 7)
    days = pd.date_range(first, AS_OF).date
    dense = (history.groupby([*keys, "order_date"])["quantity"].sum() if keys
             else history.groupby("order_date")["quantity"].sum())
    ratios = {m: [] for m in fc.METHODS}
    groups = agg.groupby(["origin_date", *keys]) if keys else agg.groupby("origin_date")
    for gkey, g in groups:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        origin, skey = gkey[0], gkey[1:]
        ys = np.array([dense.get((*skey, d) if keys else d, 0) for d in days], dtype=float)
        train = [i for i, d in enumerate(days) if origin - dt.timedelta(days=train_days - 1) <= d <= origin]
        scale = np.mean([abs(ys[i] - ys[i - 7]) for i in train])
        if scale > 0:
            for m in fc.METHODS:
                ratios[m].append((g[f"{m}_units"] - g["actual_units"]).abs().mean() / scale)
    for m in fc.METHODS:
        out[f"{m}/mase"] = float(np.mean(ratios[m]))
    return out


@pytest.mark.parametrize("level", ["product_county", "county", "national"])
def test_backtest_metrics_match_an_independent_computation(flake, level):
    bt = flake.table("ml/forecast_backtest").toPandas()
    md = flake.metadata("ml/forecast_model")
    expected = _metrics(bt, fc.LEVELS[level], flake, md["train_days"])
    for name, value in expected.items():
        assert md[f"backtest/{level}/{name}"] == pytest.approx(value, abs=2e-6), name
    assert {f"backtest/{level}/{m}/{k}" for m in fc.METHODS for k in fc.METRICS} <= set(md)


def test_intermittent_baselines_match_pandas(flake):
    """TSB, Croston (SBA) and ADIDA of sampled series and origins, recomputed day by day from the landing files'
    daily units over the history the baselines see (from the earliest origin's first training day minus 7 days),
    as docs/forecasting.md defines them."""
    bt = flake.table("ml/forecast_backtest").toPandas()
    md = flake.metadata("ml/forecast_model")
    p = fc.ForecastParams()
    first_day = min(bt["origin_date"]) - dt.timedelta(days=md["train_days"] + 6)
    sample = bt.drop_duplicates(["origin_date", "product_id", "county_code"])
    sample = pd.concat([sample.head(100), sample.tail(100)])
    seen = 0
    for row in sample.itertuples():
        days = [first_day + dt.timedelta(days=k) for k in range((row.origin_date - first_day).days + 1)]
        ys = [_units(flake, row.product_id, row.county_code, d) for d in days]
        ages = [(row.origin_date - d).days for d in days]
        prob = (sum((1 - p.tsb_beta) ** a for a, y in zip(ages, ys, strict=True) if y > 0)
                / sum((1 - p.tsb_beta) ** a for a in ages))
        events = [(d, y) for d, y in zip(days, ys, strict=True) if y > 0]
        tsb = croston = 0.0
        if events:
            seen += 1
            intervals = [(events[0][0] - first_day).days + 1] + [
                (events[i][0] - events[i - 1][0]).days for i in range(1, len(events))]

            def smooth(values, alpha):
                weights = [(1 - alpha) ** (len(values) - 1 - i) for i in range(len(values))]  # the latest weighs 1
                return sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)

            sizes = [y for _, y in events]
            tsb = prob * smooth(sizes, p.tsb_alpha)
            croston = (1 - p.croston_alpha / 2) * smooth(sizes, p.croston_alpha) / smooth(intervals, p.croston_alpha)
        weeks = len(days) // 7
        totals = [sum(y for a, y in zip(ages, ys, strict=True) if 7 * b <= a < 7 * b + 7) for b in range(weeks)]
        weights = [p.adida_alpha * (1 - p.adida_alpha) ** b for b in range(weeks)]
        adida = sum(w * t for w, t in zip(weights, totals, strict=True)) / sum(weights) / 7
        assert row.tsb_units == pytest.approx(tsb, rel=1e-9, abs=1e-12), row
        assert row.croston_units == pytest.approx(croston, rel=1e-9, abs=1e-12), row
        assert row.adida_units == pytest.approx(adida, rel=1e-9, abs=1e-12), row
    assert seen > 100


def test_p90_is_left_out_of_its_own_origin_and_its_coverage_recorded(flake):
    """Each backtest day's P90 adds the 90th percentile of the series' errors at the other origins (numpy's
    linear interpolation, as Spark's exact percentile), and the recorded coverage is the share of days whose
    actual units stayed at or below it."""
    bt = flake.table("ml/forecast_backtest").toPandas()
    bt["err"] = bt["actual_units"] - bt["model_units"]
    errors = {key: g for key, g in bt.groupby(["product_id", "county_code"])}
    expected = []
    for row in bt.itertuples():
        g = errors[(row.product_id, row.county_code)]
        others = g.loc[g["origin_date"] != row.origin_date, "err"].to_numpy()
        q = float(np.percentile(others, 90)) if len(others) else 0.0
        expected.append(max(row.model_units, row.model_units + q))
    assert bt["model_p90_units"].to_numpy() == pytest.approx(np.array(expected), rel=1e-9, abs=1e-9)
    md = flake.metadata("ml/forecast_model")
    coverage = float(np.mean(bt["actual_units"] <= bt["model_p90_units"]))
    assert md["backtest/product_county/model/coverage_p90"] == pytest.approx(coverage, abs=2e-6)
    assert 0.5 < coverage < 1.0


def test_model_beats_seasonal_naive_and_is_saved(flake, spark):
    evaluation = flake.check("ml/forecast_backtest", "model_beats_seasonal_naive")
    assert evaluation.passed, evaluation.metadata
    md = flake.metadata("ml/forecast_model")
    assert md["backtest/product_county/model/wape"] < md["backtest/product_county/seasonal_naive/wape"]
    assert md["model_version"].startswith("20251130-")
    assert md["train_days"] == TRAIN_DAYS
    path = md["model_path"]
    assert path == f"{flake.lake}/ml/_models/sales_forecast/{md['model_version']}"
    from pyspark.ml.regression import GeneralizedLinearRegressionModel

    model = GeneralizedLinearRegressionModel.load(path)
    assert model.numFeatures == len(fc.FEATURES)
    assert model.getFamily() == "poisson" and model.getLink() == "log"
    # the coefficients in the metadata are the saved model's: the product's and the county's logged rates carry
    # most of the signal (demand is close to product rate x county share x calendar on this generator's data)
    coefficients = md["coefficients"]
    assert coefficients["intercept"] == pytest.approx(model.intercept, abs=1e-6)
    for name, value in zip(fc.FEATURES, model.coefficients, strict=True):
        assert coefficients[name] == pytest.approx(value, abs=1e-6), name
    assert coefficients["log_product_mean_91"] + coefficients["log_product_mean_28"] > 0.5, coefficients
    assert coefficients["log_county_share_91"] > 0.5, coefficients
    scored = flake.metadata("ml/sales_forecast")
    png = base64.b64decode(scored["forecast_vs_actual"].split("base64,")[1].rstrip(")"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # the forecast was scored by the champion: the version this training registered and promoted
    assert scored["model_version"] == md["model_version"] and scored["registered_version"] == md["registered_version"]
    assert set(flake.table("ml/sales_forecast").select("model_version").distinct().toPandas()["model_version"]) \
        == {md["model_version"]}


def _mlflow(flake):
    from mlflow import MlflowClient

    uri = f"sqlite:///{flake.home / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_the_training_is_an_mlflow_run_and_its_model_the_champion(flake):
    """The training step logged an MLflow run in the home's embedded store (SQLite and artifacts) with the
    parameters, the Delta versions of its inputs, every backtest metric, the coefficients and the fitted model's
    files, and registered the model; with no champion before it, the gate passed and the alias points at it."""
    md = flake.metadata("ml/forecast_model")
    client = _mlflow(flake)
    champion = client.get_model_version_by_alias("ecommerce_lake.sales_forecast", "champion")
    assert str(champion.version) == md["registered_version"] and champion.run_id == md["mlflow_run_id"]
    run = client.get_run(md["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    params, metrics = run.data.params, run.data.metrics
    assert params["train_days"] == str(TRAIN_DAYS) and params["origin_date"] == str(AS_OF)
    assert json.loads(params["spec"]) == fc.spec(fc.ForecastParams(train_days=TRAIN_DAYS))
    lake = flake.home / "lake"
    for key in ("curated/daily_sales", "refined/counties"):
        from deltalake import DeltaTable

        assert params[f"input/{key}"] == str(DeltaTable(str(lake / key)).version()), key
    for name, value in md.items():
        if name.startswith("backtest/") and not math.isnan(value):
            assert metrics[name] == pytest.approx(value, abs=1e-6), name
    for name, value in md["coefficients"].items():
        assert metrics[f"coefficient/{name}"] == pytest.approx(value, abs=1e-6), name
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"coefficients.json", "model"}
    model_files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/metadata", "model/data"} <= model_files
    assert run.data.tags["model_version"] == md["model_version"]
    gate = flake.check("ml/forecast_model", "no_worse_than_champion")
    assert gate.passed and "no champion yet" in gate.metadata["reason"].value
    assert md["promoted"] is True




def test_features_use_nothing_after_the_horizon_cutoff(flake, spark):
    """No leakage: scaling every sale after an origin T changes no feature of the days up to T + 28."""
    daily = flake.table("curated/daily_sales")
    counties = flake.table("refined/counties")
    params = fc.ForecastParams(train_days=TRAIN_DAYS)
    origin = AS_OF - dt.timedelta(days=28)
    after = F.col("order_date") > F.lit(origin)
    # every sale after T tripled, and in one county ten times: the pooled rates (product, county share, national
    # trend) would move as well as the series' own if they looked past the cutoff
    daily2 = daily.withColumn("units", F.when(after, F.col("units") * F.when(F.col("county_code") == 47, 10)
                                              .otherwise(3)).otherwise(F.col("units")))
    cols = ["product_id", "county_code", "date", *fc.FEATURES]
    window = F.col("date").between(origin + dt.timedelta(days=1), origin + dt.timedelta(days=28))
    with Held() as held:
        a = fc.build_features(daily, counties, AS_OF, params, held)
        b = fc.build_features(daily2, counties, AS_OF, params, held)
        left = a.frame.where(window).select(*cols)
        right = b.frame.where(window).select(*cols)
        assert left.count() == right.count() > 0
        assert left.exceptAll(right).count() == 0 and right.exceptAll(left).count() == 0
        # ... while the days after T + 28 do see the change (the test would notice a no-op)
        later = F.col("date") > F.lit(origin + dt.timedelta(days=28))
        assert a.frame.where(later).select(*cols).exceptAll(b.frame.where(later).select(*cols)).count() > 0


def test_zero_demand_sampling_rates_and_training_rows_match_pandas(flake):
    """The zero-demand days of every model's window, counted in one pass, against pandas over the same feature
    rows; a cap below the counts lowers each rate to cap / zeros. The recorded training rows are the rows of the
    final model's window."""
    params = fc.ForecastParams(train_days=TRAIN_DAYS)
    when = [*fc.origins(AS_OF, params), AS_OF]
    with Held() as held:
        features = fc.build_features(flake.table("curated/daily_sales"), flake.table("refined/counties"), AS_OF,
                                     params, held)
        pdf = features.frame.select("date", "units", "nonzero_share_91").toPandas()
        zeros, rows = {}, {}
        for o in when:
            window = pdf[(pdf["date"] > o - dt.timedelta(days=TRAIN_DAYS)) & (pdf["date"] <= o)]
            rows[o] = len(window)
            zeros[o] = int(((window["units"] == 0) & (window["nonzero_share_91"] > 0)).sum())
        assert min(zeros.values()) > 100
        assert fc.zero_rates(features, when, params) == {o: params.zero_sample_rate for o in when}
        cap = min(zeros.values()) // 10
        capped = fc.zero_rates(features, when, dataclasses.replace(params, max_zero_rows=cap))
    assert capped == {o: pytest.approx(cap / zeros[o]) for o in when}
    md = flake.metadata("ml/forecast_model")
    assert md["training_rows"] == rows[AS_OF] and md["series"] == features.series
    assert md["zero_demand_sample_rate"] == pytest.approx(params.zero_sample_rate)


def test_county_demand_is_the_sum_of_the_product_forecasts(flake):
    product = flake.table("ml/sales_forecast").toPandas()
    county = flake.table("ml/county_demand_forecast").toPandas().set_index(["county_code", "category", "forecast_date"])
    expected = product.groupby(["county_code", "category", "forecast_date"])["forecast_units"].sum()
    assert set(expected.index) == set(county.index)
    for key, value in expected.items():
        assert county.loc[key, "forecast_units"] == pytest.approx(value, abs=1e-9)
    assert (county["forecast_p90_units"] >= county["forecast_units"]).all()
    assert flake.check("ml/county_demand_forecast", "sums_match_product_forecasts").passed
    md = flake.metadata("ml/county_demand_forecast")
    assert {f"backtest/county_category/{m}/{k}" for m in fc.METHODS for k in fc.METRICS} <= set(md)


def test_inventory_recommendations_follow_the_formulas(flake):
    forecast = flake.table("ml/sales_forecast").toPandas()
    bt = flake.table("ml/forecast_backtest").toPandas()
    products = flake.table("refined/products").toPandas().set_index("product_id")
    rec = flake.table("ml/inventory_recommendations").toPandas().set_index(["product_id", "county_code"])
    z = 1.6448536269514722  # the 95% quantile of the standard normal
    bt["err"] = bt["actual_units"] - bt["model_units"]
    sigma = bt.groupby(["product_id", "county_code"])["err"].std(ddof=0)
    demand = forecast.groupby(["product_id", "county_code"])["forecast_units"].mean()
    category = forecast.groupby(["product_id", "county_code"])["category"].first()
    # the latest stock snapshot per product and county, read from the landing files
    lookup = oracle.county_lookup()
    snapshots = {}
    landing = oracle.read_landing(flake.landing)
    for r in landing.rows["inventory"]:
        v = r.values
        if r.malformed:
            continue
        try:
            on_hand = int(v["on_hand"])
            as_of = dt.date.fromisoformat(v["as_of"])
        except ValueError:
            continue
        code = oracle.resolve(v["county"], lookup)
        if on_hand < 0 or not code:
            continue
        key = (v["product_id"].strip(), code)
        if key not in snapshots or (as_of, r.batch, r.row) >= snapshots[key][0]:
            snapshots[key] = ((as_of, r.batch, r.row), on_hand)
    assert set(rec.index) == set(demand.index)
    ordered = 0
    for key, d in demand.items():
        row = rec.loc[key]
        lead = 3 if key[1] == 47 else 10 if category[key] == "Phones" else 7  # county:47 beats Phones
        # a series active at as_of but at no backtest origin has no backtest errors: sigma 0
        ss = z * sigma.get(key, 0.0) * math.sqrt(lead)
        rop = d * lead + ss
        cost = math.nan  # a product missing from refined.products (its rows were rejected) has no cost: no EOQ
        if key[0] in products.index:
            cost = products.loc[key[0], "unit_cost_kes"]
            cost = float(cost if cost is not None and not pd.isna(cost) else products.loc[key[0], "list_price_kes"])
        eoq = math.sqrt(2 * d * 365 * 1000 / (0.25 * cost)) if d > 0 and cost > 0 else 0.0
        q = max(math.ceil(min(eoq, 28 * d)), 1)  # at most 28 days of cover (ECOMMERCE_LAKE_MAX_COVER_DAYS)
        assert row["lead_time_days"] == lead, key
        assert row["safety_stock"] == pytest.approx(ss, rel=1e-9, abs=1e-9), key
        assert row["reorder_point"] == pytest.approx(rop, rel=1e-9, abs=1e-9), key
        assert row["eoq"] == pytest.approx(eoq, rel=1e-9, abs=1e-9), key
        assert row["order_size"] == q, key
        if key in snapshots:
            on_hand = snapshots[key][1]
            assert row["on_hand"] == on_hand, key
            s = math.ceil(rop)
            should = on_hand <= s and d > 0
            assert bool(row["order_now"]) == should, key
            expected_qty = ((s - on_hand) // q + 1) * q if should else 0
            assert row["order_quantity"] == expected_qty, key
            if should:
                assert on_hand + row["order_quantity"] > s
                ordered += 1
        else:
            assert pd.isna(row["on_hand"]) and row["order_now"] is None
    assert ordered > 0
    md = flake.metadata("ml/inventory_recommendations")
    for name in ("target_cycle_service_level", "achieved_cycle_service_level", "fill_rate"):
        assert 0 <= md[f"simulation/{name}"] <= 1
    assert md["simulation/target_cycle_service_level"] == 0.95
    # the same policy simulated with the baselines' forecasts, side by side with the model's (the model's figures
    # are the ones the check reads)
    assert md["simulation/model/cycle_service_level"] == md["simulation/achieved_cycle_service_level"]
    for method in ("model", "moving_average", "tsb"):
        assert 0 <= md[f"simulation/{method}/cycle_service_level"] <= 1
        assert md[f"simulation/{method}/average_on_hand_units"] > 0
    assert md["simulation/stock_change_vs_moving_average"] == pytest.approx(
        md["simulation/model/average_on_hand_units"] / md["simulation/moving_average/average_on_hand_units"] - 1,
        abs=1e-5)
    # the model's policy at the moving average's achieved service level: the curve starts at the configured target
    curve = md["simulation/model/service_curve"]
    assert curve[0]["target"] == 0.95
    assert curve[0]["achieved"] == pytest.approx(md["simulation/achieved_cycle_service_level"], abs=1e-5)
    equal = md["simulation/model/average_on_hand_units_at_moving_average_service_level"]
    change = md["simulation/stock_change_at_equal_service_level"]
    if math.isnan(equal):  # no tried target brackets the moving average's level on this small lake
        assert math.isnan(change)
    else:
        assert change == pytest.approx(equal / md["simulation/moving_average/average_on_hand_units"] - 1, abs=1e-5)
        achieved = sorted(p["achieved"] for p in curve[-2:])
        assert achieved[0] <= md["simulation/moving_average/cycle_service_level"] + 1e-5
        assert md["simulation/moving_average/cycle_service_level"] <= achieved[1] + 1e-5
    # the policy meets its service level on this lake (the check's bound: at most 3 points below target), and
    # the blocking check says so; the check failing on a policy that misses it is asserted below
    achieved = md["simulation/achieved_cycle_service_level"]
    assert achieved >= md["simulation/target_cycle_service_level"] - 0.03, md
    evaluation = flake.check("ml/inventory_recommendations", "simulated_service_level")
    assert evaluation.passed, evaluation.metadata


def test_service_level_check_fails_when_the_policy_misses_its_target():
    """The blocking check's bound, on simulations the step would hand it: 0.92 against a 0.95 target passes (3
    points), 0.919 and a policy that never meets demand fail, with the shortfall in points."""
    from ecommerce_lake.defs.checks import CheckContext
    from ecommerce_lake.defs.ml.checks import simulated_service_level
    from ecommerce_lake.logic.ml.inventory import SimulationResult

    def result(achieved: float):
        sim = SimulationResult(target_cycle_service_level=0.95, achieved_cycle_service_level=achieved,
                               fill_rate=0.5, cycles=100, stockout_cycles=round(100 * (1 - achieved)),
                               series_windows=10, demand_units=1000.0)
        return simulated_service_level.fn(CheckContext(context=None, lake=None, quality=None,
                                                       values={"simulation": sim}))

    assert result(0.95).passed and result(0.92).passed
    missed = result(0.919)
    assert not missed.passed and abs(missed.metadata["shortfall_points"].value - 3.1) < 1e-6
    assert not result(0.0).passed


# ---- the policy simulation on hand-worked cases ------------------------------------------------------
def _window(origin: str, actual: list[int], model: list[float], product: str = "P1") -> list[dict]:
    o = dt.date.fromisoformat(origin)
    return [{"origin_date": o, "product_id": product, "county_code": 1, "category": "Home",
             "target_date": o + dt.timedelta(days=i + 1), "actual_units": a, "model_units": m}
            for i, (a, m) in enumerate(zip(actual, model, strict=True))]


def test_simulation_by_hand():
    """Lead time 2, service level 95% (z = 1.645), unit cost 100 KES, ordering cost 1,000 KES, holding 25%/year.
    Demand rate 1/day in both windows, so Q = ceil(sqrt(2 x 365 x 1000 / 25)) = 171 without a cap on the days of
    cover (max_cover_days=0).

    Window A (actual 1,1,1,1): sigma from window B's errors (2,-1,-1,1): sqrt(1.75 - 0.25^2) = 1.299, so
    s = ceil(2 + 1.645 x 1.299 x sqrt 2) = 6; stock 6 -> order 171 on day 0, arriving day 2; no demand unmet.
    Window B (actual 3,0,0,2): sigma from window A's errors (all 0) = 0, so s = 2; stock 2 -> order on day 0;
    day 0 demand 3: 2 sold, 1 unmet -> the cycle of that order (days 0-1) is a stockout cycle.
    Cycles 2, stockouts 1 -> cycle service level 0.5; fill rate (4 + 4) / (4 + 5) = 8/9."""
    rows = _window("2025-01-01", [1, 1, 1, 1], [1.0] * 4) + _window("2025-01-05", [3, 0, 0, 2], [1.0] * 4)
    params = PolicyParams(service_level=0.95, lead_time_days=2, ordering_cost_kes=1000, holding_cost_rate=0.25,
                          max_cover_days=0)
    result = inv.simulate(pd.DataFrame(rows), {"P1": 100.0}, params)
    assert result.cycles == 2 and result.stockout_cycles == 1
    assert result.achieved_cycle_service_level == 0.5
    assert result.fill_rate == pytest.approx(8 / 9)
    assert result.series_windows == 2
    # stock at the end of each day: A 5, 4, 174 (171 arrived), 173; B 0, 0, 171, 169 -> 696 / 8 series-days
    assert result.average_on_hand_units == pytest.approx(87.0)
    # The same policy driven by another forecast column, 2/day: Q = ceil(sqrt(2 x 730 x 1000 / 25)) = 242.
    # A: sigma from B's errors (1,-2,-2,0) = 1.299, s = ceil(4 + 1.645 x 1.299 x sqrt 2) = 8: stock 7, 6, 247, 246.
    # B: sigma from A's errors (all -1) = 0, s = 4: day 0 sells 3 of 4: 1, 1, 243, 241. No stockout in 2 cycles;
    # (506 + 486) / 8 = 124 units on hand on average.
    rows2 = [{**r, "other_units": 2.0} for r in rows]
    other = inv.simulate(pd.DataFrame(rows2), {"P1": 100.0}, params, forecast="other_units")
    assert other.cycles == 2 and other.stockout_cycles == 0
    assert other.average_on_hand_units == pytest.approx(124.0)
    # The default cap, 28 days of cover: Q = min(171, 28 x 1) = 28 at 1/day. The same days and cycles with smaller
    # orders: A 5, 4, 31 (28 arrived), 30; B 0, 0, 28, 26 -> 124 / 8 = 15.5 units on hand on average.
    capped = inv.simulate(pd.DataFrame(rows), {"P1": 100.0}, dataclasses.replace(params, max_cover_days=28))
    assert (capped.cycles, capped.stockout_cycles, capped.fill_rate) == (2, 1, pytest.approx(8 / 9))
    assert capped.average_on_hand_units == pytest.approx(15.5)
    assert list(inv.order_size(np.array([171.0, 0.4, 0.0]), np.array([1.0, 1.0, 0.0]), 28)) == [28.0, 1.0, 1.0]


def test_lead_time_overrides_and_their_errors():
    params = PolicyParams(lead_time_overrides=parse_overrides("Phones=10; county:47=3; Phones@47=21"))
    assert params.lead_time("Phones", 1) == 10
    assert params.lead_time("Home", 47) == 3
    assert params.lead_time("Phones", 47) == 21
    assert params.lead_time("Home", 1) == 7
    with pytest.raises(ConfigError, match="ECOMMERCE_LAKE_LEAD_TIMES='Phones=ten'.*Phones=ten"):
        InventoryPolicyConfig.from_env({"ECOMMERCE_LAKE_LEAD_TIMES": "Phones=ten"})
    with pytest.raises(ConfigError, match="ECOMMERCE_LAKE_SERVICE_LEVEL='1.2'"):
        InventoryPolicyConfig.from_env({"ECOMMERCE_LAKE_SERVICE_LEVEL": "1.2"})
    policy = InventoryPolicyConfig.from_env({"ECOMMERCE_LAKE_LEAD_TIMES": "Phones=10", "ECOMMERCE_LAKE_SERVICE_LEVEL":
                                             "0.9", "ECOMMERCE_LAKE_LEAD_TIME_DAYS": "5"}).params()
    assert (policy.service_level, policy.lead_time("Phones", 1), policy.lead_time("Home", 1)) == (0.9, 10, 5)
    assert policy.max_cover_days == 28
    assert InventoryPolicyConfig.from_env({"ECOMMERCE_LAKE_MAX_COVER_DAYS": "0"}).params().max_cover_days == 0
    with pytest.raises(ConfigError, match="ECOMMERCE_LAKE_MAX_COVER_DAYS='-1'"):
        InventoryPolicyConfig.from_env({"ECOMMERCE_LAKE_MAX_COVER_DAYS": "-1"})


def test_forecast_defaults_agree_everywhere():
    """The Dagster resource's defaults (what an empty environment gives) and the model parameters' are the same."""
    from ecommerce_lake.defs.resources import ForecastConfig

    assert ForecastConfig().params() == ForecastConfig.from_env({}).params() == fc.ForecastParams()


def test_too_little_history_skips_the_forecast_with_a_warning(lake_run):
    """The shared lake holds 20 days: far too few for an honest backtest. The run still succeeds; the forecast
    and what depends on it are skipped, and the log says why."""
    assert lake_run.report.exit_code == 0
    for key in ("ml/forecast_model", "ml/sales_forecast", "ml/forecast_backtest", "ml/county_demand_forecast",
                "ml/inventory_recommendations"):
        assert key not in lake_run.report.materialized
    assert "ml/rfm_scores" in lake_run.report.materialized
    records = dg.DagsterInstance.get().all_logs(lake_run.report.run_id)
    messages = [r.user_message for r in records if "not forecasting" in (r.user_message or "")]
    assert messages and "an honest backtest needs at least 266 days" in messages[0], messages


def test_the_dashboard_renders_in_a_browser(flake):
    """``ecommerce-lake dashboard`` serves the page the asset wrote (linked from its materialization); in Chromium
    every chart draws (plotly's SVG), the forecast is there, and nothing fails in the page. The screenshot is kept
    with the test artifacts."""
    from playwright.sync_api import sync_playwright

    metadata = flake.metadata("insights/dashboard")
    assert metadata["report"] == (flake.lake / "insights" / "dashboard" / "latest.html").as_uri()
    assert metadata["has_forecast"] is True and metadata["month"] == "2025-11-01"  # the last complete month
    port = free_port()
    env = {**os.environ, "ECOMMERCE_LAKE_HOME": str(flake.home)}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = (ARTIFACTS / "dashboard-server.log").open("w")  # noqa: SIM115 - closed in the finally below
    server = subprocess.Popen([str(Path(sys.executable).parent / "ecommerce-lake"), "dashboard", "--port", str(port)], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: port_open(port), 60, "ecommerce-lake dashboard", server, ARTIFACTS / "dashboard-server.log")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                        args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            response = page.goto(f"http://127.0.0.1:{port}/")
            assert response.status == 200
            from ecommerce_lake.logic.insights.dashboard import CHARTS

            for chart in CHARTS:
                page.wait_for_selector(f"#chart-{chart} .main-svg", timeout=60_000)
            drawn = page.eval_on_selector_all(".js-plotly-plot", "els => els.map(e => e.data.length)")
            assert len(drawn) == len(CHARTS) and all(n >= 1 for n in drawn), drawn
            names = page.eval_on_selector("#chart-forecast_vs_actual", "e => e.data.map(t => t.name)")
            assert {"actual units", "forecast units"} <= set(names), names
            assert page.locator(".tile").count() == 6
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            browser.close()
        assert not errors, errors
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_the_registry_on_a_real_tracking_server(flake, spark, tmp_path):
    """Production's set-up: a real MLflow tracking server (the production image's version, installed by
    scripts/install into .venv-mlflow) on 127.0.0.1 with proxied artifacts. The registry resource logs the flake's
    fitted model there, registers and promotes it, and the champion's files, downloaded through the server, load
    in Spark and forecast exactly as the original."""
    from pyspark.ml.regression import GeneralizedLinearRegressionModel

    from ecommerce_lake.platform.models import ModelRegistryResource

    server = Path(__file__).resolve().parents[1] / ".venv-mlflow" / "bin" / "mlflow"
    assert server.exists(), "the MLflow tracking server is installed by scripts/install --all (.venv-mlflow)"
    port = free_port()
    log = tmp_path / "mlflow.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(server), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                                 "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                                 "--artifacts-destination", str(tmp_path / "artifacts")],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: port_open(port), 120, "the MLflow tracking server", proc=proc, log=log)
        md = flake.metadata("ml/forecast_model")
        registry = ModelRegistryResource(tracking_uri=f"http://127.0.0.1:{port}")
        run_id, version, url = registry.log_training(
            params={"spec": json.dumps(fc.spec(fc.ForecastParams(train_days=TRAIN_DAYS)), sort_keys=True)},
            inputs={"curated/daily_sales": 1}, metrics={"backtest/product_county/model/wape": 1.0},
            coefficients=md["coefficients"], model_dir=md["model_path"], tags={"model_version": md["model_version"]})
        assert url == f"http://127.0.0.1:{port}/#/experiments/1/runs/{run_id}" and version == "1"
        assert registry.champion() is None
        registry.promote(version)
        champion = registry.champion()
        assert (champion.version, champion.run_id) == ("1", run_id)
        # the files went through the server into its artifact store, not into the client's
        stored = list((tmp_path / "artifacts").rglob("model/metadata/part-00000-*.txt"))
        assert stored, sorted(str(p) for p in (tmp_path / "artifacts").rglob("*"))[:20]
        original = GeneralizedLinearRegressionModel.load(md["model_path"])
        downloaded = GeneralizedLinearRegressionModel.load(registry.local_model_dir(champion))
        assert list(downloaded.coefficients) == list(original.coefficients)
        assert downloaded.intercept == original.intercept
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_worse_candidate_is_registered_but_not_promoted(flake):
    """A second training whose model is worse (a ridge penalty that flattens every coefficient): the gate backtests
    the champion's spec on the same origins, fails, and blocks. The candidate is a registered version, not the
    champion; the backtest table and the forecast keep the champion's; the run exits non-zero."""
    client = _mlflow(flake)
    before = client.get_model_version_by_alias("ecommerce_lake.sales_forecast", "champion")
    backtest_run = flake.instance.get_latest_materialization_event(
        dg.AssetKey(["ml", "forecast_backtest"])).run_id
    env = {**os.environ, "ECOMMERCE_LAKE_HOME": str(flake.home), "DAGSTER_HOME": str(flake.home / "dagster_home"),
           "ECOMMERCE_LAKE_FORECAST_TRAIN_DAYS": str(TRAIN_DAYS), "ECOMMERCE_LAKE_FORECAST_REG_PARAM": "1000"}
    exe = Path(sys.executable).parent / "ecommerce-lake"
    proc = subprocess.run([str(exe), "run", "--select", 'key:"ml/forecast_model"+'], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "stays a candidate" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    gate = flake.check("ml/forecast_model", "no_worse_than_champion")
    assert not gate.passed
    meta = {k: getattr(v, "value", v) for k, v in gate.metadata.items()}
    key = "backtest/product_county/model/wape"
    assert meta[f"candidate/{key}"] > meta[f"champion/{key}"]
    # the champion's figures on this backtest are its own training's (same spec, same data, same origins)
    assert meta[f"champion/{key}"] == pytest.approx(client.get_run(before.run_id).data.metrics[key], abs=1e-4)
    after = client.get_model_version_by_alias("ecommerce_lake.sales_forecast", "champion")
    assert after.version == before.version
    newest = max(int(v.version) for v in client.search_model_versions("name='ecommerce_lake.sales_forecast'"))
    assert newest == int(before.version) + 1 and meta["candidate_version"] == str(newest)
    assert flake.instance.get_latest_materialization_event(
        dg.AssetKey(["ml", "forecast_backtest"])).run_id == backtest_run


_CHECKS_ONLY = """
import sys
import dagster as dg
from ecommerce_lake.definitions import build_defs
from ecommerce_lake.settings import Settings

keys = [dg.AssetCheckKey(dg.AssetKey(["ml", "forecast_model"]), "no_worse_than_champion"),
        dg.AssetCheckKey(dg.AssetKey(["ml", "forecast_backtest"]), "model_beats_seasonal_naive")]
defs = build_defs(Settings.from_env())
defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[dg.define_asset_job("checks_only",
                                                                          selection=dg.AssetSelection.checks(*keys))]))
result = defs.resolve_job_def("checks_only").execute_in_process(instance=dg.DagsterInstance.get(),
                                                                 raise_on_error=False)
for e in result.get_asset_check_evaluations():
    print("CHECK", e.asset_check_key.to_user_string(), e.passed)
print("MATERIALIZED", len(result.get_asset_materialization_events()))
print("SUCCESS", result.success)
sys.exit(0)
"""


def test_the_gate_alone_is_a_clear_error_and_the_other_checks_still_run(flake):
    """A run of the training's checks without a training (the UI's "Execute checks" on ml/forecast_model): the
    backtest's checks are evaluated on the table as it is, nothing is trained or written, and the gate, which
    only means something for a new candidate, fails the step with a message that says what to run instead."""
    client = _mlflow(flake)
    versions = len(client.search_model_versions("name='ecommerce_lake.sales_forecast'"))
    env = {**os.environ, "ECOMMERCE_LAKE_HOME": str(flake.home), "DAGSTER_HOME": str(flake.home / "dagster_home"),
           "ECOMMERCE_LAKE_FORECAST_TRAIN_DAYS": str(TRAIN_DAYS)}
    proc = subprocess.run([sys.executable, "-c", _CHECKS_ONLY], env=env, capture_output=True, text=True,
                          timeout=900, cwd=Path(__file__).resolve().parents[1])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "CHECK ml/forecast_backtest:model_beats_seasonal_naive True" in out, out[-4000:]
    assert "MATERIALIZED 0" in out and "SUCCESS False" in out, out[-4000:]
    assert "no_worse_than_champion judges a training's candidate against the champion" in out, out[-4000:]
    assert "materialize ml/forecast_model" in out, out[-4000:]
    assert len(client.search_model_versions("name='ecommerce_lake.sales_forecast'")) == versions


def test_stock_at_an_equal_service_level_interpolates_between_bracketing_targets():
    """Synthetic windows (Poisson demand around known rates, a noisy forecast): the stock the policy holds at a
    given achieved service level lies on the straight line between the two simulations whose achieved levels
    bracket it, each of them run here through the plain simulation; a level no target reaches gives None."""
    rng = np.random.default_rng(3)
    rows = []
    for s in range(60):
        rate = rng.uniform(0.05, 3.0)
        for w in range(3):
            start = dt.date(2025, 1, 1) + dt.timedelta(days=28 * w)
            noisy = rate * rng.uniform(0.6, 1.4)
            rows += _window(start.isoformat(), list(rng.poisson(rate, 28)), [noisy] * 28, product=f"P{s}")
    bt = pd.DataFrame(rows)
    cost = {f"P{s}": 500.0 for s in range(60)}
    params = PolicyParams(service_level=0.95, lead_time_days=3)
    at_target = inv.simulate(bt, cost, params)
    level = at_target.achieved_cycle_service_level - 0.02
    stock, points = inv.stock_at_service_level(bt, cost, params, "model_units", level, known=at_target)
    assert stock is not None and len(points) >= 2 and points[0][0] == 0.95
    (t1, _, _), (t2, _, _) = points[-2], points[-1]
    a = inv.simulate(bt, cost, dataclasses.replace(params, service_level=t1))
    b = inv.simulate(bt, cost, dataclasses.replace(params, service_level=t2))
    lo, hi = sorted([a, b], key=lambda r: r.achieved_cycle_service_level)
    assert lo.achieved_cycle_service_level <= level <= hi.achieved_cycle_service_level
    expected = lo.average_on_hand_units + (hi.average_on_hand_units - lo.average_on_hand_units) * (
        (level - lo.achieved_cycle_service_level) / (hi.achieved_cycle_service_level - lo.achieved_cycle_service_level))
    assert stock == pytest.approx(expected)
    assert inv.stock_at_service_level(bt, cost, params, "model_units", 1.5, known=at_target)[0] is None
