"""Reading lake tables without Spark (delta-rs), for sensors and planning: no JVM in the daemon or webserver.

Read-only. The Spark side (``LakeResource``) owns every write.
"""

from __future__ import annotations

import datetime as dt
import threading

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from ecommerce_lake.platform.lake import table_parts
from ecommerce_lake.platform.locations import delta_rs_location

_CACHE: dict[tuple, tuple[int, object]] = {}
_LOCK = threading.Lock()


class LakeReaderResource(dg.ConfigurableResource):
    """Small, fast reads of lake tables with delta-rs (local paths or s3a:// roots)."""

    root: str = Field(description="Lake root (same as the lake resource).")
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_path_style: bool = False

    def _uri(self, key: dg.AssetKey) -> str:
        layer, table = table_parts(key)
        return delta_rs_location(f"{self.root.rstrip('/')}/{layer}/{table}")[0]

    def _storage_options(self) -> dict[str, str] | None:
        return delta_rs_location(self.root, self.s3_endpoint, self.s3_region, self.s3_path_style)[1]

    def _table(self, key: dg.AssetKey):
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(self._uri(key), storage_options=self._storage_options())
        except TableNotFoundError:
            return None

    def read(self, key: dg.AssetKey, columns: list[str], cache: bool = True):
        """A pyarrow Table of ``columns`` (None if the table does not exist); cached per table version."""
        table = self._table(key)
        if table is None:
            return None
        version = table.version()
        cache_key = (self._uri(key), tuple(columns))
        with _LOCK:
            hit = _CACHE.get(cache_key)
            if cache and hit is not None and hit[0] == version:
                return hit[1]
        data = table.to_pyarrow_dataset().to_table(columns=columns)
        with _LOCK:
            _CACHE[cache_key] = (version, data)
        return data

    # ---- what the sensor and the planner need ---------------------------------------------------------
    def exists(self, key: dg.AssetKey) -> bool:
        return self._table(key) is not None

    def ingested_batches(self) -> set[str]:
        data = self.read(dg.AssetKey(["raw", "batch_log"]), ["batch_id"])
        return set() if data is None else set(data.column("batch_id").to_pylist())

    def order_days(self, order_ids: set[str]) -> dict[str, dt.date]:
        """The day of each order's latest raw row (by batch, then row) already in the lake."""
        if not order_ids:
            return {}
        data = self.read(dg.AssetKey(["raw", "orders"]), ["order_id", "_batch_id", "_row_number", "_order_date"])
        if data is None:
            return {}
        trimmed = pc.utf8_trim_whitespace(data.column("order_id"))
        rows = data.filter(pc.is_in(trimmed, value_set=pa.array(sorted(order_ids))))
        best: dict[str, tuple] = {}
        for oid, batch, row, day in zip(
            pc.utf8_trim_whitespace(rows.column("order_id")).to_pylist(), rows.column("_batch_id").to_pylist(),
            rows.column("_row_number").to_pylist(), rows.column("_order_date").to_pylist(), strict=True,
        ):
            if oid not in best or (batch, row) > best[oid][:2]:
                best[oid] = (batch, row, day)
        return {oid: v[2] for oid, v in best.items()}

    def day_range(self) -> tuple[dt.date, dt.date] | None:
        """First and last day partition holding raw sales rows (None when there are none)."""
        days = []
        for table, column in (("orders", "_order_date"), ("payments", "_paid_date"), ("order_items", "_order_date")):
            data = self.read(dg.AssetKey(["raw", table]), [column], cache=False)
            if data is not None and data.num_rows:
                mm = pc.min_max(data.column(column))
                days += [mm["min"].as_py(), mm["max"].as_py()]
        return (min(days), max(days)) if days else None
