"""What must succeed exactly, in one database moved by one run: hostile identifiers, years 0001
to 9999 to the microsecond, TIMESTAMP values written under other session zones, a self
reference and a two-table cycle, a generated column, a 16 MB value, JSON into jsonb."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from conftest import failed_error_checks, failure_message, migration_settings, run_job

from alkemio_assets.core.settings import Settings
from resources import MySQLResource, PostgresResource

pytestmark = pytest.mark.e2e

HOSTILE_TABLE = 'we"ird `table` é'
BIG = 16_000_000  # bytes of one value (16 MB), under MySQL's default max_allowed_packet of 16 MiB

MYSQL = [
    f"""CREATE TABLE `{HOSTILE_TABLE.replace("`", "``")}` (
        `select` int PRIMARY KEY, `a "quoted" col` varchar(20), `ünïcode` text, `order` int)""",
    f"""INSERT INTO `{HOSTILE_TABLE.replace("`", "``")}` VALUES (1, 'x"y', 'ü', 2), (2, '', NULL, NULL)""",
    "CREATE TABLE years (id int PRIMARY KEY, at datetime(6) NOT NULL, d date NOT NULL)",
    "INSERT INTO years VALUES (1, '0001-01-01 00:00:00.000000', '0001-01-01'), "
    "(2, '9999-12-31 23:59:59.999999', '9999-12-31'), (3, '1970-01-01 00:00:00.000001', '2000-02-29')",
    "CREATE TABLE zoned (id int PRIMARY KEY, at timestamp(6) NULL)",
    "SET time_zone = '+05:30'",
    "INSERT INTO zoned VALUES (1, '2024-03-31 02:30:00.123456')",
    "SET time_zone = '-08:00'",
    "INSERT INTO zoned VALUES (2, '2024-03-31 02:30:00.123456')",
    "CREATE TABLE node (id int PRIMARY KEY, parent_id int NULL, FOREIGN KEY (parent_id) REFERENCES node (id))",
    "INSERT INTO node VALUES (1, NULL), (2, 1), (3, 2)",
    "CREATE TABLE egg (id int PRIMARY KEY, hen_id int NULL)",
    "CREATE TABLE hen (id int PRIMARY KEY, egg_id int NULL, FOREIGN KEY (egg_id) REFERENCES egg (id))",
    "ALTER TABLE egg ADD FOREIGN KEY (hen_id) REFERENCES hen (id)",
    "INSERT INTO egg VALUES (1, NULL)",
    "INSERT INTO hen VALUES (1, 1)",
    "UPDATE egg SET hen_id = 1",
    "CREATE TABLE priced (id int PRIMARY KEY, net int NOT NULL, gross int AS (net * 2) STORED)",
    "INSERT INTO priced (id, net) VALUES (1, 21)",
    "CREATE TABLE doc (id int PRIMARY KEY, body longtext NOT NULL, data json NULL)",
    f'INSERT INTO doc VALUES (1, REPEAT(\'ab"c,\\n\', {BIG // 6}), \'{{"k": [1, 2.5, "ü", null, {{"n": true}}]}}\')',
]
POSTGRES = f"""
CREATE TABLE "{HOSTILE_TABLE.replace('"', '""')}" (
    "select" integer PRIMARY KEY, "a ""quoted"" col" varchar(20), "ünïcode" text, "order" integer);
CREATE TABLE years (id integer PRIMARY KEY, at timestamp(6) NOT NULL, d date NOT NULL);
CREATE TABLE zoned (id integer PRIMARY KEY, at timestamptz(6));
CREATE TABLE node (id integer PRIMARY KEY, parent_id integer REFERENCES node (id));
CREATE TABLE egg (id integer PRIMARY KEY, hen_id integer);
CREATE TABLE hen (id integer PRIMARY KEY, egg_id integer REFERENCES egg (id));
ALTER TABLE egg ADD FOREIGN KEY (hen_id) REFERENCES hen (id);
CREATE TABLE priced (id integer PRIMARY KEY, net integer NOT NULL, gross integer GENERATED ALWAYS AS (net * 2) STORED);
CREATE TABLE doc (id integer PRIMARY KEY, body text NOT NULL, data jsonb);
"""
CONFIG = """
[databases.hard]
source_database = "hard"
target_database = "hard"
"""


@pytest.fixture
def hard(
    mysql: MySQLResource, postgres: PostgresResource, unique_name: str, tmp_path: Path
) -> Iterator[tuple[Settings, str]]:
    database = f"{unique_name}_hard"
    mysql.create_database(database)
    postgres.create_database(database)
    try:
        mysql.execute_script(database, MYSQL)
        postgres.execute_script(database, POSTGRES)
        config = tmp_path / "migration.toml"
        config.write_text(CONFIG)
        yield migration_settings({"hard": database}, str(tmp_path / "work"), config_path=config), database
    finally:
        mysql.drop_database(database)
        postgres.drop_database(database)


def test_the_hard_cases_arrive_exactly(hard, instance: dg.DagsterInstance, postgres: PostgresResource):
    settings, database = hard
    assert run_job(settings, instance, "refresh_catalog").success
    result = run_job(settings, instance, "migrate_hard")
    assert result.success, failure_message(result)
    assert failed_error_checks(result) == []
    with postgres.connect(database) as conn:

        def rows(query: str) -> list[tuple]:
            return conn.execute(query).fetchall()  # type: ignore[arg-type]

        ident = '"' + HOSTILE_TABLE.replace('"', '""') + '"'
        assert rows(f'SELECT * FROM {ident} ORDER BY "select"') == [(1, 'x"y', "ü", 2), (2, "", None, None)]
        assert rows("SELECT at::text, d::text FROM years ORDER BY id") == [
            ("0001-01-01 00:00:00", "0001-01-01"),
            ("9999-12-31 23:59:59.999999", "9999-12-31"),
            ("1970-01-01 00:00:00.000001", "2000-02-29"),
        ]
        # the same wall-clock text written under +05:30 and -08:00: two instants 13.5 hours apart
        assert rows("SELECT at FROM zoned ORDER BY id") == [
            (datetime(2024, 3, 30, 21, 0, 0, 123456, tzinfo=UTC),),
            (datetime(2024, 3, 31, 10, 30, 0, 123456, tzinfo=UTC),),
        ]
        assert rows("SELECT * FROM node ORDER BY id") == [(1, None), (2, 1), (3, 2)]
        assert rows("SELECT * FROM egg") == [(1, 1)] and rows("SELECT * FROM hen") == [(1, 1)]
        assert rows("SELECT * FROM priced") == [(1, 21, 42)]
        ((length, octets, head, data),) = rows("SELECT length(body), octet_length(body), left(body, 6), data FROM doc")
        assert (length, octets, head) == (BIG // 6 * 6, BIG // 6 * 6, 'ab"c,\n')
        assert data == json.loads('{"k": [1, 2.5, "ü", null, {"n": true}]}')
