"""The insights group: the business's monthly questions as Delta tables (one step writes the five, from the
curated tables), and the county dashboard (an HTML page in the lake, from the insight tables and the forecast)."""


import datetime as dt

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.defs.insights.checks import CHECKS
from ecommerce_lake.defs.keys import CURATED_KEYS, INSIGHTS_KEYS, ML_KEYS, REFINED_KEYS
from ecommerce_lake.defs.resources import QualityResource
from ecommerce_lake.defs.tables import asset_out, emit
from ecommerce_lake.logic.insights import dashboard as board
from ecommerce_lake.logic.insights import insights
from ecommerce_lake.platform.lake import LakeResource

TABLES = tuple(CHECKS)
DASHBOARD = dg.AssetKey(["insights", "dashboard"])


def _in(key: dg.AssetKey, *columns: str) -> dg.AssetIn:
    return dg.AssetIn(key=key, metadata={"columns": list(columns)} if columns else None)


@dg.multi_asset(
    name="insights__tables",
    outs={t: asset_out(CHECKS[t].schema) for t in TABLES},
    check_specs=[s for c in CHECKS.values() for s in c.specs],
    can_subset=True,
    ins={
        "sold": _in(CURATED_KEYS["customer_orders"]),
        "received": _in(REFINED_KEYS["orders"], "order_id", "order_date", "county_code", "status"),
        "counties": _in(REFINED_KEYS["counties"], "county_code", "county_name", "population_2019"),
        "daily": _in(CURATED_KEYS["daily_sales"], "order_date", "county_code", "county_name", "product_id",
                     "category", "units", "net_revenue_kes"),
        "fact": _in(CURATED_KEYS["fact_sales"], "order_date", "category", "unit_price_kes", "quantity",
                    "net_revenue_kes"),
        "products": _in(REFINED_KEYS["products"], "product_id", "product_name"),
    },
    description="The insight tables, written in one step from the curated tables: county scorecard, national "
    "month, category mix, top products per county and month, price bands.",
)
def insight_tables(context: dg.AssetExecutionContext, sold: DataFrame, received: DataFrame, counties: DataFrame,
                   daily: DataFrame, fact: DataFrame, products: DataFrame, lake: LakeResource,
                   quality: QualityResource):
    yield from emit(context, lake, quality, {
        "county_scorecard": lambda: insights.county_scorecard(sold, received, counties),
        "national_monthly": lambda: insights.national_monthly(sold, received),
        "category_mix": lambda: insights.category_mix(daily),
        "top_products_monthly": lambda: insights.top_products_monthly(daily, products),
        "price_bands": lambda: insights.price_bands(fact),
    }, [CHECKS[t] for t in TABLES])


CHART_CHECK = dg.AssetCheckSpec("every_chart_in_the_page", asset=DASHBOARD, blocking=False,
                                description="The page holds every chart and the plotly library inline.")


@dg.multi_asset(
    name="insights__dashboard",
    outs={"dashboard": dg.AssetOut(
        key=DASHBOARD, group_name="insights", io_manager_key="report_io_manager", kinds={"html", "plotly"},
        owners=["team:analytics-engineering"], is_required=False,
        # ml/sales_forecast is read when it exists, not declared as a dependency: Dagster skips what depends on an
        # asset a run did not produce, and a lake too young to forecast (under 266 days) must still get its dashboard
        metadata={"reads_when_present": "ml/sales_forecast"},
        description="The county dashboard: one self-contained HTML page (county rankings, trends, category mix, "
        "payment mix and outcomes, forecast vs actual) at <lake_root>/insights/dashboard/latest.html, served by "
        "`ecommerce-lake dashboard`. Reads ml.sales_forecast when it exists (not a dependency: a lake too young to "
        "forecast still gets its dashboard).")},
    ins={
        "national": _in(INSIGHTS_KEYS["national_monthly"]),
        "counties": _in(INSIGHTS_KEYS["county_scorecard"]),
        "categories": _in(INSIGHTS_KEYS["category_mix"]),
        "daily": _in(CURATED_KEYS["daily_sales"], "order_date", "units"),
    },
    check_specs=[CHART_CHECK],
    can_subset=True,  # the page without its check (run --no-checks)
)
def dashboard(context: dg.AssetExecutionContext, national: DataFrame, counties: DataFrame, categories: DataFrame,
              daily: DataFrame, lake: LakeResource):
    if "dashboard" not in context.selected_output_names:
        return
    forecast_key = ML_KEYS["sales_forecast"]
    forecast = None
    if lake.exists(forecast_key):
        forecast = (lake.read(forecast_key, columns=["forecast_date", "forecast_units", "forecast_p90_units"])
                    .groupBy("forecast_date").agg(F.sum("forecast_units").alias("forecast_units"),
                                                  F.sum("forecast_p90_units").alias("forecast_p90_units"))
                    .toPandas())
    else:
        context.log.info("no ml.sales_forecast yet: the dashboard shows actual units only")
    data = board.DashboardData(
        national=national.toPandas(), counties=counties.toPandas(), categories=categories.toPandas(),
        daily_units=daily.groupBy("order_date").agg(F.sum("units").alias("units")).toPandas(), forecast=forecast)
    page, facts = board.render(data, dt.datetime.now(dt.UTC))
    context.log.info(f"dashboard of {facts['month']}: {len(facts['charts'])} charts, {len(page):,} bytes")
    yield dg.Output(page, output_name="dashboard", metadata={
        "month": facts["month"], "counties": facts["counties"], "has_forecast": forecast is not None})
    if CHART_CHECK.key in context.selected_asset_check_keys:
        missing = [c for c in board.CHARTS if f'id="chart-{c}"' not in page]
        yield dg.AssetCheckResult(check_name=CHART_CHECK.name, asset_key=DASHBOARD,
                                  passed=not missing and "Plotly" in page, severity=dg.AssetCheckSeverity.WARN,
                                  metadata={"charts": len(board.CHARTS) - len(missing), "missing": ", ".join(missing)})


ASSETS = [insight_tables, dashboard]
