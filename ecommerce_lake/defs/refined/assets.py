"""Refined layer: typed, deduplicated, conformed tables; rejects; the county reference."""

import dagster as dg
from pyspark.sql import DataFrame

from ecommerce_lake.defs.checks import evaluate_checks
from ecommerce_lake.defs.keys import RAW_KEYS, REFINED_KEYS
from ecommerce_lake.defs.partitions import FIRST_DAY
from ecommerce_lake.defs.refined.checks import CHECKS, REFERENCE, SALES_TABLES, SCHEMAS
from ecommerce_lake.defs.resources import QualityResource
from ecommerce_lake.defs.tables import asset_out, emit, partitioning, selected, table_asset
from ecommerce_lake.logic.frames import Held
from ecommerce_lake.logic.refined import refine
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.platform.secrets import PrivacyKeysResource, PseudonymKeyResource
from ecommerce_lake.platform.spark import SparkResource


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
    outs={t: asset_out(SCHEMAS[t]) for t in REFERENCE},
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
                     raw_inventory: DataFrame, pseudonym: PseudonymKeyResource, privacy_keys: PrivacyKeysResource,
                     lake: LakeResource, quality: QualityResource):
    yield from emit(context, lake, quality, {
        "customers": lambda: refine.refine_customers(raw_customers, pseudonym.key(), privacy_keys.spark_keys()),
        "products": lambda: refine.refine_products(raw_products),
        "inventory": lambda: refine.refine_inventory(raw_inventory),
        "rejects": lambda: refine.rejects({"customers": raw_customers, "products": raw_products,
                                           "inventory": raw_inventory}, privacy_keys.spark_keys()),
    }, [CHECKS[t] for t in REFERENCE], privacy_keys=privacy_keys)


@dg.multi_asset(
    name="refine_sales",
    outs={name: asset_out(SCHEMAS[name]) for name in SALES_TABLES},
    ins={"customers": dg.AssetIn(key=REFINED_KEYS["customers"], metadata={"columns": ["customer_id", "county_code"]})},
    deps=[RAW_KEYS["orders"], RAW_KEYS["order_items"], RAW_KEYS["payments"]],
    **partitioning(*(SCHEMAS[name] for name in SALES_TABLES)),
    check_specs=_specs(*SALES_TABLES),
    can_subset=True,
    description="Refine the day partitions of orders, order lines and payments: parse, apply the row rules, keep "
    "the current version of each key (reading every raw version of the orders and payments the days hold), "
    "resolve counties, pseudonymise customers; rule breakers go to refined.sales_rejects. Then every check of the "
    "four tables (rows accounted for, references to customers, orders and products).",
)
def refine_sales(context: dg.AssetExecutionContext, customers: DataFrame, lake: LakeResource,
                 pseudonym: PseudonymKeyResource, quality: QualityResource):
    chosen = selected(context, *SALES_TABLES)
    if chosen:
        yield from _refine_sales_outputs(context, customers, lake, pseudonym, chosen)
    yield from evaluate_checks(context, lake, quality, [CHECKS[name] for name in SALES_TABLES])


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
        first_day=FIRST_DAY,
        narrow=not (lake.is_small(RAW_KEYS["order_items"]) and lake.is_small(RAW_KEYS["orders"])),
    )
    with Held() as held:  # intermediate results, released once every output is written
        outputs = refine.refine_sales(inputs, pseudonym.key(), held)
        for name in chosen:
            yield dg.Output(outputs[name], output_name=name)


ASSETS = [refined_counties, refine_reference, refine_sales]
