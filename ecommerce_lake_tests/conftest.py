"""Shared fixtures: one warm Spark engine (a real Spark Connect server with Delta and the Hive catalog) for the
whole test session, used by this process and by every process a test starts (``ecommerce-lake run``, Dagster's
run processes) through ``ECOMMERCE_LAKE_SPARK_REMOTE``; temporary lake roots."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from ecommerce_lake.platform.dagster_storage import instance_yaml
from ecommerce_lake.settings import Settings

# A suite started in the background of a non-interactive shell (`bash .ci/run &`) inherits SIGINT ignored, and so
# would every process it starts: the servers the tests stop with Ctrl-C (`ecommerce-lake ui`, `dashboard`) would
# never stop. Processes started from here get the default disposition back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def session_env():
    """Environment variables for the whole session (and every process its tests start), undone at its end."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="session")
def session_home(tmp_path_factory, session_env) -> Path:
    home = tmp_path_factory.mktemp("ecommerce_lake_home")
    session_env.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    (home / "dagster_home").mkdir()
    (home / "dagster_home" / "dagster.yaml").write_text(instance_yaml(home / "dagster_home"))
    return home


@pytest.fixture(scope="session")
def engine_url(session_env) -> str:
    """The session's engine address, exported so that every process a test starts uses the engine too."""
    from ecommerce_lake_tests.servers import free_port

    url = f"sc://127.0.0.1:{free_port()}"
    session_env.setenv("ECOMMERCE_LAKE_SPARK_REMOTE", url)
    return url


@pytest.fixture(scope="session")
def settings(session_home: Path, engine_url: str) -> Settings:
    """Settings for the test process. The jar cache is the normal one (set up by scripts/install)."""
    return Settings(home=str(session_home), env="local", spark_remote=engine_url)


@pytest.fixture(scope="session")
def engine(settings):
    """One engine for the session (started cold once, warm for every test after the first)."""
    from ecommerce_lake.deployment import spark_resource
    from ecommerce_lake.platform.engine import Engine

    eng = Engine(spark_resource(settings), settings.engine_dir)
    eng.start(progress=lambda message: print(message, flush=True))
    yield eng
    from ecommerce_lake.platform.spark import stop_session

    stop_session()
    eng.stop()


@pytest.fixture(scope="session")
def resources(settings, engine):
    from ecommerce_lake.deployment import build_resources

    return build_resources(settings)


@pytest.fixture(scope="session")
def spark(resources):
    from ecommerce_lake.platform.spark import session_info

    session = resources["spark"].get_session()
    info = session_info()
    assert info is not None and info.kind == "engine", f"the test session is not on the engine: {info}"
    return session


@pytest.fixture
def lake_root(tmp_path: Path) -> str:
    return str(tmp_path / "lake")


@pytest.fixture(scope="session")
def lake_run(settings, spark):
    """The whole lake materialized once from generated plus hand-made batches (shared by several modules)."""
    import dagster as dg

    from ecommerce_lake.generator.generate import GeneratorConfig, generate
    from ecommerce_lake.runner import execute
    from ecommerce_lake_tests.landing_fixtures import add_handmade_batches

    landing = Path(settings.landing_root)
    generate(GeneratorConfig(out=landing, seed=7, days=20, customers=300, products=60, lines=3000, dirty_rate=0.05,
                             end_date=dt.date(2025, 11, 30)))
    info = add_handmade_batches(landing)
    report = execute(settings, instance=dg.DagsterInstance.get(), log_level="WARNING")
    assert report.spark.startswith("engine sc://"), report.spark  # the run went through the engine
    return _SharedLake(report=report, info=info, landing_dir=landing,
                       table=lambda name: spark.read.format("delta").load(f"{settings.lake_root}/{name}"))


class _SharedLake(SimpleNamespace):
    """The shared lake and the oracle's reading of its landing zone *as it is now*: tests later in the session add
    batches and re-run the lake (test_incremental_batch_rewrites_only_the_days_it_touches), so the expectations
    are re-read whenever the set of landed batches changes, and every test compares the lake with the landing it
    was built from, whatever the test order."""

    def _state(self):
        from ecommerce_lake_tests import oracle

        seen = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self.landing_dir.iterdir()
                            if (p / "_SUCCESS").exists()))
        if getattr(self, "_seen", None) != seen:
            landing = oracle.read_landing(self.landing_dir)
            self._cached = (landing, oracle.expected_fact_sales(landing, dt.datetime.now(dt.UTC)))
            self._seen = seen
        return self._cached

    @property
    def landing(self):
        return self._state()[0]

    @property
    def expected_fact(self):
        return self._state()[1]
