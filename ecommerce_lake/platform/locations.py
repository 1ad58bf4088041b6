"""Where delta-rs finds a lake table: a module of its own, free of Dagster and Spark, so that the light readers
(``ecommerce-lake sql`` on DuckDB, the catalog sync) start in a fraction of a second."""

from __future__ import annotations

import os


def delta_rs_location(uri: str, s3_endpoint: str = "", s3_region: str = "us-east-1",
                      s3_path_style: bool = False) -> tuple[str, dict[str, str] | None]:
    """The URI and storage options delta-rs needs for a lake table URI (local path or s3a://)."""
    if not uri.startswith(("s3a://", "s3://")):
        return uri, None
    options = {"AWS_REGION": s3_region}
    if s3_endpoint:
        options["AWS_ENDPOINT_URL"] = s3_endpoint
        if s3_endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if s3_path_style:
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(var):
            options[var] = os.environ[var]
    return "s3://" + uri.split("://", 1)[1], options
