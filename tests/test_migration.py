"""The migration asset graph on the real servers: "Materialize all" moves both fixture databases
and every value of every column arrives equal after its documented conversion."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg
import pytest
from conftest import failed_error_checks, failure_message, materialize_all, migration_settings, run_job
from fidelity import compare_table
from psycopg import sql

from alkemio_assets.catalog.contract import plan_database
from alkemio_assets.catalog.source import read_mysql_catalog
from alkemio_assets.catalog.target import read_pg_catalog
from alkemio_assets.core.settings import Settings
from alkemio_assets.definitions import build_definitions
from alkemio_assets.operations.app_env import backup_path, env_values, postgres_settings, switch_to_postgres
from alkemio_assets.operations.monitor import MONITOR_CHECKS, MONITOR_JOB, SCHEDULE, monitoring_tick
from alkemio_assets.operations.preflight import rehearsal_rate
from alkemio_assets.stages.manifest import MANIFEST
from alkemio_assets.stages.run_log import read_events, run_log_path
from resources import MySQLResource, PostgresResource

pytestmark = pytest.mark.e2e


def _plans(settings: Settings, mysql: MySQLResource, postgres: PostgresResource, name: str):
    """The plans of database `name` from its live schemas, on the servers its settings name."""
    pair = settings.pair(name)
    with mysql.connect() as conn:
        source = read_mysql_catalog(conn, pair.source_database)
    with postgres.connect(pair.target_database) as conn:
        target = read_pg_catalog(conn, pair.target_database)
    return plan_database(pair, source, target), target


def test_every_value_of_every_table_arrives(migrated_once, mysql: MySQLResource, postgres: PostgresResource):
    settings, databases, _ = migrated_once
    compared = 0
    for name, database in databases.items():
        plans, _ = _plans(settings, mysql, postgres, name)
        assert plans, name
        for plan in plans.values():
            assert compare_table(mysql, database, postgres, database, plan) == []
            with postgres.connect(database) as conn:
                compared += conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(plan.name))
                ).fetchone()[0] * len(plan.columns)
    assert compared > 10_000  # values compared at the test scale


def test_the_comparison_sees_a_one_microsecond_change(migrated_copy, mysql: MySQLResource, postgres: PostgresResource):
    settings, databases, _ = migrated_copy
    plans, _ = _plans(settings, mysql, postgres, "alkemio")
    with postgres.connect(databases["alkemio"]) as conn:
        conn.execute('UPDATE "user" SET "updatedDate" = "updatedDate" + interval \'1 microsecond\' WHERE "rowId" = 3')
    source = settings.pair("alkemio").source_database
    (difference,) = compare_table(mysql, source, postgres, databases["alkemio"], plans["user"])
    assert "user.updatedDate" in difference


def test_manifest_describes_every_file(migrated_once, mysql: MySQLResource):
    settings, databases, result = migrated_once
    for name, database in databases.items():
        folder = settings.workdir / "runs" / result.run_id / name
        manifest = json.loads((folder / MANIFEST).read_text())
        assert manifest["outcome"] == "succeeded" and manifest["run_id"] == result.run_id
        assert manifest["started_at"].endswith("+00:00") and manifest["finished_at"]
        # servers described as scheme://user@host:port/db, never with a password
        for side in (manifest["source"], manifest["target"]):
            assert side.split("//")[1].split("@")[0] in ("root", "postgres") and side.endswith(database)
        excluded = set(settings.pair(name).exclude)
        with mysql.connect(database) as conn, conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            tables = {next(iter(r.values())) for r in cur.fetchall()} - excluded
        assert set(manifest["tables"]) == tables
        for table, entry in manifest["tables"].items():
            data = (folder / entry["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
            with mysql.connect(database) as conn, conn.cursor() as cur:
                cur.execute(f"SELECT COUNT(*) AS n FROM `{table}`")
                assert cur.fetchone()["n"] == entry["rows"] == entry["loaded_rows"]
            assert all({"name", "mysql", "postgres", "rule"} <= set(c) for c in entry["columns"])
        if name == "alkemio":
            assert manifest["tables"]["whiteboard"]["overrides"]["whiteboard.content"]["cast"] == "base64"


def test_every_index_of_the_target_schema_is_there_after_the_load(
    migrated_once, postgres: PostgresResource, unique_name: str
):
    """The load builds secondary indexes after the COPY: the same definitions as a fresh schema."""
    from fixtures import HANDWRITTEN, apply_target_schema

    _, databases, _ = migrated_once
    query = "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
    for name, database in databases.items():
        fresh = f"{unique_name}_fresh_{name}"
        postgres.create_database(fresh)
        try:
            apply_target_schema(postgres, name, fresh, HANDWRITTEN)
            with postgres.connect(fresh) as conn:
                expected = conn.execute(query).fetchall()
            with postgres.connect(database) as conn:
                assert conn.execute(query).fetchall() == expected, name
        finally:
            postgres.drop_database(fresh)


def test_sequences_are_past_the_loaded_maximum(migrated_once, postgres: PostgresResource):
    settings, databases, _ = migrated_once
    with postgres.connect(databases["alkemio"]) as conn:
        target = read_pg_catalog(conn, databases["alkemio"])
        checked = 0
        for table in target.tables:
            for column in table.columns:
                if column.sequence and table.name not in settings.pair("alkemio").exclude:
                    top = conn.execute(
                        sql.SQL("SELECT max({}) FROM {}").format(
                            sql.Identifier(column.name), sql.Identifier(table.name)
                        )
                    ).fetchone()[0]
                    following = conn.execute("SELECT nextval(%s)", (column.sequence,)).fetchone()[0]
                    assert following > top, f"{table.name}.{column.name}"
                    checked += 1
    assert checked >= 5


def test_foreign_keys_hold_after_the_bypassed_load(migrated_once, postgres: PostgresResource):
    _, databases, _ = migrated_once
    for database in databases.values():
        with postgres.connect(database) as conn:
            target = read_pg_catalog(conn, database)
            for table in target.tables:
                for fk in table.foreign_keys:
                    (col,), (ref,) = fk.columns, fk.ref_columns
                    orphans = conn.execute(
                        sql.SQL(
                            "SELECT count(*) FROM {t} c WHERE c.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {r} p WHERE p.{rc} = c.{c})"
                        ).format(
                            t=sql.Identifier(table.name),
                            c=sql.Identifier(col),
                            r=sql.Identifier(fk.ref_table),
                            rc=sql.Identifier(ref),
                        )
                    ).fetchone()[0]
                    assert orphans == 0, fk.name


def test_seeded_and_excluded_tables(migrated_once, postgres: PostgresResource):
    _, databases, result = migrated_once
    outcome = {
        e.asset_key.to_user_string(): e.materialization.metadata.get("outcome")
        for e in result.get_asset_materialization_events()
    }
    assert outcome["kratos/postgres/identity_credential_types"].value == "verified_identical"
    assert outcome["alkemio/postgres/user"].value == "loaded"
    assert "alkemio/postgres/migrations_typeorm" not in outcome
    with postgres.connect(databases["alkemio"]) as conn:
        assert conn.execute("SELECT count(*) FROM migrations_typeorm").fetchone()[0] == 0
    with postgres.connect(databases["kratos"]) as conn:
        assert conn.execute("SELECT count(*) FROM identity_credential_types").fetchone()[0] == 9


def _fingerprints(postgres: PostgresResource, database: str) -> dict[str, str]:
    with postgres.connect(database) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        return {
            t: conn.execute(
                sql.SQL("SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {} x").format(sql.Identifier(t))
            ).fetchone()[0]
            for t in tables
        }


@pytest.mark.one_server
def test_rematerializing_one_table_changes_no_other(
    migrated, mysql: MySQLResource, postgres: PostgresResource, instance
):
    settings, databases, _ = migrated
    db = databases["alkemio"]
    before = _fingerprints(postgres, db)
    with mysql.connect(db) as conn, conn.cursor() as cur:
        cur.execute("UPDATE profile SET displayName = 'renamed on MySQL' ORDER BY id LIMIT 1")
    result = run_job(
        settings,
        instance,
        "migrate_alkemio",
        ["alkemio/csv/profile.csv", "alkemio/staged/profile.staged", "alkemio/postgres/profile"],
    )
    assert result.success
    after = _fingerprints(postgres, db)
    assert [t for t in before if before[t] != after[t]] == ["profile"]
    with postgres.connect(db) as conn:
        assert (
            conn.execute("""SELECT count(*) FROM profile WHERE "displayName" = 'renamed on MySQL'""").fetchone()[0] == 1
        )


@pytest.mark.one_server
def test_a_loaded_table_alone_reloads_from_the_last_staged_file(migrated, postgres: PostgresResource, instance):
    settings, databases, _ = migrated
    before = _fingerprints(postgres, databases["kratos"])
    result = run_job(settings, instance, "migrate_kratos", ["kratos/postgres/identities"])
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.asset_key.to_user_string() == "kratos/postgres/identities"
    assert _fingerprints(postgres, databases["kratos"]) == before


@pytest.mark.one_server
def test_sharded_steps_move_every_table_into_one_manifest(
    generated_source, target_databases, tmp_path, instance, mysql: MySQLResource
):
    """MIGRATION_SHARDS=3, what a cluster runs (here in one process, step after step): the same
    tables arrive, every error-severity check passes, one manifest gathers what every step did."""
    databases, _ = generated_source
    settings = replace(migration_settings(databases, str(tmp_path)), shards=3)
    result = materialize_all(settings, instance)
    assert failed_error_checks(result) == []
    # the cycle's edge crosses shards: it is proven once the whole database is loaded
    assert ("alkemio/verified", "deferred_foreign_keys") in {
        (e.asset_key.to_user_string(), e.check_name) for e in result.get_asset_check_evaluations()
    }
    steps = {e.step_key for e in result.all_events if e.is_step_success}
    for name, database in databases.items():
        mine = {s for s in steps if s.startswith(f"migrate_{name}_tables_")}
        assert len(mine) >= 3, steps  # at least one step per shard; more where lineage crosses shards
        folder = settings.workdir / "runs" / result.run_id / name
        manifest = json.loads((folder / MANIFEST).read_text())
        assert (manifest["outcome"], manifest["error"]) == ("succeeded", None)
        with mysql.connect(database) as conn, conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            tables = {next(iter(r.values())) for r in cur.fetchall()} - set(settings.pair(name).exclude)
        assert set(manifest["tables"]) == tables
        for table, entry in manifest["tables"].items():
            assert entry["rows"] == entry["loaded_rows"], table
            assert {"export", "stage", "load", "checks"} <= set(entry["spans"]), table
        # each step stages in its own DuckDB file: steps of one database may run at once
        assert {p.name for p in folder.glob("*.duckdb")} <= {f"staging.{s}.duckdb" for s in mine}
        assert not (folder / "staging.duckdb").exists()


@pytest.mark.one_server
def test_key_ranges_move_every_value(generated_source, target_databases, tmp_path, instance, mysql: MySQLResource):
    """Every table whose key can be split exported in four key ranges at once (a chunk of one
    byte): every error-severity check passes, the content fingerprints included."""
    databases, _ = generated_source
    settings = replace(migration_settings(databases, str(tmp_path)), chunk_bytes=1)
    result = materialize_all(settings, instance)
    assert failed_error_checks(result) == []
    manifest = json.loads((settings.workdir / "runs" / result.run_id / "alkemio" / MANIFEST).read_text())
    assert len(manifest["tables"]["user"]["key_ranges"]) == settings.workers
    assert manifest["tables"]["user"]["rows"] == manifest["tables"]["user"]["loaded_rows"] > 0
    split = [t for t, entry in manifest["tables"].items() if "key_ranges" in entry]
    assert len(split) > 20, split


@pytest.mark.one_server
def test_the_run_log_records_each_step_and_the_verdict_and_a_rehearsal_again_gives_the_same(
    migrated, instance: dg.DagsterInstance
):
    settings, _, result = migrated
    events = read_events(run_log_path(settings), result.run_id)
    for database in ("alkemio", "kratos"):
        mine = [e for e in events if e.database == database and e.action == "migration"]
        assert [e.status for e in mine] == ["started", "in_progress", "in_progress", "completed"]
        assert "loaded" in mine[2].message and all(e.host and e.user and e.timestamp.endswith("Z") for e in mine)
        assert instance.get_run_by_id(result.run_id).tags[f"alkemio/{database}"] == "completed"
    verdict = [e for e in events if e.action == "migration"][-1]
    assert verdict.status == "completed" and verdict.database is None and "every ERROR check passed" in verdict.message
    # then the cut-over, and the monitor checks that follow it
    assert (events[-3].action, events[-3].status) == ("cutover", "completed")
    assert {(e.action, e.database) for e in events[-2:]} == {("monitor", "alkemio"), ("monitor", "kratos")}
    report = (settings.workdir / "runs" / result.run_id / "report.md").read_text()
    assert "## Run log" in report and "| completed | alkemio |" in report
    # the report asset's page shows the report itself, rendered as Markdown
    (shown,) = [m.metadata["report"] for m in result.asset_materializations_for_node("migration__report")]
    assert isinstance(shown, dg.MarkdownMetadataValue) and shown.value == report

    # a rehearsal: the whole migration again on the same target is safe and gives the same
    # result, and the measured rate of the last one is what the preflight estimates the window by
    rate = rehearsal_rate(settings)
    assert rate is not None and rate[0] > 0 and rate[1].startswith(f"the rehearsal {result.run_id} (")
    again = run_job(settings, instance, "migrate_all")
    assert again.success and failed_error_checks(again) == []
    for database in ("alkemio", "kratos"):
        loaded = [
            {
                t: e.get("loaded_rows")
                for t, e in json.loads((settings.workdir / "runs" / r / database / MANIFEST).read_text())[
                    "tables"
                ].items()
            }
            for r in (result.run_id, again.run_id)
        ]
        assert loaded[0] == loaded[1], database
    (preflight,) = again.asset_materializations_for_node("migration__preflight")
    assert "| ok | window estimate | about 0 minutes for " in preflight.metadata["findings"].value
    assert f"(the rehearsal {result.run_id} (" in preflight.metadata["findings"].value


@pytest.mark.one_server
def test_the_cutover_alone_goes_once_every_error_check_passed_and_not_before(
    migrated, instance: dg.DagsterInstance, source_databases, target_databases, tmp_path
):
    settings, _, migration = migrated
    env_file = tmp_path / ".env.docker"
    env_file.write_text("DATABASE_TYPE=mysql\nDATABASE_HOST=mysql\nDATABASE_PASSWORD=kept\n")
    settings = replace(settings, app_env_file=env_file)
    alone = run_job(settings, instance, "migrate_all", ["migration/cutover"])
    assert alone.success, failure_message(alone)
    # the applications' env file points at PostgreSQL, its other lines kept, the old one beside it
    assert env_values(env_file.read_text()) == {**postgres_settings(settings), "DATABASE_PASSWORD": "kept"}
    assert backup_path(env_file).read_text().startswith("DATABASE_TYPE=mysql\n")
    done = read_events(run_log_path(settings), migration.run_id, action="cutover")  # of the migration it cuts over
    assert [e.status for e in done] == ["completed", "completed"]  # the migration's own, without a file, and this
    assert "no MIGRATION_APP_ENV_FILE" in done[0].message and str(env_file) in done[1].message
    # a table loaded again without its checks: what they judged is gone, so is the permission
    tagset = dg.AssetKey.from_user_string("alkemio/postgres/tagset")
    job = build_definitions(settings).resolve_job_def("migrate_alkemio")
    job.get_subset(asset_selection={tagset}, asset_check_selection=set()).execute_in_process(instance=instance)
    stale = run_job(settings, instance, "migrate_all", ["migration/cutover"])
    assert not stale.success
    assert "alkemio/postgres/tagset:row_count: evaluated in run" in failure_message(stale)
    assert "before the asset was materialized again" in failure_message(stale)
    # a graph whose checks never ran: every ERROR check is missing, none is taken for passed
    fresh = migration_settings(source_databases, str(tmp_path / "fresh"))
    with dg.DagsterInstance.ephemeral() as other:
        assert run_job(fresh, other, "refresh_catalog").success
        refused = run_job(fresh, other, "migrate_all", ["migration/cutover"])
    assert not refused.success
    message = failure_message(refused)
    assert "cut-over refused" in message and "never evaluated" in message and " more" in message


def the_monitor_holds_then_names_an_orphan_a_sequence_behind_and_fewer_rows(
    settings: Settings, databases: dict[str, str], result, postgres: PostgresResource, instance
) -> None:
    """After the cut-over (migrate_all ended with it): the schedule, and two evaluations."""
    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def(SCHEDULE)
    assert schedule.cron_schedule == "0 * * * *" and schedule.job_name == MONITOR_JOB
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert isinstance(monitoring_tick(settings, datetime.now(UTC)), dg.RunRequest)  # inside the 48 hours

    held = defs.resolve_job_def(MONITOR_JOB).execute_in_process(instance=instance, raise_on_error=False)
    assert held.success
    outcomes = {(e.asset_key.path[0], e.check_name): e.passed for e in held.get_asset_check_evaluations()}
    assert outcomes == {(db, name): True for db in ("alkemio", "kratos") for name in MONITOR_CHECKS}
    watched = read_events(run_log_path(settings), result.run_id, action="monitor")
    assert {(e.database, e.status) for e in watched} == {("alkemio", "in_progress"), ("kratos", "in_progress")}

    with postgres.connect(databases["alkemio"]) as conn:
        conn.execute("SET session_replication_role = replica")  # as a bulk fix-up by hand would
        orphan = conn.execute(
            'UPDATE tagset SET "profileId" = gen_random_uuid() WHERE id = (SELECT id FROM tagset ORDER BY id LIMIT 1) RETURNING id'
        ).fetchone()[0]
        conn.execute("""SELECT setval(pg_get_serial_sequence('"user"', 'rowId'), 1)""")
        conn.execute("DELETE FROM reference WHERE id = (SELECT id FROM reference ORDER BY id LIMIT 1)")
        conn.commit()
    broken = defs.resolve_job_def(MONITOR_JOB).execute_in_process(instance=instance, raise_on_error=False)
    failed = {e.check_name: e for e in broken.get_asset_check_evaluations() if not e.passed}
    assert set(failed) == set(MONITOR_CHECKS) and all(e.asset_key.path[0] == "alkemio" for e in failed.values())
    problems = failed["monitor_integrity"].metadata["problems"].value
    assert "alkemio.tagset.profileId -> profile(id)" in problems and f"row id='{orphan}'" in problems
    assert 'sequence public."user_rowId_seq" gives 2, the column holds' in problems
    assert "| reference |" in failed["monitor_row_counts"].metadata["fewer_rows"].value
    last = read_events(run_log_path(settings), result.run_id, action="monitor")[-2:]
    assert {(e.database, e.status) for e in last} == {("alkemio", "failed"), ("kratos", "in_progress")}


@pytest.mark.one_server
def test_after_the_cutover_the_monitor_watches_and_the_rollback_restores_the_env_file_and_proves_mysql(
    migrated, mysql: MySQLResource, postgres: PostgresResource, instance, tmp_path
):
    """One migration for both (each would cost one): the monitor breaks PostgreSQL only, the
    rollback reads MySQL only."""
    settings, databases, result = migrated
    the_monitor_holds_then_names_an_orphan_a_sequence_behind_and_fewer_rows(
        settings, databases, result, postgres, instance
    )
    env_file = tmp_path / ".env.docker"
    on_mysql = "DATABASE_TYPE=mysql\nDATABASE_HOST=mysql\nDATABASE_PASSWORD=kept\n"
    env_file.write_text(on_mysql)
    settings = replace(settings, app_env_file=env_file)
    switch_to_postgres(settings)  # what the cut-over does (its own test runs it as an asset)
    defs = build_definitions(settings)
    proved = defs.resolve_job_def("rollback").execute_in_process(instance=instance, raise_on_error=False)
    assert proved.success, failure_message(proved)
    assert env_file.read_text() == on_mysql
    restored, event = read_events(run_log_path(settings), result.run_id, action="rollback")
    assert restored.status == "in_progress" and str(env_file) in restored.message
    assert event.status == "rolled_back" and event.message.startswith("MySQL intact: ")
    assert f"as run {result.run_id} exported them" in event.message

    with mysql.connect(databases["alkemio"]) as conn, conn.cursor() as cur:
        cur.execute("UPDATE tagset SET version = version + 1 ORDER BY id LIMIT 1")
    changed = defs.resolve_job_def("rollback").execute_in_process(instance=instance, raise_on_error=False)
    assert not changed.success
    message = failure_message(changed)
    assert (
        f"MySQL is not as run {result.run_id} exported it: alkemio.tagset changed on MySQL since the export" in message
    )
    assert "kratos." not in message  # only the changed table is named
    assert read_events(run_log_path(settings), result.run_id)[-1].status == "failed"
