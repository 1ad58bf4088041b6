"""Raw tables: landing rows exactly as they arrived (strings), plus where and when they came from.

Generated from the landing contract (``ecommerce_lake.core.contract``), so the two cannot drift.
"""

from __future__ import annotations

import pandera.pyspark as pa

from ecommerce_lake.core.contract import CORRUPT_COLUMN, EXTRA_COLUMN, LANDING_FILES, LandingFile
from ecommerce_lake.schemas._base import (
    DATE,
    INT,
    LONG,
    LONG_MAP,
    STRING,
    STRING_MAP,
    STRINGS,
    TIMESTAMP,
    column,
    table,
)

PII_COLUMNS = {"customers": ("full_name", "email", "phone")}
# personal data arrives in these landing files: their contract's personal columns, and the columns that may carry
# anything (unknown columns, broken records), are encrypted at ingestion (pii="encrypted")
PERSONAL_FILES = tuple(PII_COLUMNS)
# Sales-bearing raw tables are partitioned by day (see ecommerce_lake.logic.raw.plan for how a row's day is found).
DAY_COLUMNS = {"orders": "_order_date", "order_items": "_order_date", "payments": "_paid_date"}
DAY_DESCRIPTIONS = {
    "orders": "Partition day: the Nairobi date of order_ts (the batch's arrival day if unreadable).",
    "order_items": "Partition day: the day of the line's order (the batch's arrival day if the order is unknown).",
    "payments": "Partition day: the Nairobi date of paid_ts (the batch's arrival day if unreadable).",
}


def _raw_table(spec: LandingFile) -> pa.DataFrameSchema:
    columns = {
        name: column(
            STRING,
            ("Required" if name in spec.required else "Optional") + " contract column, as it arrived"
            + (" (personal: AES-GCM encrypted, k<version>:<base64>)." if name in PII_COLUMNS.get(spec.name, ())
               else "."),
            nullable=True,
            pii="encrypted" if name in PII_COLUMNS.get(spec.name, ()) else None,
        )
        for name in spec.columns
    }
    personal = spec.name in PERSONAL_FILES
    columns[EXTRA_COLUMN] = column(STRING_MAP, "Columns the contract does not know: name -> value"
                                   + (" (values encrypted: they may be personal)." if personal else "."),
                                   nullable=True, pii="encrypted" if personal else None)
    columns[CORRUPT_COLUMN] = column(STRING, "The raw CSV record when its field count differs from the header"
                                     + (" (encrypted: it may hold personal data)." if personal else "."),
                                     nullable=True, pii="encrypted" if personal else None)
    columns["_batch_id"] = column(STRING, "Landing batch id.")
    columns["_source_file"] = column(STRING, "Landing file: <batch_id>/<file>.")
    columns["_row_number"] = column(INT, "Data row number (1-based) within the file.", checks=[pa.Check.ge(1)])
    columns["_ingested_at"] = column(TIMESTAMP, "When the batch was ingested (UTC).")
    if spec.name in DAY_COLUMNS:
        columns[DAY_COLUMNS[spec.name]] = column(DATE, DAY_DESCRIPTIONS[spec.name])
    return table(
        f"raw.{spec.name}",
        f"Every row of every accepted batch's {spec.filename}, appended by batch. Key columns: "
        + ", ".join(spec.key) + ".",
        columns,
        key=["_source_file", "_row_number"],
        day_column=DAY_COLUMNS.get(spec.name),
        replace_key="_batch_id",
    )


TABLES = {spec.name: _raw_table(spec) for spec in LANDING_FILES}

batch_log = table(
    "raw.batch_log",
    "Every complete batch seen in the landing zone: accepted or rejected (with the reason), its files and "
    "row counts. A batch listed here is never ingested again.",
    {
        "batch_id": column(STRING, "Batch id (folder name)."),
        "status": column(STRING, "accepted or rejected.", checks=[pa.Check.isin(["accepted", "rejected"])]),
        "reason": column(STRING, "Why the batch was rejected.", nullable=True),
        "files": column(STRINGS, "Contract files in the batch."),
        "ignored_files": column(STRINGS, "Files the contract does not know (not read)."),
        "file_rows": column(LONG_MAP, "Data rows per file (accepted batches).",
                            nullable=True),
        "rows": column(LONG, "Data rows in the batch (accepted batches).", nullable=True,
                       checks=[pa.Check.ge(0)]),
        "ingested_at": column(TIMESTAMP, "When the batch was processed (UTC)."),
        "run_id": column(STRING, "Dagster run that processed it.", nullable=True),
        "arrival_day": column(DATE, "Nairobi date the batch's _SUCCESS marker was written.", nullable=True),
        "days": column(STRINGS, "Day partitions its sales rows (orders, order_items, payments) landed in."),
        "fingerprint": column(STRING, "Digest of the batch's file names and contents when it was processed "
                              "(sha256; on S3 from the ETags). The batch delivered again under its id with "
                              "another fingerprint is refused. Null for batches rejected before reading their "
                              "files and for rows written before fingerprints existed.", nullable=True),
    },
    key=["batch_id"],
    replace_key="batch_id",
)

ALL = (*TABLES.values(), batch_log)
