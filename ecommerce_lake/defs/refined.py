"""Refined layer: typed, deduplicated, conformed tables; rejects; the county reference."""

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.contract import BY_NAME, LANDING_FILES
from ecommerce_lake.defs.common import CheckEnv, ExtraCheck, asset_kwargs, key_of, table_checks
from ecommerce_lake.defs.raw import RAW_KEYS
from ecommerce_lake.logic import refine
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


@dg.asset(
    **asset_kwargs(schemas.orders),
    ins={
        "raw_orders": _raw_in("orders"),
        "customers": dg.AssetIn(key=REFINED_KEYS["customers"], metadata={"columns": ["customer_id", "county_code"]}),
    },
)
def refined_orders(raw_orders: DataFrame, customers: DataFrame, pseudonym: PseudonymKeyResource) -> DataFrame:
    return refine.refine_orders(raw_orders, customers, pseudonym.key())


@dg.asset(**asset_kwargs(schemas.order_items), ins={"raw_order_items": _raw_in("order_items")})
def refined_order_items(raw_order_items: DataFrame) -> DataFrame:
    return refine.refine_order_items(raw_order_items)


@dg.asset(**asset_kwargs(schemas.payments), ins={"raw_payments": _raw_in("payments")})
def refined_payments(raw_payments: DataFrame) -> DataFrame:
    return refine.refine_payments(raw_payments)


@dg.asset(**asset_kwargs(schemas.rejects), ins={f"raw_{f.name}": _raw_in(f.name) for f in LANDING_FILES})
def refined_rejects(
    raw_customers: DataFrame,
    raw_products: DataFrame,
    raw_orders: DataFrame,
    raw_order_items: DataFrame,
    raw_payments: DataFrame,
) -> DataFrame:
    return refine.rejects(
        {"customers": raw_customers, "products": raw_products, "orders": raw_orders,
         "order_items": raw_order_items, "payments": raw_payments}
    )


# ---- checks -------------------------------------------------------------------------------------------
def _rows_accounted(table: str) -> ExtraCheck:
    spec = BY_NAME[table]
    key = REFINED_KEYS[table]

    def fn(env: CheckEnv) -> dg.AssetCheckResult:
        lake = env.lake
        raw = lake.read(RAW_KEYS[table])
        parsed = refine.PARSERS[table](raw).select(
            *spec.key, "_source_file", "_row_number", "__content", (F.size("_rules") > 0).alias("bad")
        )
        kept = lake.read(key, columns=[*spec.key, "_source_file", "_row_number"])
        kept_keys = kept.select(*spec.key).distinct().withColumn("in_kept", F.lit(True))
        rejected = (
            lake.read(REFINED_KEYS["rejects"], columns=["table", "source_file", "row_number"])
            .where(F.col("table") == table)
            .select(F.col("source_file").alias("_source_file"), F.col("row_number").alias("_row_number"))
            .withColumn("in_rejects", F.lit(True))
        )
        lineage = raw.select("_source_file", "_row_number").withColumn("in_raw", F.lit(True))
        j = parsed.join(kept_keys, list(spec.key), "left").join(rejected, ["_source_file", "_row_number"], "left")
        good = ~F.col("bad")
        stats = j.agg(
            F.count(F.lit(1)).alias("read"),
            F.sum(F.when(F.col("bad"), 1).otherwise(0)).alias("bad"),
            F.sum(F.when(F.col("in_rejects").isNotNull(), 1).otherwise(0)).alias("in_rejects"),
            F.sum(F.when(F.col("bad") & F.col("in_rejects").isNull(), 1).otherwise(0)).alias("bad_not_in_rejects"),
            F.sum(F.when(good & F.col("in_kept").isNull(), 1).otherwise(0)).alias("lost"),
            F.countDistinct(F.when(good, F.col("__content"))).alias("distinct_good"),
        ).collect()[0]
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
        passed = (stats["lost"] == 0 and stats["bad_not_in_rejects"] == 0 and not_from_raw == 0
                  and collapsed >= 0 and rejected_rows == int(stats["bad"]))
        return dg.AssetCheckResult(
            passed=bool(passed),
            metadata={
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
        additional_deps=[RAW_KEYS[table], REFINED_KEYS["rejects"]],
    )


def _references(child: str, columns: list[str], parent: str, name: str) -> ExtraCheck:
    def fn(env: CheckEnv) -> dg.AssetCheckResult:
        rows = env.lake.read(REFINED_KEYS[child], columns=columns)
        ref = env.lake.read(REFINED_KEYS[parent], columns=columns).distinct().withColumn("__found", F.lit(True))
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
    "orders": [_rows_accounted("orders"), _references("orders", ["customer_id"], "customers", "customer_exists")],
    "order_items": [_rows_accounted("order_items"),
                    _references("order_items", ["order_id"], "orders", "order_exists"),
                    _references("order_items", ["product_id"], "products", "product_exists")],
    "payments": [_rows_accounted("payments"), _references("payments", ["order_id"], "orders", "order_exists")],
}

ASSETS = [refined_counties, refined_customers, refined_products, refined_orders, refined_order_items,
          refined_payments, refined_rejects]
CHECKS = [table_checks(s, blocking=True, extra=EXTRA.get(s.name.split(".")[1], ())) for s in schemas.ALL]

defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS)
