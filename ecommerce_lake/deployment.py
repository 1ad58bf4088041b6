"""The resources of each environment (local, prod): which Spark, lake, landing zone and keys the code location runs
with, from :class:`~ecommerce_lake.settings.Settings`, and the lake's knobs (``defs/resources.py``: thresholds,
sensor limits, segmentation, forecasting, inventory policy, maintenance), each resource reading its own variables.
The resource classes own their fields; this module only says which resource each key gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster_aws.s3 import S3Resource

from collections.abc import Mapping

from ecommerce_lake.defs.resources import KNOBS
from ecommerce_lake.platform.io_manager import DeltaIOManager
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.platform.lake_reader import LakeReaderResource
from ecommerce_lake.platform.models import ModelRegistryResource, default_tracking
from ecommerce_lake.platform.report_io import ReportIOManager
from ecommerce_lake.platform.landing import LandingResource
from ecommerce_lake.platform.bucket import endpoint_uses_tls
from ecommerce_lake.platform.secrets import PrivacyKeysResource, PseudonymKeyResource
from ecommerce_lake.platform.spark import SparkResource
from ecommerce_lake.settings import Settings


def spark_resource(settings: Settings) -> SparkResource:
    groups = ["delta", "kafka", "s3"] if settings.needs_s3 else ["delta", "kafka"]
    if settings.lake_is_local:
        metastore_dir = str(Path(settings.lake_root) / "_metastore")
    else:
        metastore_dir = str(Path(settings.home) / "metastore")
    return SparkResource(
        master=settings.spark_master,
        remote=settings.spark_remote,
        shuffle_partitions=settings.spark_shuffle_partitions,
        driver_memory=settings.spark_driver_memory,
        ui_enabled=settings.spark_ui,
        warehouse_dir=f"{settings.lake_root}/_warehouse",
        metastore_uri=settings.hive_metastore_uri,
        metastore_dir=metastore_dir,
        jars_dir=settings.jars_dir,
        jar_groups=groups,
        maven_repo=settings.maven_repo,
        s3_endpoint=settings.s3_endpoint,
        s3_region=settings.s3_region,
        s3_path_style=settings.s3_path_style,
        java_options=settings.spark_java_options,
        whole_stage_codegen=settings.spark_whole_stage_codegen,
        landing_root=settings.landing_root,
        extra_conf=dict(settings.spark_conf),
    )


def s3_resource(settings: Settings) -> S3Resource:
    """dagster-aws S3 resource; credentials come from the standard AWS environment, never from config."""
    return S3Resource(region_name=settings.s3_region, endpoint_url=settings.s3_endpoint or None)


def model_registry(settings: Settings) -> ModelRegistryResource:
    """MLflow: the configured tracking server, else the home's embedded store."""
    if settings.mlflow_tracking_uri:
        return ModelRegistryResource(tracking_uri=settings.mlflow_tracking_uri)
    uri, artifacts = default_tracking(settings.home)
    return ModelRegistryResource(tracking_uri=uri, artifact_root=artifacts)


def build_resources(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every resource of the environment ``settings`` describes; the knobs from ``environ`` (default: the
    process's environment variables)."""
    spark = spark_resource(settings)
    lake = LakeResource(
        root=settings.lake_root, spark=spark, s3=s3_resource(settings),
        verify_bucket=settings.env == "prod" and settings.lake_root.startswith("s3a://"),
        configure_bucket=settings.s3_configure_bucket, kms_key_id=settings.s3_kms_key_id,
        require_tls=endpoint_uses_tls(settings.s3_endpoint),
    )
    return {
        "spark": spark,
        "lake": lake,
        "io_manager": DeltaIOManager(lake=lake),
        "report_io_manager": ReportIOManager(root=settings.lake_root, s3=s3_resource(settings)),
        "landing": LandingResource(root=settings.landing_root, s3=s3_resource(settings)),
        "pseudonym": PseudonymKeyResource(key_file=settings.pseudonym_key_file,
                                          generate_if_missing=settings.env == "local"),
        "privacy_keys": PrivacyKeysResource(keyring_file=settings.privacy_keyring_file,
                                            generate_if_missing=settings.env == "local"),
        "lake_reader": LakeReaderResource(root=settings.lake_root, s3_endpoint=settings.s3_endpoint,
                                          s3_region=settings.s3_region, s3_path_style=settings.s3_path_style),
        "model_registry": model_registry(settings),
        **{key: knob.from_env(environ) for key, knob in KNOBS.items()},
    }
