-- The Hive metastore keeps its catalog in its own database next to Dagster's.
CREATE DATABASE metastore;
-- MLflow's runs and model registry (the mlflow service).
CREATE DATABASE mlflow;
