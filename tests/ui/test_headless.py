"""A headless run as an operator starts it from a terminal: `scripts/job` and the runbook's
`cutover.sh`, from a checkout of their own over the hand-written fixture. The step's progress
bar shows as it goes, and the run ends as pgloader's does: the per-table summary, the verdict,
the time against the window, and where the report and the cut-over settings are."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import Checkout, fixture_sources, fixture_targets, run_environment

from fixtures import HANDWRITTEN, HANDWRITTEN_CONFIG
from fixtures.generator import generate
from resources import MySQLResource, PostgresResource

pytestmark = pytest.mark.e2e


def _run(checkout: Checkout, *command: str) -> str:
    """A script of the checkout with only what its .env says (none of this test's settings)."""
    done = subprocess.run(
        [str(checkout.root / command[0]), *command[1:]],
        cwd=checkout.root,
        env={
            k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MIGRATION_", "DATABASE_", "MYSQL_"))
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # Dagster's log, then what the script prints after the run
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{' '.join(command)} ended with {done.returncode}:\n{done.stdout[-3000:]}"
    return done.stdout


def test_a_headless_run_shows_its_progress_and_ends_with_the_summary_and_the_report(
    checkout: Checkout, mysql: MySQLResource, postgres: PostgresResource, unique_name: str
) -> None:
    with (
        fixture_sources(mysql, unique_name, HANDWRITTEN) as databases,
        fixture_targets(postgres, unique_name, HANDWRITTEN),
    ):
        generate(mysql, databases, 0.001)
        postgres.create_database(checkout.storage)  # scripts/bootstrap's part, which scripts/job does not run
        checkout.configure(
            # the test's servers (no password: the checkout's .env is a file, the servers trust loopback)
            DATABASE_HOST=postgres.host,
            DATABASE_PORT=str(postgres.port),
            DATABASE_USERNAME=postgres.user,
            DAGSTER_PG_HOST=postgres.host,
            DAGSTER_PG_PORT=str(postgres.port),
            DAGSTER_PG_USERNAME=postgres.user,
            MYSQL_HOST=mysql.host,
            MYSQL_PORT=str(mysql.port),
            MYSQL_USER=mysql.user,
            MIGRATION_CONFIG=str(HANDWRITTEN_CONFIG),
            MIGRATION_PROGRESS_SECONDS="1",
            # the run folder in the checkout, as the scripts find it: a relative one is the
            # repository's, and the package this checkout imports is the linked repository's
            **run_environment(databases, str(checkout.root / "var"), base={}),
        )
        _run(checkout, "scripts/job", "refresh_catalog")
        out = _run(checkout, "scripts/job", "migrate_all")

        # the progress bar, in the log as the step goes
        assert re.search(r"alkemio \[#*-*\] \d+ %: exported \d+/\d+ tables", out)
        # the end: per table the rows, seconds and checks, each database's total, the verdict, the paths
        closing = out.split(" - dagster - ")[-1].split("\n", 1)[1].splitlines()  # after Dagster's last line
        assert closing[0] == ""  # the line between the log and the summary
        assert closing[1].split()[:6] == ["table", "MySQL", "rows", "PostgreSQL", "rows", "load"]
        assert re.fullmatch(
            r"user +\d+ +\d+ +loaded +[\d.]+ +[\d.]+ +[\d.]+ +\d+/\d+ .*",
            next(line for line in closing if line.startswith("user ")),
        )
        assert any(re.match(r"kratos: \d+ tables +\d+ +succeeded", line) for line in closing)
        assert "Verdict: every ERROR check passed; the cut-over may go (after the manual checklist below)." in closing
        assert any(re.fullmatch(r"Migration time: [\d.]+ minutes of the 30-minute window\.", line) for line in closing)
        assert "WARN checks that failed (for people to decide, see the report): indexes on" in closing[-3]
        report = Path(closing[-2].removeprefix("Report (checks and the manual checklist): "))
        assert report.is_file() and (report.parent / "report.json").is_file()
        assert closing[-1] == f"Cut-over settings: {report.parent / 'cutover.env'}"

        # the runbook's cut-over, a thin call into the same assets, ends the same way
        again = _run(checkout, "scripts/runbook/cutover.sh").splitlines()
        assert "Verdict: every ERROR check passed; the cut-over may go (after the manual checklist below)." in again
        assert again[-1] == closing[-1]
