"""Refined layer: typed, deduplicated, conformed tables; rejects; the county reference."""

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.contract import BY_NAME
from ecommerce_lake.defs.conditions import with_automation
from ecommerce_lake.defs.common import CheckEnv, ExtraCheck, asset_kwargs, asset_out, key_of, table_checks
from ecommerce_lake.defs.raw import RAW_KEYS
from ecommerce_lake.logic import refine
from ecommerce_lake.partitions import DAILY, SINGLE_RUN
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.platform.secrets import PseudonymKeyResource
from ecommerce_lake.platform.spark import SparkResource
from ecommerce_lake.schemas import refined as schemas

REFINED_KEYS = {s.name.split(".")[1]: key_of(s) for s in schemas.ALL}


def _raw_in(table: str) -> dg.AssetIn:
    return dg.AssetIn(key=RAW_KEYS[table])


@dg.asset(**{**asset_kwargs(schemas.counties), "kinds": {"spark", "delta", "csv"}})
def refined_counties(spark: SparkResource) -> DataFrame:
    """The 47 counties from the package's KNBS 2019 reference table."""
    return refine.counties_table(spark.get_session())


@dg.asset(**asset_kwargs(schemas.customers), ins={"raw_customers": _raw_in("customers")})
def refined_customers(raw_customers: DataFrame, pseudonym: PseudonymKeyResource) -> DataFrame:
    return refine.refine_customers(raw_customers, pseudonym.key())


@dg.asset(**asset_kwargs(schemas.products), ins={"raw_products": _raw_in("products")})
def refined_products(raw_products: DataFrame) -> DataFrame:
    return refine.refine_products(raw_products)


@dg.asset(**asset_kwargs(schemas.inventory), ins={"raw_inventory": _raw_in("inventory")})
def refined_inventory(raw_inventory: DataFrame) -> DataFrame:
    return refine.refine_inventory(raw_inventory)


SALES_OUTS = {"orders": "order_date", "order_items": "order_date", "payments": "paid_date",
              "sales_rejects": "partition_date"}


@dg.multi_asset(
    name="refine_sales",
    outs={name: asset_out(getattr(schemas, name), partition_expr=column) for name, column in SALES_OUTS.items()},
    ins={"customers": dg.AssetIn(key=REFINED_KEYS["customers"], metadata={"columns": ["customer_id", "county_code"]})},
    deps=[RAW_KEYS["orders"], RAW_KEYS["order_items"], RAW_KEYS["payments"]],
    partitions_def=DAILY,
    backfill_policy=SINGLE_RUN,
    description="Refine the day partitions of orders, order lines and payments: parse, apply the row rules, keep "
    "the current version of each key (reading every raw version of the orders and payments the days hold), "
    "resolve counties, pseudonymise customers; rule breakers go to refined.sales_rejects.",
)
def refine_sales(context: dg.AssetExecutionContext, customers: DataFrame, lake: LakeResource,
                 pseudonym: PseudonymKeyResource):
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
    )
    held: list[DataFrame] = []
    outputs = refine.refine_sales(inputs, pseudonym.key(), held)
    for name in SALES_OUTS:
        yield dg.Output(outputs[name], output_name=name)
    for df in held:  # every output is written: release the intermediate results
        df.unpersist()


@dg.asset(**asset_kwargs(schemas.rejects), ins={f"raw_{t}": _raw_in(t) for t in ("customers", "products", "inventory")})
def refined_rejects(raw_customers: DataFrame, raw_products: DataFrame, raw_inventory: DataFrame) -> DataFrame:
    return refine.rejects({"customers": raw_customers, "products": raw_products, "inventory": raw_inventory})


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
        # every kept version of the keys read (a key may have moved to a day outside this run's partitions)
        kept_keys = (env.matching(lake.read(key, columns=list(spec.key)), parsed, spec.key, day).distinct()
                     .withColumn("in_kept", F.lit(True)))
        kept = env.read(key, day, columns=[*spec.key, "_source_file", "_row_number"])
        rejected = (
            env.read(rejects_key, "partition_date" if partitioned else None,
                     columns=["table", "source_file", "row_number"])
            .where(F.col("table") == table)
            .select(F.col("source_file").alias("_source_file"), F.col("row_number").alias("_row_number"))
            .withColumn("in_rejects", F.lit(True))
        )
        lineage = env.matching(lake.read(RAW_KEYS[table], columns=["_source_file", "_row_number"]), kept,
                               ["_source_file", "_row_number"], day).withColumn("in_raw", F.lit(True))
        j = parsed.join(kept_keys, list(spec.key), "left").join(rejected, ["_source_file", "_row_number"], "left")
        good = ~F.col("bad")
        stats = j.agg(
            F.count(F.lit(1)).alias("read"),
            F.sum(F.when(F.col("bad"), 1).otherwise(0)).alias("bad"),
            F.sum(F.when(F.col("in_rejects").isNotNull(), 1).otherwise(0)).alias("in_rejects"),
            F.sum(F.when(F.col("bad") & F.col("in_rejects").isNull(), 1).otherwise(0)).alias("bad_not_in_rejects"),
            F.sum(F.when(good & F.col("in_kept").isNull(), 1).otherwise(0)).alias("lost"),
            F.countDistinct(F.when(good, F.col("__content"))).alias("distinct_good"),
        ).collect()[0].asDict()
        stats = {k: (v or 0) for k, v in stats.items()}  # sums over no rows are null (e.g. no inventory yet)
        kept_stats = kept.join(lineage, ["_source_file", "_row_number"], "left").agg(
            F.count(F.lit(1)).alias("kept"),
            F.sum(F.when(F.col("in_raw").isNull(), 1).otherwise(0)).alias("not_from_raw"),
        ).collect()[0]
        read, rejected_rows = int(stats["read"]), int(stats["in_rejects"])
        kept_rows, not_from_raw = int(kept_stats["kept"]), int(kept_stats["not_from_raw"] or 0)
        collapsed = read - kept_rows - rejected_rows
        exact = (read - int(stats["bad"])) - int(stats["distinct_good"] or 0)
        lost_sample = []
        if stats["lost"]:
            lost_sample = [{k: str(v) for k, v in r.asDict().items()}
                           for r in j.where(good & F.col("in_kept").isNull())
                           .select(*spec.key, "_source_file", "_row_number").limit(5).collect()]
        # Within a set of day partitions an order may have moved in or out (its order_ts changed day), so the
        # equation holds exactly for the whole table; nothing may ever be lost or missing from rejects.
        passed = (stats["lost"] == 0 and stats["bad_not_in_rejects"] == 0 and not_from_raw == 0
                  and rejected_rows == int(stats["bad"]) and (partitioned or collapsed >= 0))
        return dg.AssetCheckResult(
            passed=bool(passed),
            metadata={
                "scope": env.scope(RAW_DAY[table]) if partitioned and env.scope(RAW_DAY[table]) else "whole table",
                "rows_read": read,
                "rows_kept": kept_rows,
                "duplicates_collapsed": collapsed,
                "exact_duplicates": exact,
                "older_versions": collapsed - exact,
                "rows_rejected": rejected_rows,
                "rows_lost": int(stats["lost"]),
                "invalid_rows_missing_from_rejects": int(stats["bad_not_in_rejects"]),
                "kept_rows_not_from_raw": not_from_raw,
                "lost_sample": dg.MetadataValue.json(lost_sample),
                "equation": f"{read} read = {kept_rows} kept + {collapsed} collapsed + {rejected_rows} rejected",
            },
        )

    return ExtraCheck(
        "rows_accounted",
        f"Every row of raw.{table} is kept, collapsed (exact duplicate or older version of a kept row) or "
        "rejected: rows read = rows kept + duplicates collapsed + rows rejected.",
        fn,
        blocking=True,
        additional_deps=[RAW_KEYS[table], rejects_key],
    )


def _references(child: str, columns: list[str], parent: str, name: str) -> ExtraCheck:
    def fn(env: CheckEnv) -> dg.AssetCheckResult:
        rows = env.read(REFINED_KEYS[child], SALES_OUTS.get(child), columns=columns)
        ref = (env.matching(env.lake.read(REFINED_KEYS[parent], columns=columns), rows, columns, SALES_OUTS.get(child))
               .distinct().withColumn("__found", F.lit(True)))
        j = rows.join(ref, columns, "left")
        stats = j.agg(F.count(F.lit(1)).alias("rows"),
                      F.sum(F.when(F.col("__found").isNull(), 1).otherwise(0)).alias("orphans")).collect()[0]
        total, orphans = int(stats["rows"]), int(stats["orphans"] or 0)
        sample = [r.asDict() for r in j.where(F.col("__found").isNull()).select(*columns).distinct()
                  .limit(5).collect()] if orphans else []
        return dg.AssetCheckResult(
            passed=orphans == 0,
            metadata={"orphans": orphans, "rows": total,
                      "orphan_share": dg.MetadataValue.float(orphans / total if total else 0.0),
                      "sample_orphans": dg.MetadataValue.json(sample)},
        )

    return ExtraCheck(name, f"Every {child} row's ({', '.join(columns)}) exists in refined.{parent} (warning).",
                      fn, additional_deps=[REFINED_KEYS[parent]])


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

ASSETS = with_automation([refined_counties, refined_customers, refined_products, refined_inventory, refine_sales,
                          refined_rejects])
CHECKS = [
    table_checks(s, blocking=True, extra=EXTRA.get(s.name.split(".")[1], ()),
                 partition_expr=SALES_OUTS.get(s.name.split(".")[1]))
    for s in schemas.ALL
]

defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS)
