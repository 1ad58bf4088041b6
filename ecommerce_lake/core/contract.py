"""The landing contract: which files a batch may hold, their columns, keys and version rules.

Documented for people in docs/landing-contract.md; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

SUCCESS_MARKER = "_SUCCESS"
NAIROBI_TZ = "Africa/Nairobi"
NAIROBI_OFFSET = "+03:00"  # Kenya has kept UTC+3 without daylight saving since 1960

ORDER_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
PAYMENT_METHODS = ("mpesa", "airtel_money", "card", "cash_on_delivery")
CHANNELS = ("web", "app", "ussd", "whatsapp")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class LandingFile:
    name: str  # table name in raw/refined, e.g. "orders"
    required: tuple[str, ...]
    optional: tuple[str, ...]
    key: tuple[str, ...]
    # "updated_at": the row with the latest updated_at wins (ties: later batch, then later row);
    # "arrival": the later batch, then the later row, wins.
    version_rule: str

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


CUSTOMERS = LandingFile(
    "customers",
    required=("customer_id", "updated_at"),
    optional=("full_name", "email", "phone", "county", "signup_date"),
    key=("customer_id",),
    version_rule="updated_at",
)
PRODUCTS = LandingFile(
    "products",
    required=("product_id", "product_name", "category", "list_price_kes", "updated_at"),
    optional=("brand", "unit_cost_kes"),
    key=("product_id",),
    version_rule="updated_at",
)
ORDERS = LandingFile(
    "orders",
    required=("order_id", "customer_id", "order_ts", "status", "updated_at"),
    optional=("channel", "delivery_county", "payment_method", "shipping_fee_kes"),
    key=("order_id",),
    version_rule="updated_at",
)
ORDER_ITEMS = LandingFile(
    "order_items",
    required=("order_id", "line_number", "product_id", "quantity", "unit_price_kes"),
    optional=("discount_kes",),
    key=("order_id", "line_number"),
    version_rule="arrival",
)
PAYMENTS = LandingFile(
    "payments",
    required=("payment_id", "order_id", "method", "amount_kes", "paid_ts", "status"),
    optional=("mpesa_receipt",),
    key=("payment_id",),
    version_rule="arrival",
)
INVENTORY = LandingFile(
    "inventory",
    required=("product_id", "county", "on_hand", "as_of"),
    optional=(),
    key=("product_id", "county", "as_of"),
    version_rule="arrival",
)
LANDING_FILES: tuple[LandingFile, ...] = (CUSTOMERS, PRODUCTS, ORDERS, ORDER_ITEMS, PAYMENTS, INVENTORY)
BY_NAME = {f.name: f for f in LANDING_FILES}
BY_FILENAME = {f.filename: f for f in LANDING_FILES}

# Lineage columns every raw row carries.
RAW_META_COLUMNS = ("_batch_id", "_source_file", "_row_number", "_ingested_at")
EXTRA_COLUMN = "_extra"  # map<string,string> of columns the contract does not know
CORRUPT_COLUMN = "_corrupt_record"  # the raw line when the CSV row has the wrong number of fields

# Row rules: a row that breaks one goes to refined.rejects with the rule's name (first broken rule in this
# order; all broken rules are listed too).
REJECT_RULES: dict[str, str] = {
    "malformed_row": "the CSV row has a different number of fields than its header",
    "not_utf8": "the row holds bytes that are not UTF-8 (each shown as U+FFFD in the rejects)",
    "missing_required_value": "a required column is empty",
    "unparseable_number": "a number is not a decimal with '.' as decimal point (at most 2 decimals for KES)",
    "unparseable_date": "a date is not YYYY-MM-DD (or not a real date)",
    "unparseable_timestamp": "a timestamp is not ISO-8601 (or not a real instant)",
    "quantity_not_positive_integer": "quantity is zero, negative or fractional",
    "negative_amount": "a price, discount or fee is negative",
    "negative_stock": "inventory on_hand is negative",
    "discount_above_line_amount": "discount_kes is larger than quantity x unit_price_kes",
    "unknown_status": "order status is not one of " + ", ".join(ORDER_STATUSES),
    "future_order_timestamp": "order_ts is later than the moment the row was ingested",
    "date_outside_partitions": "order_ts or paid_ts is before the lake's first day (ECOMMERCE_LAKE_PARTITIONS_START), "
    "or paid_ts is later than the moment the row was ingested",
}
