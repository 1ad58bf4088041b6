"""The landing zone: batches of CSV exports on local disk or under an ``s3://`` prefix.

A batch is the folder ``<landing_root>/<batch_id>/``. It is complete only when its ``_SUCCESS`` marker exists;
incomplete batches are listed (so callers can say why they were skipped) but never read.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import stat
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from ecommerce_lake.core.contract import SUCCESS_MARKER
from ecommerce_lake.logic.landing import Batch


# sha256 of local landing files, per process, keyed by path, size, mtime and inode: a long-lived process (the
# sensor, the UI's code server) digests an unchanged file once, not at every tick. A changed file has another
# size or mtime, so it is digested again.
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _file_digest(path: Path) -> str:
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo not in _DIGESTS:
        file_digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                file_digest.update(chunk)
        _DIGESTS[memo] = file_digest.hexdigest()
    return _DIGESTS[memo]


class LandingResource(dg.ConfigurableResource):
    """Lists batches and reads CSV headers; Spark reads the data itself via :meth:`spark_path`. Satisfies
    :class:`ecommerce_lake.logic.landing.LandingFiles`, what the ingestion and planning logic reads a landing
    zone through."""

    root: str = Field(description="Landing root: a local path or s3://bucket/prefix.")
    s3: S3Resource = Field(default_factory=S3Resource, description="dagster-aws S3 resource (for s3:// roots).")

    # ---- location helpers -----------------------------------------------------------------------
    @property
    def is_s3(self) -> bool:
        return self.root.startswith(("s3://", "s3a://"))

    def _bucket_prefix(self) -> tuple[str, str]:
        parsed = urlparse(self.root)
        prefix = parsed.path.lstrip("/")
        return parsed.netloc, (prefix.rstrip("/") + "/") if prefix else ""

    def _s3(self):
        return self.s3.get_client()

    def spark_path(self, batch_id: str, filename: str) -> str:
        """Where Spark reads a landing file (s3a:// for S3)."""
        if self.is_s3:
            bucket, prefix = self._bucket_prefix()
            return f"s3a://{bucket}/{prefix}{batch_id}/{filename}"
        return str(Path(self.root) / batch_id / filename)

    # ---- listing ------------------------------------------------------------------------------
    def list_batches(self, after: str | None = None) -> list[Batch]:
        """All batches (complete or not), sorted by id; only ids greater than ``after`` when given."""
        batches = self._list_s3(after) if self.is_s3 else self._list_local()
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
                irregular: list[tuple[str, str]] = []
                if entry.is_symlink():  # never followed: it could point anywhere outside the landing root
                    irregular.append((".", "symbolic link"))
                    out.append(Batch(entry.name, True, (), None, tuple(irregular)))
                    continue
                names, completed_at = [], None
                with os.scandir(entry.path) as files:
                    for f in files:
                        if f.name.startswith("."):
                            continue
                        mode = f.stat(follow_symlinks=False).st_mode
                        if stat.S_ISLNK(mode):
                            irregular.append((f.name, "symbolic link"))
                        elif not stat.S_ISREG(mode):
                            irregular.append((f.name, "directory" if stat.S_ISDIR(mode) else "not a regular file"))
                        elif f.name == SUCCESS_MARKER:
                            completed_at = dt.datetime.fromtimestamp(f.stat().st_mtime, dt.timezone.utc)
                        else:
                            names.append(f.name)
                complete = completed_at is not None or any(n == SUCCESS_MARKER for n, _ in irregular)
                out.append(Batch(entry.name, complete, tuple(sorted(names)), completed_at, tuple(sorted(irregular))))
        return out

    def _list_s3(self, after: str | None = None) -> list[Batch]:
        bucket, prefix = self._bucket_prefix()
        client = self._s3()
        files: dict[str, list[str]] = {}
        etags: dict[str, list[tuple[str, str]]] = {}
        completed: dict[str, dt.datetime] = {}
        paginator = client.get_paginator("list_objects_v2")
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        if after:  # keys sort like batch ids: skip everything up to the cursor server-side
            kwargs["StartAfter"] = f"{prefix}{after}/\uffff"
        for page in paginator.paginate(**kwargs):
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(prefix) :]
                batch_id, sep, name = rest.partition("/")
                if not sep or not name or "/" in name or batch_id.startswith((".", "_")):
                    continue
                files.setdefault(batch_id, []).append(name)
                if name != SUCCESS_MARKER:
                    etags.setdefault(batch_id, []).append((name, f"{obj.get('ETag', '')}:{obj.get('Size', '')}"))
                if name == SUCCESS_MARKER:
                    completed[batch_id] = obj["LastModified"]
        return [
            Batch(b, SUCCESS_MARKER in names, tuple(sorted(n for n in names if n != SUCCESS_MARKER)),
                  completed.get(b), etags=tuple(sorted(etags.get(b, []))))
            for b, names in files.items()
        ]

    def fingerprint(self, batch: Batch) -> str:
        """A digest of what the batch holds: its file names and contents (sha256 of each file; on S3, the ETags
        and sizes from the listing, so nothing is downloaded). A batch delivered again under an id already
        ingested, with another fingerprint, is refused."""
        digest = hashlib.sha256()
        if self.is_s3:
            for name, etag in batch.etags:
                digest.update(f"{name}\0{etag}\n".encode())
            return "s3:" + digest.hexdigest()
        for name in batch.files:
            digest.update(f"{name}\0{_file_digest(Path(self.root) / batch.batch_id / name)}\n".encode())
        return "sha256:" + digest.hexdigest()

    # ---- reading ------------------------------------------------------------------------------
    def read_text(self, batch_id: str, filename: str) -> str:
        """A whole landing file as text (BOM stripped); used by the sensor to plan a batch's partitions."""
        if self.is_s3:
            bucket, prefix = self._bucket_prefix()
            body = self._s3().get_object(Bucket=bucket, Key=f"{prefix}{batch_id}/{filename}")["Body"].read()
            text = body.decode("utf-8", errors="replace")
        else:
            with open(Path(self.root) / batch_id / filename, encoding="utf-8", errors="replace", newline="") as fh:
                text = fh.read()
        return text.lstrip("\ufeff")

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
