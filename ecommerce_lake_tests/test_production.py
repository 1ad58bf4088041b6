"""The same code in production configurations, on real servers on 127.0.0.1: the lake on S3 (a real S3 API
server), a Spark standalone cluster with a thrift Hive metastore, Dagster on PostgreSQL with its webserver,
daemon and code server, and the docker/ stack's files and commands."""

import contextlib
import datetime as dt
import json
import os
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import boto3
import dagster as dg
import pytest
import yaml

from ecommerce_lake.generator.generate import GeneratorConfig, generate
from ecommerce_lake_tests import oracle
from ecommerce_lake_tests.servers import (
    BIN,
    REPO,
    S3_ENV,
    free_port,
    hive_metastore,
    http_json,
    moto_s3,
    postgres,
    process,
    spark_cluster,
    wait_for,
)

KEY = "test-pseudonym-key-0123456789abcdef"


def _privacy_keyring() -> str:
    from ecommerce_lake.platform.secrets import Keyring

    ring = Keyring({}, "test")
    ring.add_version()
    return ring.to_json()


PRIVACY_KEYRING = _privacy_keyring()  # production reads the keyring from the environment (a secret store)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("s3")
    with moto_s3(workdir) as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, **{
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"})
        yield endpoint, client


@pytest.fixture(scope="module")
def landing_data(tmp_path_factory):
    """Small generated batches, kept locally too for the independent computation."""
    local = tmp_path_factory.mktemp("landing") / "exports"
    generate(GeneratorConfig(out=local, seed=11, days=6, customers=120, products=30, lines=800, dirty_rate=0.03,
                             end_date=dt.date(2025, 10, 31)))
    expected = oracle.expected_fact_sales(oracle.read_landing(local), dt.datetime.now(dt.timezone.utc))
    return local, expected


def _upload(client, local: Path, bucket: str, prefix: str) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file() and path.name != "_SUCCESS":
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")
    for marker in sorted(local.rglob("_SUCCESS")):  # markers last, as an exporter writes them
        client.upload_file(str(marker), bucket, f"{prefix}/{marker.relative_to(local).as_posix()}")


def _env(tmp: Path, endpoint: str, **extra) -> dict:
    return {**os.environ, **S3_ENV,
            "ECOMMERCE_LAKE_ENV": "prod", "ECOMMERCE_LAKE_HOME": str(tmp / "home"), "DAGSTER_HOME": str(tmp / "dh"),
            "ECOMMERCE_LAKE_S3_ENDPOINT": endpoint, "ECOMMERCE_LAKE_S3_PATH_STYLE": "true",
            "ECOMMERCE_LAKE_PSEUDONYM_KEY": KEY, "ECOMMERCE_LAKE_PRIVACY_KEYRING": PRIVACY_KEYRING, **extra}


def _cli(args: list[str], env: dict, timeout: int = 1200) -> subprocess.CompletedProcess:
    (Path(env["DAGSTER_HOME"])).mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(BIN / "ecommerce-lake"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _fact_total(env: dict, root: str) -> tuple[Decimal, int]:
    from ecommerce_lake.platform.lake_reader import LakeReaderResource

    import dagster as dg

    with pytest.MonkeyPatch.context() as mp:  # delta-rs takes the S3 credentials from the environment
        for name, value in S3_ENV.items():
            mp.setenv(name, value)
        reader = LakeReaderResource(root=root, s3_endpoint=env["ECOMMERCE_LAKE_S3_ENDPOINT"], s3_path_style=True)
        table = reader.read(dg.AssetKey(["curated", "fact_sales"]), ["net_revenue_kes"], cache=False)
    return sum(table.column("net_revenue_kes").to_pylist(), Decimal("0")), table.num_rows


def test_bucket_is_verified_and_configured_in_prod(s3, tmp_path):
    """`setup` in prod refuses an unsafe lake bucket and configures it when allowed; with a KMS key id the bucket's
    default encryption must be SSE-KMS with that key; through a TLS endpoint the bucket policy must deny plain
    requests (required and configured by the same code: here its effect is shown on the server, which then
    refuses the plain-http requests of this test)."""
    from ecommerce_lake.platform.bucket import BucketNotSafe, ensure_bucket

    endpoint, client = s3
    client.create_bucket(Bucket="unsafe-lake")
    client.put_bucket_policy(Bucket="unsafe-lake", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Analysts", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/analyst"},
         "Action": "s3:GetObject", "Resource": "arn:aws:s3:::unsafe-lake/*"}]}))
    client.put_object(Bucket="unsafe-lake", Key="x/probe", Body=b"1")
    env = _env(tmp_path, endpoint, ECOMMERCE_LAKE_ROOT="s3a://unsafe-lake/x", ECOMMERCE_LAKE_LANDING="s3://unsafe-lake/l")
    refused = _cli(["setup"], env)
    assert refused.returncode != 0
    assert "lacks default encryption, versioning, public access block." in refused.stderr + refused.stdout, \
        refused.stderr[-3000:]
    ok = _cli(["setup"], {**env, "ECOMMERCE_LAKE_S3_CONFIGURE_BUCKET": "true"})
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "no TLS-only policy: the endpoint http://127.0.0.1" in ok.stdout  # it would lock this endpoint out
    rules = client.get_bucket_encryption(Bucket="unsafe-lake")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert client.get_bucket_versioning(Bucket="unsafe-lake")["Status"] == "Enabled"
    block = client.get_public_access_block(Bucket="unsafe-lake")["PublicAccessBlockConfiguration"]
    assert all(block[k] for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"))
    assert _cli(["setup"], env).returncode == 0  # now safe: verified without configuring

    # SSE-KMS with a configured key: SSE-S3 no longer does; configured, the bucket's default is that key
    kms = {**env, "ECOMMERCE_LAKE_S3_KMS_KEY_ID": "arn:aws:kms:us-east-1:123456789012:key/lake-key-1"}
    refused = _cli(["setup"], kms)
    assert refused.returncode != 0
    assert ("lacks default encryption with SSE-KMS key arn:aws:kms:us-east-1:123456789012:key/lake-key-1"
            in refused.stderr + refused.stdout), refused.stderr[-3000:]
    assert _cli(["setup"], {**kms, "ECOMMERCE_LAKE_S3_CONFIGURE_BUCKET": "true"}).returncode == 0
    rule = client.get_bucket_encryption(Bucket="unsafe-lake")["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:aws:kms:us-east-1:123456789012:key/lake-key-1"}
    assert _cli(["setup"], kms).returncode == 0

    # through a TLS endpoint the TLS-only policy is required, then configured (the bucket's own statement kept)
    with pytest.raises(BucketNotSafe, match="lacks a TLS-only bucket policy"):
        ensure_bucket(client, "unsafe-lake", configure=False, require_tls=True)
    report = ensure_bucket(client, "unsafe-lake", configure=True, require_tls=True)
    assert report.configured == ["TLS-only bucket policy"] and not report.missing
    statements = json.loads(client.get_bucket_policy(Bucket="unsafe-lake")["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["Analysts", "EcommerceLakeDenyInsecureTransport"]
    deny = statements[1]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny["Resource"]) == {"arn:aws:s3:::unsafe-lake", "arn:aws:s3:::unsafe-lake/*"}
    assert ensure_bucket(client, "unsafe-lake", configure=False, require_tls=True).configured == []
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="403|AccessDenied"):  # the server enforces it: plain http is refused
        client.get_object(Bucket="unsafe-lake", Key="x/probe")


def test_prod_run_is_refused_at_start_without_a_safe_bucket_or_a_pseudonym_key(s3, landing_data, tmp_path):
    """`run` in prod checks the lake bucket and the pseudonym key when the run starts: an unsafe bucket, then a
    missing key, each stop the run with a non-zero exit and a message that names the fix, before anything is
    written to the lake."""
    endpoint, client = s3
    local, _ = landing_data
    client.create_bucket(Bucket="gate-lake")
    client.create_bucket(Bucket="gate-landing")
    _upload(client, local, "gate-landing", "exports")
    env = _env(tmp_path, endpoint, ECOMMERCE_LAKE_ROOT="s3a://gate-lake/ecommerce",
               ECOMMERCE_LAKE_LANDING="s3://gate-landing/exports",
               ECOMMERCE_LAKE_SPARK_REMOTE="off")  # refused before any Spark work: no engine needed

    def lake_objects() -> list[str]:
        return [o["Key"] for o in client.list_objects_v2(Bucket="gate-lake").get("Contents", [])]

    refused = _cli(["run", "--select", "group:raw or group:refined"], env)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0, out[-3000:]
    assert "lacks default encryption, versioning, public access block" in out, out[-3000:]
    assert lake_objects() == []

    no_key = {k: v for k, v in env.items() if k != "ECOMMERCE_LAKE_PSEUDONYM_KEY"}
    no_key["ECOMMERCE_LAKE_S3_CONFIGURE_BUCKET"] = "true"
    refused = _cli(["run", "--select", "group:raw or group:refined"], no_key)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0, out[-3000:]
    assert "no pseudonymisation key: set ECOMMERCE_LAKE_PSEUDONYM_KEY" in out, out[-3000:]
    assert KEY not in out
    assert lake_objects() == []  # the bucket was configured, nothing was written

    no_keyring = {k: v for k, v in env.items() if k != "ECOMMERCE_LAKE_PRIVACY_KEYRING"}
    refused = _cli(["run", "--select", "group:raw or group:refined"], no_keyring)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0, out[-3000:]
    assert "no privacy keyring in this environment: neither ECOMMERCE_LAKE_PRIVACY_KEYRING" in out, out[-3000:]
    assert lake_objects() == []
    assert client.get_bucket_versioning(Bucket="gate-lake")["Status"] == "Enabled"


@contextlib.contextmanager
def _engine(env: dict):
    """An engine of its own for this configuration (``ecommerce-lake engine start``), stopped afterwards."""
    started = _cli(["engine", "start", "--no-warm"], env, timeout=600)
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    try:
        yield started
    finally:
        stopped = _cli(["engine", "stop"], env, timeout=300)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def _committed_tables(client, bucket: str, prefix: str) -> set[str]:
    """The lake's tables (``<layer>/<table>``) with at least one Delta commit, listed straight from the server."""
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    return {k[len(prefix):].split("/_delta_log/")[0] for k in keys if "/_delta_log/" in k and k.endswith(".json")}


def test_the_lake_on_s3(s3, landing_data, tmp_path):
    """ECOMMERCE_LAKE_ROOT=s3a://..., landing under s3://...: the lake (raw, refined, the curated tables of each
    write mode, and their checks) works unchanged, on an engine of the S3 configuration (the test session's
    engine is a local one: it must not serve this run). Every S3 request goes through a TCP proxy, and the first
    run meets an outage: the proxy is stopped (connections cut, port closed) as soon as the first table has a
    commit, for 20 s. That run fails naming the error or rides it out with retries; every table committed by then
    stays readable at a committed version (nothing half-written is visible); the lake converges to the independent
    computation: the run's own tables when it rode the outage out, a re-run's when it failed."""
    from deltalake import DeltaTable

    from ecommerce_lake_tests.servers import TcpProxy

    endpoint, client = s3
    local, expected = landing_data
    client.create_bucket(Bucket="lake")
    client.create_bucket(Bucket="landing")
    _upload(client, local, "landing", "exports")
    proxy = TcpProxy(int(endpoint.rsplit(":", 1)[1]))
    proxy.start()
    env = _env(tmp_path, proxy.endpoint, ECOMMERCE_LAKE_ROOT="s3a://lake/ecommerce",
               ECOMMERCE_LAKE_LANDING="s3://landing/exports", ECOMMERCE_LAKE_S3_CONFIGURE_BUCKET="true",
               ECOMMERCE_LAKE_SPARK_REMOTE=f"sc://127.0.0.1:{free_port()}")
    # raw, refined and curated tables of every write mode (day partitions: fact_sales, daily_sales; whole table:
    # category_share_by_county); the other curated tables are written by the same IO manager path, locally everywhere
    select = ('group:raw or group:refined or key:"curated/fact_sales" or key:"curated/daily_sales" '
              'or key:"curated/category_share_by_county"')
    try:
        with _engine(env):
            log = tmp_path / "outage-run.log"
            with log.open("w") as out:
                run = subprocess.Popen([str(BIN / "ecommerce-lake"), "run", "--select", select], env=env,
                                       stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
            deadline = time.monotonic() + 900
            while run.poll() is None and time.monotonic() < deadline and not _committed_tables(
                    client, "lake", "ecommerce/"):
                time.sleep(0.2)
            assert run.poll() is None, "the run ended before its first commit: " + log.read_text()[-3000:]
            proxy.stop()
            cut_at = _committed_tables(client, "lake", "ecommerce/")
            time.sleep(20)
            proxy.start()
            outage_exit = run.wait(timeout=1200)
            output = log.read_text()
            if outage_exit != 0:  # failed: it says which step and why
                assert "failed" in output.lower() and any(
                    word in output for word in ("Connection refused", "connect", "Unable to execute HTTP request",
                                                "EndpointConnectionError", "timed out", "S3")), output[-5000:]
            # every committed table is readable at a committed version, straight from the server (not through
            # the proxy, not through the code under test)
            storage = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
                       "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
            committed = _committed_tables(client, "lake", "ecommerce/")
            assert cut_at <= committed
            for table in sorted(committed):
                DeltaTable(f"s3://lake/ecommerce/{table}", storage_options=storage).to_pyarrow_table()
            if outage_exit != 0:  # failed clearly: a re-run converges
                result = _cli(["run", "--select", select], env)
                assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
                output = result.stdout
            # else it rode the outage out: its own tables are the converged ones (re-running a built lake changes
            # nothing: test_lake.py::test_rematerializing_changes_nothing)
    finally:
        proxy.stop()
    print(f"S3 outage drill: cut after {sorted(cut_at)} committed; the run exited {outage_exit}; "
          f"{proxy.connections} connections through the proxy")
    assert f"(Spark: engine {env['ECOMMERCE_LAKE_SPARK_REMOTE']})" in output
    total, lines = _fact_total({**env, "ECOMMERCE_LAKE_S3_ENDPOINT": endpoint}, "s3a://lake/ecommerce")
    assert total == sum(expected["net_revenue_kes"], Decimal("0")) and lines == len(expected)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="lake", Prefix="ecommerce/curated/fact_sales/")["Contents"]]
    assert any(k.endswith(".parquet") for k in keys) and any("_delta_log" in k for k in keys)
    assert client.get_bucket_versioning(Bucket="lake")["Status"] == "Enabled"

    # the AWS Glue Data Catalog (the same local server's Glue API): every table of the lake, as Athena reads Delta
    glue_env = {**env, "ECOMMERCE_LAKE_S3_ENDPOINT": endpoint, "ECOMMERCE_LAKE_GLUE_ENDPOINT": endpoint}
    first = _cli(["catalog", "sync", "--glue"], glue_env, timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    glue = boto3.client("glue", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                        region_name="us-east-1")
    registered = {(d["Name"], t["Name"]): t for d in glue.get_databases()["DatabaseList"]
                  for t in glue.get_tables(DatabaseName=d["Name"])["TableList"]}
    in_lake = {tuple(name.split("/")) for name in _committed_tables(client, "lake", "ecommerce/")}
    assert {(f"ecommerce_lake_{layer}", table) for layer, table in in_lake} == set(registered)
    fact = registered[("ecommerce_lake_curated", "fact_sales")]
    assert fact["StorageDescriptor"]["Location"] == "s3://lake/ecommerce/curated/fact_sales"
    assert fact["Parameters"]["table_type"] == "DELTA" and fact["TableType"] == "EXTERNAL_TABLE"
    assert ("net_revenue_kes", "decimal(18,2)") in [(c["Name"], c["Type"]) for c in fact["StorageDescriptor"]["Columns"]]
    assert f"{len(in_lake)} registered, 0 updated, 0 unchanged" in first.stdout
    glue.update_table(DatabaseName="ecommerce_lake_curated", TableInput={  # drifted: another location
        "Name": "fact_sales", "TableType": "EXTERNAL_TABLE", "StorageDescriptor": {"Location": "s3://elsewhere/x"}})
    again = _cli(["catalog", "sync", "--glue"], glue_env, timeout=300)
    assert again.returncode == 0 and f"0 registered, 1 updated, {len(in_lake) - 1} unchanged" in again.stdout, again.stdout
    assert glue.get_table(DatabaseName="ecommerce_lake_curated", Name="fact_sales")["Table"]["StorageDescriptor"][
        "Location"] == "s3://lake/ecommerce/curated/fact_sales"
    local = _cli(["catalog", "sync", "--glue"], {**glue_env, "ECOMMERCE_LAKE_ROOT": str(tmp_path / "local-lake")},
                 timeout=300)
    assert local.returncode == 1 and "the AWS Glue catalog registers tables on S3" in local.stderr

    # SQL without Spark on the S3 lake (delta-rs reads the bucket; DuckDB answers)
    fast = _cli(["sql", "--engine", "duckdb", "select count(*) as n, sum(net_revenue_kes) as kes from curated.fact_sales"],
                glue_env, timeout=300)
    assert fast.returncode == 0 and "on DuckDB over delta-rs" in fast.stderr, fast.stderr[-3000:]
    assert f"│ {len(expected)} │ {sum(expected['net_revenue_kes'], Decimal('0'))} │" in " ".join(fast.stdout.split()), (
        fast.stdout)

    # a report (the dashboard's IO manager) on S3: the page and its version, readable back
    from ecommerce_lake.platform.report_io import ReportIOManager
    from dagster_aws.s3 import S3Resource

    with pytest.MonkeyPatch.context() as mp:
        for name, value in S3_ENV.items():
            mp.setenv(name, value)
        reports = ReportIOManager(root="s3a://lake/ecommerce", s3=S3Resource(endpoint_url=endpoint,
                                                                             region_name="us-east-1"))
        key = dg.AssetKey(["insights", "dashboard"])
        reports.handle_output(dg.build_output_context(asset_key=key, run_id="0123456789abcdef"), "<html>page</html>")
        assert reports.load_input(dg.build_input_context(upstream_output=dg.build_output_context(asset_key=key))) == (
            "<html>page</html>")
    pages = [o["Key"] for o in client.list_objects_v2(Bucket="lake", Prefix="ecommerce/insights/dashboard/")["Contents"]]
    assert "ecommerce/insights/dashboard/latest.html" in pages and any(p.endswith("-01234567.html") for p in pages)


def test_the_lake_on_a_spark_cluster_with_a_thrift_metastore(s3, landing_data, tmp_path):
    """The same definitions on a Spark standalone cluster (master + worker on 127.0.0.1), data on S3 only, the
    catalog in a Hive metastore server that a second process queries: raw, refined and the sales fact (the other
    curated tables are aggregates of it, computed by the same code on every Spark), without the asset checks
    (they run on S3 in test_the_lake_on_s3 and locally everywhere else)."""
    endpoint, client = s3
    local, expected = landing_data
    client.create_bucket(Bucket="cluster-lake")
    client.create_bucket(Bucket="cluster-landing")
    _upload(client, local, "cluster-landing", "exports")
    s3_env = {**S3_ENV, "ECOMMERCE_LAKE_S3_ENDPOINT": endpoint, "ECOMMERCE_LAKE_S3_PATH_STYLE": "true"}
    with spark_cluster(tmp_path) as (master, master_json), hive_metastore(tmp_path, env=s3_env) as thrift:
        env = _env(tmp_path, endpoint, ECOMMERCE_LAKE_ROOT="s3a://cluster-lake/ecommerce",
                   ECOMMERCE_LAKE_LANDING="s3://cluster-landing/exports", ECOMMERCE_LAKE_S3_CONFIGURE_BUCKET="true",
                   ECOMMERCE_LAKE_SPARK_MASTER=master, ECOMMERCE_LAKE_HIVE_METASTORE_URI=thrift,
                   ECOMMERCE_LAKE_SPARK_CONF="spark.executor.memory=2g;spark.executor.cores=2",
                   ECOMMERCE_LAKE_SPARK_REMOTE=f"sc://127.0.0.1:{free_port()}", SPARK_LOCAL_IP="127.0.0.1")
        # the production topology: the engine is the cluster's driver; the run and the query are its clients
        with _engine(env):
            status = wait_for(lambda: (s := http_json(master_json))["activeapps"] and s, 60, "the engine on the master")
            assert [a["name"] for a in status["activeapps"]] == ["ecommerce_lake engine"], status
            result = _cli(["run", "--select", 'group:raw or group:refined or key:"curated/fact_sales"', "--no-checks"],
                          env, timeout=2400)
            assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
            assert f"(Spark: engine {env['ECOMMERCE_LAKE_SPARK_REMOTE']})" in result.stdout
            total, lines = _fact_total(env, "s3a://cluster-lake/ecommerce")
            assert total == sum(expected["net_revenue_kes"], Decimal("0")) and lines == len(expected)
            query = _cli(["sql", "select count(*) as n from curated.fact_sales"], env)
            assert query.returncode == 0, query.stderr[-3000:]
            assert f"|{len(expected)}" in query.stdout.replace(" ", "")
        status = wait_for(lambda: (s := http_json(master_json))["completedapps"] and s, 60, "the engine stopped")
        assert any(a["name"] == "ecommerce_lake engine" for a in status["completedapps"]), status


def test_dagster_on_postgres_runs_the_lake_from_the_landing_sensor(tmp_path, landing_data, engine, settings,
                                                                   monkeypatch):
    """Production instance (docker/dagster.prod.yaml: PostgreSQL storage, queued runs, Dagster's default run
    launcher), with the webserver, the daemon and the code server as separate processes and the engine beside
    them: a new batch is picked up by the landing sensor, its run carries it from raw to the day-partitioned
    curated tables, and declarative automation refreshes the all-time curated tables. Every run is a light
    process of its own and a client of the one engine (no JVM of its own)."""
    import shutil

    import dagster as dg

    local, _ = landing_data
    landing = tmp_path / "landing"
    for batch in sorted(p for p in local.iterdir() if p.is_dir())[:1]:  # one batch, one sensor run (the sensor
        # with many batches, run keys and cursors: test_sensors.py)
        shutil.copytree(batch, landing / batch.name)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "docker" / "dagster.prod.yaml", dagster_home / "dagster.yaml")
    with postgres(tmp_path / "pg") as pg_env:
        code_port, web_port = free_port(), free_port()
        env = {**pg_env, "DAGSTER_HOME": str(dagster_home), "DAGSTER_CODE_HOST": "127.0.0.1",
               "DAGSTER_CODE_PORT": str(code_port), "ECOMMERCE_LAKE_HOME": str(tmp_path / "home"),
               "ECOMMERCE_LAKE_LANDING": str(landing), "ECOMMERCE_LAKE_PSEUDONYM_KEY": KEY,
               "ECOMMERCE_LAKE_SPARK_REMOTE": settings.spark_remote}
        workspace = str(REPO / "docker" / "workspace.prod.yaml")
        with process([str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(code_port),
                      "-m", "ecommerce_lake.definitions"], tmp_path / "code.log", env=env) as code:
            wait_for(lambda: subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(code_port)],
                                            capture_output=True, env={**os.environ, **env}).returncode == 0,
                     180, "code server", code, tmp_path / "code.log")
            with process([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", workspace],
                         tmp_path / "webserver.log", env=env) as web, \
                    process([str(BIN / "dagster-daemon"), "run", "-w", workspace], tmp_path / "daemon.log",
                            env=env) as daemon:
                wait_for(lambda: http_json(f"http://127.0.0.1:{web_port}/server_info"), 120, "webserver", web,
                         tmp_path / "webserver.log")
                for name, value in pg_env.items():  # the instance below reads its database from them
                    monkeypatch.setenv(name, value)
                instance = dg.DagsterInstance.from_config(str(dagster_home))
                try:
                    def batch_runs_done():
                        runs = [r for r in instance.get_runs() if r.tags.get("ecommerce_lake/batch_id")]
                        assert not [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE], \
                            _run_failures(instance, runs)
                        done = [r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS]
                        return len(done) == 1 and done

                    runs = wait_for(batch_runs_done, 900, "sensor-driven ingestion runs", daemon,
                                    tmp_path / "daemon.log")
                    assert sorted(r.tags["ecommerce_lake/batch_id"] for r in runs) == sorted(
                        p.name for p in landing.iterdir())
                    # the batch's own run carried it from raw to the day-partitioned curated tables (and built the
                    # county reference: a fresh lake); declarative automation then refreshes the all-time tables
                    batch_run = runs[0].run_id
                    for key in (["refined", "counties"], ["refined", "orders"], ["curated", "daily_sales"]):
                        event = instance.get_latest_materialization_event(dg.AssetKey(key))
                        assert event is not None and event.run_id == batch_run, key
                    kpis = wait_for(lambda: instance.get_latest_materialization_event(
                        dg.AssetKey(["curated", "county_monthly_kpis"])), 900,
                        "automation refreshing the all-time tables", daemon, tmp_path / "daemon.log")
                    tags = instance.get_run_by_id(kpis.run_id).tags
                    assert tags.get("dagster/from_automation_condition") == "true", tags
                    assert "ecommerce_lake/batch_id" not in tags
                    # the materialization comes before the step's checks: wait for the run to end
                    wait_for(lambda: instance.get_run_by_id(kpis.run_id).is_finished, 600,
                             "the all-time tables' run finished", daemon, tmp_path / "daemon.log")
                    assert instance.get_run_by_id(kpis.run_id).status == dg.DagsterRunStatus.SUCCESS, \
                        _run_failures(instance, [instance.get_run_by_id(kpis.run_id)])
                    # every run was a client of the one engine (the run's own tag, set when it connected)
                    done = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.SUCCESS]
                    assert len(done) >= 2
                    assert {r.tags.get("ecommerce_lake/spark") for r in done} == {f"engine {settings.spark_remote}"}
                    liveness = subprocess.run([str(BIN / "dagster-daemon"), "liveness-check"], capture_output=True,
                                              env={**os.environ, **env}, text=True)
                    assert liveness.returncode == 0, liveness.stdout + liveness.stderr
                finally:
                    instance.dispose()


def _run_failures(instance, runs) -> str:
    out = []
    for r in runs:
        if r.status.value == "FAILURE":
            logs = [e.message for e in instance.all_logs(r.run_id) if e.level >= 40][-3:]
            out.append(f"{r.run_id} {r.tags}: {logs}")
    return "\n".join(out)


def test_compose_stack_references_only_files_and_commands_that_exist():
    compose = yaml.safe_load((REPO / "docker" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "hive-metastore", "spark-master", "spark-worker", "engine", "code",
            "dagster-webserver", "dagster-daemon"} <= set(services)
    assert "run-worker" not in services  # retired: the engine is the warm Spark of every run
    for name, service in services.items():
        if name != "minio-buckets":
            assert "healthcheck" in service, f"{name} has no health check"
        for dep in (service.get("depends_on") or {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        env_file = service.get("env_file")
        if env_file:
            assert (REPO / "docker" / f"{env_file}.example").exists() or (REPO / "docker" / env_file).exists()
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / "docker" / source).exists(), f"{name}: {source} missing"
        build = service.get("build")
        if build:
            assert (REPO / "docker" / build["context"] / build["dockerfile"]).resolve().exists()
        command = service.get("command")
        if isinstance(command, list) and service.get("image") == "ecommerce-lake:latest":
            program = command[0]
            if program.startswith("docker/"):
                assert os.access(REPO / program, os.X_OK), f"{name}: {program} is not an executable file"
            else:
                assert (BIN / program).exists(), f"{name}: {program} is not installed in the environment"
                subcommands = []
                for arg in command[1:]:
                    if arg.startswith("-"):
                        break
                    subcommands.append(arg)
                help_ = subprocess.run([str(BIN / program), *subcommands, "--help"], capture_output=True)
                assert help_.returncode == 0, f"{name}: `{program} {' '.join(subcommands)} --help` fails"
    # every variable the instance and workspace files read is in the example environment
    example = (REPO / "docker" / ".env.example").read_text()
    for path in ("dagster.prod.yaml", "workspace.prod.yaml"):
        text = (REPO / "docker" / path).read_text()
        for var in {line.split("env:")[1].strip() for line in text.splitlines() if "env:" in line}:
            assert f"{var}=" in example, f"{var} (read by {path}) missing from .env.example"
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    for copied in ("pyproject.toml", "constraints.txt", "ecommerce_lake", "docker"):
        assert copied in dockerfile and (REPO / copied).exists()
    assert "setup --all" in dockerfile  # the JVM jars are baked in
