"""Demand forecasting for every product x county series: features in Spark, one global count model (Spark ML
Poisson regression with a log link), rolling-origin backtests against five baselines (seasonal naive, moving
average, and the intermittent-demand methods TSB, Croston and ADIDA), P90 from backtest residuals, bottom-up county
x category demand.

Direct forecasting without leakage: every feature of a target day ``d`` is either known in advance (calendar,
county attributes, product category) or computed from data up to ``d - horizon`` (lags of at least the
horizon), so the same feature table serves every forecast origin and every horizon from 1 to 28 days.
Plain DataFrame functions; the Dagster assets in ``ecommerce_lake.defs.ml.forecasting`` only wire them.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ecommerce_lake.logic.frames import Held
from ecommerce_lake.schemas.spark import conform
from ecommerce_lake.schemas import ml as schemas

log = logging.getLogger(__name__)

SERIES = ["product_id", "county_code"]
# Metric levels: product_county is what the model forecasts; the others are bottom-up sums of it.
LEVELS = {"product_county": SERIES, "county_category": ["county_code", "category"], "county": ["county_code"],
          "national": []}
BASELINES = ("seasonal_naive", "moving_average", "tsb", "croston", "adida")
METHODS = ("model", *BASELINES)
METRICS = ("wape", "mase", "bias")


@dataclass(frozen=True)
class ForecastParams:
    horizon: int = 28
    active_days: int = 90  # a series is forecast when it sold within this many days before the origin
    origins: int = 3  # rolling backtest origins, one horizon apart, the last one a horizon before as_of
    train_days: int = 365  # target days each model is trained on (ending at its origin)
    zero_sample_rate: float = 0.25  # share of zero-demand training rows kept (the kept ones weigh 1/rate)
    max_zero_rows: int = 200_000  # at most this many zero-demand rows per model (lower rate on big data)
    # the Poisson regression's iteratively reweighted least squares: iterations at most, and a small ridge
    # penalty that keeps the fit defined when a calendar flag never occurs in a training window
    max_iter: int = 25
    reg_param: float = 1e-4
    seed: int = 42
    # the intermittent-demand baselines' smoothing constants (docs/forecasting.md)
    tsb_alpha: float = 0.1  # TSB: demand size
    tsb_beta: float = 0.1  # TSB: probability of a sale on a day
    croston_alpha: float = 0.1  # Croston (SBA): demand size and interval
    adida_alpha: float = 0.2  # ADIDA: simple exponential smoothing of weekly totals

    @property
    def history_needed(self) -> int:
        """Days of history before the training windows: the features' look-back, the backtest origins and the
        7 days the MASE scale looks back."""
        return self.lookback + self.origins * self.horizon + 7

    @property
    def lookback(self) -> int:
        """Days of history a target day's features reach back: lag ``horizon`` plus a 91-day window."""
        return self.horizon + 91


MIN_TRAIN_DAYS = 56


def fit_to_history(p: ForecastParams, first_day: dt.date, as_of: dt.date) -> ForecastParams | None:
    """The parameters with the training window shortened to the history there is (never below
    MIN_TRAIN_DAYS); None when the history is too short to forecast honestly."""
    import dataclasses

    available = (as_of - first_day).days + 1
    train_days = min(p.train_days, available - p.history_needed)
    if train_days < MIN_TRAIN_DAYS:
        return None
    return dataclasses.replace(p, train_days=train_days)


# The model's inputs. Demand here is close to multiplicative: a product's national rate x its county's share of all
# sales x the day's calendar effect, so the count model takes logs of the pooled rates (a product's rate across
# every county, a county's share of every product) beside the series' own rates: a sparse series borrows the
# product's and the county's strength instead of forecasting from its own few sales.
LOG_RATES = ("product_mean_91", "product_mean_28", "county_share_91", "mean_91", "mean_28", "national_trend")
CALENDAR = ("payday_window", "public_holiday", "holiday_eve", "black_friday", "black_friday_week",
            "christmas_run_up", "new_year_lull")
FEATURES = (
    *[f"log_{c}" for c in LOG_RATES],
    "nonzero_share_91",
    # day of week as indicators (Monday is the reference), then the calendar flags of the target day
    *[f"dow_{k}" for k in range(2, 8)], *CALENDAR,
)
# floors under the logged rates (units per day; a share; a ratio), so a zero rate has a finite log
LOG_FLOOR = {"product_mean_91": 0.01, "product_mean_28": 0.01, "county_share_91": 1e-4, "mean_91": 0.01,
             "mean_28": 0.01, "national_trend": 0.01}


# ---- calendar ------------------------------------------------------------------------------------------
def calendar(spark, start: dt.date, end: dt.date) -> DataFrame:
    """One row per day in [start, end] with the calendar features (Kenyan public holidays from ``holidays``)."""
    import holidays

    years = list(range(start.year, end.year + 1))
    ke = holidays.Kenya(years=years)
    black_fridays = {}
    for y in years:
        nov = [dt.date(y, 11, d) for d in range(1, 31)]
        black_fridays[y] = [d for d in nov if d.weekday() == 4][3]
    rows = []
    day = start
    while day <= end:
        nxt = day + dt.timedelta(days=1)
        month_end = (dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1) - dt.timedelta(days=1))
        bf = black_fridays[day.year]
        rows.append((
            day, day.isoweekday(), day.day, day.month, int(day.day >= 25 or day.day <= 2), (month_end - day).days,
            int(day in ke), int(nxt in ke), int(day == bf), int(-2 <= (day - bf).days <= 3),
            int(day.month == 12 and 10 <= day.day <= 24), int(day.month == 1 and 2 <= day.day <= 12),
        ))
        day = nxt
    schema = ("date date, day_of_week int, day_of_month int, month int, payday_window int, days_to_month_end int, "
              "public_holiday int, holiday_eve int, black_friday int, black_friday_week int, christmas_run_up int, "
              "new_year_lull int")
    return spark.createDataFrame(rows, schema)


# ---- series and features --------------------------------------------------------------------------------
def active_series(daily: DataFrame, days: list[dt.date], active_days: int) -> DataFrame:
    """Per day of ``days`` (the backtest origins and the forecast origin): the product x known-county series that
    sold in the ``active_days`` days up to it, one row per series and day (column ``active_on``)."""
    parts = [daily.where((F.col("county_code") != 0)
                         & F.col("order_date").between(day - dt.timedelta(days=active_days - 1), day))
             .select(*SERIES, F.lit(day).alias("active_on")).distinct() for day in days]
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def _with_category(daily: DataFrame, series: DataFrame, as_of: dt.date) -> DataFrame:
    """The series with their product's latest category."""
    category = daily.where(F.col("order_date") <= as_of).groupBy("product_id").agg(
        F.max_by("category", "order_date").alias("category"))
    return series.join(category, "product_id")


def _running(col: Column, w: Window) -> Column:
    """Running sum of ``col`` up to the current row (a frame Spark extends one row at a time)."""
    return F.sum(col).over(w.rowsBetween(Window.unboundedPreceding, Window.currentRow))


def _span(running: str, w: Window, lo: int, hi: int) -> Column:
    """Sum over the rows ``hi`` .. ``lo`` back (inclusive) from a running-sum column: two lags, O(1) per row.
    A sliding frame (``rowsBetween(-hi, -lo)``) re-aggregates its whole frame at every row: 91 additions per
    row for a 91-day window, which made the forecast features cost minutes. Null when the span lies before
    the series' first row, a partial sum when it starts before it (as the sliding frame)."""
    return F.lag(running, lo).over(w) - F.coalesce(F.lag(running, hi + 1).over(w), F.lit(0.0))


@dataclass
class FeatureTable:
    frame: DataFrame  # series x day, with the features, ``units`` (null after as_of) and ``w`` (sampling weight)
    first_day: dt.date
    as_of: dt.date
    series: int
    rows: int  # rows of ``frame`` (series x days)
    active: DataFrame | None = None  # per origin (``active_on``), the series active at it


def build_features(daily: DataFrame, counties: DataFrame, as_of: dt.date, p: ForecastParams,
                   held: Held) -> FeatureTable:
    """Dense series x day grid from the earliest training day any origin needs (minus the look-back) to
    ``as_of + horizon``, with every feature, kept in ``held``."""
    earliest_origin = as_of - dt.timedelta(days=p.origins * p.horizon)
    # 7 extra days before the earliest training day: the MASE scale needs y[t-7] on every training day
    first = earliest_origin - dt.timedelta(days=p.train_days + p.lookback + 7 - 1)
    last = as_of + dt.timedelta(days=p.horizon)
    # the series of every origin: a backtest origin forecasts the series active at that origin, not those active
    # at as_of (chosen for having sold in the very windows the backtest forecasts, which biases every method low)
    active = held(active_series(daily, [*origins(as_of, p), as_of], p.active_days))
    with Held() as scratch:  # the series, until the feature table is computed and kept
        series = scratch(_with_category(daily, active.select(*SERIES).distinct(), as_of))
        table = _features(daily, counties, as_of, p, held, series, first, last)
    table.active = active
    return table


def _features(daily: DataFrame, counties: DataFrame, as_of: dt.date, p: ForecastParams,
              held: Held, series: DataFrame, first: dt.date, last: dt.date) -> FeatureTable:
    spark = daily.sparkSession
    n_series = series.count()
    days = spark.range((last - first).days + 1).select(F.date_add(F.lit(first), F.col("id").cast("int")).alias("date"))
    window = F.col("order_date").between(first, as_of)
    sales = (daily.where(window & (F.col("county_code") != 0))
             .groupBy(*SERIES, F.col("order_date").alias("date"))
             .agg(F.sum("units").alias("units_sold")))
    known = F.col("date") <= F.lit(as_of)
    grid = (series.crossJoin(F.broadcast(days))
            .join(sales, [*SERIES, "date"], "left")
            .select(*SERIES, "category", "date",
                    F.when(known, F.coalesce("units_sold", F.lit(0))).alias("units")))
    h = p.horizon
    w = Window.partitionBy(*SERIES).orderBy("date")
    u = F.col("units").cast("double")
    # Rolling sums from running sums (the grid is dense: one row per series and day, so rows back = days back).
    # Units after as_of are null (the running sum stays flat); every span ends at least h days back, so a
    # span never reaches past as_of for the days the grid holds.
    running = grid.select(
        "*",
        _running(u, w).alias("__r_units"),
        _running((u > 0).cast("double"), w).alias("__r_nonzero"),
    )
    feats = running.select(
        *grid.columns,
        *[F.lag(u, k).over(w).alias(f"lag_{k}") for k in (7, 14, 21, 28)],
        (_span("__r_units", w, h, h + 27) / 28).alias("mean_28"),
        (_span("__r_units", w, h, h + 90) / 91).alias("mean_91"),
        (_span("__r_nonzero", w, h, h + 90) / 91).alias("nonzero_share_91"),
    )
    # pooled rates, each on a small dense grid (product x day, county x day, day) from the sparse sales and
    # broadcast into the join, so the wide series rows are neither computed twice nor shuffled:
    # - the product's demand across its active series (a sparse series borrows strength from its product);
    # - the county's share of every known-county sale, and the national 28-day rate against the 91-day one (the
    #   level's drift), both from every sale, not only the active series'
    pw = Window.partitionBy("product_id").orderBy("date")
    product_sales = (sales.join(series.select(*SERIES), SERIES, "left_semi")
                     .groupBy("product_id", "date").agg(F.sum("units_sold").alias("__pu")))
    product = (series.select("product_id").distinct().crossJoin(F.broadcast(days))
               .join(product_sales, ["product_id", "date"], "left")
               .select("product_id", "date",
                       F.when(known, F.coalesce("__pu", F.lit(0))).cast("double").alias("pu"))
               .select("product_id", "date", _running(F.col("pu"), pw).alias("__r_pu"))
               .select("product_id", "date",
                       (_span("__r_pu", pw, h, h + 27) / 28).alias("product_mean_28"),
                       (_span("__r_pu", pw, h, h + 90) / 91).alias("product_mean_91")))
    county_sales = sales.groupBy("county_code", "date").agg(F.sum("units_sold").alias("__cu"))
    cw = Window.partitionBy("county_code").orderBy("date")
    county = (county_sales.select("county_code").distinct().crossJoin(F.broadcast(days))
              .join(county_sales, ["county_code", "date"], "left")
              .select("county_code", "date",
                      F.when(known, F.coalesce("__cu", F.lit(0))).cast("double").alias("cu"))
              .select("county_code", "date", _running(F.col("cu"), cw).alias("__r_cu"))
              .select("county_code", "date", _span("__r_cu", cw, h, h + 90).alias("__county_91")))
    # the national totals: one row per day, a single window partition of a few hundred rows
    nw = Window.partitionBy(F.lit(1)).orderBy("date")
    national = (days.join(county_sales.groupBy("date").agg(F.sum("__cu").alias("__nu")), "date", "left")
                .select("date", F.when(known, F.coalesce("__nu", F.lit(0))).cast("double").alias("nu"))
                .select("date", _running(F.col("nu"), nw).alias("__r_nu"))
                .select("date", _span("__r_nu", nw, h, h + 90).alias("__national_91"),
                        F.try_divide(_span("__r_nu", nw, h, h + 27) / 28, _span("__r_nu", nw, h, h + 90) / 91)
                        .alias("national_trend")))
    pooled = (county.join(F.broadcast(national), "date")
              .select("county_code", "date", "national_trend",
                      F.try_divide(F.col("__county_91"), F.col("__national_91")).alias("county_share_91")))
    cal = calendar(spark, first, last)
    frame = (feats.join(F.broadcast(product), ["product_id", "date"])
             .join(F.broadcast(pooled), ["county_code", "date"], "left")
             .join(F.broadcast(cal), "date")
             .where(F.col("date") >= F.lit(first + dt.timedelta(days=p.lookback))))
    logs = [F.log(F.greatest(F.coalesce(F.col(c), F.lit(0.0)), F.lit(LOG_FLOOR[c]))).alias(f"log_{c}")
            for c in LOG_RATES]
    weekdays = [(F.col("day_of_week") == k).cast("double").alias(f"dow_{k}") for k in range(2, 8)]
    frame = frame.select("*", *logs, *weekdays)
    frame = held(frame)
    rows = frame.count()  # computed (and kept) now, while the active series are still kept
    return FeatureTable(frame, first + dt.timedelta(days=p.lookback), as_of, n_series, rows)


# ---- model ----------------------------------------------------------------------------------------------
def _assemble(df: DataFrame) -> DataFrame:
    from pyspark.ml.feature import VectorAssembler

    return VectorAssembler(inputCols=list(FEATURES), outputCol="features", handleInvalid="keep").transform(df)


def dormant() -> Column:
    """A target day whose series sold nothing in its look-back window (days d-118..d-28): the features carry
    no demand signal of the series, and the forecast is zero (a hurdle rule, not a model output)."""
    return F.col("nonzero_share_91") <= 0


def zero_rates(features: FeatureTable, when: list[dt.date], p: ForecastParams) -> dict[dt.date, float]:
    """Per training origin: the sampling rate of its zero-demand training rows, ``zero_sample_rate`` lowered so
    that at most ``max_zero_rows`` of them are kept (training time stays bounded as the data grows). All
    origins' counts in one pass over the feature table."""
    zero = (F.col("units") == 0) & ~dormant()
    windows = {o: F.col("date").between(o - dt.timedelta(days=p.train_days - 1), o) for o in when}
    row = features.frame.agg(*[F.count(F.when(c & zero, 1)).alias(f"z{i}") for i, c in enumerate(windows.values())]
                             ).collect()[0]
    return {o: min(p.zero_sample_rate, p.max_zero_rows / row[f"z{i}"]) if row[f"z{i}"] else p.zero_sample_rate
            for i, o in enumerate(windows)}


def zero_rate(features: FeatureTable, origin: dt.date, p: ForecastParams) -> float:
    """The sampling rate of one origin's zero-demand training rows (see ``zero_rates``)."""
    return zero_rates(features, [origin], p)[origin]


def fit_model(features: FeatureTable, origin: dt.date, p: ForecastParams, rate: float | None = None):
    """A Poisson regression with a log link (Spark ML ``GeneralizedLinearRegression``) trained on the target days
    (origin - train_days, origin] that are not dormant; zero-demand days are sampled at ``rate`` and weigh
    1/rate. A count model: its forecast is the expected number of units, and with an intercept and the canonical
    link its forecasts sum to the training units (no level bias)."""
    from pyspark.ml.regression import GeneralizedLinearRegression

    rate = zero_rate(features, origin, p) if rate is None else rate
    start = origin - dt.timedelta(days=p.train_days - 1)
    rows = features.frame.where(F.col("date").between(start, origin) & F.col("units").isNotNull() & ~dormant())
    keep = (F.col("units") > 0) | (F.rand(p.seed) < rate)
    train = _assemble(rows.where(keep).withColumn(
        "w", F.when(F.col("units") > 0, F.lit(1.0)).otherwise(F.lit(1.0 / rate))))
    glm = GeneralizedLinearRegression(featuresCol="features", labelCol="units", weightCol="w", family="poisson",
                                      link="log", maxIter=p.max_iter, regParam=p.reg_param, tol=1e-6)
    return glm.fit(train)


def coefficients(model) -> dict[str, float]:
    """The fitted model's intercept and coefficient per feature (the model's own account of what drives it)."""
    return {"intercept": float(model.intercept),
            **{name: float(c) for name, c in zip(FEATURES, model.coefficients, strict=True)}}


def active_at(features: FeatureTable, origin: dt.date, p: ForecastParams) -> DataFrame:
    """The series that sold in the ``active_days`` days up to ``origin``: those an origin forecasts."""
    return features.active.where(F.col("active_on") == F.lit(origin)).select(*SERIES)


def predict(model, features: FeatureTable, origin: dt.date, p: ForecastParams) -> DataFrame:
    """Point forecasts for the target days (origin, origin + horizon] of the series active at ``origin``."""
    end = origin + dt.timedelta(days=p.horizon)
    rows = (features.frame.where((F.col("date") > F.lit(origin)) & (F.col("date") <= F.lit(end)))
            .join(active_at(features, origin, p), SERIES, "left_semi"))
    scored = model.transform(_assemble(rows))
    return scored.select(
        *SERIES, "category", "date", F.datediff("date", F.lit(origin)).alias("horizon_days"),
        F.when(dormant(), F.lit(0.0)).otherwise(F.col("prediction")).alias("model_units"),
        "units",
        *[F.col(f"lag_{k}") for k in (7, 14, 21, 28)],
    )


# ---- backtest ----------------------------------------------------------------------------------------------
def origins(as_of: dt.date, p: ForecastParams) -> list[dt.date]:
    return [as_of - dt.timedelta(days=p.horizon * k) for k in range(p.origins, 0, -1)]


def _baselines(predicted: DataFrame, features: FeatureTable, origin: dt.date, p: ForecastParams) -> DataFrame:
    """Every baseline of one origin beside the model's forecasts: seasonal naive (the same weekday in the last week
    before the origin), the 28-day moving average, and the intermittent-demand methods (``intermittent``)."""
    ma = (features.frame.where(F.col("date").between(origin - dt.timedelta(days=27), origin))
          .groupBy(*SERIES).agg(F.avg(F.col("units").cast("double")).alias("moving_average_units")))
    weeks_back = F.ceil(F.col("horizon_days") / 7)
    snaive = (F.when(weeks_back == 1, F.col("lag_7")).when(weeks_back == 2, F.col("lag_14"))
              .when(weeks_back == 3, F.col("lag_21")).otherwise(F.col("lag_28")))
    flat = intermittent(features.frame, features.first_day, origin, p)
    return (predicted.withColumn("seasonal_naive_units", snaive.cast("double")).join(ma, SERIES)
            .join(flat, SERIES, "left").fillna(0.0, subset=["tsb_units", "croston_units", "adida_units"]))


def intermittent(frame: DataFrame, first_day: dt.date, origin: dt.date, p: ForecastParams) -> DataFrame:
    """The intermittent-demand baselines of each series at ``origin``, from its daily units from ``first_day`` to
    the origin (each a flat forecast for every day of the horizon), in closed form: exponential smoothing is a
    weighted sum with weights a(1-a)^k, normalised over the history there is.

    * **TSB** (Teunter, Syntetos and Babai, 2011): the probability of a sale on a day, smoothed over every day
      (``tsb_beta``), times the size of a sale, smoothed over the days with sales (``tsb_alpha``);
    * **Croston** with the Syntetos-Boylan correction (SBA): the smoothed size over the smoothed interval between
      sales (both ``croston_alpha``, over the days with sales), times 1 - alpha/2; the first sale's interval counts
      from ``first_day``;
    * **ADIDA** (Nikolopoulos et al., 2011): the units summed into whole weeks back from the origin, smoothed
      (``adida_alpha``), spread evenly over the week's days."""
    hist = (frame.where(F.col("date").between(first_day, origin))
            .select(*SERIES, "date", F.col("units").cast("double").alias("y"),
                    F.datediff(F.lit(origin), F.col("date")).alias("age")))
    weeks = ((origin - first_day).days + 1) // 7
    adida_norm = sum(p.adida_alpha * (1 - p.adida_alpha) ** b for b in range(weeks))
    week = F.floor(F.col("age") / 7)
    daily = hist.groupBy(*SERIES).agg(
        F.try_divide(F.sum(F.when(F.col("y") > 0, F.pow(F.lit(1 - p.tsb_beta), F.col("age")))),
                     F.sum(F.pow(F.lit(1 - p.tsb_beta), F.col("age")))).alias("__p"),
        (F.sum(F.when(week < weeks, F.pow(F.lit(1 - p.adida_alpha), week) * F.col("y")))
         * F.lit(p.adida_alpha / adida_norm / 7 if adida_norm else 0.0)).alias("adida_units"))
    w = Window.partitionBy(*SERIES).orderBy("date")
    latest_first = Window.partitionBy(*SERIES).orderBy(F.col("date").desc())
    events = (hist.where(F.col("y") > 0)
              .select(*SERIES, "y",
                      (F.row_number().over(latest_first) - 1).alias("__rank"),
                      F.coalesce(F.datediff(F.col("date"), F.lag("date").over(w)),
                                 F.datediff(F.col("date"), F.lit(first_day)) + 1).cast("double").alias("__q")))

    def smoothed(value: str, alpha: float) -> Column:
        weight = F.pow(F.lit(1 - alpha), F.col("__rank"))
        return F.sum(weight * F.col(value)) / F.sum(weight)

    sizes = events.groupBy(*SERIES).agg(smoothed("y", p.tsb_alpha).alias("__z_tsb"),
                                        smoothed("y", p.croston_alpha).alias("__z"),
                                        smoothed("__q", p.croston_alpha).alias("__i"))
    return daily.join(sizes, SERIES, "left").select(
        *SERIES,
        (F.col("__p") * F.col("__z_tsb")).alias("tsb_units"),
        (F.lit(1 - p.croston_alpha / 2) * F.col("__z") / F.col("__i")).alias("croston_units"),
        "adida_units")


def p90_left_out(rows: DataFrame, when: list[dt.date]) -> DataFrame:
    """The backtest rows with ``model_p90_units``: the forecast plus the 90th percentile of the series' errors
    (actual - model) at the *other* origins (never below the forecast), so its coverage is measured on days the
    quantile did not see, as the final forecast's P90 is."""
    err = F.col("actual_units") - F.col("model_units")
    left_out = rows.groupBy(*SERIES).agg(*[
        F.percentile(F.when(F.col("origin_date") != F.lit(o), err), 0.9).alias(f"__q{i}") for i, o in enumerate(when)])
    q = F.lit(None).cast("double")
    for i, o in enumerate(when):
        q = F.when(F.col("origin_date") == F.lit(o), F.col(f"__q{i}")).otherwise(q)
    return (rows.join(left_out, SERIES, "left")
            .withColumn("model_p90_units", F.greatest(F.col("model_units"),
                                                      F.col("model_units") + F.coalesce(q, F.lit(0.0))))
            .drop(*[f"__q{i}" for i in range(len(when))]))


def backtest(features: FeatureTable, p: ForecastParams, held: Held,
             progress: Callable[[str], None] = log.info,
             rates: dict[dt.date, float] | None = None) -> tuple[DataFrame, dict[str, float]]:
    """Retrain at every rolling origin and forecast its next ``horizon`` days; the rows carry the actuals and
    both baselines (``rates``: the origins' zero-demand sampling rates, when already counted). Returns the rows
    (persisted) and the seconds each phase took."""
    parts, seconds = [], {}
    for origin in origins(features.as_of, p):
        started = time.monotonic()
        rate = rates[origin] if rates and origin in rates else zero_rate(features, origin, p)
        model = fit_model(features, origin, p, rate)
        seconds[f"train_{origin}"] = time.monotonic() - started
        progress(f"backtest origin {origin}: model trained in {seconds[f'train_{origin}']:.1f} s "
                 f"(zero-demand days sampled at {rate:.3f})")
        part = _baselines(predict(model, features, origin, p), features, origin, p)
        parts.append(part.select(
            F.lit(origin).alias("origin_date"), *SERIES, "category", F.col("date").alias("target_date"),
            "horizon_days", F.col("units").alias("actual_units"), *[f"{m}_units" for m in METHODS]))
    rows = parts[0]
    for part in parts[1:]:
        rows = rows.unionByName(part)
    rows = p90_left_out(rows, origins(features.as_of, p))
    return held(conform(rows, schemas.forecast_backtest)), seconds


def _mase_window(features: FeatureTable, p: ForecastParams,
                 keys: tuple[str, ...] = ()) -> tuple[list[tuple[dt.date, dt.date]], DataFrame]:
    """The training windows of the origins, and the feature rows they span: series, category, ``keys``, day,
    units (y) and units seven days back (y7)."""
    spans = [(o - dt.timedelta(days=p.train_days - 1), o) for o in origins(features.as_of, p)]
    lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
    return spans, features.frame.where(F.col("date").between(lo, hi) & F.col("units").isNotNull()).select(
        *dict.fromkeys([*SERIES, "category", *keys]), "date", F.col("units").cast("double").alias("y"),
        F.col("lag_7").alias("y7"))


def level_days(features: FeatureTable, p: ForecastParams, held: Held) -> DataFrame:
    """y and y7 per county x category x day over the origins' training windows, kept in ``held``: every level
    above the series sums these few rows instead of scanning the feature table again."""
    _, slim = _mase_window(features, p)
    return held(slim.groupBy("county_code", "category", "date").agg(F.sum("y").alias("y"), F.sum("y7").alias("y7")))


def _mase_scales(features: FeatureTable, keys: list[str], p: ForecastParams,
                 by_county_category: DataFrame | None = None) -> DataFrame:
    """Per series of a level and origin: the mean absolute seasonal (lag-7) difference over the training days
    before the origin, the MASE denominator.

    One pass over the feature table: the grid is dense (every series on every day), so a level's value seven
    days back is the sum of its series' ``lag_7`` column, and every origin's window is a conditional mean of
    the same aggregation. A level above the series sums ``by_county_category`` (``level_days``) when given:
    every such level (county x category, county, national) is a sum of county x category days."""
    spans, slim = _mase_window(features, p, tuple(keys))
    if keys != SERIES:  # a level above the series: sum its series first
        above = by_county_category is not None and set(keys) <= {"county_code", "category"}
        source = by_county_category if above else slim
        slim = source.groupBy(*keys, "date").agg(F.sum("y").alias("y"), F.sum("y7").alias("y7"))
    d = F.abs(F.col("y") - F.col("y7"))
    per_origin = slim.groupBy(*keys).agg(*[
        F.avg(F.when(F.col("date").between(s, e), d)).alias(f"__scale_{i}") for i, (s, e) in enumerate(spans)])
    entries = F.array(*[F.struct(F.lit(e).alias("origin_date"), F.col(f"__scale_{i}").alias("scale"))
                        for i, (_, e) in enumerate(spans)])
    return per_origin.select(*keys, F.explode(entries).alias("__o")).select(*keys, "__o.origin_date", "__o.scale")


def level_metrics(rows: DataFrame, features: FeatureTable, p: ForecastParams, level: str,
                  keys: list[str] | None = None, by_county_category: DataFrame | None = None) -> dict[str, float]:
    """WAPE, MASE and bias of the model and both baselines at one level of aggregation, over every origin
    (``by_county_category``: ``level_days``, to spare the levels above the series a feature-table scan)."""
    keys = LEVELS[level] if keys is None else keys
    cols = {"actual": "actual_units", **{m: f"{m}_units" for m in METHODS}}
    agg = rows.groupBy("origin_date", *keys, "target_date").agg(
        *[F.sum(c).cast("double").alias(n) for n, c in cols.items()])
    per_series = agg.groupBy("origin_date", *keys).agg(
        F.sum("actual").alias("actual"), F.count(F.lit(1)).alias("n"),
        *[F.sum(F.abs(F.col(m) - F.col("actual"))).alias(f"abs_{m}") for m in METHODS],
        *[F.sum(F.col(m) - F.col("actual")).alias(f"err_{m}") for m in METHODS])
    scaled = per_series.join(_mase_scales(features, keys, p, by_county_category), ["origin_date", *keys], "left")
    positive = F.col("scale") > 0
    row = scaled.agg(
        F.sum("actual").alias("actual"),
        *[F.sum(f"abs_{m}").alias(f"abs_{m}") for m in METHODS],
        *[F.sum(f"err_{m}").alias(f"err_{m}") for m in METHODS],
        *[F.avg(F.when(positive, F.try_divide(F.col(f"abs_{m}") / F.col("n"), F.col("scale")))).alias(f"mase_{m}")
          for m in METHODS],
    ).collect()[0]
    actual = row["actual"] or 0.0
    out = {}
    for m in METHODS:
        out[f"backtest/{level}/{m}/wape"] = row[f"abs_{m}"] / actual if actual else math.nan
        out[f"backtest/{level}/{m}/mase"] = float(row[f"mase_{m}"]) if row[f"mase_{m}"] is not None else math.nan
        out[f"backtest/{level}/{m}/bias"] = row[f"err_{m}"] / actual if actual else math.nan
    return out


def residual_quantiles(rows: DataFrame, keys: list[str], q: float = 0.9) -> DataFrame:
    """Per series: the ``q`` quantile of the backtest errors (actual - model) and their standard deviation."""
    agg = rows.groupBy("origin_date", *keys, "target_date").agg(
        F.sum("actual_units").cast("double").alias("a"), F.sum("model_units").alias("f"))
    return agg.groupBy(*keys).agg(
        F.percentile(F.col("a") - F.col("f"), q).alias("residual_q"),
        F.stddev_pop(F.col("a") - F.col("f")).alias("sigma_error"),
        F.count(F.lit(1)).alias("residual_days"))


# ---- training and scoring ----------------------------------------------------------------------------------
MODEL_CLASS = "pyspark.ml.regression.GeneralizedLinearRegressionModel"


def spec(p: ForecastParams) -> dict[str, object]:
    """What defines a model, as the registry records it: every parameter, the features and the model class. Two
    trainings with the same spec on the same data give the same backtest."""
    import dataclasses

    return {**dataclasses.asdict(p), "features": list(FEATURES), "model_class": MODEL_CLASS}


def params_of(recorded: dict[str, object]) -> ForecastParams | None:
    """The parameters of a recorded spec, or None when it is not a spec of this code (other features or model
    class: its backtest cannot be run again here)."""
    import dataclasses

    if recorded.get("features") != list(FEATURES) or recorded.get("model_class") != MODEL_CLASS:
        return None
    names = {f.name for f in dataclasses.fields(ForecastParams)}
    return ForecastParams(**{k: v for k, v in recorded.items() if k in names})


@dataclass
class Training:
    backtest: DataFrame  # the rows of every origin (kept in ``held``)
    metrics: dict[str, float]
    model: object  # fitted up to as_of
    seconds: dict[str, float] = field(default_factory=dict)
    series: int = 0
    training_rows: int = 0
    features: FeatureTable | None = None
    zero_rate: float = 0.0  # sampling rate of the zero-demand days of the final model


def coverage(rows: DataFrame) -> float:
    """Share of the backtest's product x county days whose actual units were at most the P90."""
    value = rows.agg(F.avg((F.col("actual_units") <= F.col("model_p90_units")).cast("double"))).collect()[0][0]
    return math.nan if value is None else float(value)


def evaluate(features: FeatureTable, p: ForecastParams, held: Held, progress: Callable[[str], None] = log.info,
             rates: dict[dt.date, float] | None = None) -> tuple[DataFrame, dict[str, float], dict[str, float]]:
    """The rolling-origin backtest of ``p`` on ``features``, and its metrics at every level: (rows, metrics,
    seconds)."""
    rows, seconds = backtest(features, p, held, progress, rates)
    started = time.monotonic()
    metrics: dict[str, float] = {}
    with Held() as scratch:
        by_county_category = level_days(features, p, scratch)
        for level in LEVELS:
            metrics.update(level_metrics(rows, features, p, level, by_county_category=by_county_category))
    metrics["backtest/product_county/model/coverage_p90"] = coverage(rows)
    seconds["evaluate"] = time.monotonic() - started
    progress("backtest WAPE (product x county): " + ", ".join(
        f"{m} {metrics[f'backtest/product_county/{m}/wape']:.3f}" for m in METHODS)
        + f"; model bias {metrics['backtest/product_county/model/bias']:+.3f}, P90 coverage "
        f"{metrics['backtest/product_county/model/coverage_p90']:.3f}")
    return rows, metrics, seconds


def train(daily: DataFrame, counties: DataFrame, as_of: dt.date, p: ForecastParams, held: Held,
          progress: Callable[[str], None] = log.info) -> Training:
    """Backtest at the rolling origins, then train on everything up to ``as_of``. The feature table and the
    backtest rows are kept in ``held`` (release it once they are written)."""
    seconds: dict[str, float] = {}
    started = time.monotonic()
    features = build_features(daily, counties, as_of, p, held)
    days = features.rows
    seconds["features"] = time.monotonic() - started
    progress(f"features: {features.series:,} series x {days // max(features.series, 1)} days = {days:,} rows "
             f"in {seconds['features']:.1f} s")
    # the zero-demand counts of every model (the backtest origins and the final one): one pass over the
    # feature table instead of one per model
    started = time.monotonic()
    rates = zero_rates(features, [*origins(as_of, p), as_of], p)
    seconds["sampling_rates"] = time.monotonic() - started
    rows, metrics, bt_seconds = evaluate(features, p, held, progress, rates)
    seconds.update(bt_seconds)
    started = time.monotonic()
    rate = rates[as_of]
    model = fit_model(features, as_of, p, rate)
    seconds["train_final"] = time.monotonic() - started
    progress(f"final model trained in {seconds['train_final']:.1f} s (zero-demand days sampled at {rate:.3f})")
    # the grid is dense (one row per series and day), so the final model's training window holds
    # series x train_days rows (before dormant days are left out and zero-demand days sampled)
    return Training(rows, metrics, model, seconds, features.series, features.series * p.train_days, features, rate)


def scoring_features(daily: DataFrame, counties: DataFrame, as_of: dt.date, p: ForecastParams,
                     held: Held) -> FeatureTable:
    """The feature rows of the ``horizon`` days after ``as_of`` only (the look-back before them, no backtest
    origins, no training window): the same values the training's feature table holds for those days."""
    import dataclasses

    return build_features(daily, counties, as_of, dataclasses.replace(p, origins=0, train_days=1), held)


def score(model, features: FeatureTable, backtest_rows: DataFrame, counties: DataFrame, p: ForecastParams,
          model_version: str, held: Held) -> DataFrame:
    """The next ``horizon`` days of every series active at the features' ``as_of``, forecast by ``model``, with a
    P90 from the series' errors in ``backtest_rows`` (the backtest of the same model spec), kept in ``held``."""
    as_of = features.as_of
    quantiles = residual_quantiles(backtest_rows, SERIES)
    point = predict(model, features, as_of, p)
    forecast = (point.join(quantiles, SERIES, "left").join(
        F.broadcast(counties.select("county_code", "county_name")), "county_code", "left")
        .select(*SERIES, "county_name", "category", F.col("date").alias("forecast_date"), "horizon_days",
                F.col("model_units").alias("forecast_units"),
                F.greatest(F.col("model_units"), F.col("model_units") + F.coalesce("residual_q", F.lit(0.0)))
                .alias("forecast_p90_units"),
                F.lit(as_of).alias("origin_date"), F.lit(model_version).alias("model_version")))
    # persisted: the chart and the write read it (scoring it again each time costs a pass over
    # the feature table and the residual percentiles)
    return held(conform(forecast, schemas.sales_forecast))


def county_category_forecast(forecast: DataFrame, backtest_rows: DataFrame) -> DataFrame:
    """County x category demand: the sum of the product forecasts (coherent by construction), with a P90 from
    the county x category backtest residuals."""
    keys = ["county_code", "category"]
    quantiles = residual_quantiles(backtest_rows, keys)
    summed = forecast.groupBy(*keys, "county_name", "forecast_date", "horizon_days", "origin_date",
                              "model_version").agg(F.sum("forecast_units").alias("forecast_units"),
                                                   F.count(F.lit(1)).alias("series"))
    out = summed.join(quantiles, keys, "left").withColumn(
        "forecast_p90_units",
        F.greatest(F.col("forecast_units"), F.col("forecast_units") + F.coalesce("residual_q", F.lit(0.0))))
    return conform(out, schemas.county_demand_forecast)


def history_chart(backtest_rows: DataFrame, forecast: DataFrame, daily: DataFrame, as_of: dt.date,
                  top: int = 3) -> bytes:
    """PNG: national daily units (actuals, backtest forecasts, the forecast and its P90 sum) and the top
    series, so a person can see how the model does."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    since = as_of - dt.timedelta(days=140)
    top_series = [(r["product_id"], r["county_code"], r["county_name"]) for r in
                  forecast.groupBy("product_id", "county_code", "county_name").agg(F.sum("forecast_units").alias("u"))
                  .orderBy(F.col("u").desc(), "product_id", "county_code").limit(top).collect()]
    mine = [(F.col("product_id") == pid) & (F.col("county_code") == code) for pid, code, _ in top_series]

    def per_day(df: DataFrame, day: str, *values: str) -> list:
        """One query per table: the national sums of ``values`` per day and each top series' own values."""
        return sorted(tuple(r) for r in df.groupBy(F.col(day).alias("d")).agg(
            *[F.sum(v) for v in values], *[F.sum(F.when(m, F.col(v))) for m in mine for v in values]).collect())

    actual = per_day(daily.where(F.col("order_date").between(since, as_of)), "order_date", "units")
    bt = per_day(backtest_rows, "target_date", "model_units")
    fc = per_day(forecast, "forecast_date", "forecast_units", "forecast_p90_units")

    def column(rows: list, i: int, skip_null: bool = False) -> tuple[list, list]:
        kept = [(r[0], r[i]) for r in rows if not (skip_null and r[i] is None)]
        return [d for d, _ in kept], [0 if v is None else v for _, v in kept]

    fig, axes = plt.subplots(1 + len(top_series), 1, figsize=(11, 3.2 * (1 + len(top_series))), squeeze=False)
    ax = axes[0][0]
    ax.plot(*column(actual, 1), color="black", lw=1, label="actual units")
    ax.plot(*column(bt, 1), color="tab:blue", lw=1, label="backtest forecast")
    ax.plot(*column(fc, 1), color="tab:red", lw=1.5, label="forecast")
    ax.fill_between(column(fc, 1)[0], column(fc, 1)[1], column(fc, 2)[1], color="tab:red", alpha=0.15,
                    label="up to sum of P90")
    ax.set_title("National daily units: actual, rolling-origin backtest and the next 28 days")
    ax.legend(loc="upper left", fontsize=8)
    for i, (pid, _, name) in enumerate(top_series, start=1):
        ax = axes[i][0]
        ax.bar(*column(actual, 1 + i), color="grey", width=1.0, label="actual units")
        ax.plot(*column(bt, 1 + i, skip_null=True), color="tab:blue", lw=1, label="backtest forecast")
        ax.plot(*column(fc, 1 + 2 * i, skip_null=True), color="tab:red", lw=1.5, label="forecast")
        ax.plot(*column(fc, 2 + 2 * i, skip_null=True), color="tab:red", lw=1, ls="--", label="P90")
        ax.set_title(f"{pid} in {name}")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()
