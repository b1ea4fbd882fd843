"""Fail fast, for a whole database: the first bad value stops the run with the database, table,
column, the row by its primary key and the precise reason, and every table of the target
database is left exactly as it was, though a good table of the same run was loaded before the
bad one was found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from conftest import failure_message, migration_settings, run_job, target_state

from alkemio_assets.core.settings import Settings
from alkemio_assets.graph.keys import stage_key
from alkemio_assets.stages.manifest import MANIFEST
from alkemio_assets.stages.run_log import read_events, run_log_path
from resources import MySQLResource, PostgresResource

pytestmark = pytest.mark.e2e

# table -> (MySQL DDL, MySQL rows, PostgreSQL DDL, the target's own row: a failed run leaves it)
TABLES = {
    "good": ("id int PRIMARY KEY, v varchar(10)", ["(1, 'a')", "(2, 'b')"], "id integer PRIMARY KEY, v varchar(10)"),
    "bad_uuid": (
        "id int PRIMARY KEY, ref char(36)",
        ["(1, '0b4e9f3a-1d2c-4e5f-8a9b-0c1d2e3f4a5b')", "(2, 'not-a-uuid')"],
        "id integer PRIMARY KEY, ref uuid",
    ),
    "empty_uuid": ("id int PRIMARY KEY, ref char(36)", ["(7, '')"], "id integer PRIMARY KEY, ref uuid"),
    "bad_json": ("id int PRIMARY KEY, doc text", ["(1, '{}')", "(2, '{\"a\": }')"], "id integer PRIMARY KEY, doc json"),
    "nul_text": (
        "id int PRIMARY KEY, t text",
        ["(1, 'ok')", "(2, CONCAT('ab', CHAR(0), 'c'))"],
        "id integer PRIMARY KEY, t text",
    ),
    "zero_date": (
        "id int PRIMARY KEY, at datetime",
        ["(1, '2024-01-01 00:00:00')", "(2, '0000-00-00 00:00:00')"],
        "id integer PRIMARY KEY, at timestamp",
    ),
    "too_long": (
        "id int PRIMARY KEY, name varchar(80)",
        ["(1, 'short')", "(2, REPEAT('é', 80))"],
        "id integer PRIMARY KEY, name varchar(50)",
    ),
    "unsigned": (
        "id int PRIMARY KEY, n int unsigned",
        ["(1, 5)", "(2, 4294967295)"],
        "id integer PRIMARY KEY, n integer",
    ),
    "flag": ("id int PRIMARY KEY, f tinyint", ["(1, 1)", "(2, 2)"], "id integer PRIMARY KEY, f boolean"),
    "composite": (
        "tenant varchar(10), seq int, label varchar(20), PRIMARY KEY (tenant, seq)",
        ["('acme', 1, 'fine')", "('acme', 2, 'much too long label')"],
        "tenant varchar(10), seq integer, label varchar(5), PRIMARY KEY (tenant, seq)",
    ),
    "dup_key": (
        "id int PRIMARY KEY, email varchar(50)",
        ["(1, 'a@x.org')", "(2, 'b@x.org')", "(3, 'a@x.org')"],
        "id integer PRIMARY KEY, email varchar(50) UNIQUE",
    ),
    "no_rule": ("id int PRIMARY KEY, at datetime", ["(1, '2024-01-01 00:00:00')"], "id integer PRIMARY KEY, at uuid"),
    "null_into_not_null": (
        "id int PRIMARY KEY, v varchar(10)",
        ["(1, 'x')", "(2, NULL)"],
        "id integer PRIMARY KEY, v varchar(10) NOT NULL",
    ),
    "mood": ("id int PRIMARY KEY, m enum('happy', 'sad')", ["(1, 'happy')"], "id integer PRIMARY KEY, m mood_enum"),
    "seeded": ("id int PRIMARY KEY, v varchar(10)", ["(1, 'x')", "(2, 'y')"], "id integer PRIMARY KEY, v varchar(10)"),
    # refused by PostgreSQL itself, inside the load: a CHECK the source does not have
    "late_check": (
        "id int PRIMARY KEY, v varchar(10)",
        ["(1, 'x')", "(2, 'y')"],
        "id integer PRIMARY KEY, v varchar(10) CHECK (v <> 'y')",
    ),
    "orphan_parent": ("id int PRIMARY KEY", ["(1)", "(2)"], "id integer PRIMARY KEY"),
    # MySQL has no foreign key here; the target does
    "orphan_child": (
        "id int PRIMARY KEY, parent_id int",
        ["(1, 1)", "(2, 7)", "(3, NULL)"],
        "id integer PRIMARY KEY, parent_id integer REFERENCES orphan_parent (id)",
    ),
}
TARGET_ROW = {
    "bad_uuid": "(100, '0b4e9f3a-1d2c-4e5f-8a9b-0c1d2e3f4a5c')",
    "empty_uuid": "(100, '0b4e9f3a-1d2c-4e5f-8a9b-0c1d2e3f4a5c')",
    "bad_json": "(100, '{}')",
    "zero_date": "(100, '2000-01-01')",
    "unsigned": "(100, 1)",
    "flag": "(100, true)",
    "composite": "('zz', 100, 'x')",
    "no_rule": "(100, '0b4e9f3a-1d2c-4e5f-8a9b-0c1d2e3f4a5c')",
    "mood": "(100, 'happy')",
    "orphan_parent": "(100)",
    "orphan_child": "(100, 100)",
}
PG_PREAMBLE = "CREATE TYPE mood_enum AS ENUM ('happy');"
CONFIG = """
[databases.bad]
source_database = "bad"
target_database = "bad"
# the target rows are not ours: replacing them lets the load run to the bad value
replace_seeded = ["good", "late_check", "orphan_parent", "orphan_child", "bad_uuid", "too_long"]
"""


@pytest.fixture
def bad(
    mysql: MySQLResource, postgres: PostgresResource, unique_name: str, tmp_path: Path
) -> Iterator[tuple[Settings, str]]:
    database = f"{unique_name}_bad"
    mysql.create_database(database)
    postgres.create_database(database)
    try:
        postgres.execute_script(database, PG_PREAMBLE)
        for table, (my_ddl, rows, pg_ddl) in TABLES.items():
            mysql.execute_script(
                database,
                [
                    "SET SESSION sql_mode = ''",  # let MySQL keep what an old server let in: zero dates
                    f"CREATE TABLE `{table}` ({my_ddl})",
                    f"INSERT INTO `{table}` VALUES {', '.join(rows)}",
                ],
            )
            row = TARGET_ROW.get(table, "(100, 'target')")
            postgres.execute_script(database, f'CREATE TABLE "{table}" ({pg_ddl}); INSERT INTO "{table}" VALUES {row}')
        config = tmp_path / "migration.toml"
        config.write_text(CONFIG)
        settings = migration_settings({"bad": database}, str(tmp_path / "work"), config_path=config)
        yield settings, database
    finally:
        mysql.drop_database(database)
        postgres.drop_database(database)


def _refresh(settings: Settings, instance: dg.DagsterInstance) -> None:
    """Take the snapshot. Its blocking schema_contract check fails here (no_rule, mood and the
    NULLs are broken on purpose), which fails that run, but the snapshot is taken."""
    result = run_job(settings, instance, "refresh_catalog")
    (contract,) = result.get_asset_check_evaluations()
    assert not contract.passed and (settings.catalog_dir / "bad.json").exists()


def _unchanged(result) -> dict[str, dict[str, str]]:
    """The observations a failed run left on the tables it was to load: per asset, its metadata."""
    return {
        event.asset_key.to_user_string(): {k: v.value for k, v in observation.metadata.items()}
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_OBSERVATION
        for observation in [event.event_specific_data.asset_observation]
    }


def _move(settings: Settings, instance: dg.DagsterInstance, *tables: str, stages=("csv", "staged", "postgres")):
    return run_job(
        settings,
        instance,
        "migrate_bad",
        [stage_key("bad", stage, table).to_user_string() for table in tables for stage in stages],
    )


BAD_INPUT = [
    ("bad_uuid", ["bad.bad_uuid, row id=2", "column ref", "'not-a-uuid' (10 characters)", "not a canonical UUID"]),
    ("empty_uuid", ["bad.empty_uuid, row id=7", "column ref", "value '' (0 characters)", "not a canonical UUID"]),
    ("bad_json", ["bad.bad_json, row id=2", "column doc", "not valid JSON"]),
    ("nul_text", ["bad.nul_text, row id=2", "column t", "'ab\\x00c' (4 characters)", "contains NUL at character 3"]),
    ("zero_date", ["bad.zero_date, row id=2", "column at", "'0000-00-00 00:00:00'", "zero dates"]),
    ("too_long", ["bad.too_long, row id=2", "column name", "(80 characters)", "80 characters, the column allows 50"]),
    ("unsigned", ["bad.unsigned, row id=2", "column n", "4294967295 is outside the target integer's range"]),
    ("flag", ["bad.flag, row id=2", "column f", "2 is not 0 or 1"]),
    (
        "composite",
        ["bad.composite, row (tenant, seq)=('acme', 2)", "column label", "19 characters, the column allows 5"],
    ),
    # found on MySQL before any data moves
    ("dup_key", ["bad.dup_key", "the target is unique on (email), MySQL is not", "('a@x.org') 2 times"]),
    ("null_into_not_null", ["bad.null_into_not_null.v: 1 rows are NULL on MySQL", "id=2"]),
    ("no_rule", ["bad.no_rule.at: no cast rule from MySQL datetime to PostgreSQL uuid"]),
    ("mood", ["bad.mood.m", "'sad'"]),
    # found by PostgreSQL inside the load, after `good` was loaded in the same transaction
    (
        "seeded",
        ["bad.seeded: the target already holds rows that differ from the source", "Nothing of bad was committed"],
    ),
    (
        "late_check",
        # a CHECK names its constraint, not a column: PostgreSQL's message does
        ["bad.late_check, row id=2", 'violates check constraint "late_check_v_check"', "nothing of bad was committed"],
    ),
]


@pytest.mark.parametrize(("table", "expected"), BAD_INPUT, ids=[t for t, _ in BAD_INPUT])
def test_bad_input_stops_the_database_and_names_the_row(
    bad: tuple[Settings, str], instance: dg.DagsterInstance, postgres: PostgresResource, table: str, expected: list[str]
):
    settings, database = bad
    _refresh(settings, instance)
    before = target_state(postgres, database)
    result = _move(settings, instance, "good", table)
    assert not result.success
    message = failure_message(result)
    for part in expected:
        assert part in message, f"{part!r} not in {message}"
    assert target_state(postgres, database) == before
    # each table the run was to load says so on its own page: unchanged, and why
    unchanged = _unchanged(result)
    assert set(unchanged) == {"bad/postgres/good", f"bad/postgres/{table}"}
    for metadata in unchanged.values():
        assert metadata["target"].endswith("as before this run: nothing of bad was written")
        assert expected[0] in metadata["cause"]
        assert metadata["checks"] == "not run (Execution failed in the UI): the data was not judged"


def test_an_orphan_is_found_in_the_staged_files_before_anything_commits(bad, instance, postgres):
    settings, database = bad
    _refresh(settings, instance)
    before = target_state(postgres, database)
    result = _move(settings, instance, "good", "orphan_parent", "orphan_child")
    assert not result.success
    message = failure_message(result)
    assert "bad: rows whose foreign key names no parent row (nothing of the database was written)" in message
    assert "orphan_child.parent_id -> orphan_parent(id)" in message
    assert "row id=2: parent_id=7 names no parent row" in message and "id=1" not in message
    assert target_state(postgres, database) == before
    (manifest,) = (settings.workdir / "runs").glob(f"{result.run_id}/bad/{MANIFEST}")
    body = json.loads(manifest.read_text())
    assert body["outcome"] == "failed" and "OrphanRowsError" in body["error"]
    assert "loaded_rows" not in body["tables"]["good"], "its COPY rolled back with the transaction"
    # the run log has the failure, and the run's tag says it
    events = read_events(run_log_path(settings), result.run_id)
    assert [e.status for e in events] == ["started", "in_progress", "failed"]
    assert events[-1].database == "bad" and "OrphanRowsError" in events[-1].message
    assert "orphan_child.parent_id -> orphan_parent(id)" in events[-1].message
    assert instance.get_run_by_id(result.run_id).tags["alkemio/bad"] == "failed"
    # what the UI shows for the checks of the untouched `good`: planned when the run was launched,
    # never evaluated; Dagster resolves those of a failed run to "Execution failed"
    key = dg.AssetCheckKey(dg.AssetKey(["bad", "postgres", "good"]), "row_count")
    (record,) = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).values()
    assert (record.run_id, record.status.value) == (result.run_id, "PLANNED")
    assert "orphan_child.parent_id -> orphan_parent(id)" in _unchanged(result)["bad/postgres/good"]["cause"]


def test_a_table_alone_is_checked_against_the_parents_already_on_the_target(bad, instance, postgres):
    """Re-materializing one table: its parents are not in the run, so its foreign keys are proven
    against the target inside the load's transaction, which then does not commit."""
    settings, database = bad
    _refresh(settings, instance)
    before = target_state(postgres, database)
    result = _move(settings, instance, "orphan_child")
    assert not result.success
    message = failure_message(result)
    # the target's parent holds only its own row 100: rows 1 and 2 both name no parent
    assert "row id=1: parent_id=1 names no parent row; row id=2: parent_id=7" in message
    assert target_state(postgres, database) == before


def test_a_parent_reloaded_alone_may_not_orphan_the_children_on_the_target(bad, instance, postgres):
    settings, database = bad
    _refresh(settings, instance)
    before = target_state(postgres, database)
    result = _move(settings, instance, "orphan_parent")  # replaces row 100, which the target's child names
    assert not result.success
    assert "row id=100: parent_id=100 names no parent row" in failure_message(result)
    assert target_state(postgres, database) == before


def test_a_good_database_commits_whole(bad, instance, postgres, mysql):
    """The control: the same run without the bad table commits, and the data is MySQL's."""
    settings, database = bad
    mysql.execute_script(database, ["DELETE FROM orphan_child WHERE id = 2"])
    _refresh(settings, instance)
    result = _move(settings, instance, "good", "orphan_parent", "orphan_child")
    assert result.success and _unchanged(result) == {}, "committed: no table is said to be unchanged"
    with postgres.connect(database) as conn:
        assert conn.execute("SELECT * FROM good ORDER BY 1").fetchall() == [(1, "a"), (2, "b")]
        assert conn.execute("SELECT * FROM orphan_child ORDER BY 1").fetchall() == [(1, 1), (3, None)]
