# The MLflow tracking server of the forecast model (docker-compose.yml: the mlflow service). Its own image: the
# full `mlflow` package pins pyarrow < 26, which the lake's image pins higher (the lake only needs the client,
# mlflow-skinny). The version matches the server the tests start natively (scripts/install: .venv-mlflow).
FROM python:3.11-slim
RUN pip install --no-cache-dir mlflow==3.17.2 psycopg2-binary==2.9.13 boto3==1.44.8 \
    && apt-get update -qq && apt-get install -y -qq --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
EXPOSE 5000
