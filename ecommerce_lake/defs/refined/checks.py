"""Checks of the refined tables (besides their schema checks): every raw row accounted for, references between
tables, and the county reference."""

from __future__ import annotations

import dagster as dg
from pyspark.sql import functions as F

from ecommerce_lake.core.contract import BY_NAME
from ecommerce_lake.defs.checks import WARN, CheckContext, TableCheck, TableChecks, table_check
from ecommerce_lake.defs.keys import RAW_KEYS, REFINED_KEYS
from ecommerce_lake.defs.partitions import FIRST_DAY
from ecommerce_lake.logic.refined import refine
from ecommerce_lake.logic.refined.accounting import LINEAGE, account_rows
from ecommerce_lake.schemas import by_table, day_column
from ecommerce_lake.schemas import raw as raw_schemas
from ecommerce_lake.schemas import refined as schemas

REFERENCE = ("customers", "products", "inventory", "rejects")  # refine_reference writes these together
SALES_TABLES = ("orders", "order_items", "payments", "sales_rejects")  # refine_sales writes these together
SCHEMAS = by_table(schemas.ALL)
REJECTS_OF = {"customers": "rejects", "products": "rejects", "inventory": "rejects", "orders": "sales_rejects",
              "order_items": "sales_rejects", "payments": "sales_rejects"}


def rows_accounted(table: str) -> TableCheck:
    """Every row of raw.<table> in the run's day partitions (or the whole table) kept, collapsed or rejected."""
    spec = BY_NAME[table]
    key, raw_key, rejects_key = REFINED_KEYS[table], RAW_KEYS[table], REFINED_KEYS[REJECTS_OF[table]]
    raw_day = day_column(raw_schemas.TABLES[table])
    day, rejects_day = day_column(SCHEMAS[table]), day_column(SCHEMAS[REJECTS_OF[table]])

    @table_check("rows_accounted", f"Every row of raw.{table} is kept, collapsed (exact duplicate or older version of "
                 "a kept row) or rejected: rows read = rows kept + duplicates collapsed + rows rejected.")
    def check(ctx: CheckContext) -> dg.AssetCheckResult:
        raw = ctx.read(raw_key, raw_day)  # the run's partitions (or the whole table)
        keys = ctx.values["privacy_keys"].spark_keys() if table in raw_schemas.PERSONAL_FILES else None
        parsed = refine.parse(table, raw, FIRST_DAY, keys).select(*spec.key, *LINEAGE, "__content",
                                                            (F.size("_rules") > 0).alias("bad"))
        kept = ctx.read(key, day, columns=[*spec.key, *LINEAGE])
        counts = account_rows(
            parsed, spec.key,
            # the kept version of every key read, wherever it lives now (a key may have moved to another day)
            kept_of_keys=ctx.matching(key, parsed, spec.key, day, columns=[*spec.key, *LINEAGE]),
            kept=kept,
            rejected=(ctx.read(rejects_key, rejects_day, columns=["table", "source_file", "row_number"])
                      .where(F.col("table") == table)
                      .select(F.col("source_file").alias("_source_file"), F.col("row_number").alias("_row_number"))),
            raw_lineage=ctx.matching(raw_key, kept, LINEAGE, day, columns=LINEAGE),
        )
        scope = ctx.scope(raw_day) if raw_day else None
        return dg.AssetCheckResult(passed=counts.passed(whole_table=raw_day is None), metadata={
            "scope": scope or "whole table",
            "rows_read": counts.read,
            "rows_kept": counts.kept,
            "rows_read_kept": counts.kept_read,
            "duplicates_collapsed": counts.collapsed,
            "exact_duplicates": counts.exact_duplicates,
            "older_versions": counts.collapsed - counts.exact_duplicates,
            "rows_rejected": counts.rejected,
            "rows_lost": counts.lost,
            "invalid_rows_missing_from_rejects": counts.bad_not_rejected,
            "kept_rows_not_from_raw": counts.kept_not_from_raw,
            "lost_sample": dg.MetadataValue.json(counts.lost_sample),
            "equation": counts.equation,
        })

    return check


def references(child: str, columns: list[str], parent: str, name: str) -> TableCheck:
    """Every child row's ``columns`` exist in refined.<parent> (a warning: the orphans are counted and explained)."""
    child_day = day_column(SCHEMAS[child])

    @table_check(name, f"Every {child} row's ({', '.join(columns)}) exists in refined.{parent} (warning; the metadata "
                 "tells orphans of rejected parents from those of parents that never arrived).", severity=WARN)
    def check(ctx: CheckContext) -> dg.AssetCheckResult:
        rows = ctx.read(REFINED_KEYS[child], child_day, columns=columns)
        ref = (ctx.matching(REFINED_KEYS[parent], rows, columns, child_day, columns=columns)
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
            rejected = (ctx.lake.read(REFINED_KEYS[REJECTS_OF[parent]], columns=["table", "record_key"])
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

    return check


@table_check("all_47_counties", "The reference holds exactly the 47 counties, codes 1..47, each with a population.")
def all_47_counties(ctx: CheckContext) -> dg.AssetCheckResult:
    rows = ctx.lake.read(REFINED_KEYS["counties"]).collect()
    codes = sorted(r["county_code"] for r in rows)
    missing = sorted(set(range(1, 48)) - set(codes))
    return dg.AssetCheckResult(
        passed=codes == list(range(1, 48)) and all(r["population_2019"] > 0 for r in rows),
        metadata={"counties": len(rows), "missing_codes": dg.MetadataValue.json(missing),
                  "total_population_2019": sum(r["population_2019"] for r in rows)},
    )


CHECKS = {
    "counties": TableChecks(schemas.counties, [all_47_counties]),
    "customers": TableChecks(schemas.customers, [rows_accounted("customers")]),
    "products": TableChecks(schemas.products, [rows_accounted("products")]),
    "inventory": TableChecks(schemas.inventory, [rows_accounted("inventory")]),
    "orders": TableChecks(schemas.orders, [rows_accounted("orders"),
                                           references("orders", ["customer_id"], "customers", "customer_exists")]),
    "order_items": TableChecks(schemas.order_items, [
        rows_accounted("order_items"),
        references("order_items", ["order_id"], "orders", "order_exists"),
        references("order_items", ["product_id"], "products", "product_exists")]),
    "payments": TableChecks(schemas.payments, [rows_accounted("payments"),
                                               references("payments", ["order_id"], "orders", "order_exists")]),
    "rejects": TableChecks(schemas.rejects),
    "sales_rejects": TableChecks(schemas.sales_rejects),
}
