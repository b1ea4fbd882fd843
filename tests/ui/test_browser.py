"""The UI as a person uses it, in a real browser: Debian's Chromium, headless, driven by
Playwright, against `dagster dev` on loopback over the hand-written fixture. The lineage, "Materialize
all", the finished run, a table's three nodes, its asset page with its columns, one of its checks, and a check
that fails on a deliberately broken target (an index dropped from it). Screenshots go to
var/test-artifacts/browser/ (the ones in docs/ are copies of them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml
from conftest import fixture_sources, fixture_targets, free_port, migration_settings, run_environment, run_job

from alkemio_assets.core.settings import REPO_ROOT, Settings
from fixtures import HANDWRITTEN, HANDWRITTEN_CONFIG
from fixtures.generator import generate
from resources import MySQLResource, PostgresResource

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO_ROOT / "var" / "test-artifacts" / "browser"
BROKEN_INDEX = ("activity_log", "IDX_activity_log_collaboration")  # dropped from the target: the indexes check fails
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
RUN_MINUTES = 10
DAGSTER = str(REPO_ROOT / ".venv" / "bin" / "dagster")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium` (scripts/bootstrap does)"
    ),
]


@dataclass
class Webserver:
    url: str
    settings: Settings
    databases: dict[str, str]

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["data"]


def _environment(settings: Settings, databases: dict[str, str], storage: str, home: Path) -> dict[str, str]:
    """What `scripts/ui` would have from .env, for this test's own databases and folders."""
    target = settings.target
    return run_environment(databases, str(settings.workdir)) | {
        "MIGRATION_CONFIG": str(HANDWRITTEN_CONFIG),
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT),
        "DAGSTER_PG_HOST": target.host,
        "DAGSTER_PG_PORT": str(target.port),
        "DAGSTER_PG_USERNAME": target.user,
        "DAGSTER_PG_DB": storage,
        "DAGSTER_ARTIFACTS_DIR": str(home / "artifacts"),
    }


def _workspace(home: Path) -> Path:
    """The repository's workspace.yaml, but working in `home`: a code location reads the .env of
    its working directory over its environment, and the repository's names other databases."""
    (location,) = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())["load_from"]
    location["python_module"]["working_directory"] = str(home)
    path = home / "workspace.yaml"
    path.write_text(yaml.safe_dump({"load_from": [location]}))
    return path


def _wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster dev ended with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"dagster dev did not answer at {url} in 180 s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def webserver(
    mysql: MySQLResource, postgres: PostgresResource, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webserver]:
    """The fixture filled on MySQL, its baseline on PostgreSQL with one index dropped, the
    catalog snapshot taken, and `dagster dev` (webserver and daemon) on the repository's
    workspace.yaml and dagster.yaml, with a storage database of its own."""
    unique = f"ui{os.urandom(5).hex()}"
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    storage = f"{unique}_dagster"
    with fixture_sources(mysql, unique, HANDWRITTEN) as databases, fixture_targets(postgres, unique, HANDWRITTEN):
        generate(mysql, databases, 0.001)
        postgres.execute_script(databases["alkemio"], f'DROP INDEX "{BROKEN_INDEX[1]}"')
        settings = migration_settings(databases, str(tmp_path_factory.mktemp("work")))
        with dg.DagsterInstance.ephemeral() as instance:
            assert run_job(settings, instance, "refresh_catalog").success
        postgres.create_database(storage)
        port = free_port()
        log = home / "dagster-dev.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [DAGSTER, "dev", "-w", str(_workspace(home)), "-h", "127.0.0.1", "-p", str(port)],
                cwd=home,
                env=_environment(settings, databases, storage, home),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_serving(url, process, log)
            yield Webserver(url, settings, databases)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            postgres.drop_database(storage)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, webserver: Webserver):
    """A fresh profile for each test: nothing remembered between them."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=webserver.url)
    context.set_default_timeout(60_000)
    page = context.new_page()
    # Dagster's first-visit invitation to its community: skipped whenever it covers the page
    page.add_locator_handler(
        page.get_by_text("Join the Dagster community"), lambda: page.get_by_role("button", name="Skip").click()
    )
    try:
        yield page
    finally:
        _shot(page, "last-page")  # what the browser showed last, should the test have failed there
        context.close()


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _latest_run(webserver: Webserver) -> tuple[str, str] | None:
    runs = webserver.graphql("{ runsOrError(limit: 1) { ... on Runs { results { runId status } } } }")
    results = runs["runsOrError"]["results"]
    return (results[0]["runId"], results[0]["status"]) if results else None


def test_materialize_all_from_the_lineage_then_read_a_table_and_its_checks(page, webserver: Webserver) -> None:
    # the lineage: every database's phases as groups, a table's three stages in them
    page.goto("/asset-groups")
    page.get_by_text("alkemio_2_export").first.wait_for()
    for group in ("alkemio_3_stage", "alkemio_4_load", "kratos_2_export", "migration"):
        assert page.get_by_text(group).first.is_visible(), group
    _shot(page, "lineage-global")

    # Materialize all, as an operator starts the migration; the run succeeds
    assert _latest_run(webserver) is None
    page.get_by_role("button", name="Materialize all").click()
    deadline = time.monotonic() + RUN_MINUTES * 60
    while (run := _latest_run(webserver)) is None or run[1] in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED"):
        assert time.monotonic() < deadline, f"the run did not finish in {RUN_MINUTES} minutes: {run}"
        time.sleep(2)
    run_id, status = run
    page.goto(f"/runs/{run_id}")
    page.get_by_text("Success").first.wait_for()
    page.get_by_text("Finished execution of run").first.wait_for()  # the run's events, loaded
    assert status == "SUCCESS"
    _shot(page, "run-finished")

    # a table's lineage: its three stages, and the loaded tables its foreign keys name
    page.goto("/assets/alkemio/postgres/user?view=lineage")
    page.get_by_text("alkemio_3_stage").first.wait_for()
    assert page.get_by_text("alkemio_4_load").first.is_visible()
    _shot(page, "lineage")

    # a table's three stages, each node saying what it is: the export's file, the staged file, the table
    page.goto("/assets/alkemio/staged/user.staged?view=lineage")
    page.get_by_text("alkemio_2_export").first.wait_for()
    for label in ("user.csv", "user.staged", "user"):
        assert page.get_by_text(label, exact=True).first.is_visible(), label
    # zoomed in, each node shows its latest event, its checks, its status and its kinds
    zoom_in = page.locator("button:has([aria-label=zoom_in])")
    for _ in range(8):
        if page.get_by_text("Asset checks").first.is_visible():
            break
        zoom_in.click()
    for _ in range(3):  # a little closer, to be read in a screenshot
        zoom_in.click()
    assert page.get_by_text("Asset checks").first.is_visible()
    assert page.get_by_text("DuckDB", exact=True).first.is_visible()
    assert page.get_by_text("Materialized").first.is_visible()
    _shot(page, "stages")

    # a table's asset page: what it is, where it is, its rows and the columns with their casts
    page.goto("/assets/alkemio/postgres/user")
    page.get_by_text("Loads PostgreSQL").first.wait_for()
    _shot(page, "asset-page")
    assert page.get_by_text(f"{webserver.databases['alkemio']}.public.user").first.is_visible()
    assert page.get_by_text("character varying").first.is_visible()

    # one of its checks: passed, with the counts on both sides
    page.goto("/assets/alkemio/postgres/user?view=checks")
    page.get_by_text("row_count").first.click()
    page.get_by_text("mysql_rows").first.wait_for()
    assert page.get_by_text("postgres_rows").first.is_visible()
    assert page.get_by_text("Passed").first.is_visible()
    _shot(page, "check-passed")

    # the broken target: the index dropped from it is missing, with the statement to add it
    table, _ = BROKEN_INDEX
    page.goto(f"/assets/alkemio/postgres/{table}?view=checks")
    page.get_by_text("indexes", exact=True).first.click()
    page.get_by_text(f'CREATE INDEX ON "{table}" ("collaborationID");').first.wait_for()
    assert page.get_by_text("Failed").first.is_visible()
    _shot(page, "check-failed")
