"""The verification checklist as asset checks: each passes on the fixture migration and fails,
with its evidence, when the target is broken the way it guards against. An ERROR check keeps
the report and the cut-over from materializing."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import pytest
from conftest import failed_error_checks, failure_message, materialize_all, run_job  # noqa: F401  (fixture helpers)

from alkemio_assets.core.settings import Settings
from alkemio_assets.definitions import build_definitions
from checks import plain
from checks.database_checks import DatabaseCheckContext, Timing, encoding, side_by_side
from resources import MySQLResource, PostgresResource

pytestmark = pytest.mark.e2e


def evaluate(settings: Settings, instance: dg.DagsterInstance, asset: str, check: str) -> dg.AssetCheckEvaluation:
    """Run one check alone, as the UI's "Execute check" does."""
    defs = build_definitions(settings)
    key = dg.AssetCheckKey(dg.AssetKey.from_user_string(asset), check)
    # a table's checks run alone (its step subsets); a database's checks run with their asset
    table_check = key.asset_key.path[1] == "postgres"
    selection = dg.AssetSelection.checks(key) if table_check else dg.AssetSelection.assets(key.asset_key)
    result = dg.materialize(
        list(defs.assets or []), resources=defs.resources, instance=instance, selection=selection, raise_on_error=False
    )
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == check]
    return evaluation


def meta(evaluation: dg.AssetCheckEvaluation, name: str):
    """A check's evidence as a person reads it in the UI: a table's rows as dicts."""
    return plain(evaluation.metadata[name])


def by(rows: list[dict], key: str) -> dict[str, dict]:
    """An evidence table's rows by one of its columns."""
    return {row[key]: row for row in rows}


def target_sql(postgres: PostgresResource, database: str, *statements: str) -> None:
    with postgres.connect(database) as conn:
        conn.execute("SET session_replication_role = replica")  # break it past the foreign keys
        for statement in statements:
            conn.execute(statement)


def test_every_check_runs_on_the_fixture_and_every_error_check_passes(migrated_once):
    _, _, result = migrated_once
    evaluations = result.get_asset_check_evaluations()
    names = {e.check_name for e in evaluations}
    assert names >= {
        "row_count",
        "content_fingerprint",
        "foreign_keys",
        "keys",
        "indexes",
        "sequences",
        "samples",
        "critical_tables",
        "encoding",
        "query_plans",
        "kratos_identities",
        "kratos_network",
        "cross_database_references",
        "deferred_foreign_keys",
    }
    assert failed_error_checks(result) == []
    # the fixture's baseline, like TypeORM's, lacks the FK indexes InnoDB made: a WARN with the fix
    warned = {e.check_name for e in evaluations if not e.passed}
    assert warned <= {"indexes", "query_plans"}
    outcome = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"migration/report", "migration/cutover", "alkemio/verified", "kratos/verified"} <= outcome


def test_row_count_sees_a_deleted_row(migrated_copy, postgres, instance):
    settings, databases, _ = migrated_copy
    target_sql(
        postgres, databases["alkemio"], "DELETE FROM comment WHERE id = (SELECT id FROM comment ORDER BY id LIMIT 1)"
    )
    e = evaluate(settings, instance, "alkemio/postgres/comment", "row_count")
    assert not e.passed and meta(e, "difference") == -1


@pytest.mark.parametrize(
    ("table", "change", "column"),
    [
        (
            "profile",
            """UPDATE profile SET "displayName" = "displayName" || 'x' WHERE id = (SELECT id FROM profile ORDER BY id LIMIT 1)""",
            "displayName",
        ),
        (
            "user",
            """UPDATE "user" SET "updatedDate" = "updatedDate" + interval '1 microsecond' WHERE id = (SELECT id FROM "user" ORDER BY id LIMIT 1)""",
            "updatedDate",
        ),
        (
            "authorization_policy",
            """UPDATE authorization_policy SET "privilegeRules" = '{"changed": 1}' WHERE id = (SELECT id FROM authorization_policy ORDER BY id LIMIT 1)""",
            "privilegeRules",
        ),
    ],
)
def test_content_fingerprint_names_the_changed_row(migrated_copy, postgres, instance, table, change, column):
    settings, databases, _ = migrated_copy
    with postgres.connect(databases["alkemio"]) as conn:
        key = conn.execute(f'SELECT id::text FROM "{table}" ORDER BY id LIMIT 1').fetchone()[0]
    target_sql(postgres, databases["alkemio"], change)
    e = evaluate(settings, instance, f"alkemio/postgres/{table}", "content_fingerprint")
    assert not e.passed
    assert meta(e, "differing_keys") == [{"key": key}]


def test_foreign_keys_show_the_orphan(migrated_copy, postgres, instance):
    settings, databases, _ = migrated_copy
    ghost = str(uuid.uuid4())
    target_sql(
        postgres,
        databases["alkemio"],
        f"""UPDATE visual SET "profileId" = '{ghost}' WHERE id = (SELECT id FROM visual ORDER BY id LIMIT 1)""",
    )
    e = evaluate(settings, instance, "alkemio/postgres/visual", "foreign_keys")
    assert not e.passed
    orphans = by(meta(e, "orphans"), "foreign_key")["FK_visual_profile"]
    assert orphans["orphans"] == 1
    shown = orphans["sample"]
    assert shown.startswith("row id='") and f"profileId='{ghost}' names no parent row" in shown


def test_the_cycle_edge_is_proven_on_verified(migrated_copy, postgres, instance):
    """storage_aggregator -> storage_bucket breaks the fixture's cycle: the bucket loads after the
    aggregator, so the aggregator's own check leaves that key to alkemio/verified."""
    settings, databases, _ = migrated_copy
    ghost = str(uuid.uuid4())
    target_sql(
        postgres,
        databases["alkemio"],
        f"""UPDATE storage_aggregator SET "directStorageId" = '{ghost}'
            WHERE id = (SELECT id FROM storage_aggregator ORDER BY id LIMIT 1)""",
    )
    own = evaluate(settings, instance, "alkemio/postgres/storage_aggregator", "foreign_keys")
    assert own.passed and meta(own, "proven_on_verified") == [{"foreign_key": "FK_storage_aggregator_direct_storage"}]
    e = evaluate(settings, instance, "alkemio/verified", "deferred_foreign_keys")
    assert not e.passed
    (orphans,) = meta(e, "orphans")
    assert orphans["foreign_key"] == "storage_aggregator.FK_storage_aggregator_direct_storage"
    assert orphans["orphans"] == 1
    shown = orphans["sample"]
    assert shown.startswith("row id='") and f"directStorageId='{ghost}' names no parent row" in shown


def test_keys_and_query_plans_see_a_dropped_unique_index(migrated_copy, postgres, instance):
    settings, databases, _ = migrated_copy
    target_sql(postgres, databases["alkemio"], 'ALTER TABLE "user" DROP CONSTRAINT "IDX_user_email"')
    keys = evaluate(settings, instance, "alkemio/postgres/user", "keys")
    assert not keys.passed and meta(keys, "missing") == [{"columns": "email"}]
    plans = evaluate(settings, instance, "alkemio/verified", "query_plans")
    assert not plans.passed and plans.severity == dg.AssetCheckSeverity.WARN
    assert by(meta(plans, "plans"), "lookup")["user.email"]["plan"] == "Seq Scan"
    assert 'CREATE INDEX ON "user" ("email");' in meta(plans, "suggested")


def test_indexes_warn_with_the_statement_to_add(migrated_copy, postgres, instance):
    settings, databases, _ = migrated_copy
    target_sql(postgres, databases["alkemio"], 'DROP INDEX "IDX_activity_log_collaboration"')
    e = evaluate(settings, instance, "alkemio/postgres/activity_log", "indexes")
    assert not e.passed and e.severity == dg.AssetCheckSeverity.WARN
    statement = 'CREATE INDEX ON "activity_log" ("collaborationID");'
    assert {"columns": "collaborationID", "suggested": statement} in meta(e, "missing")
    assert statement in meta(e, "suggested")


def test_sequences_see_one_set_back(migrated_copy, postgres, instance):
    settings, databases, _ = migrated_copy
    target_sql(postgres, databases["alkemio"], """SELECT setval('"user_rowId_seq"', 1)""")
    e = evaluate(settings, instance, "alkemio/postgres/user", "sequences")
    sequence = by(meta(e, "sequences"), "sequence")['public."user_rowId_seq"']
    assert not e.passed and sequence["behind"] and sequence["next_value"] <= sequence["column_max"]


def test_samples_see_lost_newlines_and_replacement_characters(migrated_copy, postgres, instance):
    settings, databases, _ = migrated_copy
    target_sql(
        postgres,
        databases["alkemio"],
        "UPDATE comment SET message = replace(message, E'\\n', ' ')",
        "UPDATE reference SET name = name || E'\\uFFFD' WHERE id = (SELECT id FROM reference ORDER BY id DESC LIMIT 1)",
    )
    lost = evaluate(settings, instance, "alkemio/postgres/comment", "samples")
    assert not lost.passed
    side = [row for row in meta(lost, "side_by_side") if row["column"] == "message"]
    assert any(s["mysql"] != s["postgres"] and not s["equal"] and s["row"].startswith("id=") for s in side)
    gained = evaluate(settings, instance, "alkemio/postgres/reference", "samples")
    assert not gained.passed and meta(gained, "replacement_characters_gained") == [{"column": "name", "rows": 1}]


def test_critical_tables_see_an_empty_one(migrated_copy, postgres, instance):
    settings, databases, _ = migrated_copy
    target_sql(postgres, databases["alkemio"], "DELETE FROM notification")
    e = evaluate(settings, instance, "alkemio/verified", "critical_tables")
    assert not e.passed and meta(e, "missing_or_empty") == [{"table": "notification"}]


def test_kratos_identity_without_credentials_is_listed(migrated_copy, postgres, instance):
    settings, databases, _ = migrated_copy
    with postgres.connect(databases["kratos"]) as conn:
        identity = conn.execute(
            "SELECT identity_id::text FROM identity_credentials ORDER BY identity_id LIMIT 1"
        ).fetchone()[0]
    target_sql(postgres, databases["kratos"], f"DELETE FROM identity_credentials WHERE identity_id = '{identity}'")
    e = evaluate(settings, instance, "kratos/verified", "kratos_identities")
    assert not e.passed and e.severity == dg.AssetCheckSeverity.WARN
    assert {"identity": identity} in meta(e, "sample")
    counts = by(meta(e, "counts"), "table")["identity_credentials"]
    assert counts["postgres"] < counts["mysql"]


def test_kratos_network_sees_a_second_network(migrated_copy, postgres, instance):
    settings, databases, _ = migrated_copy
    other = str(uuid.uuid4())
    target_sql(
        postgres,
        databases["kratos"],
        f"INSERT INTO networks VALUES ('{other}', now(), now())",
        f"UPDATE identities SET nid = '{other}' WHERE id = (SELECT id FROM identities ORDER BY id LIMIT 1)",
    )
    e = evaluate(settings, instance, "kratos/verified", "kratos_network")
    assert not e.passed
    assert {"network": other} in meta(e, "networks")
    assert by(meta(e, "rows_under_other_nid"), "table")["identities"]["rows"] >= 1


def test_alkemio_users_must_name_kratos_identities(migrated_copy, postgres, instance):
    settings, databases, _ = migrated_copy
    ghost = str(uuid.uuid4())
    target_sql(
        postgres,
        databases["alkemio"],
        f"""UPDATE "user" SET "authId" = '{ghost}' WHERE "authId" IS NOT NULL AND id = (SELECT id FROM "user" WHERE "authId" IS NOT NULL ORDER BY id LIMIT 1)""",
    )
    e = evaluate(settings, instance, "alkemio/verified", "cross_database_references")
    assert not e.passed
    assert by(meta(e, "references"), "reference")["user.authId -> kratos.identities.id"]["sample"] == ghost


def test_encoding_refuses_a_database_that_is_not_utf8(
    settings: Settings, mysql, postgres: PostgresResource, unique_name
):
    latin = f"{unique_name}_latin"
    with postgres.connect(autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {latin} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    try:
        pair = settings.pair("alkemio")
        from dataclasses import replace

        ctx = DatabaseCheckContext(
            replace(pair, target_database=latin, source_database="mysql"), settings, mysql, postgres, dg.AssetKey("x")
        )
        e = encoding(ctx)
        assert not e.passed and e.metadata["postgres_server_encoding"].value == "LATIN1"
    finally:
        postgres.drop_database(latin)


def test_schema_contract_blocks_before_data_moves(migrated, mysql: MySQLResource, instance):
    settings, databases, _ = migrated
    mysql.execute_script(
        databases["alkemio"],
        [
            "ALTER TABLE tagset ADD COLUMN legacyFlag tinyint NULL",
            "UPDATE `user` SET accountUpn = NULL ORDER BY id LIMIT 2",
        ],
    )
    e = evaluate(settings, instance, "alkemio/source_catalog", "schema_contract")
    assert not e.passed
    problems = [row["problem"] for row in meta(e, "problems")]
    assert "alkemio.tagset.legacyFlag: no target column for MySQL tinyint(4)" in problems or any(
        "tagset.legacyFlag" in p for p in problems
    )
    assert any("user.accountUpn: 2 rows are NULL on MySQL but the target column is NOT NULL" in p for p in problems)


def test_an_error_check_keeps_the_report_and_cutover_back(
    generated_source, target_databases, mysql: MySQLResource, tmp_path, instance
):
    """A user whose authId names no Kratos identity: not a foreign key, so the data loads, and
    the ERROR check cross_database_references fails; the report and the cut-over stay back.
    (An orphan under a foreign key never loads at all: test_failfast.)"""
    databases, _ = generated_source
    with mysql.connect(databases["alkemio"]) as conn, conn.cursor() as cur:
        cur.execute("UPDATE user SET authId = %s ORDER BY id LIMIT 1", (str(uuid.uuid4()),))
    from conftest import migration_settings

    settings = migration_settings(databases, str(tmp_path))
    build_definitions(settings).resolve_job_def("refresh_catalog").execute_in_process(instance=instance)
    result = (
        build_definitions(settings)
        .resolve_job_def("migrate_all")
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    assert failed_error_checks(result) == [("alkemio/verified", "cross_database_references")]
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "alkemio/postgres/user" in materialized
    assert "migration/report" not in materialized and "migration/cutover" not in materialized
    # materialized alone, as from the UI, the cut-over reads the checks itself and refuses
    alone = run_job(settings, instance, "migrate_all", ["migration/cutover"])
    assert not alone.success
    message = failure_message(alone)
    assert (
        "cut-over refused, 1 of" in message and "alkemio/verified:cross_database_references: failed in run" in message
    )
    assert not list((settings.workdir / "runs").rglob("cutover.env"))


@contextmanager
def one_table(
    mysql: MySQLResource, postgres: PostgresResource, db: str, mysql_table: str, pg_table: str, rows: list[tuple]
) -> Iterator[Callable[[], Any]]:
    """Table `t` on both servers holding the same `rows` as each stores them; yields a maker of
    the table's check context, one per evaluation (a context reads the table once)."""
    from alkemio_assets.catalog.contract import plan_table
    from alkemio_assets.catalog.lineage import load_order
    from alkemio_assets.catalog.source import read_mysql_catalog
    from alkemio_assets.catalog.target import read_pg_catalog
    from checks.table_checks import TableCheckContext

    marks = ", ".join(["%s"] * len(rows[0]))
    mysql.create_database(db)
    postgres.create_database(db)
    try:
        mysql.execute_script(db, [mysql_table])
        postgres.execute_script(db, pg_table)
        with mysql.connect(db) as conn, conn.cursor() as cur:
            cur.executemany(f"INSERT INTO t VALUES ({marks})", rows)
            source = read_mysql_catalog(conn, db).table("t")
        with postgres.connect(db) as conn:
            conn.cursor().executemany(f"INSERT INTO t VALUES ({marks})", rows)
            target = read_pg_catalog(conn, db).table("t")
        plan = plan_table(db, source, target, {}, [])
        assert plan is not None
        key = dg.AssetKey(["db", "postgres", "t"])
        yield lambda: TableCheckContext(plan, db, db, mysql, postgres, key, load_order([source]))
    finally:
        mysql.drop_database(db)
        postgres.drop_database(db)


@pytest.mark.parametrize(
    ("mysql_table", "pg_table", "hashed_by"),
    [
        # no primary key, a JSON and a double column: rows are their own keys, hashed in Python
        (
            "CREATE TABLE t (n int NOT NULL, doc json NULL, x double NULL)",
            "CREATE TABLE t (n integer NOT NULL, doc jsonb NULL, x double precision NULL)",
            "Python, a process per side",
        ),
        # every column writable in SQL: each server hashes its own rows
        (
            "CREATE TABLE t (n int NOT NULL PRIMARY KEY, doc text NULL, x decimal(10,3) NULL)",
            "CREATE TABLE t (n integer NOT NULL PRIMARY KEY, doc text NULL, x numeric(10,3) NULL)",
            "the servers (SQL)",
        ),
    ],
)
def test_content_fingerprint_both_ways(
    mysql: MySQLResource, postgres: PostgresResource, unique_name: str, mysql_table, pg_table, hashed_by
):
    from checks.table_checks import content_fingerprint

    # the target's own forms: jsonb reorders keys and keeps 1.50; numeric pads the scale
    rows = [(1, '{"b": 1.50, "a": [1, 2]}', "2.5"), (2, None, None), (3, '{"a": "x"}', "-0.125")]
    with one_table(mysql, postgres, f"{unique_name}_fp", mysql_table, pg_table, rows) as evaluation:
        same = content_fingerprint(evaluation())
        assert same.passed and meta(same, "rows_compared") == 3 and meta(same, "hashed_by") == hashed_by
        target_sql(postgres, f"{unique_name}_fp", "UPDATE t SET x = x + 1 WHERE n = 3")
        changed = content_fingerprint(evaluation())
        assert not changed.passed
        assert len(meta(changed, "differing_keys")) == (
            1 if "SQL" in hashed_by else 2
        )  # a row that is its key: old and new


def test_a_json_document_must_arrive_byte_for_byte(mysql: MySQLResource, postgres: PostgresResource, unique_name: str):
    """json keeps its text: hashed by the servers, and a document rewritten on the way (the same
    value, other spacing or key order) is a differing row, named by its key."""
    from checks.table_checks import content_fingerprint

    db = f"{unique_name}_js"
    rows = [(1, '{"a": [1, 2], "b": 1.50}'), (2, None), (3, '{"a": "x"}')]  # MySQL 8's own form
    mysql_table = "CREATE TABLE t (n int NOT NULL PRIMARY KEY, doc json NULL)"
    pg_table = "CREATE TABLE t (n integer NOT NULL PRIMARY KEY, doc json NULL)"
    with one_table(mysql, postgres, db, mysql_table, pg_table, rows) as evaluation:
        same = content_fingerprint(evaluation())
        assert same.passed and meta(same, "hashed_by") == "the servers (SQL)"
        target_sql(postgres, db, """UPDATE t SET doc = '{"b": 1.50, "a": [1, 2]}' WHERE n = 1""")
        rewritten = content_fingerprint(evaluation())
        assert not rewritten.passed and meta(rewritten, "differing_keys") == [{"key": "1"}]


def test_a_read_is_slower_on_postgresql_only_past_the_factor_and_the_noise():
    assert Timing("q", mysql_ms=2.0, postgres_ms=3.5, mysql_rows=1, postgres_rows=1).slower
    assert not Timing("q", mysql_ms=2.0, postgres_ms=2.3, mysql_rows=1, postgres_rows=1).slower  # within 1.2x
    assert not Timing("q", mysql_ms=0.2, postgres_ms=0.9, mysql_rows=1, postgres_rows=1).slower  # under 1 ms apart
    table = side_by_side([Timing("a user by email", 2.0, 3.5, 1, 1), Timing("a space", 1.0, 0.5, 2, 2)])
    assert "| a user by email | 2.00 | 3.50 | 1 / 1 | slower on PostgreSQL |" in table
    assert "| a space | 1.00 | 0.50 | 2 / 2 | as fast or faster |" in table
    assert Timing("q", mysql_ms=1.0, postgres_ms=0.5, mysql_rows=3, postgres_rows=2).verdict == "different answer"
