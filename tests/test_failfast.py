"""Fail fast: the first bad value stops its table's load with database, table, row, column, the
value and the reason (PostgreSQL's own message where PostgreSQL found it), and the target
table is left exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from conftest import failure_message, migration_settings, run_job

from alkemio_assets.settings import Settings
from resources import MySQLResource, PostgresResource

pytestmark = pytest.mark.e2e

CONFIG = """
[databases.bad]
source_database = "bad"
target_database = "bad"
# the sentinel rows are not ours: allow replacing them where a test needs the load to run
replace_seeded = ["bad_uuid", "bad_json", "too_long", "dup_key", "null_into_not_null", "late_null"]
"""

# table -> (MySQL DDL, MySQL rows, PostgreSQL DDL)
TABLES = {
    "bad_uuid": (
        "id int PRIMARY KEY, ref char(36)",
        ["(1, '0b4e9f3a-1d2c-4e5f-8a9b-0c1d2e3f4a5b')", "(2, 'not-a-uuid')"],
        "id integer PRIMARY KEY, ref uuid",
    ),
    "bad_json": ("id int PRIMARY KEY, doc text", ["(1, '{}')", "(2, '{\"a\": }')"], "id integer PRIMARY KEY, doc json"),
    "too_long": (
        "id int PRIMARY KEY, name varchar(40)",
        ["(1, 'short')", "(2, 'ééééééééééé')"],
        "id integer PRIMARY KEY, name varchar(10)",
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
    "seeded": ("id int PRIMARY KEY, v varchar(10)", ["(1, 'x')", "(2, 'y')"], "id integer PRIMARY KEY, v varchar(10)"),
    "late_null": (
        "id int PRIMARY KEY, v varchar(10)",
        ["(1, 'x')", "(2, 'y')"],
        "id integer PRIMARY KEY, v varchar(10) NOT NULL",
    ),
}
SENTINEL = 100  # a row already in every target table, which a failed load must leave alone


@pytest.fixture
def bad(
    mysql: MySQLResource, postgres: PostgresResource, unique_name: str, tmp_path: Path
) -> Iterator[tuple[Settings, str]]:
    database = f"{unique_name}_bad"
    mysql.create_database(database)
    postgres.create_database(database)
    try:
        for table, (my_ddl, rows, pg_ddl) in TABLES.items():
            mysql.execute_script(
                database, [f"CREATE TABLE `{table}` ({my_ddl})", f"INSERT INTO `{table}` VALUES {', '.join(rows)}"]
            )
            postgres.execute_script(database, f'CREATE TABLE "{table}" ({pg_ddl})')
            value = (
                "'0b4e9f3a-1d2c-4e5f-8a9b-0c1d2e3f4a5c'"
                if "uuid" in pg_ddl.split(",")[1]
                else ("'{}'" if "json" in pg_ddl else "'sentinel'")
            )
            postgres.execute_script(database, f'INSERT INTO "{table}" VALUES ({SENTINEL}, {value})')
        config = tmp_path / "migration.toml"
        config.write_text(CONFIG)
        settings = migration_settings({"bad": database}, str(tmp_path / "work"), config_path=config)
        yield settings, database
    finally:
        mysql.drop_database(database)
        postgres.drop_database(database)


def _refresh(settings: Settings, instance: dg.DagsterInstance) -> None:
    """Take the snapshot. Its blocking schema_contract check fails here (no_rule and
    null_into_not_null are broken on purpose), which fails that run, but the snapshot is taken."""
    result = run_job(settings, instance, "refresh_catalog")
    (contract,) = result.get_asset_check_evaluations()
    assert not contract.passed and (settings.catalog_dir / "bad.json").exists()


def _target_rows(postgres: PostgresResource, database: str, table: str) -> list[tuple]:
    with postgres.connect(database) as conn:
        return conn.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()


def _move(settings: Settings, instance: dg.DagsterInstance, table: str, stages=("csv", "staged", "postgres")):
    return run_job(settings, instance, "migrate_bad", [f"bad/{stage}/{table}" for stage in stages])


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("bad_uuid", ["bad.bad_uuid", "CSV row 2", "column ref", "'not-a-uuid'", "not a canonical UUID"]),
        ("bad_json", ["bad.bad_json", "CSV row 2", "column doc", "'{\"a\": }'", "not valid JSON"]),
        ("too_long", ["bad.too_long", "CSV row 2", "column name", "'ééééééééééé'", "longer than 10 characters"]),
        # a unique key only the target has: found on MySQL before any data moves
        (
            "dup_key",
            [
                "bad.dup_key",
                "the target is unique on (email), MySQL is not",
                "('a@x.org') 2 times",
                "Remove the duplicates on MySQL",
            ],
        ),
    ],
)
def test_first_bad_value_stops_the_table_and_names_it(
    bad: tuple[Settings, str], instance: dg.DagsterInstance, postgres: PostgresResource, table: str, expected: list[str]
):
    settings, database = bad
    _refresh(settings, instance)
    before = _target_rows(postgres, database, table)
    result = _move(settings, instance, table)
    assert not result.success
    message = failure_message(result)
    for part in expected:
        assert part in message, f"{part!r} not in {message}"
    assert _target_rows(postgres, database, table) == before


def test_a_pair_without_cast_rule_stops_before_any_data_moves(bad, instance, postgres: PostgresResource):
    settings, database = bad
    _refresh(settings, instance)
    result = _move(settings, instance, "no_rule")
    assert not result.success
    message = failure_message(result)
    assert "bad.no_rule.at: no cast rule from MySQL datetime to PostgreSQL uuid" in message
    assert not list((settings.workdir / "runs").glob(f"{result.run_id}/bad/csv/*.csv")), "nothing was exported"
    assert len(_target_rows(postgres, database, "no_rule")) == 1


def test_nulls_into_not_null_stop_before_any_data_moves(bad, instance, postgres: PostgresResource):
    settings, database = bad
    _refresh(settings, instance)
    before = _target_rows(postgres, database, "null_into_not_null")
    result = _move(settings, instance, "null_into_not_null")
    assert not result.success
    assert "bad.null_into_not_null.v: 1 rows are NULL on MySQL but the target column is NOT NULL" in failure_message(
        result
    )
    assert _target_rows(postgres, database, "null_into_not_null") == before


def test_null_reaching_the_load_is_refused_by_postgres_and_named(bad, instance, postgres: PostgresResource):
    """A NULL that gets past staging (here: written into the staged file by hand) is stopped by
    PostgreSQL inside the load's transaction; the message carries PostgreSQL's own words."""
    settings, database = bad
    _refresh(settings, instance)
    assert _move(settings, instance, "late_null", ("csv", "staged")).success
    (staged,) = (settings.workdir / "runs").glob("*/bad/staged/late_null.csv")
    staged.write_text(staged.read_text().replace('"y"', ""))
    before = _target_rows(postgres, database, "late_null")
    result = _move(settings, instance, "late_null", ("postgres",))
    assert not result.success
    message = failure_message(result)
    for part in [
        "bad.late_null",
        "CSV row 2",
        "column v",
        'null value in column "v"',
        "nothing of the table was written",
    ]:
        assert part in message, f"{part!r} not in {message}"
    assert _target_rows(postgres, database, "late_null") == before


def test_rows_the_target_already_had_are_not_silently_replaced(bad, instance, postgres: PostgresResource):
    """Like Kratos's pre-seeded identity_credential_types, but differing: an error naming the
    keys, unless migration.toml lists the table under replace_seeded."""
    settings, database = bad
    _refresh(settings, instance)
    result = _move(settings, instance, "seeded")
    assert not result.success
    message = failure_message(result)
    assert "bad.seeded: the target already holds rows that differ from the source (keys [" in message
    for key in ("'1'", "'2'", "'100'"):  # both sides' rows, named by key
        assert key in message.split("(keys ")[1].split("]")[0]
    assert _target_rows(postgres, database, "seeded") == [(SENTINEL, "sentinel")]
