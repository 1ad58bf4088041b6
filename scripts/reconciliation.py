"""Is a reconciliation better than the bottom-up sums? (docs/forecasting.md, "Hierarchy")

On the lake's ml.forecast_backtest: the model's product x county forecasts as the bottom level's base forecasts,
a baseline summed to every upper level (county x category, county, national) as theirs, reconciled by weighted
least squares with each node's error variance as its weight (MinT with a diagonal covariance, "WLS-var"). The
variances come from each node's errors at the *other* backtest origins, so no origin is reconciled with weights
that saw its errors. For a tree the WLS solution is exact by one pass up (each node's sum of its children
combined with its own forecast, inverse-variance weighted) and one pass down (each node's correction shared among
its children in proportion to their variances). Prints WAPE and bias at every level, bottom-up against
reconciled.

    .venv/bin/python scripts/reconciliation.py [LAKE_ROOT]     (default: $ECOMMERCE_LAKE_HOME/lake)
"""

import numpy as np
import pandas as pd
from deltalake import DeltaTable

from policy_at_service_levels import lake_root  # scripts/, beside this file

DAY = ["origin_date", "target_date"]
LEVELS = {"product_county": ["product_id", "county_code"], "county_category": ["county_code", "category"],
          "county": ["county_code"], "national": []}


def loo_variance(frame: pd.DataFrame, keys: list[str], err: str) -> pd.Series:
    """Per row: the mean squared ``err`` of the row's node (``keys``) at the other origins."""
    g = frame.groupby([*keys, "origin_date"], sort=False)[err].agg(s2=lambda e: float((e * e).sum()), n="size")
    node = g.groupby(level=list(range(len(keys)))) if keys else g
    tot = node.transform("sum") if keys else g.sum()
    s2 = (tot["s2"] - g["s2"]) / np.maximum(tot["n"] - g["n"], 1)
    s2 = s2.where(s2 > 0, float((frame[err] ** 2).mean()) or 1e-6)
    return frame[[*keys, "origin_date"]].merge(s2.rename("v").reset_index(), on=[*keys, "origin_date"],
                                               how="left")["v"].to_numpy()


def reconcile(bt: pd.DataFrame, upper: str) -> pd.DataFrame:
    """The bottom rows with ``mint_units``: the model reconciled with ``upper`` (a baseline's column) summed to
    the upper levels."""
    b = bt.copy()
    b["err"] = b["actual_units"] - b["model_units"]
    b["v"] = loo_variance(b, LEVELS["product_county"], "err")
    nodes = {}
    for level in ("county_category", "county", "national"):
        keys = LEVELS[level]
        agg = b.groupby([*keys, *DAY], sort=False)[["actual_units", upper]].sum().reset_index()
        agg["err"] = agg["actual_units"] - agg[upper]
        agg["w"] = loo_variance(agg, keys, "err")
        nodes[level] = agg.rename(columns={upper: "yhat"})[[*keys, *DAY, "yhat", "w"]]
    # up: each node's posterior mean and variance of its sum
    b["m"], b["pv"] = b["model_units"], b["v"]
    child, child_keys = b, LEVELS["product_county"]
    posts = {}
    for level in ("county_category", "county", "national"):
        keys = LEVELS[level]
        s = child.groupby([*keys, *DAY], sort=False)[["m", "pv"]].sum().reset_index().rename(
            columns={"m": "M", "pv": "V"})
        node = nodes[level].merge(s, on=[*keys, *DAY])
        node["m"] = (node["M"] * node["w"] + node["yhat"] * node["V"]) / (node["V"] + node["w"])
        node["pv"] = node["V"] * node["w"] / (node["V"] + node["w"])
        posts[level] = node
        child, child_keys = node, keys
    # down: the root's mean is final; each node's correction shared by its children in proportion to variance
    top = posts["national"].assign(final=lambda d: d["m"])
    parent = top
    for level, parent_level in (("county", "national"), ("county_category", "county"), ("product_county", None)):
        node = posts[level] if level != "product_county" else b
        pkeys = LEVELS["national" if level == "county" else "county" if level == "county_category" else
                      "county_category"]
        sums = node.groupby([*pkeys, *DAY], sort=False)[["m", "pv"]].sum().reset_index().rename(
            columns={"m": "SM", "pv": "SV"})
        node = node.merge(sums, on=[*pkeys, *DAY]).merge(parent[[*pkeys, *DAY, "final"]].rename(
            columns={"final": "pfinal"}), on=[*pkeys, *DAY])
        node["final"] = node["m"] + node["pv"] / node["SV"] * (node["pfinal"] - node["SM"])
        parent = node.drop(columns=["SM", "SV", "pfinal"])
    return parent.rename(columns={"final": "mint_units"})


def scores(bottom: pd.DataFrame, column: str) -> dict[str, tuple[float, float]]:
    out = {}
    for level, keys in LEVELS.items():
        g = bottom.groupby([*keys, *DAY], sort=False)[["actual_units", column]].sum()
        a = g["actual_units"].astype(float)
        out[level] = (float(np.abs(g[column] - a).sum() / a.sum()), float((g[column] - a).sum() / a.sum()))
    return out


def main() -> None:
    root = lake_root()
    bt = DeltaTable(str(root / "ml" / "forecast_backtest")).to_pandas(columns=[
        "origin_date", "product_id", "county_code", "category", "target_date", "actual_units", "model_units",
        "moving_average_units", "tsb_units", "croston_units"])
    bt["actual_units"] = bt["actual_units"].astype(float)
    base = scores(bt, "model_units")
    print(f"{'level':16s} {'bottom-up':>18s}" + "".join(f" {'WLS with ' + u[:-6]:>26s}" for u in
                                                       ("moving_average_units", "tsb_units", "croston_units")))
    rec = {}
    for upper in ("moving_average_units", "tsb_units", "croston_units"):
        r = reconcile(bt, upper)
        r["mint_units"] = r["mint_units"].clip(lower=0.0)  # units cannot be negative (the sums stay close)
        rec[upper] = scores(r, "mint_units")
    for level in LEVELS:
        w, b = base[level]
        print(f"{level:16s} {w:8.4f} ({b:+.3f})" + "".join(
            f" {rec[u][level][0]:16.4f} ({rec[u][level][1]:+.3f})" for u in rec))


if __name__ == "__main__":
    main()
