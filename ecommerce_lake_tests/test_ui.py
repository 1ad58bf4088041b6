"""The Dagster UI as a person uses it, in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against the webserver and daemon on 127.0.0.1 with a temporary DAGSTER_HOME and a small lake.

Screenshots are saved under ``$ECOMMERCE_LAKE_TEST_ARTIFACTS/ui`` (default ``test-artifacts/ui``)."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from ecommerce_lake.generator.generate import GeneratorConfig, generate
from ecommerce_lake.platform.dagster_storage import pinned
from ecommerce_lake_tests.servers import BIN, free_port, http_json, process, wait_for

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("ECOMMERCE_LAKE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ECOMMERCE_LAKE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "ui"


@pytest.fixture(scope="module")
def ui(tmp_path_factory, engine_url, engine):
    """The webserver and daemon over a small lake built on the session's engine (so that the module also runs
    alone: ``pytest ecommerce_lake_tests/test_ui.py``)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium); .ci/run does")
    home = tmp_path_factory.mktemp("ui_home")
    generate(GeneratorConfig(out=home / "landing", seed=5, days=8, customers=300, products=25, lines=1500,
                             end_date=dt.date(2025, 11, 30)))
    dagster_home = home / "dagster_home"
    dagster_home.mkdir()
    # the repository's dagster.yaml (queued runs, one at a time), its storage pinned to this directory
    (dagster_home / "dagster.yaml").write_text(pinned((REPO / "dagster.yaml").read_text(), dagster_home))
    env = {"ECOMMERCE_LAKE_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    # the lake, without its checks (the shared test lake evaluates them; here the runs launched from the UI do)
    built = subprocess.run([str(BIN / "ecommerce-lake"), "run", "--no-checks"], env={**os.environ, **env},
                           capture_output=True, text=True, timeout=1200)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    assert "(Spark: engine sc://" in built.stdout, built.stdout[-2000:]
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    web_cmd = [sys.executable, "-m", "dagster_webserver", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1",
               "-p", str(port)]
    daemon_cmd = [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")]
    with process(web_cmd, home / "webserver.log", env=env) as web, \
            process(daemon_cmd, home / "daemon.log", env=env):
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_json(f"{url}/server_info"), 180, "dagster-webserver", web, home / "webserver.log")
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        yield SimpleNamespace(url=url, home=home, instance=instance)


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # the first render of a page can take a while on a loaded machine
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(60_000)
        yield context.new_page()
        browser.close()


def _shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def _open(page, url: str) -> None:
    """Go to a page; dismiss the first-visit community dialog if it shows."""
    page.goto(url)
    page.wait_for_load_state("load")
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.first.wait_for(state="visible", timeout=3000)
        skip.first.click()
    except Exception:  # noqa: BLE001 - shown once per browser profile, if at all
        pass


def test_asset_graph_shows_the_groups(ui, page):
    from playwright.sync_api import expect

    _open(page, f"{ui.url}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for group in ("raw", "refined", "curated", "insights", "ml"):
        expect(page.get_by_role("button", name=f"asset_group {group} {group}")).to_be_visible()
    page.wait_for_timeout(1000)  # let the graph settle before the picture
    assert _shot(page, "asset-graph").stat().st_size > 10_000


def test_curated_asset_shows_columns_and_lineage(ui, page):
    from playwright.sync_api import expect

    from ecommerce_lake.schemas import BY_NAME

    _open(page, f"{ui.url}/assets/curated/daily_sales")
    # the column schema comes from the pandera schema (dagster/column_schema): every column is listed
    for column in BY_NAME["curated.daily_sales"].columns:
        expect(page.get_by_text(column, exact=True).first).to_be_visible()
    _shot(page, "daily-sales-columns")
    _open(page, f"{ui.url}/assets/curated/daily_sales?view=lineage")
    # upstream lineage: the refined tables daily_sales is built from are drawn as nodes
    expect(page.get_by_text("fact_sales", exact=True).first).to_be_visible()
    page.wait_for_timeout(1000)
    assert _shot(page, "daily-sales-lineage").stat().st_size > 10_000


def test_materialize_with_upstream_and_see_checks(ui, page):
    from playwright.sync_api import expect

    before = {r.run_id for r in ui.instance.get_runs()}
    _open(page, f"{ui.url}/asset-groups")
    page.locator(".CodeMirror").first.click()
    page.keyboard.type('1+key:"ml/segment_summary"')
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="asset_group ml ml")).to_be_visible()
    _shot(page, "segment-summary-selection")
    page.get_by_role("button", name="Materialize all").first.click()
    # the run is launched from the browser (tagged dagster/from_ui); wait for the daemon to dequeue it and for it
    # to succeed. Declarative automation launches runs of its own meanwhile: refreshing refined/counties makes
    # curated/county_monthly_kpis stale, and the daemon refreshes it (tagged dagster/from_automation_condition).
    deadline = dt.datetime.now() + dt.timedelta(minutes=10)
    run = None
    while dt.datetime.now() < deadline:
        new = [r for r in ui.instance.get_runs() if r.run_id not in before and r.tags.get("dagster/from_ui") == "true"]
        assert len(new) <= 1, [(r.run_id, r.tags, r.asset_selection) for r in new]
        if new and new[0].is_finished:
            run = new[0]
            break
        page.wait_for_timeout(2000)
    assert run is not None, "the run launched from the UI did not finish within 10 minutes"
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    selected = {k.to_user_string() for k in run.asset_selection or set()}
    # "1+": the asset and its direct upstream assets (segment_summary is built from rfm_scores and counties)
    assert selected == {"ml/segment_summary", "ml/rfm_scores", "refined/counties"}, selected
    evaluations = [e.dagster_event.event_specific_data for e in ui.instance.all_logs(run.run_id)
                   if e.dagster_event is not None and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    checked = {ev.asset_key.to_user_string() for ev in evaluations}
    assert {"ml/rfm_scores", "ml/segment_summary"} <= checked, checked  # the run evaluated their checks
    assert all(ev.passed for ev in evaluations if ev.asset_key.to_user_string() == "ml/rfm_scores")
    _open(page, f"{ui.url}/runs/{run.run_id}")
    expect(page.get_by_text("Success").first).to_be_visible()
    _shot(page, "segment-summary-run")
    _open(page, f"{ui.url}/assets/ml/rfm_scores?view=checks")
    expect(page.get_by_text("Passed").first).to_be_visible()
    assert _shot(page, "rfm-scores-checks").stat().st_size > 10_000
