"""IO manager for reports (the dashboard): an HTML page stored in the lake beside the tables, at
``<lake_root>/<layer>/<name>/``: one file per materialization (``<UTC time>-<run id>.html``) and ``latest.html``,
replaced atomically (a local rename; an S3 PUT is atomic), so a reader never sees half a page."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

LATEST = "latest.html"


def report_dir(root: str, key: dg.AssetKey) -> str:
    return f"{root.rstrip('/')}/{'/'.join(key.path)}"


class ReportIOManager(dg.ConfigurableIOManager):
    root: str = Field(description="Lake root: a local path or s3a://bucket/prefix.")
    s3: S3Resource = Field(default_factory=S3Resource)

    @staticmethod
    def _s3(uri: str) -> tuple[str, str] | None:
        """(bucket, key) of an s3a:// or s3:// URI; None for a local path."""
        if not uri.startswith(("s3a://", "s3://")):
            return None
        bucket, key = uri.split("://", 1)[1].split("/", 1)
        return bucket, key

    def _put(self, uri: str, body: bytes) -> None:
        if (where := self._s3(uri)) is not None:
            self.s3.get_client().put_object(Bucket=where[0], Key=where[1], Body=body,
                                            ContentType="text/html; charset=utf-8")
            return
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".html")
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    def latest(self, key: dg.AssetKey) -> bytes | None:
        """The latest report of asset ``key`` (None before the first)."""
        uri = f"{report_dir(self.root, key)}/{LATEST}"
        if (where := self._s3(uri)) is not None:
            client = self.s3.get_client()
            try:
                return client.get_object(Bucket=where[0], Key=where[1])["Body"].read()
            except client.exceptions.NoSuchKey:
                return None
        path = Path(uri)
        return path.read_bytes() if path.exists() else None

    def handle_output(self, context: dg.OutputContext, obj: str) -> None:
        if not isinstance(obj, str):
            raise TypeError(f"{context.asset_key.to_user_string()}: a report is an HTML string, not {type(obj)}")
        folder = report_dir(self.root, context.asset_key)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        body = obj.encode("utf-8")
        kept = f"{folder}/{stamp}-{context.run_id[:8]}.html"
        self._put(kept, body)
        self._put(f"{folder}/{LATEST}", body)
        local = not folder.startswith(("s3a://", "s3://"))
        latest = f"{folder}/{LATEST}"
        context.add_output_metadata({
            "report": dg.MetadataValue.url(Path(latest).resolve().as_uri()) if local else dg.MetadataValue.text(latest),
            "report_version": dg.MetadataValue.path(kept),
            "bytes": len(body),
            "serve": dg.MetadataValue.md("`ecommerce-lake dashboard` serves the latest on http://127.0.0.1:8050/"),
        })

    def load_input(self, context: dg.InputContext) -> str:
        body = self.latest(context.upstream_output.asset_key)
        if body is None:
            raise FileNotFoundError(f"{context.upstream_output.asset_key.to_user_string()}: no report written yet")
        return body.decode("utf-8")
