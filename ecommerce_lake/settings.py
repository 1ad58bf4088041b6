"""Configuration from environment variables (prefix ``ECOMMERCE_LAKE_``).

This module is the only place that reads ``ECOMMERCE_LAKE_*`` variables (besides ``defs/partitions.py``, which
needs the first day while the definitions load, and ``platform/secrets.py``, which reads the pseudonym key and the privacy keyring only
when a step uses them, so that the secret never sits in a configuration value): :class:`Settings` holds what an environment is made of (where
the lake, the landing zone and the engine are, Spark, S3); the resources of ``defs/resources.py`` declare the
lake's knobs themselves and read their variables through :class:`FromEnvironment`. Local and production differ by
configuration only. Every variable is
documented in README.md (section "Configuration"); ``ecommerce-lake config`` prints the effective values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from pydantic import ValidationError

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


class FromEnvironment:
    """Mixin of a Dagster ``ConfigurableResource`` whose fields may each be set by an environment variable,
    ``ECOMMERCE_LAKE_<env_prefix><FIELD>``: the resource declares its fields once (type, default, bounds,
    description); :meth:`from_env` passes the variables that are set to pydantic, which parses and validates
    them, and turns a validation error into a :class:`ConfigError` that names the variable."""

    env_prefix: ClassVar[str] = ""

    @classmethod
    def env_var(cls, field_name: str) -> str:
        return f"{PREFIX}{cls.env_prefix}{field_name.upper()}"

    @classmethod
    def variables(cls) -> dict[str, str]:
        """``{variable: field}`` of every field."""
        return {cls.env_var(name): name for name in cls.model_fields}  # type: ignore[attr-defined]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        values = {name: env[var] for var, name in cls.variables().items() if env.get(var, "") != ""}
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{cls.env_var(str(e['loc'][0])) if e['loc'] else cls.__name__}="
                f"{values.get(str(e['loc'][0]) if e['loc'] else '', '')!r}: {e['msg']}" for e in exc.errors())
            raise ConfigError(problems) from None


def is_remote_uri(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


@dataclass(frozen=True)
class Settings:
    """Effective configuration. Build it with :meth:`from_env`; tests pass explicit values."""

    env: str = "local"
    home: str = field(default_factory=lambda: str(Path.home() / ".ecommerce_lake"), metadata={"path": True})
    lake_root: str = field(default="", metadata={"var": "ROOT"})
    landing_root: str = field(default="", metadata={"var": "LANDING"})
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
    jars_dir: str = field(default_factory=lambda: str(Path.home() / ".cache" / "ecommerce_lake" / "jars"),
                          metadata={"path": True})
    maven_repo: str = "https://repo1.maven.org/maven2"
    pseudonym_key_file: str = ""
    # the privacy keyring (AES keys of the encrypted personal columns); ECOMMERCE_LAKE_PRIVACY_KEYRING (its JSON)
    # wins over the file. Default <home>/secrets/privacy_keyring.json, generated on first use in local
    privacy_keyring_file: str = field(default="", metadata={"path": True})
    # S3 lake bucket: SSE-KMS key required (and configured) instead of SSE-S3 when set
    s3_kms_key_id: str = ""
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_path_style: bool = False
    s3_configure_bucket: bool = False
    # `catalog sync --glue`: the AWS Glue Data Catalog endpoint (empty: AWS's) and the databases' name prefix
    # (a database per layer: <prefix>_<layer>)
    glue_endpoint: str = ""
    glue_database_prefix: str = "ecommerce_lake"
    # MLflow tracking and model registry of the forecast model: empty locally = an embedded store (SQLite and
    # artifacts under <home>/mlflow); a tracking server's http(s):// URI in production
    mlflow_tracking_uri: str = ""
    # the first day partition; read by defs/partitions.py when the definitions load (shown by `config`)
    partitions_start: str = "2023-01-01"

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
        if not self.privacy_keyring_file:
            object.__setattr__(self, "privacy_keyring_file", str(Path(home) / "secrets" / "privacy_keyring.json"))
        # Normalise local paths to absolute paths so Spark, Delta and the catalog agree on locations.
        for name in ("lake_root", "landing_root"):
            value = getattr(self, name).rstrip("/")
            if value.startswith("file://"):
                value = value[len("file://") :]
            if not is_remote_uri(value):
                value = str(Path(value).expanduser().resolve())
            object.__setattr__(self, name, value)
        import datetime as _dt

        try:
            _dt.date.fromisoformat(self.partitions_start)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}PARTITIONS_START={self.partitions_start!r} is not a YYYY-MM-DD date") from exc
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
    def kafka_dir(self) -> str:
        """Where ``ecommerce-lake kafka`` keeps the local broker's configuration, data and log."""
        return str(Path(self.home) / "kafka")

    @property
    def needs_s3(self) -> bool:
        return self.lake_root.startswith("s3a://") or self.landing_root.startswith(("s3://", "s3a://"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Every field from its variable (``ECOMMERCE_LAKE_`` + the field's ``var``, else its name in capitals),
        parsed by the field's type; unset or empty variables keep the default."""
        env = os.environ if environ is None else environ
        kwargs: dict = {}
        for f in fields(cls):
            var = PREFIX + f.metadata.get("var", f.name.upper())
            raw = env.get(var)
            if raw is None or (raw == "" and f.type != "bool"):
                continue
            kind = f.type
            if kind == "bool":
                kwargs[f.name] = _bool(var, raw)
            elif kind == "int":
                kwargs[f.name] = _int(var, raw)
            elif kind.startswith("Mapping"):
                kwargs[f.name] = _parse_conf(var, raw)
            else:
                kwargs[f.name] = os.path.expanduser(raw) if f.metadata.get("path") else raw
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def variables(cls) -> list[str]:
        """Every variable :meth:`from_env` reads."""
        return [PREFIX + f.metadata.get("var", f.name.upper()) for f in fields(cls)]

    def describe(self) -> dict[str, str]:
        """Effective values for display (no secrets are held here: the pseudonym key lives in a file)."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}
