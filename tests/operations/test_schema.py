"""Schema first, by a SQL file and by the application's own command, proved by the contract and
refused over application data; and the later migrations, with the data verified again."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest
from conftest import failure_message, migration_settings

from alkemio_assets.core.settings import SchemaStep, Settings
from alkemio_assets.definitions import build_definitions
from alkemio_assets.operations.schema import LATER_RECORD, SchemaError, later_key, prepare
from alkemio_assets.stages.run_log import read_events, run_log_path
from fixtures import HANDWRITTEN
from resources import MySQLResource, PostgresResource

# what an application's migration command does, reading the target from its environment as
# Alkemio's TypeORM CLI does (DATABASE_*): the password is there, never in the arguments
APPLY_FROM_ENVIRONMENT = (
    "import os, sys, psycopg\n"
    "e = os.environ\n"
    "with psycopg.connect(host=e['DATABASE_HOST'], port=e['DATABASE_PORT'], user=e['DATABASE_USERNAME'],"
    " password=e['DATABASE_PASSWORD'] or None, dbname=e['DATABASE_NAME'], autocommit=True) as c:\n"
    "    c.execute(open(sys.argv[1]).read())\n"
)


def _with_steps(settings: Settings, **steps: SchemaStep) -> Settings:
    return replace(settings, pairs=tuple(replace(p, **steps.get(p.name, {})) for p in settings.pairs))  # type: ignore[arg-type]


@pytest.mark.e2e  # DDL and CREATE DATABASE: on each PostgreSQL of the suite
def test_prepare_schema_by_file_and_by_command_then_refuse_over_data_unless_told_to_replace(
    source_databases: dict[str, str], postgres: PostgresResource, mysql: MySQLResource, tmp_path: Path
):
    settings = migration_settings(source_databases, str(tmp_path))
    by_file = SchemaStep(file=HANDWRITTEN / "alkemio" / "postgres.sql")
    by_command = SchemaStep(
        command=(sys.executable, "-c", APPLY_FROM_ENVIRONMENT, str(HANDWRITTEN / "kratos" / "postgres.sql"))
    )
    settings = replace(
        settings,
        pairs=(replace(settings.pair("alkemio"), schema=by_file), replace(settings.pair("kratos"), schema=by_command)),
    )
    try:
        result = build_definitions(settings).resolve_job_def("prepare_schema").execute_in_process(raise_on_error=False)
        assert result.success, failure_message(result)
        for name in ("alkemio", "kratos"):  # the databases did not exist: made, then the schema
            assert postgres.database_exists(source_databases[name])
            (output,) = [
                e for e in result.all_events if e.is_successful_output and e.step_key == f"{name}_target_schema"
            ]
            assert output.event_specific_data.metadata["tables_in_contract"].value > 5
        events = read_events(run_log_path(settings), result.run_id, action="schema")
        assert {(e.database, e.status) for e in events} == {("alkemio", "completed"), ("kratos", "completed")}
        assert "applied" in events[0].message

        target = source_databases["alkemio"]
        with postgres.connect(target) as conn:
            conn.execute("""INSERT INTO credential (version, "resourceID", type) VALUES (1, 'r', 'global-admin')""")
        with pytest.raises(
            SchemaError,
            match=rf"alkemio: PostgreSQL {target} already holds application data \(credential: 1 rows\): nothing was changed",
        ):
            prepare(settings.pair("alkemio"), settings, mysql, postgres)
        replaced = prepare(settings.pair("alkemio"), replace(settings, replace_target=True), mysql, postgres)
        assert replaced["replaced"] == {"credential": 1}
        with postgres.connect(target) as conn:
            assert conn.execute("SELECT count(*) FROM credential").fetchone()[0] == 0

        failing = SchemaStep(command=(sys.executable, "-c", "import sys; sys.exit('no route to the migrations: 3')"))
        with pytest.raises(
            SchemaError, match=r"kratos schema: `.*` exited with 1 on PostgreSQL .*: no route to the migrations: 3"
        ):
            prepare(replace(settings.pair("kratos"), schema=failing, critical_tables=()), settings, mysql, postgres)
        with pytest.raises(SchemaError, match="alkemio: no schema step: set ALKEMIO_SCHEMA_COMMAND"):
            prepare(replace(settings.pair("alkemio"), schema=None), settings, mysql, postgres)
    finally:
        for database in source_databases.values():
            postgres.drop_database(database)


LATER = """
ALTER TABLE "user" ALTER COLUMN "settings" TYPE jsonb USING "settings"::jsonb;
ALTER TABLE "user" ALTER COLUMN "createdDate" TYPE timestamptz USING "createdDate" AT TIME ZONE 'UTC';
ALTER TABLE "user" DROP COLUMN "phone";
"""


# a whole migration: once, on the suite's first PostgreSQL (the 17.5 pass runs the e2e tests)
def test_the_later_migrations_run_after_the_load_and_the_data_is_verified_again(
    generated_source, target_databases, postgres: PostgresResource, tmp_path: Path, instance: dg.DagsterInstance
):
    databases, _ = generated_source
    later = tmp_path / "later.sql"
    later.write_text(LATER)
    settings = migration_settings(databases, str(tmp_path))
    settings = replace(
        settings, pairs=(replace(settings.pair("alkemio"), later=SchemaStep(file=later)), settings.pair("kratos"))
    )
    for _ in range(2):  # the first run takes the snapshot
        result = (
            build_definitions(settings).resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
        )
    checks = {(e.asset_key, e.check_name): e for e in result.get_asset_check_evaluations()}
    later_check = checks[(later_key(settings.pair("alkemio")), "content_after_later_migrations")]
    assert later_check.passed and later_check.metadata["tables_compared_by_content"].value > 20
    record = (tmp_path / "runs" / result.run_id / "alkemio" / LATER_RECORD).read_text()
    assert "user.phone: dropped by the later migrations" in record  # listed; the rest of user still compared
    with postgres.connect(databases["alkemio"]) as conn:
        assert (
            conn.execute(
                "SELECT data_type FROM information_schema.columns WHERE table_name = 'user' AND column_name = 'settings'"
            ).fetchone()[0]
            == "jsonb"
        )

    # a later migration that changes data is caught, naming the row, and the cut-over waits
    later.write_text(
        """UPDATE "user" SET "firstName" = 'changed' WHERE id = (SELECT id FROM "user" ORDER BY id LIMIT 1);"""
    )
    job = build_definitions(settings).resolve_job_def("migrate_all")
    again = job.get_subset(asset_selection={later_key(settings.pair("alkemio"))}).execute_in_process(
        instance=instance, raise_on_error=False
    )
    (failed,) = [e for e in again.get_asset_check_evaluations() if not e.passed]
    assert "alkemio.user: content differs from MySQL after the later migrations" in failed.metadata["problems"].value
    cut = (
        build_definitions(settings)
        .resolve_job_def("migrate_all")
        .get_subset(asset_selection={dg.AssetKey(["migration", "cutover"])})
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    assert "alkemio/later_migrations:content_after_later_migrations: failed in run" in failure_message(cut)
