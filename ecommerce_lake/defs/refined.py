"""Refined layer: typed, deduplicated, conformed tables; rejects; the county reference."""

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.contract import BY_NAME
from ecommerce_lake.defs.conditions import with_automation
from ecommerce_lake.defs.common import (
    CheckEnv, ExtraCheck, QualityResource, TableChecks, evaluate_checks, asset_out, emit, key_of, selected, table_asset,
)
from ecommerce_lake.defs.raw import RAW_KEYS
from ecommerce_lake.logic import refine
from ecommerce_lake.partitions import DAILY, SINGLE_RUN
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.platform.secrets import PseudonymKeyResource
from ecommerce_lake.platform.spark import SparkResource
from ecommerce_lake.schemas import refined as schemas

REFINED_KEYS = {s.name.split(".")[1]: key_of(s) for s in schemas.ALL}
SALES_OUTS = {"orders": "order_date", "order_items": "order_date", "payments": "paid_date",
              "sales_rejects": "partition_date"}


# ---- checks -------------------------------------------------------------------------------------------
RAW_DAY = {"orders": "_order_date", "order_items": "_order_date", "payments": "_paid_date"}
REJECTS_OF = {"customers": "rejects", "products": "rejects", "inventory": "rejects", "orders": "sales_rejects",
              "order_items": "sales_rejects", "payments": "sales_rejects"}


def _rows_accounted(table: str) -> ExtraCheck:
    spec = BY_NAME[table]
    key = REFINED_KEYS[table]
    partitioned = table in RAW_DAY
    rejects_key = REFINED_KEYS[REJECTS_OF[table]]

    def fn(env: CheckEnv) -> dg.AssetCheckResult:
        lake = env.lake
        raw = env.read(RAW_KEYS[table], RAW_DAY.get(table))  # the run's partitions (or the whole table)
        parsed = refine.PARSERS[table](raw).select(
            *spec.key, "_source_file", "_row_number", "__content", (F.size("_rules") > 0).alias("bad")
        )
        day = SALES_OUTS.get(table)
        # the kept version of every key read, with its lineage (a key may have moved to a day outside this run's
        # partitions): a read row is the kept one, or collapsed into it, or neither
        kept_of_keys = env.matching(key, parsed, spec.key, day, columns=[*spec.key, "_source_file", "_row_number"])
        kept_of_keys = kept_of_keys.select(*spec.key, F.col("_source_file").alias("__kept_file"),
                                           F.col("_row_number").alias("__kept_row"))
        kept = env.read(key, day, columns=[*spec.key, "_source_file", "_row_number"])
        rejected = (
            env.read(rejects_key, "partition_date" if partitioned else None,
                     columns=["table", "source_file", "row_number"])
            .where(F.col("table") == table)
            .select(F.col("source_file").alias("_source_file"), F.col("row_number").alias("_row_number"))
            .withColumn("in_rejects", F.lit(True))
        )
        lineage = env.matching(RAW_KEYS[table], kept, ["_source_file", "_row_number"], day,
                               columns=["_source_file", "_row_number"]).withColumn("in_raw", F.lit(True))
        j = parsed.join(kept_of_keys, list(spec.key), "left").join(rejected, ["_source_file", "_row_number"], "left")
        good, has_kept = ~F.col("bad"), F.col("__kept_file").isNotNull()
        is_kept = has_kept & (F.col("__kept_file") == F.col("_source_file")) & (F.col("__kept_row") == F.col("_row_number"))

        def n(condition):
            return F.sum(F.when(condition, 1).otherwise(0))

        # the kept rows and those without a raw row behind them; computed with the read rows' classes below, in
        # one query (one round trip, one plan)
        kept_side = kept.join(lineage, ["_source_file", "_row_number"], "left").agg(
            F.count(F.lit(1)).alias("kept"),
            n(F.col("in_raw").isNull()).alias("not_from_raw"),
        )
        # each class counted on its own (no class is the remainder of the others), so the equation can fail:
        # a row in no class (lost, or invalid and not rejected) or in two (a rejected row also kept) breaks it
        stats = j.agg(
            F.count(F.lit(1)).alias("read"),
            n(F.col("bad")).alias("bad"),
            n(is_kept).alias("kept_read"),
            n(good & has_kept & ~is_kept).alias("collapsed"),
            n(F.col("in_rejects").isNotNull()).alias("in_rejects"),
            n(F.col("bad") & F.col("in_rejects").isNull()).alias("bad_not_in_rejects"),
            n(good & ~has_kept).alias("lost"),
            F.countDistinct(F.when(good, F.col("__content"))).alias("distinct_good"),
        ).crossJoin(kept_side).collect()[0].asDict()
        stats = {k: int(v or 0) for k, v in stats.items()}  # sums over no rows are null (e.g. no inventory yet)
        read, rejected_rows, kept_read = stats["read"], stats["in_rejects"], stats["kept_read"]
        collapsed = stats["collapsed"]
        kept_rows, not_from_raw = stats["kept"], stats["not_from_raw"]
        exact = (read - stats["bad"]) - stats["distinct_good"]  # good rows repeating another good row's content
        lost_sample = []
        if stats["lost"]:
            lost_sample = [{k: str(v) for k, v in r.asDict().items()}
                           for r in j.where(good & ~has_kept)
                           .select(*spec.key, "_source_file", "_row_number").limit(5).collect()]
        # Within a set of day partitions an order may have moved in or out (its order_ts changed day), so the kept
        # rows of those partitions need not be the kept rows read; over the whole table they are the same rows.
        balanced = read == kept_read + collapsed + rejected_rows
        passed = (balanced and stats["lost"] == 0 and stats["bad_not_in_rejects"] == 0 and not_from_raw == 0
                  and rejected_rows == stats["bad"] and (partitioned or kept_read == kept_rows))
        return dg.AssetCheckResult(
            passed=bool(passed),
            metadata={
                "scope": env.scope(RAW_DAY[table]) if partitioned and env.scope(RAW_DAY[table]) else "whole table",
                "rows_read": read,
                "rows_kept": kept_rows,
                "rows_read_kept": kept_read,
                "duplicates_collapsed": collapsed,
                "exact_duplicates": exact,
                "older_versions": collapsed - exact,
                "rows_rejected": rejected_rows,
                "rows_lost": int(stats["lost"]),
                "invalid_rows_missing_from_rejects": int(stats["bad_not_in_rejects"]),
                "kept_rows_not_from_raw": not_from_raw,
                "lost_sample": dg.MetadataValue.json(lost_sample),
                "equation": (f"{read} read {'=' if balanced else '!='} {kept_read} kept + {collapsed} collapsed + "
                             f"{rejected_rows} rejected"),
            },
        )

    return ExtraCheck(
        "rows_accounted",
        f"Every row of raw.{table} is kept, collapsed (exact duplicate or older version of a kept row) or "
        "rejected: rows read = rows kept + duplicates collapsed + rows rejected.",
        fn,
        blocking=True,
    )


def _references(child: str, columns: list[str], parent: str, name: str) -> ExtraCheck:
    def fn(env: CheckEnv) -> dg.AssetCheckResult:
        rows = env.read(REFINED_KEYS[child], SALES_OUTS.get(child), columns=columns)
        ref = (env.matching(REFINED_KEYS[parent], rows, columns, SALES_OUTS.get(child), columns=columns)
               .distinct().withColumn("__found", F.lit(True)))
        j = rows.join(ref, columns, "left")
        stats = j.agg(F.count(F.lit(1)).alias("rows"),
                      F.sum(F.when(F.col("__found").isNull(), 1).otherwise(0)).alias("orphans")).collect()[0]
        total, orphans = int(stats["rows"]), int(stats["orphans"] or 0)
        sample, of_rejected = [], 0
        if orphans:
            lost = j.where(F.col("__found").isNull()).select(*columns)
            sample = [r.asDict() for r in lost.distinct().limit(5).collect()]
            # orphans whose parent row arrived but broke a rule (it is in the parent's rejects, by its key)
            rejected = (env.lake.read(REFINED_KEYS[REJECTS_OF[parent]], columns=["table", "record_key"])
                        .where(F.col("table") == parent).select(F.col("record_key").alias(columns[0])).distinct())
            of_rejected = lost.join(rejected, columns[0], "left_semi").count()
        unknown = orphans - of_rejected
        explanation = "" if not orphans else (
            f"{orphans} {child} row(s) refer to a {parent[:-1] if parent.endswith('s') else parent} that is not in "
            f"refined.{parent}: {of_rejected} to one that arrived but was rejected (refined."
            f"{REJECTS_OF[parent]}, with its rule), {unknown} to one that never arrived")
        return dg.AssetCheckResult(
            passed=orphans == 0,
            metadata={"orphans": orphans, "rows": total,
                      "orphan_share": dg.MetadataValue.float(orphans / total if total else 0.0),
                      "orphans_of_rejected_parents": of_rejected, "orphans_of_unknown_parents": unknown,
                      "explanation": explanation, "sample_orphans": dg.MetadataValue.json(sample)},
        )

    return ExtraCheck(name, f"Every {child} row's ({', '.join(columns)}) exists in refined.{parent} (warning; the "
                      "metadata tells orphans of rejected parents from those of parents that never arrived).", fn)


def _all_47_counties(env: CheckEnv) -> dg.AssetCheckResult:
    rows = env.lake.read(REFINED_KEYS["counties"]).collect()
    codes = sorted(r["county_code"] for r in rows)
    missing = sorted(set(range(1, 48)) - set(codes))
    return dg.AssetCheckResult(
        passed=codes == list(range(1, 48)) and all(r["population_2019"] > 0 for r in rows),
        metadata={"counties": len(rows), "missing_codes": dg.MetadataValue.json(missing),
                  "total_population_2019": sum(r["population_2019"] for r in rows)},
    )


EXTRA = {
    "counties": [ExtraCheck("all_47_counties", "The reference holds exactly the 47 counties, codes 1..47, each "
                            "with a population.", _all_47_counties, blocking=True)],
    "customers": [_rows_accounted("customers")],
    "products": [_rows_accounted("products")],
    "inventory": [_rows_accounted("inventory")],
    "orders": [_rows_accounted("orders"), _references("orders", ["customer_id"], "customers", "customer_exists")],
    "order_items": [_rows_accounted("order_items"),
                    _references("order_items", ["order_id"], "orders", "order_exists"),
                    _references("order_items", ["product_id"], "products", "product_exists")],
    "payments": [_rows_accounted("payments"), _references("payments", ["order_id"], "orders", "order_exists")],
}

CHECKS = {s.name.split(".")[1]: TableChecks(s, extra=EXTRA.get(s.name.split(".")[1], ()),
                                             partition_expr=SALES_OUTS.get(s.name.split(".")[1]))
          for s in schemas.ALL}
REFERENCE = ("customers", "products", "inventory", "rejects")


def _specs(*tables: str) -> list[dg.AssetCheckSpec]:
    return [spec for t in tables for spec in CHECKS[t].specs]


@dg.multi_asset(**table_asset(CHECKS["counties"], kinds={"spark", "delta", "csv"}))
def refined_counties(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource,
                     quality: QualityResource):
    """The 47 counties from the package's KNBS 2019 reference table."""
    yield from emit(context, lake, quality, {"counties": lambda: refine.counties_table(spark.get_session())},
                    [CHECKS["counties"]])


@dg.multi_asset(
    name="refine_reference",
    outs={t: asset_out(getattr(schemas, t)) for t in REFERENCE},
    ins={f"raw_{t}": dg.AssetIn(key=RAW_KEYS[t]) for t in ("customers", "products", "inventory")},
    internal_asset_deps={
        "customers": {RAW_KEYS["customers"]}, "products": {RAW_KEYS["products"]},
        "inventory": {RAW_KEYS["inventory"]},
        "rejects": {RAW_KEYS["customers"], RAW_KEYS["products"], RAW_KEYS["inventory"]},
    },
    check_specs=_specs(*REFERENCE),
    can_subset=True,
    description="Refine the customers (pseudonymised, counties resolved), products and inventory snapshots: parse, "
    "apply the row rules, keep the current version of each key; rule breakers go to refined.rejects. One step, "
    "so each table's rows_accounted check sees the rejects written with it.",
)
def refine_reference(context: dg.AssetExecutionContext, raw_customers: DataFrame, raw_products: DataFrame,
                     raw_inventory: DataFrame, pseudonym: PseudonymKeyResource, lake: LakeResource,
                     quality: QualityResource):
    yield from emit(context, lake, quality, {
        "customers": lambda: refine.refine_customers(raw_customers, pseudonym.key()),
        "products": lambda: refine.refine_products(raw_products),
        "inventory": lambda: refine.refine_inventory(raw_inventory),
        "rejects": lambda: refine.rejects({"customers": raw_customers, "products": raw_products,
                                           "inventory": raw_inventory}),
    }, [CHECKS[t] for t in REFERENCE])


@dg.multi_asset(
    name="refine_sales",
    outs={name: asset_out(getattr(schemas, name), partition_expr=column) for name, column in SALES_OUTS.items()},
    ins={"customers": dg.AssetIn(key=REFINED_KEYS["customers"], metadata={"columns": ["customer_id", "county_code"]})},
    deps=[RAW_KEYS["orders"], RAW_KEYS["order_items"], RAW_KEYS["payments"]],
    partitions_def=DAILY,
    backfill_policy=SINGLE_RUN,
    check_specs=_specs(*SALES_OUTS),
    can_subset=True,
    description="Refine the day partitions of orders, order lines and payments: parse, apply the row rules, keep "
    "the current version of each key (reading every raw version of the orders and payments the days hold), "
    "resolve counties, pseudonymise customers; rule breakers go to refined.sales_rejects. Then every check of the "
    "four tables (rows accounted for, references to customers, orders and products).",
)
def refine_sales(context: dg.AssetExecutionContext, customers: DataFrame, lake: LakeResource,
                 pseudonym: PseudonymKeyResource, quality: QualityResource):
    chosen = selected(context, *SALES_OUTS)
    if chosen:
        yield from _refine_sales_outputs(context, customers, lake, pseudonym, chosen)
    yield from evaluate_checks(context, lake, quality, [CHECKS[name] for name in SALES_OUTS])


def _refine_sales_outputs(context: dg.AssetExecutionContext, customers: DataFrame, lake: LakeResource,
                          pseudonym: PseudonymKeyResource, chosen: list[str]):
    window = context.partition_time_window
    refined_ids = None
    if lake.exists(REFINED_KEYS["orders"]):
        refined_ids = lake.read(REFINED_KEYS["orders"], columns=["order_id"])
    inputs = refine.SalesInputs(
        orders=lake.read(RAW_KEYS["orders"]),
        order_items=lake.read(RAW_KEYS["order_items"]),
        payments=lake.read(RAW_KEYS["payments"]),
        customers=customers,
        refined_order_ids=refined_ids,
        start=window.start.date(),
        end=window.end.date(),
        narrow=not (lake.is_small(RAW_KEYS["order_items"]) and lake.is_small(RAW_KEYS["orders"])),
    )
    held: list[DataFrame] = []
    try:
        outputs = refine.refine_sales(inputs, pseudonym.key(), held)
        for name in chosen:
            yield dg.Output(outputs[name], output_name=name)
    finally:
        for df in held:  # every output is written: release the intermediate results
            df.unpersist()


ASSETS = with_automation([refined_counties, refine_reference, refine_sales])
defs = dg.Definitions(assets=ASSETS)
