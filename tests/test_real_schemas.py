"""The applications' real schemas (generated from their own migrations) with the shipped
migration.toml: every table moves, every ERROR check passes, every value arrives, and every
compressed whiteboard opens on PostgreSQL as the PostgreSQL application opens it."""

from __future__ import annotations

import base64
import os
import zlib
from dataclasses import replace

import dagster as dg
import pytest
from conftest import (
    TEST_SCALE,
    failed_error_checks,
    migrated_fixture,
    migration_settings,
    run_job,
)
from fidelity import compare_table
from psycopg import sql
from test_migration import _plans as live_plans

from alkemio_assets.catalog.contract import configured_names
from alkemio_assets.catalog.source import read_mysql_catalog
from alkemio_assets.catalog.target import read_pg_catalog
from alkemio_assets.catalog.versions import pair_versions
from alkemio_assets.core.settings import DEFAULT_CONFIG, CrossReference, SeedTable
from checks import plain, run_check
from fixtures import REAL
from resources import MySQLResource, PostgresResource

pytestmark = pytest.mark.e2e
WHITEBOARDS = {"whiteboard": "content", "callout_contribution_defaults": "whiteboardContent"}


def migrated_real_schemas(mysql: MySQLResource, postgres: PostgresResource, workdir: str, scale: float):
    """The real schemas filled at `scale` and migrated with the shipped migration.toml."""
    return migrated_fixture(mysql, postgres, REAL, workdir, DEFAULT_CONFIG, scale)


@pytest.fixture(scope="module")
def real_migrated(mysql: MySQLResource, postgres: PostgresResource, tmp_path_factory):
    """Migrated once for the module's tests, which only read it."""
    with migrated_real_schemas(mysql, postgres, str(tmp_path_factory.mktemp("real")), TEST_SCALE) as migrated:
        yield migrated


def every_value_differs_nowhere(settings, databases, mysql, postgres) -> int:
    """Every value of every table compared without the fingerprint's code; the values compared."""
    compared = 0
    for name, database in databases.items():
        for plan in _plans(settings, mysql, postgres, name).values():
            assert compare_table(mysql, database, postgres, database, plan) == [], plan.name
            with postgres.connect(database) as conn:
                rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(plan.name))).fetchone()
                compared += rows[0] * len(plan.columns)
    return compared


def whiteboards_open_alike(databases, mysql, postgres) -> None:
    """zlib alone: the MySQL application's reading (characters are bytes) against the PostgreSQL
    application's (base64 of the deflate bytes, zlib header first)."""
    for table, column in WHITEBOARDS.items():
        with mysql.connect(databases["alkemio"], raw=True) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT LOWER(id), CAST(`{column}` AS BINARY) FROM `{table}` WHERE `{column}` IS NOT NULL")
            before = {k: zlib.decompress(v.decode("utf-8").encode("latin-1")) for k, v in cur.fetchall()}
        with postgres.connect(databases["alkemio"]) as conn:
            rows = conn.execute(
                sql.SQL("SELECT id::text, {c} FROM {t} WHERE {c} IS NOT NULL").format(
                    c=sql.Identifier(column), t=sql.Identifier(table)
                )
            ).fetchall()
        after = {k: zlib.decompress(base64.b64decode(v, validate=True)) for k, v in rows}
        assert before == after and len(after) >= 2, table
        assert any(len(doc) > 1_000_000 for doc in after.values())  # the 1 MB scene


def _plans(settings, mysql: MySQLResource, postgres: PostgresResource, name: str):
    return live_plans(settings, mysql, postgres, name)[0]


def test_the_shipped_configuration_moves_the_real_schemas(real_migrated, mysql, postgres):
    settings, databases, result = real_migrated
    assert failed_error_checks(result) == []
    evaluated = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    for table in WHITEBOARDS:
        assert evaluated[(f"alkemio/postgres/{table}", "compressed_documents")].passed
    assert evaluated[("alkemio/verified", "cross_database_references")].passed
    report = (settings.workdir / "runs" / result.run_id / "report.md").read_text()
    assert "`comment`: no table: comments are messages of a room" in report
    assert "`activity_log`: table activity" in report
    # what the move leaves out, each table with the reason migration.toml gives
    assert "- `migrations_typeorm`: TypeORM's migration ledger: the target's own baseline migration writes it" in report
    assert "- `schema_migration`: Kratos's migration ledger" in report
    # the real baseline lacks indexes MySQL has (InnoDB indexes every foreign key): their CREATE
    # INDEX statements, each failed WARN check's, in one file the report names
    unindexed = [
        e for (key, check), e in evaluated.items() if check == "indexes" and not e.passed and key.startswith("alkemio/")
    ]
    suggested = (settings.workdir / "runs" / result.run_id / "alkemio" / "suggested.sql").read_text()
    assert unindexed and all(s in suggested for e in unindexed for s in e.metadata["remedy"].value)
    assert "statements in `alkemio/suggested.sql`" in report
    assert every_value_differs_nowhere(settings, databases, mysql, postgres) > 10_000


def test_every_whiteboard_opens_on_postgresql_as_it_did_on_mysql(real_migrated, mysql, postgres):
    _, databases, _ = real_migrated
    whiteboards_open_alike(databases, mysql, postgres)


@pytest.mark.slow
def test_at_scale_every_error_check_passes_and_every_value_arrives(mysql, postgres, tmp_path):
    """The drill at a real installation's size (REAL_SCALE, default 1: about 1.5 M rows): every
    ERROR check, the report and the cut-over settings, every value, every whiteboard."""
    scale = float(os.environ.get("REAL_SCALE", "1"))
    with migrated_real_schemas(mysql, postgres, str(tmp_path), scale) as (settings, databases, result):
        assert failed_error_checks(result) == []
        folder = settings.workdir / "runs" / result.run_id
        assert (folder / "report.md").exists() and (folder / "cutover.env").exists()
        assert every_value_differs_nowhere(settings, databases, mysql, postgres) > 10_000_000 * min(scale, 1)
        whiteboards_open_alike(databases, mysql, postgres)


def test_a_nullable_flag_keeps_its_null(real_migrated, postgres):
    """Kratos's sessions.active is a nullable tinyint(1): NULL stays NULL, and the fingerprint
    (which once wrote NULL as false on one side only) agrees."""
    _, databases, result = real_migrated
    with postgres.connect(databases["kratos"]) as conn:
        assert conn.execute("SELECT count(*) FROM sessions WHERE active IS NULL").fetchone()[0] > 0
    fingerprint = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.to_user_string() == "kratos/postgres/sessions" and e.check_name == "content_fingerprint"
    ]
    assert fingerprint and all(e.passed for e in fingerprint)


def test_every_configured_name_is_checked_against_the_schemas(
    mysql: MySQLResource, postgres: PostgresResource, real_source_databases, real_target_databases, settings
):
    """A name in migration.toml that the schema lacks is a contract problem, named, before any
    data moves: the seed's old names and the removed user.authId among them."""
    database = real_source_databases["alkemio"]
    with mysql.connect() as conn:
        source = read_mysql_catalog(conn, database)
    with postgres.connect(database) as conn:
        target = read_pg_catalog(conn, database)
    shipped = settings.pair("alkemio")
    assert configured_names(shipped, source, target) == []
    stale = replace(
        shipped,
        critical_tables=("comment", "activity_log"),
        references=(CrossReference("user.authId", "kratos", "identities.id"),),
        lookups=("user.mail",),
        exclude={"no_such_table": "gone"},
        replace_seeded=("notification",),
        seed_tables={"comment": SeedTable("comments")},
    )
    problems = configured_names(stale, source, target)
    where = "migration.toml databases.alkemio"
    for expected in (
        f"{where}.critical_tables: 'comment' is not a target table",
        f"{where}.critical_tables: 'activity_log' is not a target table",
        f"{where}.replace_seeded: 'notification' is not a target table",
        f"{where}.exclude: 'no_such_table' is not a source table",
        f"{where}.lookups: 'user.mail' is not a target column",
        f"{where}.references: 'user.authId' is not a source column",
        f"{where}.references: 'user.authId' is not a target column",
        f"{where}.seed_tables.comment: 'comments' is not a target table",
    ):
        assert expected in problems
    assert len(problems) == 8


def test_a_check_that_raises_is_a_failed_check_with_its_exception():
    key = dg.AssetKey(["alkemio", "verified"])

    def broken(_ctx):
        raise LookupError('column "authId" does not exist')

    result = run_check(broken, None, key, "cross_database_references", dg.AssetCheckSeverity.ERROR)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["error"].value == 'LookupError: column "authId" does not exist'


def test_the_report_names_the_application_versions(real_migrated):
    settings, _, result = real_migrated
    report = (settings.workdir / "runs" / result.run_id / "report.md").read_text()
    assert "MySQL at `VirtualContributorPlatformSettings1764000000000` (95 in its ledger)" in report
    assert "PostgreSQL at `Baseline1764237534488` (1)" in report
    assert "MySQL at `20240425095000000001` (321 in its ledger), PostgreSQL at `20240425095000000001` (315)" in report


def test_versions_that_do_not_belong_together_are_refused_naming_both(
    mysql: MySQLResource, postgres: PostgresResource, real_source_databases, real_target_databases, settings
):
    """MySQL one migration short of the last MySQL migration, PostgreSQL one migration past the
    baseline: each named, with the other side's version."""
    pair = replace(
        settings.pair("alkemio"),
        source_database=real_source_databases["alkemio"],
        target_database=real_target_databases["alkemio"],
    )
    assert pair_versions(pair, mysql, postgres)[1] == []
    with mysql.connect(pair.source_database) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM migrations_typeorm ORDER BY timestamp DESC LIMIT 1")
    with postgres.connect(pair.target_database) as conn:
        conn.execute("INSERT INTO migrations_typeorm (timestamp, name) VALUES (1764300000000, 'Later1764300000000')")
    found, problems = pair_versions(pair, mysql, postgres)
    assert found is not None and found.source_count == 94
    mysql_problem, postgres_problem = problems
    assert "MySQL holds application migration 'NotificationEntityTrackingFixes1763390167422'" in mysql_problem
    assert "fits 'VirtualContributorPlatformSettings1764000000000'" in mysql_problem
    assert "the PostgreSQL side holds 'Later1764300000000'" in mysql_problem
    assert "PostgreSQL holds application migration 'Later1764300000000'" in postgres_problem
    assert "fits 'Baseline1764237534488'" in postgres_problem


def test_duplicates_under_a_unique_key_only_the_target_has_stop_before_any_data_moves(
    mysql: MySQLResource, postgres: PostgresResource, real_source_databases, real_target_databases, tmp_path
):
    """Kratos's PostgreSQL schema is unique on session_devices (nid, session_id, ip_address,
    user_agent); its MySQL schema is not. Duplicates there are named before the first export;
    values that differ only in case are no duplicates (PostgreSQL compares bytes)."""
    from alkemio_assets.catalog.violations import unique_violations

    settings = migration_settings(real_source_databases, str(tmp_path), config_path=DEFAULT_CONFIG)
    pair = settings.pair("kratos")
    database = pair.source_database
    network, session = "5bd0c2d8-4b9f-4e1a-9b0e-6f3c9a1d2e01", "7d3f1a60-2c4b-4d8e-8f9a-0b1c2d3e4f50"
    with mysql.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        for i, agent in enumerate(["Firefox", "Firefox", "firefox"]):
            cur.execute(
                "INSERT INTO session_devices (id, ip_address, user_agent, location, session_id, nid, created_at, "
                "updated_at) VALUES (%s, '10.0.0.1', %s, '', %s, %s, NOW(), NOW())",
                (f"00000000-0000-4000-8000-00000000000{i}", agent, session, network),
            )
    plans = _plans(settings, mysql, postgres, "kratos")
    (problem,) = unique_violations(mysql, pair, [plans["session_devices"]])
    assert problem.startswith(
        "kratos.session_devices: the target is unique on (nid, session_id, ip_address, user_agent)"
    )
    assert f"('{network}', '{session}', '10.0.0.1', 'Firefox') 2 times" in problem
    assert "'firefox'" not in problem


def test_a_stale_name_is_a_contract_error_in_refresh_catalogs_own_output(
    real_source_databases, real_target_databases, tmp_path, instance
):
    """The seed's old table name in critical_tables: refresh_catalog's schema_contract fails and
    the job's log says why, by name; no check crashes later."""
    config = tmp_path / "migration.toml"
    text = DEFAULT_CONFIG.read_text()
    config.write_text(text.replace('"post", "activity",', '"post", "comment", "activity",', 1))
    settings = migration_settings(real_source_databases, str(tmp_path / "work"), config_path=config)
    result = run_job(settings, instance, "refresh_catalog")
    (contract,) = [
        e for e in result.get_asset_check_evaluations() if e.asset_key.to_user_string() == "alkemio/source_catalog"
    ]
    assert not contract.passed
    expected = "migration.toml databases.alkemio.critical_tables: 'comment' is not a target table"
    assert expected in [row["problem"] for row in plain(contract.metadata["problems"])]
    assert any(expected in entry.user_message for entry in instance.all_logs(result.run_id))


def test_every_file_a_run_writes_is_its_owners_alone(real_migrated):
    """E-mail addresses and credential hashes: folders 0700, files 0600, from the run folder down."""
    settings, _, result = real_migrated
    folder = settings.workdir / "runs" / result.run_id
    written = [folder, *folder.rglob("*")]
    assert len(written) > 100 and (folder / "cutover.env") in written
    loose = [f"{p} {oct(p.stat().st_mode & 0o777)}" for p in written if p.stat().st_mode & 0o077]
    assert loose == []


def test_the_seeds_reads_are_timed_side_by_side_and_in_the_report(real_migrated):
    settings, _, result = real_migrated
    evaluated = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    report = (settings.workdir / "runs" / result.run_id / "report.md").read_text()
    for name in ("alkemio", "kratos"):
        parity = evaluated[(f"{name}/verified", "query_parity")]
        assert parity.severity == dg.AssetCheckSeverity.WARN
        table = parity.metadata["side_by_side"].value
        for query in settings.pair(name).queries:
            (row,) = [line for line in table.splitlines() if line.startswith(f"| {query.name} |")]
            mysql_rows, postgres_rows = row.split("|")[4].split(" / ")
            assert int(mysql_rows) == int(postgres_rows) > 0, query.name  # the same answer on both sides
            assert row in report
        assert parity.passed == ("slower on PostgreSQL" not in table)
