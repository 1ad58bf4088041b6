"""``ecommerce-lake``: set up, generate sample data, run the lake, query it, keep the docs current."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path

from ecommerce_lake.settings import ConfigError, Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("ecommerce_lake")


def _iso_day(value: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a YYYY-MM-DD date") from exc


def _settings() -> Settings:
    from ecommerce_lake.defs.resources import KNOBS

    try:
        settings = Settings.from_env()
        for knob in KNOBS.values():  # the lake's knobs too: a bad value fails every command, naming its variable
            knob.from_env()
        return settings
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def ensure_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME (default ``<ECOMMERCE_LAKE_HOME>/dagster_home``) with the repository's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path(settings.home) / "dagster_home").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    target = home / "dagster.yaml"
    source = REPO_ROOT / "dagster.yaml"
    if not target.exists() and source.exists():  # its storage pinned to this directory (see dagster_storage.pinned)
        from ecommerce_lake.platform.dagster_storage import pinned

        target.write_text(pinned(source.read_text(), home))
    return home


# ---- commands ------------------------------------------------------------------------------------------
def cmd_setup(args: argparse.Namespace) -> int:
    from ecommerce_lake.deployment import build_resources
    from ecommerce_lake.platform.jars import resolve_jars

    settings = _settings()
    groups = (["delta", "kafka", "s3", "postgres", "kafka-broker"] if args.all
              else (["delta", "kafka", "s3"] if settings.needs_s3 else ["delta", "kafka"]))
    started = time.monotonic()
    paths = resolve_jars(groups, settings.jars_dir, settings.maven_repo, verify=args.verify)
    print(f"JVM jars ({', '.join(groups)}) in {settings.jars_dir}: {len(paths)} files, "
          f"{time.monotonic() - started:.1f} s")
    resources = build_resources(settings)
    if settings.env == "local":
        resources["pseudonym"].key()
        print(f"pseudonymisation key: {settings.pseudonym_key_file} (local development key, outside the repo)")
        ring = resources["privacy_keys"].keyring()
        print(f"privacy keyring: {ring.source}: {ring.describe()} (local development keys, outside the repo)")
    if settings.env == "prod" and settings.lake_root.startswith("s3a://"):
        from ecommerce_lake.platform.bucket import endpoint_uses_tls, ensure_bucket

        bucket = settings.lake_root[len("s3a://"):].split("/", 1)[0]
        tls = endpoint_uses_tls(settings.s3_endpoint)
        report = ensure_bucket(resources["lake"].s3.get_client(), bucket, configure=settings.s3_configure_bucket,
                               kms_key_id=settings.s3_kms_key_id, require_tls=tls)
        print(f"lake bucket s3://{bucket}: encryption, versioning, public access block"
              + (" and TLS-only policy in place" if tls else f" in place (no TLS-only policy: the endpoint "
                 f"{settings.s3_endpoint} is plain http, which it would lock out)")
              + (f" (configured {', '.join(report.configured)})" if report.configured else ""))
    home = ensure_dagster_home(settings)
    print(f"DAGSTER_HOME: {home}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from ecommerce_lake.generator.generate import GeneratorConfig, generate

    settings = _settings()
    out = Path(args.out or settings.landing_root)
    if args.next:
        from ecommerce_lake.generator.next_day import NextConfig, generate_next

        try:
            summary = generate_next(NextConfig(landing=out, seed=args.seed,
                                               lines=args.lines if args.lines_given else None))
        except (FileNotFoundError, FileExistsError, ValueError) as exc:
            print(f"generate --next: {exc}", file=sys.stderr)
            return 1
        rows = ", ".join(f"{k} {v:,}" for k, v in summary.rows.items())
        print(f"generated batch {summary.last_batch} in {out} in {summary.seconds:.1f} s: {rows}; the landing sensor "
              "ingests it (or `ecommerce-lake run --incremental`)")
        return 0
    if args.if_empty and out.exists() and any(out.iterdir()):
        print(f"landing zone {out} already holds batches; not generating (drop --if-empty to replace them)")
        return 0
    cfg = GeneratorConfig(
        out=out, seed=42 if args.seed is None else args.seed, days=args.days, customers=args.customers, products=args.products,
        lines=args.lines, dirty_rate=args.dirty_rate, overwrite=args.overwrite,
        end_date=dt.date.fromisoformat(args.end_date) if args.end_date else None,
    )
    try:
        summary = generate(cfg)
    except FileExistsError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    rows = ", ".join(f"{k} {v:,}" for k, v in summary.rows.items())
    print(f"generated {summary.batches} batches ({summary.first_batch} .. {summary.last_batch}) in {out} "
          f"in {summary.seconds:.1f} s: {rows}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ecommerce_lake.runner import AsOfError, run_lake

    settings = _settings()
    ensure_dagster_home(settings)
    try:
        return run_lake(settings, selection=args.select, mode="incremental" if args.incremental else "full",
                        report_path=args.report, checks=not args.no_checks, as_of=args.as_of)
    except AsOfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _engine(settings: Settings):
    from ecommerce_lake.deployment import spark_resource
    from ecommerce_lake.platform.engine import Engine

    return Engine(spark_resource(settings), settings.engine_dir)


def cmd_engine(args: argparse.Namespace) -> int:
    import json

    from ecommerce_lake.platform.engine import EngineError, is_disabled

    settings = _settings()
    if is_disabled(settings.spark_remote):
        print("ECOMMERCE_LAKE_SPARK_REMOTE is off: runs use in-process Spark; set it to sc://127.0.0.1:15002 "
              "(the default) to use an engine", file=sys.stderr)
        return 2
    engine = _engine(settings)
    try:
        if args.action == "start":
            st = engine.start(wait=args.wait, warm=not args.no_warm, foreground=args.foreground, bind=args.host)
            print(f"engine: {st.detail} at {st.url} (pid {st.pid}); runs, `ecommerce-lake sql` and the UI's runs "
                  "use it; `ecommerce-lake engine stop` stops it")
            return 0 if st.serves_this_configuration else 1
        if args.action == "stop":
            engine.stop()
            return 0
        st = engine.status()
        if args.json:
            print(json.dumps(st.as_dict(), indent=2))
        else:
            print(f"engine at {st.url}: {st.detail}")
            for label, value in (("pid", st.pid), ("started", st.started_at), ("Spark UI", st.ui_url),
                                 ("answered SELECT 1 in", f"{st.answer_seconds} s" if st.answer_seconds else None),
                                 ("log", st.log)):
                if value:
                    print(f"  {label:22} {value}")
        return 0 if st.up and st.serves_this_configuration else 3
    except EngineError as exc:
        print(f"engine: {exc}", file=sys.stderr)
        return 1


def _broker(settings: Settings):
    from ecommerce_lake.defs.resources import KafkaResource
    from ecommerce_lake.platform.kafka import Broker

    kafka = KafkaResource.from_env()
    return kafka, Broker(kafka.bootstrap, settings.kafka_dir, settings.jars_dir, settings.maven_repo, kafka.partitions)


def cmd_kafka(args: argparse.Namespace) -> int:
    import json

    from ecommerce_lake.platform.kafka import KafkaError, ensure_topic

    settings = _settings()
    kafka, broker = _broker(settings)
    try:
        if args.action == "start":
            st = broker.start(wait=args.wait, listen=args.host, foreground=args.foreground)
            if ensure_topic(kafka.bootstrap, kafka.topic, kafka.partitions):
                print(f"kafka: created topic {kafka.topic} ({kafka.partitions} partitions)")
            print(f"kafka: {st.detail} at {st.bootstrap} (pid {st.pid}); `ecommerce-lake kafka stop` stops it")
            return 0
        if args.action == "stop":
            broker.stop()
            return 0
        st = broker.status()
        if args.json:
            print(json.dumps(st.as_dict(), indent=2))
        else:
            print(f"kafka at {st.bootstrap}: {st.detail}")
            for label, value in (("pid", st.pid), ("started", st.started_at), ("log", st.log)):
                if value:
                    print(f"  {label:10} {value}")
        return 0 if st.up else 3
    except KafkaError as exc:
        print(f"kafka: {exc}", file=sys.stderr)
        return 1


def cmd_stream(args: argparse.Namespace) -> int:
    from ecommerce_lake.platform.kafka import KafkaError, ensure_topic, produce

    settings = _settings()
    kafka, _ = _broker(settings)
    try:
        if args.action == "produce":
            from ecommerce_lake.logic.realtime.replay import order_events

            source = args.from_landing or settings.landing_root
            if "://" in source:
                print(f"stream produce: the landing zone {source} is not a local directory; give --from-landing DIR",
                      file=sys.stderr)
                return 2
            replay = order_events(source)
            ensure_topic(kafka.bootstrap, kafka.topic, kafka.partitions)
            print(f"replaying {len(replay.events)} events of {replay.orders} orders from {replay.batches} batches "
                  f"in {source} to {kafka.topic} at {kafka.bootstrap}"
                  + (f" ({replay.skipped_rows} rows skipped: the landing contract rejects them)"
                     if replay.skipped_rows else ""))
            report = produce(kafka.bootstrap, kafka.topic, replay.events, rate=args.rate, duplicates=args.duplicates,
                             progress=print)
            print(f"produced {report.sent} messages ({report.duplicates} re-sent on purpose) in {report.seconds:.1f} s")
            return 0
        if not args.continuous:  # one materialization of the asset, recorded by Dagster with its checks
            from ecommerce_lake.runner import run_lake

            ensure_dagster_home(settings)
            return run_lake(settings, selection="group:realtime", mode="full")
        from ecommerce_lake.deployment import spark_resource
        from ecommerce_lake.platform import stream

        ensure_topic(kafka.bootstrap, kafka.topic, kafka.partitions)
        spark = spark_resource(settings).get_session()
        report = stream.run(spark, stream.StreamTables(settings.lake_root), bootstrap=kafka.bootstrap,
                            topic=kafka.topic, lateness_minutes=kafka.watermark_minutes,
                            max_offsets_per_trigger=kafka.max_offsets_per_trigger, continuous=True,
                            interval=f"{args.interval} seconds", timeout=args.seconds, progress=print)
        print(f"stream: {report.input_rows} messages in {report.batches} micro-batches, {report.seconds} s")
        return 0
    except KafkaError as exc:
        print(f"stream: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stream: stopped", file=sys.stderr)
        return 0


def cmd_plain_build(args: argparse.Namespace) -> int:
    import json
    import time

    from ecommerce_lake.bench.plain import build

    settings = _settings()
    started = time.monotonic()
    seconds = build(settings)
    total = time.monotonic() - started
    print(f"plain PySpark build: {len(seconds)} tables in {total:.1f} s")
    if args.report:
        Path(args.report).write_text(json.dumps({"seconds": total, "tables": seconds}, indent=2) + "\n")
    return 0


def _engine_up(settings: Settings) -> bool:
    from ecommerce_lake.platform import engine
    from ecommerce_lake.platform.servers import listening

    return not engine.is_disabled(settings.spark_remote) and listening(*engine.parse_remote(settings.spark_remote))


def cmd_sql(args: argparse.Namespace) -> int:
    from ecommerce_lake.platform import duck

    # the settings alone, not the lake's knobs: validating those imports Dagster (a second of a DuckDB answer)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    which = args.engine
    if which == "auto":
        # the engine answers in well under a second when it is up; without it, DuckDB does (no JVM to start)
        which = "spark" if _engine_up(settings) or not duck.is_read_only(args.query) else "duckdb"
    if which == "duckdb":
        started = time.monotonic()
        try:
            catalog = duck.connect(settings.lake_root, args.query, settings.s3_endpoint, settings.s3_region,
                                   settings.s3_path_style)
            duck.query(catalog, args.query).show(max_rows=args.limit, max_width=10_000)
        except Exception as exc:  # noqa: BLE001 - a query DuckDB cannot answer: say why, and where to run it
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if args.engine == "duckdb":
                print(f"sql: DuckDB could not answer: {message}", file=sys.stderr)
                return 1
            print(f"sql: DuckDB could not answer ({message}); running it on Spark", file=sys.stderr)
        else:
            print(f"({time.monotonic() - started:.2f} s on DuckDB over delta-rs, "
                  f"{len(catalog.tables)} table(s) opened)", file=sys.stderr)
            return 0
    from ecommerce_lake.deployment import spark_resource
    from ecommerce_lake.platform.spark import session_info

    started = time.monotonic()
    spark = spark_resource(settings).get_session()
    df = spark.sql(args.query)
    df.show(args.limit, truncate=False)
    info = session_info()
    print(f"({time.monotonic() - started:.2f} s on {info.label if info else 'Spark'})", file=sys.stderr)
    return 0


def cmd_privacy(args: argparse.Namespace) -> int:
    from ecommerce_lake import privacy
    from ecommerce_lake.deployment import build_resources
    from ecommerce_lake.platform.secrets import KeyringUnavailable

    settings = _settings()
    if args.action == "init":
        try:
            print(privacy.init_keyring(args.output).message)
        except privacy.PrivacyRefused as exc:
            print(f"privacy init: {exc}", file=sys.stderr)
            return 3
        return 0
    resources = build_resources(settings)
    lake = resources["lake"]
    file = settings.privacy_keyring_file
    try:
        if args.action == "reveal":
            outcome = privacy.reveal(lake, file, args.customer_id, args.reason, args.actor)
            for name, value in outcome.fields.items():
                print(f"{name:>18}: {value if value is not None else '(none)'}")
        elif args.action == "forget":
            outcome = privacy.forget(lake, file, args.customer_id, args.reason, args.actor,
                                     landing=resources["landing"])
        elif args.action == "rotate-key":
            outcome = privacy.rotate_key(lake, file, args.reason, args.actor)
        elif args.action == "retire-key":
            outcome = privacy.retire_key(lake, file, args.version, args.reason, args.actor, force=args.force)
        else:
            outcome = privacy.status(lake, file)
    except (privacy.PrivacyRefused, KeyringUnavailable) as exc:
        print(f"privacy {args.action}: {exc}", file=sys.stderr)
        return 3
    print(outcome.message)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    import boto3
    import dagster as dg

    from ecommerce_lake.platform import glue
    from ecommerce_lake.platform.lake_reader import LakeReaderResource

    settings = _settings()
    if not args.glue:
        print("catalog sync: say which catalog: --glue (the AWS Glue Data Catalog)", file=sys.stderr)
        return 2

    reader = LakeReaderResource(root=settings.lake_root, s3_endpoint=settings.s3_endpoint,
                                s3_region=settings.s3_region, s3_path_style=settings.s3_path_style)

    def exists(layer: str, table: str) -> bool:
        return reader.exists(dg.AssetKey([layer, table]))

    client = boto3.client("glue", region_name=settings.s3_region, endpoint_url=settings.glue_endpoint or None)
    started = time.monotonic()
    try:
        report = glue.sync(client, settings.lake_root, exists, settings.glue_database_prefix)
    except glue.GlueError as exc:
        print(f"catalog sync: {exc}", file=sys.stderr)
        return 1
    print(f"glue: {len(report.created)} registered, {len(report.updated)} updated, {len(report.unchanged)} unchanged"
          f", {len(report.absent)} not in the lake yet; databases {settings.glue_database_prefix}_<layer> "
          f"({time.monotonic() - started:.1f} s)")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import http.server

    import dagster as dg

    from ecommerce_lake.deployment import s3_resource
    from ecommerce_lake.platform.report_io import LATEST, ReportIOManager, report_dir

    settings = _settings()
    reports = ReportIOManager(root=settings.lake_root, s3=s3_resource(settings))
    key = dg.AssetKey(["insights", "dashboard"])
    folder = report_dir(settings.lake_root, key)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path.split("?")[0] not in ("/", "/" + LATEST):
                self.send_error(404, "only the latest dashboard is served here: /")
                return
            body = reports.latest(key)
            status = 200
            if body is None:
                status = 503
                body = (b"<!DOCTYPE html><p>No dashboard yet: materialize insights/dashboard (`ecommerce-lake run` or "
                        b"the UI).</p>")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *values):  # one line per request, on stderr
            print(f"dashboard: {self.address_string()} {fmt % values}", file=sys.stderr)

    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    state = "" if reports.latest(key) is not None else " (no dashboard written yet: materialize insights/dashboard)"
    print(f"dashboard: serving the latest {folder}/{LATEST} on http://{args.host}:{server.server_port}/{state}; "
          "Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from ecommerce_lake.schemas.dictionary import TABLES_MD, render_tables_md

    text = render_tables_md()
    path = REPO_ROOT / TABLES_MD
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is stale: run `ecommerce-lake docs`", file=sys.stderr)
            return 1
        print(f"{path} is current")
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from ecommerce_lake.deployment import spark_resource

    from ecommerce_lake.defs.resources import KNOBS

    settings = _settings()
    for key, value in settings.describe().items():
        print(f"{key:32} {value}")
    for resource_key, knob in KNOBS.items():
        resource = knob.from_env()
        for field_name in knob.model_fields:
            print(f"{resource_key + '.' + field_name:32} {getattr(resource, field_name)}")
    if args.spark:
        from ecommerce_lake.platform.spark import redacted

        for key, value in sorted(redacted(spark_resource(settings).spark_conf()).items()):
            print(f"  {key} = {value}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    results: dict = {}
    end_date = dt.date.fromisoformat(args.end_date) if args.end_date else None
    if args.scales:
        from ecommerce_lake.bench.suites import bench_scales

        scales = [int(s.replace("_", "")) for s in args.scales.split(",") if s.strip()]
        results = r = bench_scales(scales, days=args.days, ml=not args.no_ml, keep=args.keep, end_date=end_date,
                                   engine_url=args.engine)
        print(f"machine: {r['machine']}")
        print(f"{'order lines':>12} {'lake s':>8} {'lines/s':>9} {'peak MB':>8} {'ml s':>7} {'total s':>8}")
        for lines, e in r["scales"].items():
            print(f"{int(lines):>12,} {e['full']['wall_seconds']:>8.1f} {e['full_rows_per_second']:>9,} "
                  f"{e['full']['peak_rss_mb']:>8,} {e.get('ml', {}).get('wall_seconds', 0):>7.1f} "
                  f"{e['total_seconds']:>8.1f}")
            for step, f in list(e["per_asset"].items())[:12]:
                print(f"{'':>14}{step:40} {f['seconds']:>8.1f} s  "
                      + (f"{f['rows_per_second']:,} rows/s" if f["rows_per_second"] else ""))
        for name, value in r["ratios"].items():
            target = r["targets"].get(name)
            print(f"ratio {name}: {value}" + (f" (target <= {target})" if target else ""))
    elif args.suite == "session":
        from ecommerce_lake.bench.session import bench

        results["session"] = r = bench(args.steps)
        print(f"{r['steps']}-asset Spark chain: shared session {r['shared']['run_seconds']} s, one JVM per step "
              f"{r['per_step']['run_seconds']} s ({r['per_step_over_shared']}x)")
    elif args.suite == "interactive":
        from ecommerce_lake.bench.suites import bench_interactive

        results["interactive"] = r = bench_interactive(lines=args.lines, days=args.days, keep=args.keep,
                                                       end_date=end_date)
        print(f"machine: {r['machine']}")
        print(f"{'figure':26} {'cold s':>8} {'warm s':>8} {'target':>8}")
        for name in ("single_asset_s", "tiny_lake_s", "full_lake_s"):
            f = r[name]
            target = r["targets"].get(name, "")
            print(f"{name:26} {f['cold']:>8.1f} {f['warm']:>8.1f} {target!s:>8}")
        print(f"{'full_lake_ratio':26} {'':>8} {r['full_lake_ratio']:>8.3f} {r['targets']['full_lake_ratio']:>8}")
        nb = r["new_batch_to_curated_s"]
        print(f"{'new_batch_to_curated_s':26} {'':>8} {nb['seconds']:>8.1f} {r['targets']['new_batch_to_curated_s']:>8}"
              f"   ({nb['materialized_after_s']})")
        print("targets met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["met"].items()))
    elif args.suite == "sql":
        from ecommerce_lake.bench.sql import bench_sql

        results["sql"] = r = bench_sql(repeat=3, engine_up=_engine_up(_settings()))
        print(f"machine: {r['machine']}")
        print(f"{'query':18} {'engine':18} {'wall s':>7} {'query s':>8}")
        for name, per in r["figures"].items():
            for label, f in per.items():
                if label != "same_answer":
                    print(f"{name:18} {label:18} {f['wall_s']:>7.2f} {f['query_s']:>8.2f}")
            print(f"{name:18} {'same answer':18} {'yes' if per['same_answer'] else 'NO'}")
    elif args.suite == "stream":
        from ecommerce_lake.bench.stream import bench_stream, main_lines

        results["stream"] = r = bench_stream(events=args.events, engine_url=args.engine, keep=args.keep)
        print("\n".join(main_lines(r)))
    elif args.suite == "lake":
        from ecommerce_lake.bench.suites import bench_lake

        results["lake"] = r = bench_lake(days=args.days, lines=args.lines, keep=args.keep, end_date=end_date)
        full, inc = r["full"], r["incremental"]
        print(f"lake: {r['order_lines']:,} order lines over {r['days']} days (generated in {r['generate_seconds']} s)")
        print(f"  full rebuild        {full['wall_seconds']:7.1f} s  ({r['full_rows_per_second']:,} order lines/s, "
              f"peak {full['peak_rss_mb']:,} MB)  layers: {full['layer_seconds']}")
        print(f"  one new day (incr.) {inc['wall_seconds']:7.1f} s  (peak {inc['peak_rss_mb']:,} MB)  layers: "
              f"{inc['layer_seconds']}")
        print(f"  incremental / full = {r['incremental_vs_full']:.3f}")
        ml = r["ml"]
        print(f"  ml group            {ml['wall_seconds']:7.1f} s  (peak {ml['peak_rss_mb']:,} MB)  steps: "
              f"{ml['slowest_steps']}")
        print(f"  forecast phases (s): {ml['forecast_phase_seconds']}")
        print(f"  backtest WAPE product x county: {ml['backtest_wape_product_county']}")
        sim = ml["simulation"]
        if sim:
            print(f"  inventory policy simulation: cycle service level "
                  f"{sim.get('simulation/achieved_cycle_service_level', float('nan')):.3f} (target "
                  f"{sim.get('simulation/target_cycle_service_level', float('nan')):.2f}), fill rate "
                  f"{sim.get('simulation/fill_rate', float('nan')):.3f}")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """``dagster dev`` for this project, with the engine up (started here when it is not running, and stopped
    again when the UI stops, unless it was already running)."""
    import signal
    import subprocess

    from ecommerce_lake.platform.engine import EngineError, is_disabled

    settings = _settings()
    home = ensure_dagster_home(settings)
    engine, started_here = None, False
    if not is_disabled(settings.spark_remote) and not args.no_engine:
        engine = _engine(settings)
        try:
            if not engine.status().up:
                engine.start()
                started_here = True
            else:
                print(f"engine: already running at {engine.url}")
        except EngineError as exc:
            print(f"engine: {exc}\nruns launched from the UI will start in-process Spark", file=sys.stderr)
            engine = None
    # `dagster` of this interpreter's environment, whether or not that environment is on PATH
    dagster = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", args.host,
               "-p", str(args.port)]
    print(f"DAGSTER_HOME={home}; starting `dagster dev` on http://{args.host}:{args.port}", flush=True)
    proc = subprocess.Popen(dagster, cwd=REPO_ROOT)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        if engine is not None and started_here:
            engine.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecommerce-lake", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("setup", help="download and cache the JVM jars; create the local pseudonym key and privacy "
                       "keyring")
    p.add_argument("--all", action="store_true", help="also fetch the S3 jars (hadoop-aws, AWS SDK bundle)")
    p.add_argument("--verify", action="store_true", help="re-check the SHA-256 of cached jars")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("generate", help="write deterministic sample batches into the landing zone")
    p.add_argument("--out", help="landing root to write (default: ECOMMERCE_LAKE_LANDING)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 42; with --next: from the day)")
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--customers", type=int, default=20000)
    p.add_argument("--products", type=int, default=500)
    p.add_argument("--lines", type=int, default=1_000_000, help="approximate number of order lines")
    p.add_argument("--dirty-rate", type=float, default=0.02, help="share of rows per kind of injected dirt")
    p.add_argument("--end-date", help="last batch date YYYY-MM-DD (default: yesterday in Nairobi)")
    p.add_argument("--overwrite", action="store_true", help="replace existing batches in --out")
    p.add_argument("--if-empty", action="store_true", help="do nothing when the landing zone has batches")
    p.add_argument("--next", action="store_true",
                   help="write one more batch continuing the landing zone's history: the next day (today at the "
                   "latest), new order ids, known customers and products, status updates of open orders")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("run", help="materialize every asset (with checks) against the configured lake")
    p.add_argument("--select", help="Dagster asset selection (default: everything)")
    p.add_argument("--incremental", action="store_true",
                   help="only the day partitions new batches touch (default: every day that holds data)")
    p.add_argument("--report", help="also write the run's figures (times per step and layer, rows) as JSON")
    p.add_argument("--no-checks", action="store_true", help="skip the asset checks (benchmarks only)")
    p.add_argument("--as-of", type=_iso_day, help="YYYY-MM-DD: compute the selected RFM scores and forecast for "
                   "this day (their run configuration; default: ECOMMERCE_LAKE_RFM_AS_OF / _FORECAST_AS_OF, else the "
                   "latest order date)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("engine", help="the warm Spark engine (a Spark Connect server) that runs, sql and the UI's "
                       "runs use when it is up: start, stop, status")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--host", help="interface to bind (default: the host of ECOMMERCE_LAKE_SPARK_REMOTE; 0.0.0.0 in a "
                   "container)")
    p.add_argument("--foreground", action="store_true", help="start: run the server in this process (containers)")
    p.add_argument("--no-warm", action="store_true", help="start: skip the warm-up queries")
    p.add_argument("--wait", type=float, default=300.0, help="start: seconds to wait for the server to listen")
    p.add_argument("--json", action="store_true", help="status: as JSON")
    p.set_defaults(func=cmd_engine)

    p = sub.add_parser("kafka", help="the local Kafka broker of the real-time feed (KRaft, one node on 127.0.0.1): "
                       "start, stop, status")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--wait", type=float, default=120.0, help="start: seconds to wait for the broker to listen")
    p.add_argument("--host", help="start: interface to bind (default: the host of ECOMMERCE_LAKE_KAFKA_BOOTSTRAP, "
                   "which is also what the broker advertises; 0.0.0.0 in a container)")
    p.add_argument("--foreground", action="store_true", help="start: run the broker in this process (containers)")
    p.add_argument("--json", action="store_true", help="status: as JSON")
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("stream", help="the real-time feed: produce order events from landing batches, or run the "
                       "stream (once over what the topic holds, or continuously)")
    p.add_argument("action", choices=["produce", "run"])
    p.add_argument("--from-landing", metavar="DIR", help="produce: the landing zone to replay as events (default: "
                   "ECOMMERCE_LAKE_LANDING)")
    p.add_argument("--rate", type=float, default=0.0, help="produce: events per second at most (0: no limit)")
    p.add_argument("--duplicates", type=float, default=0.0, help="produce: share of events sent twice (0-1)")
    p.add_argument("--continuous", action="store_true", help="run: keep running, a micro-batch every --interval")
    p.add_argument("--interval", type=float, default=5.0, help="run --continuous: seconds between micro-batches")
    p.add_argument("--seconds", type=float, default=None, help="run --continuous: stop after this many seconds")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("plain-build", help="build raw, refined and curated in one plain PySpark program without "
                       "Dagster (the benchmark's baseline; writes the configured lake)")
    p.add_argument("--report", help="write the seconds per table as JSON")
    p.set_defaults(func=cmd_plain_build)

    p = sub.add_parser("sql", help="run a SQL query against the lake's catalog, e.g. 'select * from curated.daily_sales'")
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--engine", choices=("auto", "spark", "duckdb"), default="auto",
                   help="auto (default): the engine when it is up, else DuckDB over delta-rs for a read-only query "
                   "(Spark when DuckDB cannot answer it); spark: the engine, else in-process Spark; duckdb: only "
                   "DuckDB")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("catalog", help="register the lake's tables in an external catalog: `catalog sync --glue` "
                       "(AWS Glue Data Catalog, for Athena; the lake must be on S3)")
    p.add_argument("action", choices=("sync",))
    p.add_argument("--glue", action="store_true", help="the AWS Glue Data Catalog (ECOMMERCE_LAKE_GLUE_ENDPOINT, "
                   "ECOMMERCE_LAKE_GLUE_DATABASE_PREFIX; credentials from the standard AWS environment)")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser("privacy", help="a data steward's commands (need the privacy keyring; each is audited in "
                       "ops.privacy_audit): reveal, forget, rotate-key, retire-key, status, init")
    psub = p.add_subparsers(dest="action", required=True)
    for name, text in (("reveal", "print a customer's decrypted name, email and phone"),
                       ("forget", "erase a customer's personal data from every table (Data Protection Act 2019)")):
        q = psub.add_parser(name, help=text)
        q.add_argument("--customer-id", required=True)
        q.add_argument("--reason", required=True, help="why (recorded in ops.privacy_audit)")
        q.add_argument("--actor", default=None, help="who asks (default: the operating-system user)")
    q = psub.add_parser("rotate-key", help="add a key version and re-encrypt every personal value under it")
    q.add_argument("--reason", default="scheduled key rotation")
    q.add_argument("--actor", default=None)
    q = psub.add_parser("retire-key", help="retire a key version (refused while values still use it)")
    q.add_argument("--version", type=int, required=True, help="the version number N of key kN")
    q.add_argument("--reason", default="key retired after rotation")
    q.add_argument("--actor", default=None)
    q.add_argument("--force", action="store_true", help="retire even though values still use it (they become "
                   "unreadable and the checks fail)")
    psub.add_parser("status", help="the keyring's versions (never the keys) and the values per table and version")
    q = psub.add_parser("init", help="create a new keyring file (key k1, mode 0600) for a production secret store")
    q.add_argument("--output", required=True, help="the file to create (refused if it exists)")
    p.set_defaults(func=cmd_privacy)

    p = sub.add_parser("dashboard", help="serve the latest county dashboard (insights/dashboard) on 127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("docs", help="regenerate docs/tables.md from the table schemas")
    p.add_argument("--check", action="store_true", help="exit 1 if docs/tables.md is stale")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("config", help="print the effective configuration")
    p.add_argument("--spark", action="store_true", help="also print the Spark configuration")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("bench", help="benchmarks that print figures (see docs/performance.md)")
    p.add_argument("--suite", choices=["session", "lake", "interactive", "stream", "sql"], default="session",
                   help="session: shared SparkSession vs a JVM per step; lake: full rebuild vs one new day; "
                   "interactive: single asset, tiny lake, full lake and a new batch, cold and warm; stream: the real-time "
                   "feed's events/s, latency and one materialization of 1,000 events; sql: `ecommerce-lake sql` on the configured "
                   "lake through DuckDB, the engine (when up) and in-process Spark")
    p.add_argument("--scales", nargs="?", const="100000,1000000,5000000",
                   help="order-line scales, e.g. 100000,1000000,5000000 (the default when given without a value): "
                   "per-asset and total times, rows/s, peak memory and the ratios orchestration_overhead, "
                   "incremental_vs_full and scaling")
    p.add_argument("--no-ml", action="store_true", help="scales: build the lake only (not the ml group)")
    p.add_argument("--events", type=int, default=200_000, help="stream suite: events of the backlog drained")
    p.add_argument("--steps", type=int, default=6, help="session suite: length of the Spark asset chain")
    p.add_argument("--days", type=int, default=730, help="lake suite: days of history")
    p.add_argument("--lines", type=int, default=1_000_000, help="lake suite: order lines of history")
    p.add_argument("--keep", help="keep the generated data and lakes in this directory (lake suite; with --scales, "
                   "one sub-directory per scale)")
    p.add_argument("--engine", metavar="URL", help="scales: run every measured command on this running engine "
                   "(sc://host:port) instead of in-process Spark and a fresh engine (warm figures; tests)")
    p.add_argument("--end-date", help="last day of the generated history, YYYY-MM-DD (default: yesterday in "
                   "Nairobi); pin it to compare runs of different days")
    p.add_argument("--output", help="also write the figures as JSON to this file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("ui", help="start the Dagster UI (dagster dev) for this project, and the engine if it is "
                       "not running")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--no-engine", action="store_true", help="do not start the engine (runs use in-process Spark)")
    p.set_defaults(func=cmd_ui)

    args = parser.parse_args(argv)
    if args.command in ("run", "sql", "ui", "bench", "plain-build", "stream", "dashboard"):
        import signal

        def stop(_signum, _frame):  # SIGTERM as Ctrl-C: finally blocks and atexit run (the engine session closes)
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
    if args.command == "generate":
        args.lines_given = any(a == "--lines" or a.startswith("--lines=") for a in (argv or sys.argv[1:]))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "urllib3", "botocore", "alembic", "pandera"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
