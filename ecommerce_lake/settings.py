"""Configuration from environment variables (prefix ``ECOMMERCE_LAKE_``).

This module is the only place that reads ``ECOMMERCE_LAKE_*`` variables. Everything else receives a
:class:`Settings` instance, so local and production differ by configuration only. Every variable is
documented in README.md (section "Configuration"); ``ecommerce-lake config`` prints the effective values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

PREFIX = "ECOMMERCE_LAKE_"
ENVIRONMENTS = ("local", "prod")
WHOLE_STAGE_CODEGEN = ("auto", "true", "false")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def _default_driver_memory() -> str:
    """A third of the machine's memory, between 2 and 16 GiB (local mode runs everything in the driver)."""
    try:
        with open("/proc/meminfo") as fh:
            kib = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
        gib = kib // (1024 * 1024)
    except (OSError, StopIteration, ValueError):
        gib = 6
    return f"{min(16, max(2, gib // 3))}g"


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false)")


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not an integer") from exc


def _parse_conf(name: str, raw: str) -> dict[str, str]:
    """``key=value;key=value`` into a dict (for extra Spark settings)."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(";"))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{name}: {item!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def is_remote_uri(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


@dataclass(frozen=True)
class Settings:
    """Effective configuration. Build it with :meth:`from_env`; tests pass explicit values."""

    env: str = "local"
    home: str = field(default_factory=lambda: str(Path.home() / ".ecommerce_lake"))
    lake_root: str = ""
    landing_root: str = ""
    spark_master: str = "local[*]"
    spark_remote: str = "sc://127.0.0.1:15002"  # the engine (Spark Connect); "off": in-process Spark only
    spark_shuffle_partitions: int = 0
    spark_driver_memory: str = ""
    spark_ui: bool = False
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    # JVM options of the Spark driver (the engine's, or in-process Spark's), e.g. "-XX:TieredStopAtLevel=1"
    spark_java_options: str = ""
    # Spark's whole-stage code generation (spark.sql.codegen.wholeStage): true, false, or auto (off while the local
    # landing zone is small: compiling each query's code costs more than it saves there, docs/performance.md).
    # Empty: auto in local, true (Spark's default) in prod
    spark_whole_stage_codegen: str = ""
    hive_metastore_uri: str = ""
    jars_dir: str = field(default_factory=lambda: str(Path.home() / ".cache" / "ecommerce_lake" / "jars"))
    maven_repo: str = "https://repo1.maven.org/maven2"
    pseudonym_key_file: str = ""
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_path_style: bool = False
    s3_configure_bucket: bool = False
    partitions_start: str = "2023-01-01"
    sensor_max_batches_per_tick: int = 20
    unknown_county_warn_share: float = 0.05
    row_count_change_warn_ratio: float = 0.5
    segment_change_warn_share: float = 0.2
    rfm_as_of: str = ""
    forecast_as_of: str = ""
    forecast_train_days: int = 365
    forecast_origins: int = 3
    forecast_max_iter: int = 15  # = logic.forecast.ForecastParams (test_forecast_defaults_agree_everywhere)
    forecast_max_zero_rows: int = 200_000
    service_level: float = 0.95
    lead_time_days: int = 7
    lead_times: str = ""
    ordering_cost_kes: float = 1000.0
    holding_cost_rate: float = 0.25
    vacuum_retention_hours: int = 168

    def __post_init__(self) -> None:
        if self.env not in ENVIRONMENTS:
            raise ConfigError(f"{PREFIX}ENV={self.env!r}: expected one of {', '.join(ENVIRONMENTS)}")
        home = self.home
        if not self.lake_root:
            object.__setattr__(self, "lake_root", str(Path(home) / "lake"))
        if not self.landing_root:
            object.__setattr__(self, "landing_root", str(Path(home) / "landing"))
        codegen = (self.spark_whole_stage_codegen or ("true" if self.env == "prod" else "auto")).strip().lower()
        if codegen not in WHOLE_STAGE_CODEGEN:
            raise ConfigError(f"{PREFIX}SPARK_WHOLE_STAGE_CODEGEN={self.spark_whole_stage_codegen!r}: expected one "
                              f"of {', '.join(WHOLE_STAGE_CODEGEN)}")
        object.__setattr__(self, "spark_whole_stage_codegen", codegen)
        if not self.spark_driver_memory:
            object.__setattr__(self, "spark_driver_memory", _default_driver_memory())
        if self.spark_shuffle_partitions <= 0:
            cores = os.cpu_count() or 2
            # locally one task per core and stage: on small data a second wave of tasks costs more than it
            # balances (a warm rebuild of an 815-line lake: 52 s with 2 partitions on 2 cores, 66-70 s with 4)
            default = cores if self.spark_master.startswith("local") else 64
            object.__setattr__(self, "spark_shuffle_partitions", default)
        if not self.pseudonym_key_file:
            object.__setattr__(self, "pseudonym_key_file", str(Path(home) / "secrets" / "pseudonym.key"))
        # Normalise local paths to absolute paths so Spark, Delta and the catalog agree on locations.
        for name in ("lake_root", "landing_root"):
            value = getattr(self, name).rstrip("/")
            if value.startswith("file://"):
                value = value[len("file://") :]
            if not is_remote_uri(value):
                value = str(Path(value).expanduser().resolve())
            object.__setattr__(self, name, value)
        import datetime as _dt

        for var, value in (("PARTITIONS_START", self.partitions_start), ("RFM_AS_OF", self.rfm_as_of),
                           ("FORECAST_AS_OF", self.forecast_as_of)):
            try:
                if value:
                    _dt.date.fromisoformat(value)
            except ValueError as exc:
                raise ConfigError(f"{PREFIX}{var}={value!r} is not a YYYY-MM-DD date") from exc
        if not 0.5 <= self.service_level < 1:
            raise ConfigError(f"{PREFIX}SERVICE_LEVEL={self.service_level}: expected a fraction in [0.5, 1)")
        for var, value, low in (("FORECAST_TRAIN_DAYS", self.forecast_train_days, 56),
                                ("FORECAST_ORIGINS", self.forecast_origins, 3),
                                ("FORECAST_MAX_ITER", self.forecast_max_iter, 1),
                                ("FORECAST_MAX_ZERO_ROWS", self.forecast_max_zero_rows, 1000),
                                ("LEAD_TIME_DAYS", self.lead_time_days, 1),
                                ("VACUUM_RETENTION_HOURS", self.vacuum_retention_hours, 168)):
            if value < low:
                raise ConfigError(f"{PREFIX}{var}={value}: must be at least {low}")
        if self.ordering_cost_kes < 0 or self.holding_cost_rate <= 0:
            raise ConfigError(f"{PREFIX}ORDERING_COST_KES must be >= 0 and {PREFIX}HOLDING_COST_RATE > 0")
        from ecommerce_lake.logic.inventory_params import parse_overrides

        try:
            parse_overrides(self.lead_times)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}LEAD_TIMES: {exc}") from exc
        remote = self.spark_remote.strip()
        if remote.lower() not in ("off", "none", "local", "no", "false", ""):
            from urllib.parse import urlparse

            parsed = urlparse(remote)
            if parsed.scheme != "sc" or not parsed.hostname:
                raise ConfigError(f"{PREFIX}SPARK_REMOTE={remote!r}: expected sc://host:port (the engine's Spark "
                                  "Connect address) or off")
        if is_remote_uri(self.lake_root) and not self.lake_root.startswith("s3a://"):
            raise ConfigError(
                f"{PREFIX}ROOT={self.lake_root!r}: remote lake roots must use the s3a:// scheme "
                "(Spark reaches S3 through Hadoop S3A)"
            )

    @property
    def lake_is_local(self) -> bool:
        return not is_remote_uri(self.lake_root)

    @property
    def engine_dir(self) -> str:
        """Where ``ecommerce-lake engine`` keeps the engine's state and log."""
        return str(Path(self.home) / "engine")

    @property
    def needs_s3(self) -> bool:
        return self.lake_root.startswith("s3a://") or self.landing_root.startswith(("s3://", "s3a://"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(PREFIX + name)

        kwargs: dict = {}
        simple = {
            "ENV": "env",
            "HOME": "home",
            "ROOT": "lake_root",
            "LANDING": "landing_root",
            "SPARK_MASTER": "spark_master",
            "SPARK_REMOTE": "spark_remote",
            "SPARK_DRIVER_MEMORY": "spark_driver_memory",
            "HIVE_METASTORE_URI": "hive_metastore_uri",
            "JARS_DIR": "jars_dir",
            "MAVEN_REPO": "maven_repo",
            "PSEUDONYM_KEY_FILE": "pseudonym_key_file",
            "S3_ENDPOINT": "s3_endpoint",
            "S3_REGION": "s3_region",
            "PARTITIONS_START": "partitions_start",
            "RFM_AS_OF": "rfm_as_of",
            "FORECAST_AS_OF": "forecast_as_of",
            "LEAD_TIMES": "lead_times",
            "SPARK_JAVA_OPTIONS": "spark_java_options",
            "SPARK_WHOLE_STAGE_CODEGEN": "spark_whole_stage_codegen",
        }
        for var, attr in simple.items():
            value = get(var)
            if value:
                kwargs[attr] = os.path.expanduser(value) if attr in ("home", "jars_dir") else value
        for var, attr in (("SPARK_SHUFFLE_PARTITIONS", "spark_shuffle_partitions"),
                          ("SENSOR_MAX_BATCHES_PER_TICK", "sensor_max_batches_per_tick"),
                          ("FORECAST_TRAIN_DAYS", "forecast_train_days"), ("FORECAST_ORIGINS", "forecast_origins"),
                          ("FORECAST_MAX_ITER", "forecast_max_iter"), ("LEAD_TIME_DAYS", "lead_time_days"),
                          ("FORECAST_MAX_ZERO_ROWS", "forecast_max_zero_rows"),
                          ("VACUUM_RETENTION_HOURS", "vacuum_retention_hours")):
            if (value := get(var)) is not None and value != "":
                kwargs[attr] = _int(PREFIX + var, value)
        for var, attr in (
            ("SPARK_UI", "spark_ui"),
            ("S3_PATH_STYLE", "s3_path_style"),
            ("S3_CONFIGURE_BUCKET", "s3_configure_bucket"),
        ):
            if (value := get(var)) is not None:
                kwargs[attr] = _bool(PREFIX + var, value)
        if value := get("SPARK_CONF"):
            kwargs["spark_conf"] = _parse_conf(PREFIX + "SPARK_CONF", value)
        for var, attr in (
            ("UNKNOWN_COUNTY_WARN_SHARE", "unknown_county_warn_share"),
            ("ROW_COUNT_CHANGE_WARN_RATIO", "row_count_change_warn_ratio"),
            ("SEGMENT_CHANGE_WARN_SHARE", "segment_change_warn_share"),
            ("SERVICE_LEVEL", "service_level"),
            ("ORDERING_COST_KES", "ordering_cost_kes"),
            ("HOLDING_COST_RATE", "holding_cost_rate"),
        ):
            if value := get(var):
                try:
                    kwargs[attr] = float(value)
                except ValueError as exc:
                    raise ConfigError(f"{PREFIX}{var}={value!r} is not a number") from exc
        kwargs.update(overrides)
        return cls(**kwargs)

    def describe(self) -> dict[str, str]:
        """Effective values for display (no secrets are held here: the pseudonym key lives in a file)."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}
