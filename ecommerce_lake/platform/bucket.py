"""Production safety of the lake bucket: default encryption, versioning, public access blocked.

In prod the lake resource verifies the bucket when a run starts (and ``ecommerce-lake setup`` does too). With
``ECOMMERCE_LAKE_S3_CONFIGURE_BUCKET=true`` it configures what is missing; otherwise a missing setting fails
the run with the list of what to fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


class BucketNotSafe(RuntimeError):
    pass


@dataclass
class BucketReport:
    bucket: str
    encryption: bool = False
    versioning: bool = False
    public_access_blocked: bool = False
    configured: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [name for name, ok in (("default encryption", self.encryption), ("versioning", self.versioning),
                                      ("public access block", self.public_access_blocked)) if not ok]


def inspect_bucket(client, bucket: str) -> BucketReport:
    from botocore.exceptions import ClientError

    report = BucketReport(bucket)
    client.head_bucket(Bucket=bucket)  # raises if missing or not allowed
    try:
        rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        report.encryption = any(r.get("ApplyServerSideEncryptionByDefault") for r in rules)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ServerSideEncryptionConfigurationNotFoundError",):
            raise
    report.versioning = client.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"
    try:
        config = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        report.public_access_blocked = all(config.get(k) for k in PUBLIC_ACCESS_BLOCK)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchPublicAccessBlockConfiguration",):
            raise
    return report


def ensure_bucket(client, bucket: str, configure: bool) -> BucketReport:
    """Verify the bucket; configure what is missing when allowed; raise BucketNotSafe otherwise."""
    report = inspect_bucket(client, bucket)
    if report.missing and configure:
        if not report.encryption:
            client.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={"Rules": [
                    {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}
                ]},
            )
            report.configured.append("default encryption (SSE-S3, AES256)")
        if not report.versioning:
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            report.configured.append("versioning")
        if not report.public_access_blocked:
            client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
            report.configured.append("public access block")
        for item in report.configured:
            log.info("s3://%s: configured %s", bucket, item)
        report = BucketReport(**{**inspect_bucket(client, bucket).__dict__, "configured": report.configured})
    if report.missing:
        raise BucketNotSafe(
            f"lake bucket s3://{bucket} lacks {', '.join(report.missing)}. Configure it, or set "
            "ECOMMERCE_LAKE_S3_CONFIGURE_BUCKET=true to let ecommerce_lake do it."
        )
    return report
