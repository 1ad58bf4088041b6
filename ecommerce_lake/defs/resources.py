"""The lake's own resources (besides the platform's Spark, lake, landing and key resources): the thresholds of
the warning checks, the landing sensor's limits, and the knobs of segmentation, forecasting, the inventory policy
and Delta maintenance; and the run configuration of the assets whose day a user picks per run.

Each resource owns its fields: types, defaults, bounds and descriptions are declared once, here, and validated
by pydantic. Every field can be set by an environment variable, ``ECOMMERCE_LAKE_<ENV_PREFIX><FIELD>`` (e.g.
``ForecastConfig.train_days`` by ``ECOMMERCE_LAKE_FORECAST_TRAIN_DAYS``), read by
:meth:`~ecommerce_lake.settings.FromEnvironment.from_env` when ``deployment.py`` builds an environment's
resources; a bad value fails the code location's load with the variable's name. README lists every variable
(``test_every_setting_is_documented``)."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import dagster as dg
from pydantic import Field, field_validator

from ecommerce_lake.core.events import TOPIC, WATERMARK_MINUTES
from ecommerce_lake.logic.ml.forecast import ForecastParams
from ecommerce_lake.logic.ml.inventory_params import PolicyParams, parse_overrides
from ecommerce_lake.settings import FromEnvironment

MIN_RETENTION_HOURS = 168  # VACUUM never deletes what a reader or time travel of the last week needs


def _iso_day(value: str | None) -> str | None:
    if value:
        try:
            dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a YYYY-MM-DD date") from exc
    return value


class QualityResource(FromEnvironment, dg.ConfigurableResource):
    """Thresholds of the warning checks."""

    env_prefix: ClassVar[str] = ""
    unknown_county_warn_share: float = Field(0.05, ge=0, le=1, description="unknown_county_share warns above this "
                                             "share of revenue.")
    row_count_change_warn_ratio: float = Field(0.5, ge=0, description="row_count_change warns when rows change by "
                                               "more than this ratio.")
    segment_change_warn_share: float = Field(0.2, ge=0, le=1, description="segment_changes warns when more than "
                                             "this share of customers changed segment.")


class SensorSettingsResource(FromEnvironment, dg.ConfigurableResource):
    """Limits of the landing sensor."""

    env_prefix: ClassVar[str] = "SENSOR_"
    max_batches_per_tick: int = Field(20, ge=1, description="New batches requested per tick.")


class SegmentationConfig(FromEnvironment, dg.ConfigurableResource):
    """The deployment's default day RFM is computed for (a run may pick another: :class:`AsOfConfig`)."""

    env_prefix: ClassVar[str] = "RFM_"
    as_of: str = Field("", description="YYYY-MM-DD; empty: the latest order date.")
    _day = field_validator("as_of")(_iso_day)


class ForecastConfig(FromEnvironment, dg.ConfigurableResource):
    """The forecast's default origin and its training knobs."""

    env_prefix: ClassVar[str] = "FORECAST_"
    as_of: str = Field("", description="Forecast origin YYYY-MM-DD; empty: the latest order date.")
    train_days: int = Field(ForecastParams.train_days, ge=56, description="Target days each model trains on.")
    origins: int = Field(ForecastParams.origins, ge=3, description="Rolling backtest origins, 28 days apart.")
    max_iter: int = Field(ForecastParams.max_iter, ge=1, description="Iterations of the Poisson regression's fit "
                          "(iteratively reweighted least squares) at most.")
    max_zero_rows: int = Field(ForecastParams.max_zero_rows, ge=1000, description="Zero-demand days per model at "
                               "most.")
    reg_param: float = Field(ForecastParams.reg_param, ge=0, description="Ridge penalty of the Poisson regression's "
                             "coefficients.")
    _day = field_validator("as_of")(_iso_day)

    def params(self) -> ForecastParams:
        return ForecastParams(train_days=self.train_days, origins=self.origins, max_iter=self.max_iter,
                              max_zero_rows=self.max_zero_rows, reg_param=self.reg_param)


class InventoryPolicyConfig(FromEnvironment, dg.ConfigurableResource):
    """The (s, Q) inventory policy."""

    env_prefix: ClassVar[str] = ""
    service_level: float = Field(0.95, ge=0.5, lt=1, description="Target cycle service level.")
    lead_time_days: int = Field(7, ge=1, description="Replenishment lead time (days).")
    lead_times: str = Field("", description="Lead-time overrides: Phones=10;county:30=14;Phones@30=21 (category, "
                            "county code, both; most specific wins).")
    ordering_cost_kes: float = Field(1000.0, ge=0, description="Cost of placing one order (EOQ).")
    holding_cost_rate: float = Field(0.25, gt=0, description="Yearly holding cost as a share of the unit cost "
                                     "(EOQ).")
    max_cover_days: int = Field(28, ge=0, description="An order buys at most this many days of forecast demand "
                                "(the EOQ capped; 0: no cap).")

    @field_validator("lead_times")
    @classmethod
    def _overrides(cls, value: str) -> str:
        parse_overrides(value)  # raises ValueError naming the bad item
        return value

    def params(self) -> PolicyParams:
        return PolicyParams(service_level=self.service_level, lead_time_days=self.lead_time_days,
                            lead_time_overrides=parse_overrides(self.lead_times),
                            ordering_cost_kes=self.ordering_cost_kes, holding_cost_rate=self.holding_cost_rate,
                            max_cover_days=self.max_cover_days)


class MaintenanceConfig(FromEnvironment, dg.ConfigurableResource):
    """Delta maintenance."""

    env_prefix: ClassVar[str] = "VACUUM_"
    retention_hours: int = Field(MIN_RETENTION_HOURS, ge=MIN_RETENTION_HOURS,
                                 description=f"VACUUM retention, at least {MIN_RETENTION_HOURS} hours.")


# Which resource key each knob resource has in every environment (deployment.py builds them from the environment)
class KafkaResource(FromEnvironment, dg.ConfigurableResource):
    """Where the real-time feed's order events are (the event contract: core/events.py) and how the stream treats
    them."""

    env_prefix: ClassVar[str] = "KAFKA_"
    bootstrap: str = Field("127.0.0.1:9092", min_length=3, description="Kafka bootstrap servers (host:port, ...); "
                           "locally the broker of `ecommerce-lake kafka start`.")
    topic: str = Field(TOPIC, min_length=1, description="Topic of the order events.")
    partitions: int = Field(3, ge=1, description="Partitions of the topic when the lake creates it.")
    watermark_minutes: int = Field(WATERMARK_MINUTES, ge=0, description="Allowed lateness: an event older than the "
                                   "latest event time seen minus this goes to realtime.late_events.")
    max_offsets_per_trigger: int = Field(0, ge=0, description="Messages per micro-batch at most (0: no limit).")


KNOBS: dict[str, type[FromEnvironment]] = {
    "quality": QualityResource,
    "sensor_settings": SensorSettingsResource,
    "segmentation": SegmentationConfig,
    "forecasting": ForecastConfig,
    "inventory_policy": InventoryPolicyConfig,
    "maintenance": MaintenanceConfig,
    "kafka": KafkaResource,
}


class AsOfConfig(dg.Config):
    """Run configuration of an asset computed for one day (RFM scores, the forecast): set ``as_of`` in the
    launchpad to compute it for another day than the deployment's default."""

    as_of: str | None = Field(None, description="YYYY-MM-DD for this run; empty: the deployment's default "
                              "(ECOMMERCE_LAKE_RFM_AS_OF / ECOMMERCE_LAKE_FORECAST_AS_OF), else the latest "
                              "order date.")
    _day = field_validator("as_of")(_iso_day)

    def day(self, default: str) -> dt.date | None:
        """The run's day, else the deployment's ``default``; None: neither is set."""
        chosen = self.as_of or default
        return dt.date.fromisoformat(chosen) if chosen else None
