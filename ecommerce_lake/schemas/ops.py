"""Operations tables (group ``ops``)."""

from __future__ import annotations

import pandera.pyspark as pa

from ecommerce_lake.schemas._base import DOUBLE, INT, LONG, STRING, STRING_MAP, STRINGS, TIMESTAMP, column, table

NON_NEGATIVE = pa.Check.ge(0)

delta_maintenance = table(
    "ops.delta_maintenance",
    "The latest Delta maintenance of every lake table: OPTIMIZE (compaction, Z-order where the asset asks for "
    "it) then VACUUM with a safe retention. One row per table per maintenance run; earlier runs are in the "
    "table's Delta history.",
    {
        "table_name": column(STRING, "Catalog name <layer>.<table>."),
        "zorder_by": column(STRINGS, "Z-order columns (empty: compaction only)."),
        "files_before": column(LONG, "Data files in the current version before maintenance.", checks=[NON_NEGATIVE]),
        "files_after": column(LONG, "Data files in the current version after maintenance.", checks=[NON_NEGATIVE]),
        "files_compacted": column(LONG, "Files OPTIMIZE rewrote (removed from the current version).",
                                  checks=[NON_NEGATIVE]),
        "files_added": column(LONG, "Files OPTIMIZE wrote.", checks=[NON_NEGATIVE]),
        "bytes_compacted": column(LONG, "Bytes of the files OPTIMIZE rewrote.", checks=[NON_NEGATIVE]),
        "files_vacuumed": column(LONG, "Files VACUUM deleted (no longer referenced, older than the retention).",
                                 checks=[NON_NEGATIVE]),
        "bytes_vacuumed": column(LONG, "Bytes VACUUM deleted.", checks=[NON_NEGATIVE]),
        "retention_hours": column(INT, "VACUUM retention (hours).", checks=[pa.Check.ge(168)]),
        "seconds": column(DOUBLE, "Time the table's maintenance took.", checks=[NON_NEGATIVE]),
        "maintained_at": column(TIMESTAMP, "When (UTC)."),
    },
    key=["table_name"],
)

PRIVACY_ACTIONS = ("reveal", "forget", "rotate_key", "retire_key")

privacy_audit = table(
    "ops.privacy_audit",
    "Every use of the privacy keyring by a data steward (`ecommerce-lake privacy ...`): who revealed which "
    "customer's personal data and why, erasure requests, key rotations and retirements. Appended, one row per "
    "request; written by the privacy commands, never by a run.",
    {
        "event_id": column(STRING, "Request id (random)."),
        "action": column(STRING, "reveal, forget, rotate_key or retire_key.",
                         checks=[pa.Check.isin(list(PRIVACY_ACTIONS))]),
        "customer_id": column(STRING, "The customer concerned (reveal, forget).", nullable=True),
        "actor": column(STRING, "Who asked (--actor, default the operating-system user)."),
        "reason": column(STRING, "Why (required)."),
        "outcome": column(STRING, "done, not_found or refused, with what was done."),
        "details": column(STRING_MAP, "What the request touched: rows per table, key versions. Never personal "
                          "values."),
        "requested_at": column(TIMESTAMP, "When (UTC)."),
    },
    key=["event_id"],
)

ALL = (delta_maintenance, privacy_audit)
