"""Benchmark: one SparkSession per run vs one JVM per step, on a chain of Spark assets.

Run through ``ecommerce-lake bench --suite session``. Each mode runs in a fresh Python process (cold JVM):

* ``shared``  – the in-process executor our definitions use: the JVM starts once and serves every step;
* ``per_step`` – Dagster's multiprocess executor: every step is its own process, so it starts its own JVM.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.deployment import build_resources
from ecommerce_lake.platform.dagster_storage import instance_yaml
from ecommerce_lake.platform.spark import SparkResource
from ecommerce_lake.settings import Settings

STEPS = int(os.environ.get("ECOMMERCE_LAKE_BENCH_STEPS", "6"))


def _step_asset(i: int) -> dg.AssetsDefinition:
    @dg.asset(key=["bench", f"step_{i}"], ins={"up": dg.AssetIn(["bench", f"step_{i - 1}"])})
    def step(up: DataFrame) -> DataFrame:
        return up.withColumn("v", F.col("v") * 1.01).withColumn("step", F.lit(i)).repartition(2)

    return step


@dg.asset(key=["bench", "step_0"])
def first_step(spark: SparkResource) -> DataFrame:
    return spark.get_session().range(200_000).withColumn("v", F.rand(7)).withColumn("step", F.lit(0))


def _chain(n: int) -> list[dg.AssetsDefinition]:
    return [first_step, *[_step_asset(i) for i in range(1, n)]]


def _defs() -> dg.Definitions:
    return dg.Definitions(
        assets=_chain(STEPS),
        jobs=[dg.define_asset_job("bench_chain", executor_def=dg.multi_or_in_process_executor)],
        resources=build_resources(Settings.from_env()),
    )


defs = _defs()


def _run_mode(mode: str) -> None:  # executed in a fresh subprocess
    from dagster import DagsterInstance, execute_job, reconstructable

    execution = {"in_process": {}} if mode == "shared" else {"multiprocess": {"max_concurrent": 1}}
    started = time.monotonic()
    with DagsterInstance.get() as instance:
        result = execute_job(reconstructable(_job), instance=instance, run_config={"execution": {"config": execution}})
        ok = result.success
    print(json.dumps({"mode": mode, "seconds": time.monotonic() - started, "success": ok}))


def _job():
    return defs.resolve_job_def("bench_chain")


def bench(steps: int = 6) -> dict:
    out: dict = {"steps": steps}
    with tempfile.TemporaryDirectory(prefix="ecommerce_lake_bench_") as tmp:
        for mode in ("shared", "per_step"):
            env = {**os.environ, "DAGSTER_HOME": tmp, "ECOMMERCE_LAKE_ROOT": str(Path(tmp) / f"lake_{mode}"),
                   "ECOMMERCE_LAKE_BENCH_STEPS": str(steps), "ECOMMERCE_LAKE_HOME": str(Path(tmp) / f"home_{mode}")}
            Path(tmp, "dagster.yaml").write_text(instance_yaml(tmp))
            started = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "ecommerce_lake.bench.session", mode], env=env,
                                  capture_output=True, text=True)
            wall = time.monotonic() - started
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines or not json.loads(lines[-1])["success"]:
                raise RuntimeError(f"bench mode {mode} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            out[mode] = {"run_seconds": round(json.loads(lines[-1])["seconds"], 1), "process_seconds": round(wall, 1)}
    out["per_step_over_shared"] = round(out["per_step"]["run_seconds"] / out["shared"]["run_seconds"], 2)
    return out


if __name__ == "__main__":
    _run_mode(sys.argv[1])
