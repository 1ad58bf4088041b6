"""RFM scores, segments and clusters: against an independent computation from the landing files, and against
hand-made customers whose scores and segments are worked out by hand."""

import datetime as dt
import hashlib
import hmac
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from pyspark.sql import functions as F

from ecommerce_lake.core.segment_rules import SEGMENTS, segment_of
from ecommerce_lake.logic.ml import segments
from ecommerce_lake.runner import execute
from ecommerce_lake_tests import oracle


@pytest.fixture(scope="module")
def ml_lake(lake_run, settings):
    """The ml group scored on the lake as it is now (other modules may have delivered batches since the shared
    run; the daily scoring cron does this in production)."""
    report = execute(settings, selection="group:ml", instance=dg.DagsterInstance.get(), log_level="WARNING")
    assert report.exit_code == 0, report
    assert "ml/rfm_scores" in report.materialized, report.materialized
    return lake_run


def _pseudonym(key: bytes, customer_id: str) -> str:
    return hmac.new(key, f"customer:{customer_id}".encode(), hashlib.sha256).hexdigest()


def test_rfm_matches_an_independent_computation(ml_lake, settings):
    key = Path(settings.pseudonym_key_file).read_text().strip().encode()
    fact = oracle.expected_fact_sales(oracle.read_landing(Path(settings.landing_root)), dt.datetime.now(dt.timezone.utc))
    as_of = fact["order_date"].max()
    per = fact.groupby("customer_id").agg(last=("order_date", "max"), frequency=("order_id", "nunique"),
                                          monetary=("net_revenue_kes", lambda s: sum(s, Decimal("0"))))
    expected = {_pseudonym(key, cid): ((as_of - row["last"]).days, int(row["frequency"]), row["monetary"])
                for cid, row in per.iterrows()}
    rows = ml_lake.table("ml/rfm_scores").collect()
    actual = {r["customer_pseudonym"]: (r["recency_days"], r["frequency"], r["monetary_kes"]) for r in rows}
    assert actual == expected
    assert {r["as_of"] for r in rows} == {as_of}
    assert all(1 <= r[c] <= 5 for r in rows for c in ("r_score", "f_score", "m_score"))


def test_every_customer_has_one_segment_and_one_cluster(ml_lake):
    instance = dg.DagsterInstance.get()
    for asset, check in ((("ml", "rfm_scores"), "every_customer_has_one_segment"),
                         (("ml", "customer_clusters"), "every_customer_has_one_cluster")):
        record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(dg.AssetKey(list(asset)), check))
        assert record.evaluation.passed, record.evaluation.metadata
    rfm = ml_lake.table("ml/rfm_scores")
    clusters = ml_lake.table("ml/customer_clusters")
    assert rfm.count() == clusters.count() == clusters.select("customer_pseudonym").distinct().count()
    assert rfm.join(clusters, "customer_pseudonym", "left_anti").count() == 0
    k = clusters.select("k").distinct().collect()
    assert len(k) == 1 and 3 <= k[0]["k"] <= 8
    mat = instance.get_latest_materialization_event(dg.AssetKey(["ml", "customer_clusters"])).asset_materialization
    assert {f"silhouette/k={k}" for k in range(3, 9)} <= set(mat.metadata)
    labels = {r["cluster_label"] for r in clusters.select("cluster_label").distinct().collect()}
    assert len(labels) == k[0]["k"] and all(labels)


def test_segment_summary_shares(ml_lake):
    summary = ml_lake.table("ml/segment_summary")
    for row in summary.groupBy("county_code").agg(F.sum("customer_share").alias("c"),
                                                   F.sum("revenue_share").alias("r")).collect():
        assert abs(row["c"] - 1) < 1e-9 and abs(row["r"] - 1) < 1e-9
    rfm = ml_lake.table("ml/rfm_scores").where("county_code != 0")
    assert summary.agg(F.sum("customers")).collect()[0][0] == rfm.count()


# ---- the rule table and hand-made customers --------------------------------------------------------------
@pytest.mark.parametrize("r, f, segment", [
    (5, 5, "Champions"), (5, 4, "Champions"), (4, 5, "Loyal"), (3, 4, "Loyal"), (5, 3, "Potential Loyalist"),
    (4, 2, "Potential Loyalist"), (5, 1, "New"), (4, 1, "Promising"), (3, 3, "Need Attention"),
    (3, 2, "About to Sleep"), (3, 1, "About to Sleep"), (2, 3, "At Risk"), (1, 4, "At Risk"),
    (2, 5, "Can't Lose Them"), (1, 5, "Can't Lose Them"), (2, 2, "Hibernating"), (2, 1, "Hibernating"),
    (1, 2, "Lost"), (1, 1, "Lost"),
])
def test_segment_rule_table(r, f, segment):
    assert segment_of(r, f) == segment


def test_the_rule_table_covers_every_score_pair_exactly_once():
    cells = {(r, f): segment_of(r, f) for r in range(1, 6) for f in range(1, 6)}
    assert len(cells) == 25 and set(cells.values()) == set(SEGMENTS)


def test_hand_made_customers(spark):
    """Eleven customers: c1 bought 10 days before as_of with 10 orders of 1,000 KES ... c10 100 days before with
    one order of 100 KES; c11 is an exact copy of c10. Scores are ceil(5 x cumulative share), ties sharing it:
    recency (worst first) 100,100 -> 2/11 -> 1; 90 -> 3/11 -> 2; 80 -> 2; 70 -> 5/11 -> 3; 60 -> 3; 50 -> 7/11
    -> 4; 40 -> 4; 30, 20, 10 -> 5. Frequency 1,1 -> 1; 2 -> 2; 3 -> 2; 4 -> 3; 5 -> 3; 6 -> 4; 7 -> 4; 8..10 -> 5."""
    as_of = dt.date(2025, 6, 30)
    rows = []
    for i in range(1, 11):
        last = as_of - dt.timedelta(days=10 * i)
        for n in range(11 - i):  # c1: 10 orders ... c10: 1 order
            rows.append((f"c{i}", f"o{i}-{n}", last - dt.timedelta(days=n), 1, Decimal(100 * (11 - i))))
    rows.append(("c11", "o11-0", as_of - dt.timedelta(days=100), 1, Decimal(100)))
    orders = spark.createDataFrame(rows, "customer_pseudonym string, order_id string, order_date date, "
                                         "county_code int, net_revenue_kes decimal(20,2)")
    got = {r["customer_pseudonym"]: r for r in segments.rfm_scores(orders, as_of).collect()}
    expected = {
        "c1": (5, 5, "Champions"), "c2": (5, 5, "Champions"), "c3": (5, 5, "Champions"),
        "c4": (4, 4, "Loyal"), "c5": (4, 4, "Loyal"), "c6": (3, 3, "Need Attention"), "c7": (3, 3, "Need Attention"),
        "c8": (2, 2, "Hibernating"), "c9": (2, 2, "Hibernating"), "c10": (1, 1, "Lost"), "c11": (1, 1, "Lost"),
    }
    assert {c: (r["r_score"], r["f_score"], r["segment"]) for c, r in got.items()} == expected
    assert got["c10"]["m_score"] == got["c11"]["m_score"] == 1  # ties share the score
    assert got["c1"]["recency_days"] == 10 and got["c1"]["frequency"] == 10
    assert got["c1"]["monetary_kes"] == Decimal("10000.00") and got["c1"]["rfm_cell"] == "R5F5M5"


def test_one_row_per_customer_check_counts_each_fault(spark, resources, tmp_path):
    """The check on hand-made tables: customers a, b and c bought up to as_of (x only after it); the clusters
    table holds a twice, c, and an unknown d and lacks b -> 1 missing (b), 1 unexpected (d), 1 duplicated (a)."""
    from ecommerce_lake.defs.checks import CheckContext
    from ecommerce_lake.defs.keys import ML_KEYS
    from ecommerce_lake.defs.ml.checks import one_row_per_customer
    from ecommerce_lake.platform.lake import LakeResource

    as_of = dt.date(2025, 6, 30)
    lake = LakeResource(root=str(tmp_path / "lake"), spark=resources["spark"])
    day = dt.timedelta(days=1)
    orders = [(c, as_of - day) for c in "abc"] + [("x", as_of + day)]
    lake.write(spark.createDataFrame(orders, "customer_pseudonym string, order_date date"),
               dg.AssetKey(["curated", "customer_orders"]))
    lake.write(spark.createDataFrame([(c, as_of) for c in "abc"], "customer_pseudonym string, as_of date"),
               ML_KEYS["rfm_scores"])
    check = one_row_per_customer(ML_KEYS["customer_clusters"], "cluster")
    env = CheckContext(None, lake, None)

    clusters = ML_KEYS["customer_clusters"]
    lake.write(spark.createDataFrame([(c,) for c in "aacd"], "customer_pseudonym string"), clusters)
    result = check.fn(env)
    assert not result.passed
    md = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
    assert (md["missing"], md["unexpected"], md["duplicated"], md["customers_expected"]) == (1, 1, 1, 3)
    assert md["sample_missing"] == ["b"]

    lake.write(spark.createDataFrame([(c,) for c in "abc"], "customer_pseudonym string"), clusters)
    result = check.fn(env)
    md = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
    assert result.passed and (md["missing"], md["unexpected"], md["duplicated"]) == (0, 0, 0), md


def test_a_run_picks_the_day_rfm_is_computed_for(ml_lake, settings):
    """``as_of`` is the asset's run configuration (the launchpad's, ``run --as-of``): RFM a week before the latest
    order equals the oracle's for that day (orders after it left out); the next run without it is back on the
    latest day. A day on a selection that computes nothing for a day is refused before anything runs."""
    from ecommerce_lake.runner import AsOfError

    key = Path(settings.pseudonym_key_file).read_text().strip().encode()
    fact = oracle.expected_fact_sales(oracle.read_landing(Path(settings.landing_root)), dt.datetime.now(dt.timezone.utc))
    latest = fact["order_date"].max()
    as_of = latest - dt.timedelta(days=7)
    before = fact[fact["order_date"] <= as_of]
    per = before.groupby("customer_id").agg(last=("order_date", "max"), frequency=("order_id", "nunique"))
    expected = {_pseudonym(key, cid): ((as_of - row["last"]).days, int(row["frequency"])) for cid, row in per.iterrows()}
    try:
        report = execute(settings, selection="ml/rfm_scores", as_of=as_of.isoformat(),
                         instance=dg.DagsterInstance.get(), log_level="WARNING")
        assert report.exit_code == 0, report
        rows = ml_lake.table("ml/rfm_scores").collect()
        assert {r["as_of"] for r in rows} == {as_of}
        assert {r["customer_pseudonym"]: (r["recency_days"], r["frequency"]) for r in rows} == expected
    finally:
        report = execute(settings, selection="ml/rfm_scores", instance=dg.DagsterInstance.get(), log_level="WARNING")
        assert report.exit_code == 0, report
    assert {r["as_of"] for r in ml_lake.table("ml/rfm_scores").select("as_of").distinct().collect()} == {latest}
    with pytest.raises(AsOfError, match="no selected asset is computed for a day"):
        execute(settings, selection="refined/counties", as_of=as_of.isoformat(), instance=dg.DagsterInstance.get())
