"""Production safety of the lake bucket: default encryption (SSE-S3, or SSE-KMS with the configured key), versioning,
public access blocked, and a bucket policy refusing any request that does not use TLS.

In prod the lake resource verifies the bucket when a run starts (and ``ecommerce-lake setup`` does too). With
``ECOMMERCE_LAKE_S3_CONFIGURE_BUCKET=true`` it configures what is missing; otherwise a missing setting fails
the run with the list of what to fix.
"""

from __future__ import annotations

import json
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


TLS_ONLY_SID = "EcommerceLakeDenyInsecureTransport"


def tls_only_statement(bucket: str) -> dict:
    """The policy statement denying every request made without TLS (aws:SecureTransport false)."""
    return {
        "Sid": TLS_ONLY_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def _denies_insecure_transport(statement: dict, bucket: str) -> bool:
    resources = statement.get("Resource")
    resources = [resources] if isinstance(resources, str) else list(resources or [])
    actions = statement.get("Action")
    actions = [actions] if isinstance(actions, str) else list(actions or [])
    condition = (statement.get("Condition") or {}).get("Bool") or {}
    return (statement.get("Effect") == "Deny" and statement.get("Principal") in ("*", {"AWS": "*"})
            and "s3:*" in actions and f"arn:aws:s3:::{bucket}/*" in resources
            and str(condition.get("aws:SecureTransport", "")).lower() == "false")


def endpoint_uses_tls(endpoint: str) -> bool:
    """Whether requests to the S3 endpoint use TLS (AWS's own endpoints, or an https:// one). A TLS-only bucket
    policy makes a bucket unusable through a plain http:// endpoint (a local S3 server, MinIO in a private
    network), so it is required only when the endpoint uses TLS."""
    return not endpoint or endpoint.lower().startswith("https://")


@dataclass
class BucketReport:
    bucket: str
    kms_key_id: str = ""  # required SSE-KMS key (empty: SSE-S3 or SSE-KMS both do)
    require_tls: bool = True
    encryption: bool = False
    versioning: bool = False
    public_access_blocked: bool = False
    tls_only: bool = False
    configured: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        encryption = f"default encryption with SSE-KMS key {self.kms_key_id}" if self.kms_key_id else "default encryption"
        return [name for name, ok in ((encryption, self.encryption), ("versioning", self.versioning),
                                      ("public access block", self.public_access_blocked),
                                      ("a TLS-only bucket policy", self.tls_only or not self.require_tls)) if not ok]


def _kms_matches(rule: dict, kms_key_id: str) -> bool:
    default = rule.get("ApplyServerSideEncryptionByDefault") or {}
    key = default.get("KMSMasterKeyID") or ""
    return default.get("SSEAlgorithm") == "aws:kms" and (key == kms_key_id or key.endswith("/" + kms_key_id)
                                                          or kms_key_id.endswith("/" + key) and bool(key))


def inspect_bucket(client, bucket: str, kms_key_id: str = "", require_tls: bool = True) -> BucketReport:
    from botocore.exceptions import ClientError

    report = BucketReport(bucket, kms_key_id, require_tls)
    client.head_bucket(Bucket=bucket)  # raises if missing or not allowed
    try:
        rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        report.encryption = any(_kms_matches(r, kms_key_id) if kms_key_id else r.get("ApplyServerSideEncryptionByDefault")
                                for r in rules)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ServerSideEncryptionConfigurationNotFoundError",):
            raise
    try:
        policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
        statements = policy.get("Statement") or []
        statements = [statements] if isinstance(statements, dict) else statements
        report.tls_only = any(_denies_insecure_transport(s, bucket) for s in statements)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchBucketPolicy",):
            raise
    report.versioning = client.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"
    try:
        config = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        report.public_access_blocked = all(config.get(k) for k in PUBLIC_ACCESS_BLOCK)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchPublicAccessBlockConfiguration",):
            raise
    return report


def _add_tls_only(client, bucket: str) -> None:
    """Add the TLS-only statement to the bucket's policy, keeping its other statements."""
    from botocore.exceptions import ClientError

    try:
        policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucketPolicy":
            raise
        policy = {"Version": "2012-10-17", "Statement": []}
    statements = policy.get("Statement") or []
    statements = [statements] if isinstance(statements, dict) else statements
    policy["Statement"] = [s for s in statements if s.get("Sid") != TLS_ONLY_SID] + [tls_only_statement(bucket)]
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def ensure_bucket(client, bucket: str, configure: bool, kms_key_id: str = "", require_tls: bool = True) -> BucketReport:
    """Verify the bucket; configure what is missing when allowed; raise BucketNotSafe otherwise. With
    ``kms_key_id`` (ECOMMERCE_LAKE_S3_KMS_KEY_ID) the default encryption must be SSE-KMS with that key; with
    ``require_tls`` (:func:`endpoint_uses_tls`) the bucket policy must deny requests without TLS."""
    report = inspect_bucket(client, bucket, kms_key_id, require_tls)
    if report.missing and configure:
        if not report.encryption:
            default = ({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_id} if kms_key_id
                       else {"SSEAlgorithm": "AES256"})
            client.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={"Rules": [
                    {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}
                ]},
            )
            report.configured.append(f"default encryption (SSE-KMS, key {kms_key_id})" if kms_key_id
                                     else "default encryption (SSE-S3, AES256)")
        if not report.versioning:
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            report.configured.append("versioning")
        if not report.public_access_blocked:
            client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
            report.configured.append("public access block")
        if require_tls and not report.tls_only:
            _add_tls_only(client, bucket)
            report.configured.append("TLS-only bucket policy")
        for item in report.configured:
            log.info("s3://%s: configured %s", bucket, item)
        report = BucketReport(**{**inspect_bucket(client, bucket, kms_key_id, require_tls).__dict__,
                                 "configured": report.configured})
    if report.missing:
        raise BucketNotSafe(
            f"lake bucket s3://{bucket} lacks {', '.join(report.missing)}. Configure it, or set "
            "ECOMMERCE_LAKE_S3_CONFIGURE_BUCKET=true to let ecommerce_lake do it."
        )
    return report
