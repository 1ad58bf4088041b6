"""Resources per environment, from :class:`~ecommerce_lake.settings.Settings` only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster_aws.s3 import S3Resource

from ecommerce_lake.defs.automation import SensorSettingsResource
from ecommerce_lake.defs.common import QualityResource
from ecommerce_lake.defs.forecasting import ForecastConfig, InventoryPolicyConfig
from ecommerce_lake.defs.maintenance import MaintenanceConfig
from ecommerce_lake.defs.ml import SegmentationConfig
from ecommerce_lake.platform.io_manager import DeltaIOManager
from ecommerce_lake.platform.lake import LakeResource
from ecommerce_lake.platform.landing import LandingResource
from ecommerce_lake.platform.lake_reader import LakeReaderResource
from ecommerce_lake.platform.secrets import PseudonymKeyResource
from ecommerce_lake.platform.spark import SparkResource
from ecommerce_lake.settings import Settings


def spark_resource(settings: Settings) -> SparkResource:
    groups = ["delta", "s3"] if settings.needs_s3 else ["delta"]
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


def build_resources(settings: Settings) -> dict[str, Any]:
    spark = spark_resource(settings)
    lake = LakeResource(
        root=settings.lake_root, spark=spark, s3=s3_resource(settings),
        verify_bucket=settings.env == "prod" and settings.lake_root.startswith("s3a://"),
        configure_bucket=settings.s3_configure_bucket,
    )
    return {
        "spark": spark,
        "lake": lake,
        "io_manager": DeltaIOManager(lake=lake),
        "landing": LandingResource(root=settings.landing_root, s3=s3_resource(settings)),
        "pseudonym": PseudonymKeyResource(key_file=settings.pseudonym_key_file,
                                          generate_if_missing=settings.env == "local"),
        "lake_reader": LakeReaderResource(root=settings.lake_root, s3_endpoint=settings.s3_endpoint,
                                          s3_region=settings.s3_region, s3_path_style=settings.s3_path_style),
        "sensor_settings": SensorSettingsResource(max_batches_per_tick=settings.sensor_max_batches_per_tick),
        "quality": QualityResource(unknown_county_warn_share=settings.unknown_county_warn_share,
                                   row_count_change_warn_ratio=settings.row_count_change_warn_ratio,
                                   segment_change_warn_share=settings.segment_change_warn_share),
        "segmentation": SegmentationConfig(as_of=settings.rfm_as_of),
        "forecasting": ForecastConfig(as_of=settings.forecast_as_of, train_days=settings.forecast_train_days,
                                      origins=settings.forecast_origins, max_iter=settings.forecast_max_iter,
                                      max_zero_rows=settings.forecast_max_zero_rows),
        "maintenance": MaintenanceConfig(retention_hours=settings.vacuum_retention_hours),
        "inventory_policy": InventoryPolicyConfig(
            service_level=settings.service_level, lead_time_days=settings.lead_time_days,
            lead_times=settings.lead_times, ordering_cost_kes=settings.ordering_cost_kes,
            holding_cost_rate=settings.holding_cost_rate),
    }
