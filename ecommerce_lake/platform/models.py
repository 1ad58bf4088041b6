"""The model registry: MLflow tracking and model registry for the forecast's training runs.

Every training run is an MLflow run (parameters, the Delta versions of its inputs, backtest metrics, the model's
coefficients, the fitted model's files) and a version of one registered model. The alias ``champion`` names the
version the forecast scores with; the training step moves it to a new version only when the blocking check
``no_worse_than_champion`` passed (``defs/ml/forecasting.py``).

Locally the store is embedded: SQLite and an artifact directory under ``ECOMMERCE_LAKE_HOME/mlflow``; in
production ``ECOMMERCE_LAKE_MLFLOW_TRACKING_URI`` names a tracking server (docker/: the ``mlflow`` service).
Only the MLflow client API is used (no global "active run" state), and nothing connects before a step asks.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

log = logging.getLogger(__name__)

CHAMPION = "champion"
# MLflow logs a batch of at most 1000 metrics and 100 parameters per call
_BATCH = 1000


@dataclass(frozen=True)
class RegisteredModel:
    """One registered version and what its training run recorded."""

    version: str
    run_id: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifact_uri: str  # the run's artifact root

    @property
    def spec(self) -> dict:
        """What the training recorded as the model's definition (its ``spec`` parameter, JSON)."""
        return json.loads(self.params.get("spec", "{}"))


class ModelRegistryResource(dg.ConfigurableResource):
    """MLflow tracking and registry of the forecast's models."""

    tracking_uri: str = Field(description="MLflow tracking URI: sqlite:///... (embedded) or http(s)://server.")
    artifact_root: str = Field("", description="Where an embedded store keeps run artifacts (a local directory); "
                               "empty with a tracking server, which keeps its own.")
    experiment: str = Field("ecommerce_lake/sales_forecast", description="MLflow experiment of the training runs.")
    model_name: str = Field("ecommerce_lake.sales_forecast", description="Registered model name.")

    # ---- connection ----------------------------------------------------------------------------------------
    def client(self):
        from mlflow import MlflowClient

        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def experiment_id(self, client) -> str:
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = None
        if self.artifact_root:
            Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
            location = Path(self.artifact_root).resolve().as_uri()
        return client.create_experiment(self.experiment, artifact_location=location)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """Where a person finds the run: the server's page, or the run in the embedded store."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"{self.tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        return f"{self.tracking_uri} (experiment {experiment_id}, run {run_id})"

    # ---- logging a training run ----------------------------------------------------------------------------
    def log_training(self, *, params: dict[str, object], inputs: dict[str, int | None], metrics: dict[str, float],
                     coefficients: dict[str, float], model_dir: str, tags: dict[str, str]) -> tuple[str, str, str]:
        """One MLflow run with everything a training recorded, and a new version of the registered model from
        it. Returns (run id, version, run URL)."""
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException

        client = self.client()
        experiment_id = self.experiment_id(client)
        run = client.create_run(experiment_id, tags={**tags, "mlflow.runName": tags.get("model_version", "")})
        run_id = run.info.run_id
        try:
            now = int(1000 * __import__("time").time())
            all_params = [Param(k, str(v)) for k, v in params.items()]
            all_params += [Param(f"input/{k}", "missing" if v is None else str(v)) for k, v in inputs.items()]
            for i in range(0, len(all_params), 100):
                client.log_batch(run_id, params=all_params[i:i + 100])
            values = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
            values += [Metric(f"coefficient/{k}", float(v), now, 0) for k, v in coefficients.items()]
            for i in range(0, len(values), _BATCH):
                client.log_batch(run_id, metrics=values[i:i + _BATCH])
            client.log_dict(run_id, {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                     for k, v in coefficients.items()}, "coefficients.json")
            if "://" in model_dir and not model_dir.startswith("file://"):
                # a model on S3: the registry points at it (the files stay where Spark wrote them)
                with tempfile.TemporaryDirectory() as tmp:
                    (Path(tmp) / "MODEL_PATH").write_text(model_dir + "\n")
                    client.log_artifacts(run_id, tmp, "model")
            else:
                client.log_artifacts(run_id, model_dir.removeprefix("file://"), "model")
            client.set_terminated(run_id, "FINISHED")
        except Exception:
            client.set_terminated(run_id, "FAILED")
            raise
        try:
            client.create_registered_model(self.model_name, description="Daily product x county unit forecasts "
                                           "(ecommerce_lake ml/sales_forecast).")
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"
        version = client.create_model_version(self.model_name, source, run_id=run_id,
                                              tags={k: v for k, v in tags.items() if k == "origin_date"})
        return run_id, str(version.version), self.run_url(experiment_id, run_id)

    # ---- the champion --------------------------------------------------------------------------------------
    def champion(self) -> RegisteredModel | None:
        """The version the alias ``champion`` names (None before the first promotion)."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            mv = client.get_model_version_by_alias(self.model_name, CHAMPION)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        return self._registered(client, mv)

    def promote(self, version: str) -> None:
        self.client().set_registered_model_alias(self.model_name, CHAMPION, version)

    @staticmethod
    def _registered(client, mv) -> RegisteredModel:
        run = client.get_run(mv.run_id)
        return RegisteredModel(version=str(mv.version), run_id=mv.run_id, params=dict(run.data.params),
                               metrics=dict(run.data.metrics), tags=dict(run.data.tags),
                               artifact_uri=run.info.artifact_uri)

    def local_model_dir(self, model: RegisteredModel) -> str:
        """A directory Spark can load the version's fitted model from: the model on S3 the version points at; the
        run's own artifact directory in an embedded store; else its files downloaded from the tracking server."""
        from urllib.parse import unquote, urlparse

        client = self.client()
        listed = [a.path for a in client.list_artifacts(model.run_id, "model")]
        if listed == ["model/MODEL_PATH"]:
            with tempfile.TemporaryDirectory() as tmp:
                return Path(client.download_artifacts(model.run_id, "model/MODEL_PATH", tmp)).read_text().strip()
        if model.artifact_uri.startswith("file://"):
            local = Path(unquote(urlparse(model.artifact_uri).path)) / "model"
            if local.is_dir():
                return str(local)
        target = Path(tempfile.mkdtemp(prefix="ecommerce-lake-model-"))
        return client.download_artifacts(model.run_id, "model", str(target))


def default_tracking(home: str) -> tuple[str, str]:
    """The embedded store of a local home: (tracking URI, artifact directory)."""
    base = Path(home) / "mlflow"
    return f"sqlite:///{(base / 'mlflow.db').resolve()}", str((base / "artifacts").resolve())
