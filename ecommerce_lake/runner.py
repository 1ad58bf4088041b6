"""Run the lake job in this process against the configured Dagster instance, and report what happened."""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field

import dagster as dg

from ecommerce_lake.settings import Settings


@dataclass
class RunReport:
    success: bool
    run_id: str
    seconds: float
    step_seconds: dict[str, float] = field(default_factory=dict)
    group_seconds: dict[str, float] = field(default_factory=dict)
    materialized: dict[str, int | None] = field(default_factory=dict)
    failed_steps: list[str] = field(default_factory=list)
    failed_blocking_checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    warning_details: dict[str, str] = field(default_factory=dict)  # check -> what its metadata explains
    # numeric metadata of the materializations (e.g. seconds/features, backtest/...), per asset
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    step_rows: dict[str, int] = field(default_factory=dict)  # rows written per step (all its outputs)
    spark: str = ""  # the Spark the run used: "engine sc://..." or "in-process local[*]"

    @property
    def exit_code(self) -> int:
        return 0 if self.success and not self.failed_blocking_checks and not self.failed_steps else 1


@dataclass
class RunPlan:
    new_batches: int
    rejected_batches: int
    incomplete_batches: int
    days: tuple[str, str] | None  # partition range of the run, None: no day partitions
    mode: str
    rejections: list[tuple[str, str]] = field(default_factory=list)  # (batch id, reason) of batches to reject


def plan_run(settings: Settings, mode: str = "full") -> RunPlan:
    """Which day partitions a run must cover: the days new batches touch (read from the landing files and the
    lake with delta-rs, no Spark) and, in ``full`` mode, every day that already holds data."""
    from ecommerce_lake.deployment import build_resources
    from ecommerce_lake.defs.partitions import FIRST_DAY
    from ecommerce_lake.logic.raw.plan import plan_new_batches

    resources = build_resources(settings)
    reader = resources["lake_reader"]
    found = plan_new_batches(resources["landing"], reader.ingested_batches(), reader.order_days, first_day=FIRST_DAY)
    days = set().union(*[p.days for p in found.planned]) if found.planned else set()
    if mode == "full":  # every day that holds data, already or with the new batches
        existing = reader.day_range()
        if existing:
            days |= set(existing)
    return RunPlan(
        new_batches=sum(1 for p in found.planned if p.accepted),
        rejected_batches=sum(1 for p in found.planned if not p.accepted),
        rejections=[(p.batch.batch_id, p.reason or "") for p in found.planned if not p.accepted],
        incomplete_batches=len(found.incomplete),
        days=(min(days).isoformat(), max(days).isoformat()) if days else None,
        mode=mode,
    )


class AsOfError(ValueError):
    """``as_of`` given, but no selected asset is computed for a day."""


def as_of_config(graph, keys, as_of: str) -> dict:
    """The ``ops`` run configuration that sets ``as_of`` on every selected step whose config has it."""
    ops: dict = {}
    for key in keys:
        node = graph.get(key)
        if node.is_executable:
            op = node.assets_def.op
            if "as_of" in getattr(op.config_schema.as_field().config_type, "fields", {}):
                ops[op.name] = {"config": {"as_of": as_of}}
    if not ops:
        raise AsOfError(f"--as-of {as_of}: no selected asset is computed for a day (select ml/rfm_scores, "
                         "ml/forecast_model or ml/sales_forecast)")
    return ops


def execute(settings: Settings, selection: str | None = None, instance: dg.DagsterInstance | None = None,
            tags: dict[str, str] | None = None, log_level: str = "INFO", mode: str = "full",
            checks: bool = True, as_of: str | None = None) -> RunReport:
    """Materialize ``selection`` (default: the lake) with its checks over the day partitions the landing zone and
    the lake call for. ``as_of``: the day the selected day-picking assets (RFM scores, the forecast) are computed
    for, as their run configuration (``AsOfConfig``) sets it in the launchpad."""
    from ecommerce_lake.definitions import build_defs
    from ecommerce_lake.deployment import spark_resource
    from ecommerce_lake.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
    from ecommerce_lake.platform.spark import start_in_background

    start_in_background(spark_resource(settings))  # Spark starts (or connects) while the run is planned and created
    defs = build_defs(settings)
    graph = defs.resolve_asset_graph()
    target = dg.AssetSelection.groups("raw", "refined", "curated", "insights", "ml")
    if mode == "incremental":  # what new batches can change: the raw tables and everything downstream, except
        # the ml group, which refreshes on its own cron (daily scoring, weekly training), and the insights, which
        # read every month and refresh by declarative automation once the batches are in (or in a full run)
        target = (target & dg.AssetSelection.groups("raw").downstream()
                  - dg.AssetSelection.groups("ml", "insights"))
    if selection:  # a full run may also select the ops group (``--select group:ops``: Delta maintenance now)
        base = target if mode == "incremental" else dg.AssetSelection.all()
        target = base & dg.AssetSelection.from_string(selection)
    if not checks:  # benchmarks: the transformations alone
        target = target.without_checks()
    partitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None]
    if target.resolve(graph) & set(partitioned):
        plan = plan_run(settings, mode)  # the landing zone and the lake say which day partitions to cover
    else:  # no day partition selected: nothing to plan
        plan = RunPlan(new_batches=0, rejected_batches=0, incomplete_batches=0, days=None, mode=mode)
    tags = dict(tags or {})
    if plan.days:
        tags.update({RANGE_START_TAG: plan.days[0], RANGE_END_TAG: plan.days[1]})
    else:  # nothing to put in day partitions: the unpartitioned assets only
        target = target - dg.AssetSelection.assets(*partitioned)
    print(f"plan ({plan.mode}): {plan.new_batches} new batch(es), {plan.rejected_batches} to reject, "
          f"{plan.incomplete_batches} incomplete; day partitions: "
          + (f"{plan.days[0]}..{plan.days[1]}" if plan.days else "none"), flush=True)
    if plan.rejections:
        from ecommerce_lake.platform.io_manager import printable

        for batch_id, reason in plan.rejections[:20]:
            print(f"  batch {printable(batch_id)} breaks the landing contract and will be rejected whole (recorded "
                  f"in raw.batch_log): {printable(reason)}", flush=True)
        if len(plan.rejections) > 20:
            print(f"  ... and {len(plan.rejections) - 20} more rejected batch(es): see raw.batch_log", flush=True)
    run_config: dict = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if as_of:
        run_config["ops"] = as_of_config(graph, target.resolve(graph), as_of)
    job_name = "lake_run"
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[dg.define_asset_job(job_name, selection=target)]))
    job = defs.resolve_job_def(job_name)
    instance = instance or dg.DagsterInstance.get()
    from ecommerce_lake.platform.dead_runs import process_tags, reap

    reap(instance, say=lambda message: print(message, flush=True))  # a killed run must not hold the pools forever
    run_id = str(uuid.uuid4())
    tags.update(process_tags(run_id))
    started = time.monotonic()
    result = job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_id=run_id,
        tags=tags,
        run_config=run_config,
    )
    from ecommerce_lake.platform.lake import flush_registrations
    from ecommerce_lake.platform.spark import SPARK_TAG

    flush_registrations()  # the run's tables are in the catalog when the report says so
    seconds = time.monotonic() - started

    run = instance.get_run_by_id(result.run_id)
    report = RunReport(success=result.success, run_id=result.run_id, seconds=seconds,
                       spark=(run.tags.get(SPARK_TAG, "") if run else ""))

    group_of_step: dict[str, str] = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_executable:
            group_of_step[node.assets_def.node_def.name] = node.group_name or "default"
    starts: dict[str, float] = {}
    step_events = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    for record in (r.event_log_entry for r in instance.get_records_for_run(result.run_id, of_type=step_events).records):
        event = record.dagster_event
        if event is None or not event.step_key:
            continue
        step = event.step_key
        if event.event_type_value == "STEP_START":
            starts[step] = record.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and step in starts:
            report.step_seconds[step] = record.timestamp - starts[step]
            if event.event_type_value == "STEP_FAILURE":
                report.failed_steps.append(step)
    counted: set[tuple[str, str]] = set()
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            rows = mat.metadata.get("dagster/row_count")
            if rows is not None or mat.asset_key.to_user_string() not in report.materialized:
                # a write of several partitions records its row count on one of their materializations only
                report.materialized[mat.asset_key.to_user_string()] = rows.value if rows is not None else None
            # a range run records one materialization per partition, each with the output's row count: count
            # every output once
            once = (event.step_key or "", mat.asset_key.to_user_string())
            if event.step_key and rows is not None and once not in counted:
                counted.add(once)
                report.step_rows[event.step_key] = report.step_rows.get(event.step_key, 0) + int(rows.value or 0)
            numbers = {k: v.value for k, v in mat.metadata.items()
                       if k.startswith(("seconds/", "backtest/", "simulation/")) and isinstance(v.value, (int, float))}
            if numbers:
                report.figures[mat.asset_key.to_user_string()] = numbers
    for step, secs in report.step_seconds.items():
        group = group_of_step.get(step, "checks")
        report.group_seconds[group] = report.group_seconds.get(group, 0.0) + secs
    for evaluation in result.get_asset_check_evaluations():
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        if not evaluation.passed:
            if evaluation.severity == dg.AssetCheckSeverity.ERROR:
                report.failed_blocking_checks.append(name)
            else:
                report.warnings.append(name)
                explanation = evaluation.metadata.get("explanation")
                if explanation is not None and explanation.value:
                    report.warning_details[name] = str(explanation.value)
    return report


def print_report(report: RunReport, settings: Settings, out=sys.stdout) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("")
    p(f"run {report.run_id}: {'SUCCESS' if report.exit_code == 0 else 'FAILED'} in {report.seconds:.1f} s"
      + (f" (Spark: {report.spark})" if report.spark else ""))
    if report.group_seconds:
        p("time per layer (sum of step times): " + ", ".join(
            f"{g} {s:.1f} s" for g, s in sorted(report.group_seconds.items())))
    for key, rows in sorted(report.materialized.items()):
        p(f"  materialized {key:40} {'' if rows is None else f'{rows:>12,} rows written'}")
    for step in report.failed_steps:
        p(f"  FAILED step {step}")
    for name in report.failed_blocking_checks:
        p(f"  FAILED blocking check {name}")
    for name in report.warnings:
        detail = report.warning_details.get(name)
        p(f"  warning: check {name} did not pass" + (f": {detail}" if detail else ""))
    if report.warnings and all("rejected" in report.warning_details.get(n, "") and "0 to one that never arrived"
                               in report.warning_details.get(n, "") for n in report.warnings):
        p("  (these warnings follow from rows rejected upstream, each kept with its rule in refined.rejects or "
          "refined.sales_rejects; `ecommerce-lake generate` plants such dirty rows on purpose, --dirty-rate)")
    p(f"tables: {settings.lake_root}/<layer>/<table> (Delta); catalog names <layer>.<table>, e.g. "
      "`ecommerce-lake sql \"select * from curated.county_monthly_kpis limit 10\"`")
    if "insights/dashboard" in report.materialized:
        p(f"dashboard: {settings.lake_root}/insights/dashboard/latest.html; `ecommerce-lake dashboard` serves it on "
          "http://127.0.0.1:8050/")
    p("UI: `ecommerce-lake ui` then http://127.0.0.1:3000 (runs, asset graph, checks, lineage)")


def run_lake(settings: Settings, selection: str | None = None, mode: str = "full",
             report_path: str | None = None, checks: bool = True, as_of: str | None = None) -> int:
    report = execute(settings, selection=selection, mode=mode, checks=checks, as_of=as_of)
    print_report(report, settings)
    if report_path:
        import json
        from dataclasses import asdict

        with open(report_path, "w") as fh:
            json.dump({**asdict(report), "exit_code": report.exit_code}, fh, indent=2, default=str)
    return report.exit_code


def execute_request(settings: Settings, request: dg.RunRequest, instance: dg.DagsterInstance | None = None,
                    log_level: str = "WARNING") -> dg.ExecuteInProcessResult:
    """Execute a sensor's RunRequest in this process, as the daemon would launch it (tests, debugging)."""
    from ecommerce_lake.definitions import build_defs

    job = dg.define_asset_job("sensor_request", selection=dg.AssetSelection.assets(*request.asset_selection))
    defs = dg.Definitions.merge(build_defs(settings), dg.Definitions(jobs=[job]))
    return defs.resolve_job_def("sensor_request").execute_in_process(
        instance=instance or dg.DagsterInstance.get(), tags=dict(request.tags), raise_on_error=False,
        asset_selection=list(request.asset_selection),  # recorded on the run, as the daemon's run records it
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
