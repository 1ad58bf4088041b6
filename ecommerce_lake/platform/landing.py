"""The landing zone: batches of CSV exports on local disk or under an ``s3://`` prefix.

A batch is the folder ``<landing_root>/<batch_id>/``. It is complete only when its ``_SUCCESS`` marker exists;
incomplete batches are listed (so callers can say why they were skipped) but never read.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
from pydantic import Field

from ecommerce_lake.contract import SUCCESS_MARKER


@dataclass(frozen=True)
class Batch:
    batch_id: str
    complete: bool
    files: tuple[str, ...] = field(default=())  # file names in the batch folder (without the marker)


class LandingResource(dg.ConfigurableResource):
    """Lists batches and reads CSV headers; Spark reads the data itself via :meth:`spark_path`."""

    root: str = Field(description="Landing root: a local path or s3://bucket/prefix.")
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"

    # ---- location helpers -----------------------------------------------------------------------
    @property
    def is_s3(self) -> bool:
        return self.root.startswith(("s3://", "s3a://"))

    def _bucket_prefix(self) -> tuple[str, str]:
        parsed = urlparse(self.root)
        prefix = parsed.path.lstrip("/")
        return parsed.netloc, (prefix.rstrip("/") + "/") if prefix else ""

    def _s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint or None, region_name=self.s3_region)

    def spark_path(self, batch_id: str, filename: str) -> str:
        """Where Spark reads a landing file (s3a:// for S3)."""
        if self.is_s3:
            bucket, prefix = self._bucket_prefix()
            return f"s3a://{bucket}/{prefix}{batch_id}/{filename}"
        return str(Path(self.root) / batch_id / filename)

    # ---- listing ------------------------------------------------------------------------------
    def list_batches(self, after: str | None = None) -> list[Batch]:
        """All batches (complete or not), sorted by id; only ids greater than ``after`` when given."""
        batches = self._list_s3() if self.is_s3 else self._list_local()
        batches.sort(key=lambda b: b.batch_id)
        if after is not None:
            batches = [b for b in batches if b.batch_id > after]
        return batches

    def _list_local(self) -> list[Batch]:
        root = Path(self.root)
        if not root.is_dir():
            return []
        out = []
        with os.scandir(root) as entries:
            for entry in entries:
                if not entry.is_dir() or entry.name.startswith((".", "_")):
                    continue
                names = sorted(os.listdir(entry.path))
                out.append(
                    Batch(
                        entry.name,
                        SUCCESS_MARKER in names,
                        tuple(n for n in names if n != SUCCESS_MARKER and not n.startswith(".")),
                    )
                )
        return out

    def _list_s3(self) -> list[Batch]:
        bucket, prefix = self._bucket_prefix()
        client = self._s3()
        files: dict[str, list[str]] = {}
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(prefix) :]
                batch_id, sep, name = rest.partition("/")
                if not sep or not name or "/" in name or batch_id.startswith((".", "_")):
                    continue
                files.setdefault(batch_id, []).append(name)
        return [
            Batch(b, SUCCESS_MARKER in names, tuple(sorted(n for n in names if n != SUCCESS_MARKER)))
            for b, names in files.items()
        ]

    # ---- reading ------------------------------------------------------------------------------
    def read_header(self, batch_id: str, filename: str) -> list[str]:
        """The header row of a landing CSV (BOM stripped, names trimmed)."""
        if self.is_s3:
            bucket, prefix = self._bucket_prefix()
            body = self._s3().get_object(
                Bucket=bucket, Key=f"{prefix}{batch_id}/{filename}", Range="bytes=0-65535"
            )["Body"].read()
            text = body.decode("utf-8", errors="replace")
        else:
            with open(Path(self.root) / batch_id / filename, encoding="utf-8", errors="replace", newline="") as fh:
                text = fh.read(65536)
        text = text.lstrip("\ufeff")
        reader = csv.reader(io.StringIO(text))
        try:
            header = next(reader)
        except StopIteration:
            return []
        return [h.strip() for h in header]
