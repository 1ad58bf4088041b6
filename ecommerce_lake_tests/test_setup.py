"""Installation and configuration: cached JVM jars work offline, settings come from ECOMMERCE_LAKE_*,
and the code location loads and validates the way `dagster dev` loads it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ecommerce_lake.platform.jars import JAR_GROUPS, JarResolutionError, resolve_jars
from ecommerce_lake.platform.spark import small_landing
from ecommerce_lake.settings import ConfigError, Settings

REPO = Path(__file__).resolve().parents[1]
UNREACHABLE = "http://127.0.0.1:9/maven2"  # discard port: nothing listens, connections are refused at once
SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_specs.json"


def test_cached_jars_resolve_with_the_network_cut(settings, tmp_path):
    cache = tmp_path / "jars"
    cache.mkdir()
    for jar in JAR_GROUPS["delta"]:
        os.link(Path(settings.jars_dir) / jar.filename, cache / jar.filename)
    paths = resolve_jars(["delta"], cache, repo=UNREACHABLE, verify=True)
    assert [p.name for p in paths] == [j.filename for j in JAR_GROUPS["delta"]]


def test_missing_jar_without_network_fails_loudly(tmp_path):
    with pytest.raises(JarResolutionError) as err:
        resolve_jars(["delta"], tmp_path / "empty", repo=UNREACHABLE)
    assert "io.delta:delta-spark_2.13:4.0.1" in str(err.value) and "ecommerce-lake setup" in str(err.value)


def test_truncated_jar_is_not_trusted(settings, tmp_path):
    jar = JAR_GROUPS["delta"][1]
    (tmp_path / jar.filename).write_bytes(b"not a jar")
    with pytest.raises(JarResolutionError):
        resolve_jars(["delta"], tmp_path, repo=UNREACHABLE)


def test_settings_come_from_prefixed_environment_variables(tmp_path):
    env = {
        "ECOMMERCE_LAKE_ENV": "prod",
        "ECOMMERCE_LAKE_ROOT": "s3a://lake-bucket/prefix/",
        "ECOMMERCE_LAKE_LANDING": "s3://landing-bucket/exports",
        "ECOMMERCE_LAKE_SPARK_MASTER": "spark://10.0.0.5:7077",
        "ECOMMERCE_LAKE_SPARK_SHUFFLE_PARTITIONS": "64",
        "ECOMMERCE_LAKE_SPARK_CONF": "spark.executor.memory=4g; spark.executor.cores=2",
        "ECOMMERCE_LAKE_HIVE_METASTORE_URI": "thrift://metastore:9083",
        "ECOMMERCE_LAKE_HOME": str(tmp_path),
    }
    s = Settings.from_env(env)
    assert s.env == "prod" and s.lake_root == "s3a://lake-bucket/prefix"
    assert s.landing_root == "s3://landing-bucket/exports" and s.needs_s3
    assert s.spark_master == "spark://10.0.0.5:7077" and s.spark_shuffle_partitions == 64
    assert dict(s.spark_conf) == {"spark.executor.memory": "4g", "spark.executor.cores": "2"}
    assert s.hive_metastore_uri == "thrift://metastore:9083"
    assert s.spark_whole_stage_codegen == "true"  # Spark's default where the data is big
    tuned = Settings.from_env({**env, "ECOMMERCE_LAKE_SPARK_WHOLE_STAGE_CODEGEN": "false",
                               "ECOMMERCE_LAKE_SPARK_JAVA_OPTIONS": "-XX:+UseG1GC"})
    assert tuned.spark_whole_stage_codegen == "false" and tuned.spark_java_options == "-XX:+UseG1GC"

    local = Settings.from_env({"ECOMMERCE_LAKE_HOME": str(tmp_path)})
    assert local.env == "local" and local.lake_root == str(tmp_path / "lake")
    assert local.landing_root == str(tmp_path / "landing") and local.spark_master == "local[*]"
    assert local.spark_shuffle_partitions == (os.cpu_count() or 2)
    assert local.spark_whole_stage_codegen == "auto"  # off while the landing zone is small (docs/performance.md)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"ECOMMERCE_LAKE_ENV": "staging"}, "ECOMMERCE_LAKE_ENV"),
        ({"ECOMMERCE_LAKE_SPARK_SHUFFLE_PARTITIONS": "many"}, "ECOMMERCE_LAKE_SPARK_SHUFFLE_PARTITIONS"),
        ({"ECOMMERCE_LAKE_SPARK_UI": "maybe"}, "ECOMMERCE_LAKE_SPARK_UI"),
        ({"ECOMMERCE_LAKE_ROOT": "gs://bucket/lake"}, "s3a://"),
        ({"ECOMMERCE_LAKE_SPARK_CONF": "novalue"}, "ECOMMERCE_LAKE_SPARK_CONF"),
        ({"ECOMMERCE_LAKE_SPARK_WHOLE_STAGE_CODEGEN": "sometimes"}, "ECOMMERCE_LAKE_SPARK_WHOLE_STAGE_CODEGEN"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_lakes_knobs_come_from_their_resources_variables():
    """Each knob resource reads ``ECOMMERCE_LAKE_<prefix><FIELD>`` itself; pydantic parses and bounds the value, and a
    bad one fails naming the variable; unset variables keep the resource's declared default."""
    from ecommerce_lake.defs.resources import KNOBS

    env = {"ECOMMERCE_LAKE_FORECAST_TRAIN_DAYS": "120", "ECOMMERCE_LAKE_RFM_AS_OF": "2025-06-30",
           "ECOMMERCE_LAKE_SENSOR_MAX_BATCHES_PER_TICK": "5", "ECOMMERCE_LAKE_VACUUM_RETENTION_HOURS": "200",
           "ECOMMERCE_LAKE_UNKNOWN_COUNTY_WARN_SHARE": "0.1", "ECOMMERCE_LAKE_HOLDING_COST_RATE": ""}
    knobs = {key: knob.from_env(env) for key, knob in KNOBS.items()}
    assert knobs["forecasting"].train_days == 120 and knobs["forecasting"].origins == 3
    assert knobs["segmentation"].as_of == "2025-06-30" and knobs["forecasting"].as_of == ""
    assert knobs["sensor_settings"].max_batches_per_tick == 5 and knobs["maintenance"].retention_hours == 200
    assert knobs["quality"].unknown_county_warn_share == 0.1 and knobs["inventory_policy"].holding_cost_rate == 0.25
    for var, value, message in (("FORECAST_TRAIN_DAYS", "many", "valid integer"),
                                ("FORECAST_TRAIN_DAYS", "20", "greater than or equal to 56"),
                                ("FORECAST_AS_OF", "yesterday", "YYYY-MM-DD"),
                                ("VACUUM_RETENTION_HOURS", "24", "greater than or equal to 168"),
                                ("UNKNOWN_COUNTY_WARN_SHARE", "2", "less than or equal to 1")):
        with pytest.raises(ConfigError, match=f"ECOMMERCE_LAKE_{var}='{value}': .*{message}"):
            for knob in KNOBS.values():
                knob.from_env({f"ECOMMERCE_LAKE_{var}": value})


def test_every_variable_is_documented_in_the_readme():
    """README's configuration table lists every variable the settings and the knob resources read, and no other."""
    from ecommerce_lake.defs.resources import KNOBS
    from ecommerce_lake.platform.secrets import KEY_ENV, KEYRING_ENV

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(ECOMMERCE_LAKE_[A-Z0-9_]+)` \|", section, flags=re.M))
    read = {*Settings.variables(), KEY_ENV, KEYRING_ENV, *(var for knob in KNOBS.values() for var in knob.variables())}
    assert documented == read


def test_spark_configuration(resources, spark, tmp_path):
    conf = resources["spark"].spark_conf()
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert conf["spark.sql.adaptive.enabled"] == "true"
    assert conf["spark.ui.enabled"] == "false"
    assert int(conf["spark.sql.shuffle.partitions"]) <= 4 * (os.cpu_count() or 2)
    # the engine the test session runs on was started with this configuration, and serves it
    assert spark.conf.get("spark.master") == "local[*]"
    assert spark.conf.get("spark.sql.shuffle.partitions") == conf["spark.sql.shuffle.partitions"]
    assert spark.conf.get("spark.sql.catalogImplementation") == "hive"
    assert spark.conf.get("spark.sql.warehouse.dir").endswith("/lake/_warehouse")
    # JVM options join the embedded metastore's (both reach the driver: the engine's command line, in-process Spark)
    options = resources["spark"].model_copy(update={"java_options": "-XX:+UseG1GC"}).spark_conf()
    assert options["spark.driver.extraJavaOptions"].split() == [conf["spark.driver.extraJavaOptions"], "-XX:+UseG1GC"]
    # a session setting: the test session's client set it on its engine session (auto: its landing zone is small)
    assert conf["spark.sql.codegen.wholeStage"] == "false" == spark.conf.get("spark.sql.codegen.wholeStage")
    # auto decides by the size of the landing files: on for a landing zone of 16 MiB or more, or a remote one
    big = tmp_path / "big_landing" / "2025-01-01"
    big.mkdir(parents=True)
    (big / "order_items.csv").write_bytes(b"x" * (16 * 1024 * 1024))
    assert not small_landing(str(big.parent)) and not small_landing("s3://landing/exports")
    assert small_landing(str(tmp_path / "no_landing_yet"))
    sized = resources["spark"].model_copy(update={"landing_root": str(big.parent)}).spark_conf()
    assert sized["spark.sql.codegen.wholeStage"] == "true"


def test_definitions_load_and_validate_like_dagster_dev(tmp_path):
    env = {**os.environ, "ECOMMERCE_LAKE_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ecommerce_lake" in out.stdout + out.stderr


def _spec_snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    snap = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        spec = node.to_asset_spec() if hasattr(node, "to_asset_spec") else None
        snap[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "automation_condition": node.automation_condition.get_label() if node.automation_condition else None,
            "partitioned": node.partitions_def is not None,
            "metadata_keys": sorted(node.metadata),
            "columns": [c.name for c in getattr(node.metadata["dagster/column_schema"], "schema", node.metadata["dagster/column_schema"]).columns]
            if "dagster/column_schema" in node.metadata else None,
            "checks": sorted(k.name for k in graph.get_check_keys_for_assets({key})),
            "has_description": bool(spec.description if spec else node.description),
        }
    return snap


def test_every_asset_spec_matches_the_snapshot():
    """A change to any asset's key, deps, group, kinds, owners, columns or checks must be deliberate:
    regenerate with UPDATE_SNAPSHOTS=1 and review the diff."""
    from ecommerce_lake.definitions import build_defs

    snap = _spec_snapshot(build_defs(Settings()))
    for key, spec in snap.items():
        assert spec["kinds"] and spec["owners"] and spec["has_description"], key
        assert spec["group"] in {"raw", "refined", "curated", "insights", "ml", "realtime", "maintenance", "ops"}, key
        if spec["group"] in {"raw", "refined", "curated"} or key.startswith("insights/") and key != "insights/dashboard":
            assert spec["columns"], f"{key} has no dagster/column_schema"
            assert "columns_match_schema" in spec["checks"], key
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
    assert snap == json.loads(SNAPSHOT.read_text()), "asset specs changed: rerun with UPDATE_SNAPSHOTS=1 and review"


def test_dagster_webserver_serves_the_asset_graph(tmp_path):
    """What `dagster dev` shows: the webserver loads the code location from workspace.yaml and lists every
    asset with its group (queried through the webserver's GraphQL API)."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ECOMMERCE_LAKE_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1",
         "-p", str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        query = json.dumps({"query": "{ assetNodes { assetKey { path } groupName } }"}).encode()
        deadline = time.monotonic() + 120
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                             headers={"Content-Type": "application/json"})
                nodes = json.loads(urllib.request.urlopen(req, timeout=10).read())["data"]["assetNodes"]
                if nodes:
                    break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
            time.sleep(1)
        groups = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
        assert groups["raw/orders"] == "raw" and groups["refined/orders"] == "refined"
        assert groups["curated/fact_sales"] == "curated"
        assert len(groups) == len(json.loads(SNAPSHOT.read_text()))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
