"""The platform on real Spark and real Delta tables: the IO manager, the catalog, the Spark resource."""


import datetime as dt

import dagster as dg
import pandas as pd
import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.platform.io_manager import SHOWN_PREDICATE_CHARS, DeltaIOManager, Replacing
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.platform.spark import SparkResource

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-10")


def _history(spark, uri: str):
    """The table's Delta history, through SQL (the Delta Python API needs Delta's Connect plugin)."""
    return spark.sql(f"DESCRIBE HISTORY delta.`{uri}`")


def _detail(spark, uri: str) -> dict:
    return spark.sql(f"DESCRIBE DETAIL delta.`{uri}`").collect()[0].asDict()


@pytest.fixture
def lake(resources, lake_root) -> LakeResource:
    return LakeResource(root=lake_root, spark=resources["spark"])


@pytest.fixture
def res(resources, lake) -> dict:
    return {"io_manager": DeltaIOManager(lake=lake), "lake": lake, "spark": resources["spark"]}


def _run(assets, res, **kwargs) -> dg.ExecuteInProcessResult:
    """Materialize ``assets``; a run that used Spark must have used the engine (its ``ecommerce_lake/spark`` tag)."""
    from ecommerce_lake.platform.spark import SPARK_TAG

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(assets, resources=res, instance=instance, **kwargs)
    used = instance.get_run_by_id(result.run_id).tags.get(SPARK_TAG)
    assert used is None or used.startswith("engine sc://"), used
    return result


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    mats = [
        e.event_specific_data.materialization for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION" and e.event_specific_data.materialization.asset_key == key
    ]
    assert mats, f"no materialization of {key}"
    return {k: getattr(v, "value", v) for k, v in mats[-1].metadata.items()}


# ---- round trip, overwrite, history ---------------------------------------------------------------------
def test_round_trip_and_column_selection(res, spark):
    @dg.asset(key=["sandbox", "numbers"])
    def numbers(spark: SparkResource) -> DataFrame:
        return spark.get_session().range(5).withColumn("square", F.col("id") * F.col("id"))

    seen = {}

    @dg.asset(key=["sandbox", "sums"], ins={"numbers": dg.AssetIn(["sandbox", "numbers"])})
    def sums(numbers: DataFrame) -> DataFrame:
        seen["columns"] = numbers.columns
        return numbers.agg(F.sum("square").alias("total"))

    @dg.asset(key=["sandbox", "ids_only"],
              ins={"numbers": dg.AssetIn(["sandbox", "numbers"], metadata={"columns": ["id"]})})
    def ids_only(numbers: DataFrame) -> DataFrame:
        seen["selected"] = numbers.columns
        return numbers

    result = _run([numbers, sums, ids_only], res)
    assert result.success
    assert seen["columns"] == ["id", "square"]
    assert seen["selected"] == ["id"]
    total = spark.read.format("delta").load(res["lake"].table_uri(dg.AssetKey(["sandbox", "sums"]))).collect()
    assert total[0]["total"] == sum(i * i for i in range(5))


def test_overwrite_creates_new_version_and_keeps_history(res, spark):
    state = {"n": 3}

    @dg.asset(key=["sandbox", "counter"])
    def counter(spark: SparkResource) -> DataFrame:
        df = spark.get_session().range(state["n"])
        return df.withColumn("square", F.col("id") * F.col("id")) if state.get("squared") else df

    assert _run([counter], res).success
    state["n"] = 7
    result = _run([counter], res)
    assert result.success
    uri = res["lake"].table_uri(dg.AssetKey(["sandbox", "counter"]))
    history = _history(spark, uri).select("version", "operation").collect()
    assert sorted(h["version"] for h in history) == [0, 1]
    assert spark.read.format("delta").load(uri).count() == 7
    assert spark.read.format("delta").option("versionAsOf", 0).load(uri).count() == 3
    md = _metadata(result, dg.AssetKey(["sandbox", "counter"]))
    assert md["delta/version"] == 1 and md["delta/previous_version"] == 0
    assert md["lake/previous_row_count"] == 3 and md["lake/schema_changed"] is False
    state["n"], state["squared"] = 4, True  # a new column: the write reports the schema change
    md = _metadata(_run([counter], res), dg.AssetKey(["sandbox", "counter"]))
    assert md["delta/version"] == 2 and md["delta/previous_version"] == 1
    assert md["lake/previous_row_count"] == 7 and md["lake/schema_changed"] is True and md["dagster/row_count"] == 4


def test_reading_a_table_never_written_names_the_asset(res):
    from ecommerce_lake.platform.lake import LakeError

    lake = res["lake"]
    with pytest.raises(LakeError, match=r"asset 'sandbox/never_written' has not been materialized yet: no Delta "
                                        r"table at .*sandbox/never_written"):
        lake.read(dg.AssetKey(["sandbox", "never_written"]))


def test_failed_overwrite_leaves_previous_version_intact(res, spark):
    state = {"fail": False}

    @dg.asset(key=["sandbox", "fragile"])
    def fragile(spark: SparkResource) -> DataFrame:
        df = spark.get_session().range(1000).repartition(4)
        if state["fail"]:  # fails inside the Spark job, after some tasks have written files
            df = df.withColumn("boom", F.when(F.col("id") == 999, F.raise_error(F.lit("boom"))).otherwise(1))
        return df

    assert _run([fragile], res).success
    state["fail"] = True
    result = _run([fragile], res, raise_on_error=False)
    assert not result.success
    uri = res["lake"].table_uri(dg.AssetKey(["sandbox", "fragile"]))
    assert _history(spark, uri).count() == 1
    df = spark.read.format("delta").load(uri)
    assert df.columns == ["id"] and df.count() == 1000


# ---- partitions ---------------------------------------------------------------------------------------
def _daily_asset(rows_for):
    @dg.asset(key=["sandbox", "daily"], partitions_def=DAILY,
              metadata={"partition_expr": "day", "partition_by": ["day"]},
              backfill_policy=dg.BackfillPolicy.single_run())
    def daily(context: dg.AssetExecutionContext, spark: SparkResource) -> DataFrame:
        window = context.partition_time_window
        days = []
        d = window.start.date()
        while d < window.end.date():
            days.append(d)
            d += dt.timedelta(days=1)
        rows = [r for day in days for r in rows_for(day)]
        return spark.get_session().createDataFrame(rows, "day date, value int")

    return daily


def _files_by_day(spark, uri: str) -> dict:
    df = spark.read.format("delta").load(uri).select("day", F.col("_metadata.file_path").alias("f"))
    out: dict = {}
    for r in df.distinct().collect():
        out.setdefault(r["day"], set()).add(r["f"])
    return out


def test_partitioned_write_touches_only_its_partition(res, spark):
    version = {"v": 1}
    daily = _daily_asset(lambda day: [(day, version["v"] * 10 + i) for i in range(3)])
    for key in ("2024-01-01", "2024-01-02"):
        assert _run([daily], res, partition_key=key).success
    uri = res["lake"].table_uri(dg.AssetKey(["sandbox", "daily"]))
    before = _files_by_day(spark, uri)
    rows_before = {r["value"] for r in spark.read.format("delta").load(uri).where("day = '2024-01-02'").collect()}

    version["v"] = 2
    result = _run([daily], res, partition_key="2024-01-01")
    assert result.success
    after = _files_by_day(spark, uri)
    assert after[dt.date(2024, 1, 2)] == before[dt.date(2024, 1, 2)]  # untouched files
    assert after[dt.date(2024, 1, 1)] != before[dt.date(2024, 1, 1)]
    table = spark.read.format("delta").load(uri)
    assert {r["value"] for r in table.where("day = '2024-01-01'").collect()} == {20, 21, 22}
    assert {r["value"] for r in table.where("day = '2024-01-02'").collect()} == rows_before == {10, 11, 12}
    md = _metadata(result, dg.AssetKey(["sandbox", "daily"]))
    assert md["lake/partitions_written"] == {"count": 1, "keys": ["2024-01-01"]}
    assert "day >= '2024-01-01'" in md["lake/replace_where"]
    assert _detail(spark, uri)["partitionColumns"] == ["day"]


def test_backfill_range_in_one_run(res, spark):
    daily = _daily_asset(lambda day: [(day, day.day)])
    assert _run([daily], res, partition_key="2024-01-05").success
    result = _run([daily], res, tags={"dagster/asset_partition_range_start": "2024-01-01",
                                      "dagster/asset_partition_range_end": "2024-01-03"})
    assert result.success
    uri = res["lake"].table_uri(dg.AssetKey(["sandbox", "daily"]))
    days = sorted(r["day"].day for r in spark.read.format("delta").load(uri).collect())
    assert days == [1, 2, 3, 5]
    md = _metadata(result, dg.AssetKey(["sandbox", "daily"]))
    assert md["lake/partitions_written"]["count"] == 3
    assert md["dagster/row_count"] == 3
    assert _history(spark, uri).count() == 2  # one commit for the whole range
    # one materialization per partition; the write's figures once, on the range's last partition
    mats = {e.event_specific_data.materialization.partition: e.event_specific_data.materialization.metadata
            for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert sorted(mats) == ["2024-01-01", "2024-01-02", "2024-01-03"]
    for day, meta in mats.items():
        assert meta["delta/version"].value == 1 and meta["dagster/uri"].value == uri, day
        assert meta["lake/write_figures_on_partition"].value == "2024-01-03", day
        assert meta["lake/partitions_written"].value == {"count": 3, "keys": ["2024-01-01", "2024-01-02",
                                                                              "2024-01-03"]}
    figures = ("dagster/row_count", "lake/bytes_written", "lake/replace_where", "perf/step_seconds", "spark/jobs")
    assert all(k in mats["2024-01-03"] for k in figures)
    assert not any(k in mats[day] for day in ("2024-01-01", "2024-01-02") for k in figures)
    single = _metadata(_run([daily], res, partition_key="2024-01-04"), dg.AssetKey(["sandbox", "daily"]))
    assert single["dagster/row_count"] == 1 and "lake/write_figures_on_partition" not in single


def test_rows_outside_the_partition_are_refused(res, spark):
    daily = _daily_asset(lambda day: [(day, 1)])
    assert _run([daily], res, partition_key="2024-01-02").success
    uri = res["lake"].table_uri(dg.AssetKey(["sandbox", "daily"]))

    bad = _daily_asset(lambda day: [(day, 1), (day + dt.timedelta(days=1), 2)])
    result = _run([bad], res, partition_key="2024-01-01", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message + "".join(
        c.message for c in (failure.event_specific_data.error.cause,) if c)
    assert "sandbox/daily" in message and "outside the partition" in message
    assert _history(spark, uri).count() == 1
    assert [r["day"] for r in spark.read.format("delta").load(uri).collect()] == [dt.date(2024, 1, 2)]


def test_partitioned_asset_without_partition_expr_never_overwrites_the_table(res):
    @dg.asset(key=["sandbox", "no_expr"], partitions_def=DAILY)
    def no_expr(spark: SparkResource) -> DataFrame:
        return spark.get_session().range(1)

    result = _run([no_expr], res, partition_key="2024-01-01", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "partition_expr" in str(failure.event_specific_data.error.to_string())


# ---- types, metadata, catalog -----------------------------------------------------------------------------
def test_wrong_typed_output_fails_with_a_clear_error(res):
    @dg.asset(key=["sandbox", "pandas_out"])
    def pandas_out():
        return pd.DataFrame({"a": [1]})

    result = _run([pandas_out], res, raise_on_error=False)
    assert not result.success
    text = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.to_string()
    assert "sandbox/pandas_out" in text and "pandas.core.frame.DataFrame" in text and "pyspark.sql.DataFrame" in text


def test_wrong_typed_input_fails_with_a_clear_error(res):
    @dg.asset(key=["sandbox", "source"])
    def source(spark: SparkResource) -> DataFrame:
        return spark.get_session().range(2)

    @dg.asset(key=["sandbox", "consumer"], ins={"source": dg.AssetIn(["sandbox", "source"])})
    def consumer(source: pd.DataFrame) -> DataFrame:
        raise AssertionError("must not run")

    result = _run([source, consumer], res, raise_on_error=False)
    assert not result.success
    text = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.to_string()
    assert "sandbox/source" in text and "pyspark.sql.DataFrame" in text


def test_materialization_metadata_and_catalog_registration(res, spark):
    @dg.asset(key=["sandbox", "described"], metadata={"zorder_by": ["b"]})
    def described(spark: SparkResource) -> DataFrame:
        return spark.get_session().createDataFrame([(1, "x"), (2, "y")], "a int, b string")

    result = _run([described], res)
    md = _metadata(result, dg.AssetKey(["sandbox", "described"]))
    assert md["dagster/row_count"] == 2
    assert md["dagster/table_name"] == "sandbox.described"
    assert md["dagster/uri"] == res["lake"].table_uri(dg.AssetKey(["sandbox", "described"]))
    assert md["delta/version"] == 0
    assert [(c.name, c.type) for c in md["dagster/column_schema"].columns] == [("a", "int"), ("b", "string")]
    assert md["lake/files_written"] >= 1 and md["lake/bytes_written"] > 0
    rows = spark.sql("select a, b from sandbox.described order by a").collect()
    assert [(r["a"], r["b"]) for r in rows] == [(1, "x"), (2, "y")]
    ops = [h["operation"] for h in _history(spark, md["dagster/uri"]).collect()]
    assert ops == ["WRITE"]  # one commit; Z-order (zorder_by) is the maintenance asset's job, not the write's


def test_materialization_repeats_the_column_schema_only_when_it_differs_from_the_declared_one(res):
    """A partitioned build records one materialization per partition: the declared schema (definition metadata)
    is not repeated in each; the written one is recorded when the columns differ from it."""
    declared = dg.TableSchema(columns=[dg.TableColumn("a", "int", description="the a"), dg.TableColumn("b", "string")])

    @dg.asset(key=["sandbox", "as_declared"], metadata={"dagster/column_schema": declared})
    def as_declared(spark: SparkResource) -> DataFrame:
        return spark.get_session().createDataFrame([(1, "x")], "a int, b string")

    @dg.asset(key=["sandbox", "drifted"], metadata={"dagster/column_schema": declared})
    def drifted(spark: SparkResource) -> DataFrame:
        return spark.get_session().createDataFrame([(1, 2)], "a int, b bigint")

    result = _run([as_declared, drifted], res)
    same = _metadata(result, dg.AssetKey(["sandbox", "as_declared"]))
    assert same["lake/schema_as_declared"] is True and "dagster/column_schema" not in same
    other = _metadata(result, dg.AssetKey(["sandbox", "drifted"]))
    assert other["lake/schema_as_declared"] is False
    assert [(c.name, c.type, c.description) for c in other["dagster/column_schema"].columns] == [
        ("a", "int", "the a"), ("b", "bigint", None)]


def test_first_write_of_an_empty_table_reports_zero_rows(res, spark):
    """A first append (replace_key) of no rows creates the table without a data file, and Delta leaves
    numOutputRows out of that commit (as for raw.inventory before any snapshot lands): 0 rows, not 'None'."""
    @dg.asset(key=["sandbox", "nothing_yet"], metadata={"replace_key": "batch"})
    def nothing_yet(spark: SparkResource):
        empty = spark.get_session().createDataFrame([], "batch string, b string")
        return Replacing(empty, ["b1"])

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([nothing_yet], resources=res, instance=instance)
    md = _metadata(result, dg.AssetKey(["sandbox", "nothing_yet"]))
    assert md["dagster/row_count"] == 0 and md["lake/files_written"] == 0
    assert spark.read.format("delta").load(md["dagster/uri"]).count() == 0
    wrote = [e.user_message for e in instance.all_logs(result.run_id) if ": wrote " in (e.user_message or "")]
    assert wrote and wrote[0].startswith("sandbox/nothing_yet: wrote 0 rows in 0 files"), wrote


def test_announced_replace_values_stay_out_of_the_materialization_and_long_predicates_are_shortened(res, spark):
    """``Replacing(df, values)``: the write replaces exactly those values (other batches stay), the values are not
    copied into the materialization, and a replaceWhere longer than SHOWN_PREDICATE_CHARS is shortened there
    while the Delta commit keeps it whole."""
    from deltalake import DeltaTable

    batches = [f"batch-{i:04d}" for i in range(60)]

    def asset_writing(values):
        @dg.asset(key=["sandbox", "appended"], metadata={"replace_key": "batch"})
        def appended(spark: SparkResource):
            df = spark.get_session().createDataFrame([(b, i) for i, b in enumerate(values)], "batch string, n int")
            return Replacing(df, values)
        return appended

    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([asset_writing(["other"])], resources=res, instance=instance).success
    result = dg.materialize([asset_writing(batches)], resources=res, instance=instance)
    md = _metadata(result, dg.AssetKey(["sandbox", "appended"]))
    assert not any("replace_values" in k for k in md)
    shown = md["lake/replace_where"]  # a long IN list is said as its count and range
    assert shown == "(batch IN (60 values, 'batch-0000' .. 'batch-0059'))", shown
    assert len(shown) < SHOWN_PREDICATE_CHARS
    table = spark.read.format("delta").load(md["dagster/uri"])
    assert sorted(r["batch"] for r in table.collect()) == sorted(["other", *batches])
    predicate = DeltaTable(md["dagster/uri"]).history(1)[0]["operationParameters"]["predicate"]
    assert all(f"'{b}'" in predicate for b in batches) and len(predicate) > SHOWN_PREDICATE_CHARS


def test_asset_key_must_be_layer_and_table(res):
    @dg.asset(key=["too", "many", "parts"])
    def deep(spark: SparkResource) -> DataFrame:
        return spark.get_session().range(1)

    result = _run([deep], res, raise_on_error=False)
    assert not result.success
    text = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.to_string()
    assert "[layer, table]" in text


def test_one_spark_session_serves_every_asset_of_a_run(res):
    apps = []

    def make(i):
        @dg.asset(key=["sandbox", f"chain_{i}"], deps=[dg.AssetKey(["sandbox", f"chain_{i - 1}"])] if i else [])
        def step(spark: SparkResource) -> DataFrame:
            session = spark.get_session()
            apps.append((session.session_id if hasattr(session, "session_id") else session.sparkContext.applicationId,
                         id(session)))
            return session.range(i + 1)

        return step

    assert _run([make(i) for i in range(6)], res).success  # (_run: the run's Spark was the engine)
    assert len(apps) == 6 and len(set(apps)) == 1  # one Connect session served every step


# ---- checks of a partition range ----------------------------------------------------------------------
@pytest.mark.parametrize("small_rows", [0, None], ids=["narrowed-to-keys", "small-table-whole"])
def test_checks_of_some_days_still_see_keys_and_references_on_other_days(res, spark, monkeypatch, small_rows):
    """In a partitioned run a table's checks (in its asset's step) look at the run's days, and the whole-table
    sides of their joins are narrowed to the keys of those days on big tables (``CheckContext.matching``, the
    key-uniqueness check), read whole on small ones: either way a key repeated on another day still fails
    ``unique_key``, a reference found only through another table still counts, and an orphan on a day outside
    the run is not counted."""
    from ecommerce_lake.defs.checks import WARN, CheckContext, TableCheck, TableChecks
    from ecommerce_lake.defs.keys import key_of
    from ecommerce_lake.defs.resources import QualityResource
    from ecommerce_lake.defs.tables import emit, table_asset
    from ecommerce_lake.logic import frames
    from ecommerce_lake.schemas._base import DATE, STRING, column, table

    if small_rows is not None:  # every table counts as big: the narrowing path
        monkeypatch.setattr(frames, "SMALL_TABLE_ROWS", small_rows)
    schema = table("sandbox.orders_by_day", "Orders by day.", {
        "day": column(DATE, "Day."), "order_id": column(STRING, "Order."), "parent_id": column(STRING, "Parent.")},
        key=["order_id"], day_column="day")
    parents_key = dg.AssetKey(["sandbox", "parents"])
    rows = {dt.date(2024, 1, 1): [("A", "P1"), ("B", "P9")], dt.date(2024, 1, 2): [("A", "P1"), ("C", "P2")]}

    @dg.asset(key=parents_key)
    def parents(spark: SparkResource) -> DataFrame:
        return spark.get_session().createDataFrame([("P1",), ("P2",)], "parent_id string")

    def orphans(env: CheckContext) -> dg.AssetCheckResult:
        mine = env.read(key_of(schema), "day", columns=["parent_id"])
        found = env.matching(parents_key, mine, ["parent_id"], "day").withColumn("f", F.lit(1))
        n = mine.join(found, "parent_id", "left").where("f IS NULL").count()
        return dg.AssetCheckResult(passed=n == 0, metadata={"orphans": n})

    checks = TableChecks(schema, [TableCheck("parent_exists", "Every parent exists.", orphans, WARN)], blocking=False)

    @dg.multi_asset(**table_asset(checks), deps=[parents_key])  # daily partitions: the schema's day column
    def orders_by_day(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource,
                      quality: QualityResource):
        day = context.partition_time_window.start.date()
        yield from emit(context, lake, quality, {"orders_by_day": lambda: spark.get_session().createDataFrame(
            [(day, o, p) for o, p in rows[day]], "day date, order_id string, parent_id string")}, [checks])

    resources = {**res, "quality": QualityResource()}

    def evaluate(day: str) -> dict:  # a partition range run, as the lake's runs and backfills are
        result = _run([parents, orders_by_day], resources,
                      tags={"dagster/asset_partition_range_start": day, "dagster/asset_partition_range_end": day})
        assert result.success
        return {e.check_name: e for e in result.get_asset_check_evaluations()}

    first = evaluate("2024-01-01")
    assert first["unique_key"].passed
    assert not first["parent_exists"].passed and first["parent_exists"].metadata["orphans"].value == 1  # B -> P9
    second = evaluate("2024-01-02")
    assert not second["unique_key"].passed  # A is on 2024-01-01 too
    assert second["unique_key"].metadata["failed/unique_key:order_id"].value == 1
    assert second["unique_key"].metadata["sample/unique_key:order_id"].value == [{"order_id": "A", "count": 2}]
    assert second["parent_exists"].passed  # P1 and P2 exist; B's orphan is on another day
    assert "2024-01-02" in second["columns_match_schema"].metadata["scope"].value


def test_key_range_lets_delta_skip_files_and_changes_no_join_result(spark, tmp_path):
    """``frames.kept_keys``: the keys' [min, max] on the looked-up column lets Delta skip the files whose
    statistics lie outside it (fewer input files), and a semi-join with the keys returns the same rows with and
    without it, including raw values that match a key only once trimmed (leading and trailing spaces). The keys
    are computed once and kept: their cached size is known to Spark's planner."""
    from ecommerce_lake.logic.parsing import clean
    from ecommerce_lake.logic.frames import Held, kept_keys, semi_join_keys

    path = str(tmp_path / "ids")
    for batch in range(4):  # four files, ids issued in sequence: O0000..O0099, O1000..O1099, ...
        rows = [(f"O{batch}{i:03d}", i) for i in range(100)]
        if batch == 1:
            rows += [(" O1005", 900), ("O1050  ", 901), ("  ", 902)]
        spark.createDataFrame(rows, "order_id string, n int").coalesce(1).write.format("delta").mode("append").save(path)
    table = spark.read.format("delta").load(path)
    keys_df = spark.createDataFrame([("O1005",), ("O1050",), ("O1099",)], "order_id string")
    with Held() as held:
        keys = kept_keys(keys_df, "order_id", held)
        assert (keys.lo, keys.hi, keys.spaced) == ("O1005", "O1099", False)
        assert keys.df.is_cached
        exact = keys.narrow(table)
        assert len(exact.inputFiles()) == 1 and len(table.inputFiles()) == 4
        joined = semi_join_keys(table, keys_df, ["order_id"], held)
        assert sorted(r.n for r in joined.collect()) == [5, 50, 99]

        raw = keys.narrow(table, trimmed=True)
        assert len(raw.inputFiles()) == 1
        on = clean("order_id") == F.col("k")
        k = keys_df.withColumnRenamed("order_id", "k")
        expected = sorted(r.n for r in table.join(k, on, "left_semi").collect())
        assert expected == [5, 50, 99, 900, 901]
        assert sorted(r.n for r in raw.join(k, on, "left_semi").collect()) == expected

        # keys holding a space or a control character: no bound holds for their trimmed raw values, no predicate
        odd = kept_keys(spark.createDataFrame([("O1 005",)], "order_id string"), "order_id", held)
        assert odd.spaced and odd.range_on(trimmed=True) is None
        assert odd.range_on() is not None  # exact matches still have a range
        assert kept_keys(keys_df.where("order_id = 'none'"), "order_id", held).range_on() is None  # no keys
        renamed = kept_keys(k, "k", held)  # the table's column may be named differently
        assert len(renamed.narrow(table, "order_id").inputFiles()) == 1
        numbers = kept_keys(spark.createDataFrame([(3,), (7,)], "n int"), "n", held)  # not text: no space check
        assert (numbers.lo, numbers.hi, numbers.spaced) == (3, 7, False)
    assert not keys.df.is_cached
