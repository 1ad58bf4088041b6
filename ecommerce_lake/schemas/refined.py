"""Refined tables: typed, deduplicated by the contract's version rules, conformed. No PII in clear."""

from __future__ import annotations

import pandera.pyspark as pa

from ecommerce_lake.core.contract import CHANNELS, ORDER_STATUSES, PAYMENT_METHODS, REJECT_RULES, UNKNOWN
from ecommerce_lake.schemas._base import (
    DATE,
    HEX64,
    INT,
    LONG,
    MONEY,
    STRING,
    STRING_MAP,
    STRINGS,
    TIMESTAMP,
    column,
    lineage_columns,
    table,
)

COUNTY_CODE_CHECK = pa.Check.in_range(0, 47)

counties = table(
    "refined.counties",
    "Kenya's 47 counties with their former province and KNBS 2019 census population (package reference data).",
    {
        "county_code": column(INT, "County code 1..47 (KNBS).", checks=[pa.Check.in_range(1, 47)]),
        "county_name": column(STRING, "Official county name."),
        "former_province": column(STRING, "Province before the 2010 constitution."),
        "population_2019": column(LONG, "KNBS 2019 census population.", checks=[pa.Check.gt(0)]),
    },
    key=["county_code"],
)

customers = table(
    "refined.customers",
    "One row per customer: the version with the latest updated_at. Name, email and phone never appear in "
    "clear: analysts get a keyed pseudonym of the customer and a keyed hash of the phone's E.164 form; support "
    "and delivery get the values themselves, AES-GCM encrypted, which only a data steward holding the privacy "
    "keyring can reveal (`ecommerce-lake privacy reveal`, audited).",
    {
        "customer_id": column(STRING, "Source-system customer id (internal key, kept out of curated).",
                              lineage=["raw.customers.customer_id"]),
        "customer_pseudonym": column(STRING, "HMAC-SHA-256 pseudonym of customer_id (hex).",
                                     checks=[pa.Check.str_matches(HEX64)], lineage=["raw.customers.customer_id"]),
        "email_domain": column(STRING, "Domain part of the email address.", nullable=True,
                               lineage=["raw.customers.email"]),
        "phone_hash": column(STRING, "HMAC-SHA-256 of the phone number in E.164 (+254...); null if not a "
                             "Kenyan number.", nullable=True, checks=[pa.Check.str_matches(HEX64)],
                             lineage=["raw.customers.phone"], pii="hashed"),
        "full_name_encrypted": column(STRING, "Full name as written in the export, encrypted (k<key version>:"
                                      "<base64 AES-GCM>; the kept row's raw value).", nullable=True,
                                      lineage=["raw.customers.full_name"], pii="encrypted"),
        "email_encrypted": column(STRING, "Email address as written, encrypted.", nullable=True,
                                  lineage=["raw.customers.email"], pii="encrypted"),
        "phone_encrypted": column(STRING, "Phone number as written, encrypted.", nullable=True,
                                  lineage=["raw.customers.phone"], pii="encrypted"),
        "county_text": column(STRING, "County as written in the export.", nullable=True,
                              lineage=["raw.customers.county"]),
        "county_code": column(INT, "Resolved county (0 = Unknown).", checks=[COUNTY_CODE_CHECK],
                              lineage=["raw.customers.county"]),
        "county_name": column(STRING, "Resolved county name ('Unknown' for 0).", lineage=["raw.customers.county"]),
        "former_province": column(STRING, "Former province of the resolved county.",
                                  lineage=["raw.customers.county"]),
        "signup_date": column(DATE, "Sign-up date.", nullable=True, lineage=["raw.customers.signup_date"]),
        "updated_at": column(TIMESTAMP, "Version timestamp (UTC instant).", lineage=["raw.customers.updated_at"]),
        **lineage_columns("raw.customers"),
    },
    key=["customer_id"],
)

products = table(
    "refined.products",
    "One row per product: the version with the latest updated_at.",
    {
        "product_id": column(STRING, "Product id.", lineage=["raw.products.product_id"]),
        "product_name": column(STRING, "Product name.", lineage=["raw.products.product_name"]),
        "category": column(STRING, "Category, title case (e.g. Phones).", lineage=["raw.products.category"]),
        "brand": column(STRING, "Brand.", nullable=True, lineage=["raw.products.brand"]),
        "unit_cost_kes": column(MONEY, "Unit cost in KES, when known.", nullable=True, checks=[pa.Check.ge(0)],
                                lineage=["raw.products.unit_cost_kes"]),
        "list_price_kes": column(MONEY, "List price in KES.", checks=[pa.Check.ge(0)],
                                 lineage=["raw.products.list_price_kes"]),
        "updated_at": column(TIMESTAMP, "Version timestamp (UTC instant).", lineage=["raw.products.updated_at"]),
        **lineage_columns("raw.products"),
    },
    key=["product_id"],
)

inventory = table(
    "refined.inventory",
    "Stock on hand per product and county on a day, from the inventory.csv snapshots of the landing batches "
    "(the later batch, then the later row, wins for the same product, county text and day).",
    {
        "product_id": column(STRING, "Product id.", lineage=["raw.inventory.product_id"]),
        "county": column(STRING, "County as written in the export.", lineage=["raw.inventory.county"]),
        "county_code": column(INT, "Resolved county (0 = Unknown).", checks=[COUNTY_CODE_CHECK],
                              lineage=["raw.inventory.county"]),
        "county_name": column(STRING, "Resolved county name ('Unknown' for 0).", lineage=["raw.inventory.county"]),
        "on_hand": column(INT, "Units on hand.", checks=[pa.Check.ge(0)], lineage=["raw.inventory.on_hand"]),
        "as_of": column(DATE, "Day of the snapshot.", lineage=["raw.inventory.as_of"]),
        **lineage_columns("raw.inventory"),
    },
    key=["product_id", "county", "as_of"],
)

orders = table(
    "refined.orders",
    "One row per order: the version with the latest updated_at (its current status). The county is the "
    "delivery county when it resolves, else the customer's county, else 0/Unknown.",
    {
        "order_id": column(STRING, "Order id.", lineage=["raw.orders.order_id"]),
        "customer_id": column(STRING, "Customer id (internal key).", lineage=["raw.orders.customer_id"]),
        "customer_pseudonym": column(STRING, "HMAC-SHA-256 pseudonym of customer_id.",
                                     checks=[pa.Check.str_matches(HEX64)], lineage=["raw.orders.customer_id"]),
        "order_ts": column(TIMESTAMP, "Order time (UTC instant).", lineage=["raw.orders.order_ts"]),
        "order_date": column(DATE, "Local date of order_ts in Africa/Nairobi.", lineage=["raw.orders.order_ts"]),
        "status": column(STRING, "Current status.", checks=[pa.Check.isin(list(ORDER_STATUSES))],
                         lineage=["raw.orders.status"]),
        "channel": column(STRING, "Sales channel ('unknown' when missing or unrecognised).",
                          checks=[pa.Check.isin([*CHANNELS, UNKNOWN])], lineage=["raw.orders.channel"]),
        "payment_method": column(STRING, "Payment method ('unknown' when missing or unrecognised).",
                                 checks=[pa.Check.isin([*PAYMENT_METHODS, UNKNOWN])],
                                 lineage=["raw.orders.payment_method"]),
        "shipping_fee_kes": column(MONEY, "Shipping fee in KES (not revenue).", nullable=True,
                                   checks=[pa.Check.ge(0)], lineage=["raw.orders.shipping_fee_kes"]),
        "delivery_county_text": column(STRING, "Delivery county as written.", nullable=True,
                                       lineage=["raw.orders.delivery_county"]),
        "county_code": column(INT, "Order county (0 = Unknown).", checks=[COUNTY_CODE_CHECK],
                              lineage=["raw.orders.delivery_county", "refined.customers.county_code"]),
        "county_name": column(STRING, "Order county name.",
                              lineage=["raw.orders.delivery_county", "refined.customers.county_name"]),
        "former_province": column(STRING, "Former province of the order county.",
                                  lineage=["raw.orders.delivery_county", "refined.customers.former_province"]),
        "county_source": column(STRING, "Where the county came from.",
                                checks=[pa.Check.isin(["delivery", "customer", "unknown"])]),
        "updated_at": column(TIMESTAMP, "Version timestamp (UTC instant).", lineage=["raw.orders.updated_at"]),
        **lineage_columns("raw.orders"),
    },
    key=["order_id"],
    day_column="order_date",
)

order_items = table(
    "refined.order_items",
    "One row per order line (order_id, line_number): the line from the latest batch, then the latest row. "
    "Partitioned by its order's day.",
    {
        "order_id": column(STRING, "Order id.", lineage=["raw.order_items.order_id"]),
        "line_number": column(INT, "Line number within the order.", checks=[pa.Check.ge(1)],
                              lineage=["raw.order_items.line_number"]),
        "product_id": column(STRING, "Product id.", lineage=["raw.order_items.product_id"]),
        "quantity": column(INT, "Units (a positive integer).", checks=[pa.Check.ge(1)],
                           lineage=["raw.order_items.quantity"]),
        "unit_price_kes": column(MONEY, "Unit price in KES.", checks=[pa.Check.ge(0)],
                                 lineage=["raw.order_items.unit_price_kes"]),
        "discount_kes": column(MONEY, "Line discount in KES (empty = 0; never above quantity x unit price).",
                               checks=[pa.Check.ge(0)], lineage=["raw.order_items.discount_kes"]),
        "order_date": column(DATE, "Partition: the order's order_date (the line's raw day if the order is "
                             "unknown).", lineage=["refined.orders.order_date"]),
        **lineage_columns("raw.order_items"),
    },
    key=["order_id", "line_number"],
    day_column="order_date",
)

payments = table(
    "refined.payments",
    "One row per payment: the row from the latest batch, then the latest row. Partitioned by paid_date.",
    {
        "payment_id": column(STRING, "Payment id.", lineage=["raw.payments.payment_id"]),
        "order_id": column(STRING, "Order id.", lineage=["raw.payments.order_id"]),
        "method": column(STRING, "Payment method ('unknown' when unrecognised).",
                         checks=[pa.Check.isin([*PAYMENT_METHODS, UNKNOWN])], lineage=["raw.payments.method"]),
        "amount_kes": column(MONEY, "Amount in KES (negative for refunds).", lineage=["raw.payments.amount_kes"]),
        "paid_ts": column(TIMESTAMP, "Payment time (UTC instant).", lineage=["raw.payments.paid_ts"]),
        "paid_date": column(DATE, "Partition: the Nairobi date of paid_ts.", lineage=["raw.payments.paid_ts"]),
        "status": column(STRING, "Payment status, lower case.", lineage=["raw.payments.status"]),
        "mpesa_receipt": column(STRING, "M-Pesa receipt code.", nullable=True,
                                lineage=["raw.payments.mpesa_receipt"]),
        **lineage_columns("raw.payments"),
    },
    key=["payment_id"],
    day_column="paid_date",
)

def _rejects(name: str, tables: list[str], description: str, partitioned: bool,
             personal: bool = False) -> pa.DataFrameSchema:
    columns = {
        "table": column(STRING, "Landing table.", checks=[pa.Check.isin(tables)]),
        "rule": column(STRING, "First rule broken.", checks=[pa.Check.isin(list(REJECT_RULES))]),
        "rules": column(STRINGS, "Every rule broken."),
        "detail": column(STRING, "Human-readable explanation naming the offending values."),
        "batch_id": column(STRING, "Landing batch."),
        "source_file": column(STRING, "Landing file (<batch_id>/<file>)."),
        "row_number": column(INT, "Data row number (1-based) in that file.", checks=[pa.Check.ge(1)]),
        "record_key": column(STRING, "The row's key as written (may be empty when the key is missing).",
                             nullable=True),
        "original_values": column(STRING_MAP, "Column -> value as it arrived" + (
            "; personal values (a customer's name, email, phone, unknown columns and broken record) encrypted as "
            "in raw." if personal else "."), pii="encrypted" if personal else None),
        "ingested_at": column(TIMESTAMP, "When the row was ingested into raw."),
    }
    if partitioned:
        columns["partition_date"] = column(DATE, "Partition: the raw row's day.")
    return table(name, description, columns, key=["source_file", "row_number"],
                 day_column="partition_date" if partitioned else None)


rejects = _rejects(
    "refined.rejects", ["customers", "products", "inventory"],
    "Every customers, products and inventory landing row that broke a row rule, with the rule, where it came from and its "
    "original values (personal values encrypted). Sales rows' rejects are in refined.sales_rejects.", False,
    personal=True,
)
sales_rejects = _rejects(
    "refined.sales_rejects", ["orders", "order_items", "payments"],
    "Every orders, order_items and payments landing row that broke a row rule, partitioned by the raw row's day. "
    "Together with the refined tables it accounts for every raw row.", True,
)

ALL = (counties, customers, products, inventory, orders, order_items, payments, rejects, sales_rejects)
