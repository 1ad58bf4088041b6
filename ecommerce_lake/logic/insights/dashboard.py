"""The county dashboard: one self-contained HTML page (plotly.js inlined, no network needed to view it) from the
insight tables and the sales forecast, as pandas DataFrames. A plain function: no Dagster, no Spark."""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass

import pandas as pd

CHARTS = ("revenue_trend", "county_ranking", "penetration", "category_mix", "payments_and_outcomes",
          "forecast_vs_actual")


@dataclass(frozen=True)
class DashboardData:
    national: pd.DataFrame  # insights.national_monthly
    counties: pd.DataFrame  # insights.county_scorecard
    categories: pd.DataFrame  # insights.category_mix
    daily_units: pd.DataFrame  # order_date, units: national units per day (curated.daily_sales)
    forecast: pd.DataFrame | None  # forecast_date, forecast_units, forecast_p90_units (summed), or None


def _kes(value) -> str:
    return f"KES {float(value):,.0f}"


def _pct(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value) * 100:+.1f} %"


def _shown_month(months: pd.Series, daily_units: pd.DataFrame) -> dt.date:
    """The latest complete month (its last day has data behind it), else the latest month: a partial month's
    totals and growth would mislead."""
    last_day = daily_units["order_date"].max() if not daily_units.empty else None
    complete = [m for m in months if last_day is not None
                and (pd.Timestamp(m) + pd.offsets.MonthEnd(0)).date() <= last_day]
    return max(complete) if complete else months.max()


def render(data: DashboardData, generated_at: dt.datetime) -> tuple[str, dict]:
    """(the page, figures about it: month shown, charts)."""
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    national = data.national.sort_values("month")
    if national.empty:  # a lake without orders yet: say so, rather than fail the run
        page = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ecommerce_lake: no sales yet"
                "</title></head><body><h1>No sales yet</h1><p>insights.national_monthly holds no month: no order has "
                f"reached the lake. Generated {generated_at:%Y-%m-%d %H:%M} UTC.</p></body></html>\n")
        return page, {"month": "", "charts": [], "counties": 0}
    month = _shown_month(national["month"], data.daily_units)
    latest = national[national["month"] == month].iloc[0]
    counties = data.counties[data.counties["month"] == month]
    figures: dict[str, go.Figure] = {}

    trend = go.Figure()
    trend.add_bar(x=national["month"], y=national["net_revenue_kes"].astype(float), name="net revenue (KES)")
    trend.add_scatter(x=national["month"], y=national["orders"], name="sold orders", yaxis="y2", mode="lines+markers")
    trend.update_layout(title="National net revenue and sold orders by month",
                        yaxis={"title": "KES"}, yaxis2={"title": "orders", "overlaying": "y", "side": "right"})
    figures["revenue_trend"] = trend

    ranked = counties.sort_values("net_revenue_kes")
    figures["county_ranking"] = go.Figure(go.Bar(
        x=ranked["net_revenue_kes"].astype(float), y=ranked["county_name"], orientation="h",
        text=ranked["revenue_rank"].map(lambda r: f"#{r}"), textposition="outside"))
    figures["county_ranking"].update_layout(title=f"Counties ranked by net revenue, {month:%B %Y}",
                                            height=max(400, 22 * len(ranked) + 120), xaxis={"title": "KES"})

    reach = counties.sort_values("orders_per_1000_residents", ascending=False).head(20)
    figures["penetration"] = go.Figure(go.Bar(x=reach["county_name"], y=reach["orders_per_1000_residents"]))
    figures["penetration"].update_layout(title=f"Market penetration: sold orders per 1,000 residents (KNBS 2019), "
                                         f"{month:%B %Y}, top 20 counties", yaxis={"title": "orders / 1,000"})

    top = counties.sort_values("net_revenue_kes", ascending=False).head(10)["county_code"]
    mix = data.categories[(data.categories["month"] == month) & data.categories["county_code"].isin(top)]
    cat_fig = go.Figure()
    for category, rows in mix.groupby("category"):
        cat_fig.add_bar(x=rows["county_name"], y=rows["share_of_county_revenue"], name=category)
    cat_fig.update_layout(barmode="stack", title=f"Category share of revenue in the top 10 counties, {month:%B %Y}",
                          yaxis={"title": "share", "tickformat": ".0%"})
    figures["category_mix"] = cat_fig

    pay = go.Figure()
    for column, label in (("mpesa_order_share", "M-Pesa share of sold orders"),
                          ("cash_on_delivery_order_share", "cash-on-delivery share"),
                          ("cancellation_rate", "cancellation rate"), ("return_rate", "return rate")):
        pay.add_scatter(x=national["month"], y=national[column], name=label, mode="lines+markers")
    pay.update_layout(title="Payment mix and order outcomes, national", yaxis={"tickformat": ".0%"})
    figures["payments_and_outcomes"] = pay

    daily = data.daily_units.sort_values("order_date")
    fc = go.Figure()
    if not daily.empty:
        last = daily["order_date"].max()
        recent = daily[daily["order_date"] > last - dt.timedelta(days=56)]
        fc.add_scatter(x=recent["order_date"], y=recent["units"], name="actual units", mode="lines")
    note = ""
    if data.forecast is not None and not data.forecast.empty:
        f = data.forecast.sort_values("forecast_date")
        fc.add_scatter(x=f["forecast_date"], y=f["forecast_p90_units"], name="P90", mode="lines",
                       line={"dash": "dot"})
        fc.add_scatter(x=f["forecast_date"], y=f["forecast_units"], name="forecast units", mode="lines")
    else:
        note = " (no forecast yet: materialize ml/sales_forecast)"
    fc.update_layout(title="Units sold: the last 56 days and the forecast for the next 28 days" + note,
                     yaxis={"title": "units per day"})
    figures["forecast_vs_actual"] = fc

    tiles = [("Net revenue", _kes(latest["net_revenue_kes"])), ("Sold orders", f"{int(latest['orders']):,}"),
             ("Average order value", _kes(latest["avg_order_value_kes"] or 0)),
             ("Month over month", _pct(latest["revenue_mom_growth"])),
             ("Year over year", _pct(latest["revenue_yoy_growth"])),
             ("M-Pesa share", _pct(latest["mpesa_order_share"]).lstrip("+"))]
    tile_html = "".join(f'<div class="tile"><div class="label">{html.escape(k)}</div>'
                        f'<div class="value">{html.escape(v)}</div></div>' for k, v in tiles)
    charts = "".join(
        f'<section id="{name}" class="chart">'
        + figures[name].to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{name}",
                                config={"displaylogo": False, "responsive": True})
        + "</section>" for name in CHARTS)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>ecommerce_lake: counties, {month:%B %Y}</title>
<meta name="generator" content="ecommerce_lake insights/dashboard">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d2733; }}
.tiles {{ display: flex; flex-wrap: wrap; gap: 1rem; margin: 1rem 0; }}
.tile {{ border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem 1rem; min-width: 11rem; }}
.label {{ font-size: .8rem; color: #57606a; }} .value {{ font-size: 1.3rem; font-weight: 600; }}
.chart {{ margin: 1.5rem 0; }}
</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>Kenya: sales by county, {month:%B %Y}</h1>
<p>The latest complete month in the lake (the latest month when none is complete). Generated {generated_at:%Y-%m-%d %H:%M} UTC from the insight
tables (insights.national_monthly, insights.county_scorecard, insights.category_mix) and ml.sales_forecast.</p>
<div class="tiles">{tile_html}</div>
{charts}
</body></html>
"""
    return page, {"month": month.isoformat(), "charts": list(CHARTS), "counties": int(len(counties))}
