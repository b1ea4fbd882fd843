"""The content fingerprint, rule by rule: for every cast rule, NULL, '', 0, the type's minimum
and maximum and its edge values, stored on MySQL and loaded on PostgreSQL as the rule loads
them, get the same canonical form on both servers. Driven by the cast table itself: a rule
added later has no case here and fails `test_every_rule_has_its_cases` the day it is added."""

from __future__ import annotations

import pytest

from alkemio_assets.catalog.contract import plan_table
from alkemio_assets.catalog.source import read_mysql_catalog
from alkemio_assets.catalog.target import read_pg_catalog
from alkemio_assets.core.casts import CAST_RULES, DECIMAL_TEXT, OVERRIDES
from alkemio_assets.core.settings import Override
from checks.fingerprint import (
    BUCKETS,
    in_sql,
    mysql_row_digests,
    postgres_row_digests,
    source_rows,
    target_rows,
)
from resources import MySQLResource, PostgresResource

pytestmark = pytest.mark.e2e

# name -> (MySQL type, PostgreSQL type, override or None, [(MySQL literal, PostgreSQL literal)])
NULL = ("NULL", "NULL")
CASES: dict[str, tuple[str, str, str | None, list[tuple[str, str]]]] = {
    "flag": ("tinyint(1)", "boolean", None, [NULL, ("0", "false"), ("1", "true")]),
    "integer": (
        "bigint",
        "bigint",
        None,
        [NULL, ("0", "0"), ("-9223372036854775808", "-9223372036854775808"), ("9223372036854775807", "9223372036854775807")],
    ),
    "integer_numeric": (
        "bigint unsigned",
        "numeric(20,0)",
        None,
        [NULL, ("0", "0"), ("18446744073709551615", "18446744073709551615")],
    ),
    "year": ("year", "smallint", None, [NULL, ("1901", "1901"), ("2155", "2155")]),
    "decimal": (
        "decimal(10,3)",
        "numeric(10,3)",
        None,
        [NULL, ("0", "0"), ("-9999999.999", "-9999999.999"), ("9999999.999", "9999999.999"), ("0.001", "0.001"), ("1.100", "1.1")],
    ),
    "decimal_text": (
        "decimal(65,30)",
        "numeric(65,30)",
        None,
        [NULL, ("0", "0"), ("-" + "9" * 35 + "." + "9" * 30, "-" + "9" * 35 + "." + "9" * 30), ("0." + "0" * 29 + "1", "0." + "0" * 29 + "1")],
    ),
    "float": (
        "double",
        "double precision",
        None,
        [NULL, ("0", "0"), ("1.7976931348623157e308", "1.7976931348623157e308"), ("-2.2250738585072014e-308", "-2.2250738585072014e-308"), ("0.1", "0.1")],
    ),
    "timestamp": (
        "datetime(6)",
        "timestamp(6) without time zone",
        None,
        [NULL, ("'0001-01-01 00:00:00'", "'0001-01-01 00:00:00'"), ("'9999-12-31 23:59:59.999999'", "'9999-12-31 23:59:59.999999'"), ("'1970-01-01 00:00:00.000001'", "'1970-01-01 00:00:00.000001'")],
    ),
    "timestamptz": (
        "timestamp(6) NULL",
        "timestamp(6) with time zone",
        None,
        [NULL, ("'1970-01-01 00:00:01'", "'1970-01-01 00:00:01+00'"), ("'2038-01-19 03:14:07.999999'", "'2038-01-19 03:14:07.999999+00'")],
    ),
    "date": ("date", "date", None, [NULL, ("'0001-01-01'", "'0001-01-01'"), ("'9999-12-31'", "'9999-12-31'")]),
    "time": ("time(6)", "time(6) without time zone", None, [NULL, ("'00:00:00'", "'00:00:00'"), ("'23:59:59.999999'", "'23:59:59.999999'")]),
    "text": (
        "varchar(8)",
        "character varying(8)",
        None,
        [NULL, ("''", "''"), ("'0'", "'0'"), ("'éééééééé'", "'éééééééé'"), ("'🚀\\n\\r\\t'", "E'🚀\\n\\r\\t'"), ("' pad '", "' pad '"), ("'\\\\N'", "'\\N'")],
    ),
    "uuid": (
        "char(36)",
        "uuid",
        None,
        [NULL, ("'00000000-0000-0000-0000-000000000000'", "'00000000-0000-0000-0000-000000000000'"), ("'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'")],
    ),
    "json": ("json", "json", None, [NULL, ("'{}'", "'{}'"), ("'[]'", "'[]'"), ("'null'", "'null'"), ("'0'", "'0'"), ("'{\"a\": [\"\"], \"b\": 1.0}'", "'{\"a\": [\"\"], \"b\": 1.0}'")]),  # MySQL 8's own form
    "jsonb": ("json", "jsonb", None, [NULL, ("'{}'", "'{}'"), ("'\"\"'", "'\"\"'"), ("'{\"b\": 1.0, \"a\": 1e2}'", "'{\"a\": 100, \"b\": 1.0}'")]),
    "enum": ("enum('', 'a', 'z')", "fp_enum", None, [NULL, ("''", "''"), ("'a'", "'a'"), ("'z'", "'z'")]),
    "bytea": ("blob", "bytea", None, [NULL, ("''", "''"), ("0x00", "'\\x00'"), ("0xff00", "'\\xff00'")]),
    "base64": ("longtext CHARACTER SET latin1", "text", "base64", [NULL, ("''", "''"), ("0x00ff41", "'AP9B'")]),
    "latin1_base64": ("longtext", "text", "latin1_base64", [NULL, ("''", "''"), ("_utf8mb4 0x00c3bf41", "'AP9B'")]),
}
# CAST_RULES keys by rule name; the text rule serves bounded and unbounded targets alike.
RULES = {r.name for r in CAST_RULES.values()} | {DECIMAL_TEXT.name} | set(OVERRIDES)


def test_every_rule_has_its_cases():
    assert set(CASES) == RULES


@pytest.mark.parametrize("rule", sorted(CASES))
def test_both_servers_write_the_same_canonical_rows(
    rule: str, mysql: MySQLResource, postgres: PostgresResource, unique_name: str
):
    mysql_type, pg_type, override, rows = CASES[rule]
    database = f"{unique_name}_fp"
    mysql.create_database(database)
    postgres.create_database(database)
    try:
        mysql.execute_script(database, [f"CREATE TABLE t (k int PRIMARY KEY, v {mysql_type})"])
        with mysql.connect(database) as conn, conn.cursor() as cur:
            for k, (literal, _) in enumerate(rows):
                cur.execute(f"INSERT INTO t VALUES ({k}, {literal})")
        with postgres.connect(database) as conn:
            conn.execute("CREATE TYPE fp_enum AS ENUM ('', 'a', 'z')")
            conn.execute(f"CREATE TABLE t (k integer PRIMARY KEY, v {pg_type})")
            for k, (_, literal) in enumerate(rows):
                conn.execute(f"INSERT INTO t VALUES ({k}, {literal})")
        with mysql.connect() as conn:
            source = read_mysql_catalog(conn, database).table("t")
        with postgres.connect(database) as conn:
            target = read_pg_catalog(conn, database).table("t")
        problems: list[str] = []
        overrides = {} if override is None else {"t.v": Override(override, "test")}
        plan = plan_table("fp", source, target, overrides, problems)
        assert problems == [] and plan is not None
        assert plan.columns[1].rule.name == rule
        if in_sql(plan):
            every = set(range(BUCKETS))
            left = mysql_row_digests(mysql, database, plan, every)
            right = postgres_row_digests(postgres, database, plan, every)
        else:
            left, right = dict(source_rows(mysql, database, plan)), dict(target_rows(postgres, database, plan))
        assert len(left) == len(rows)
        assert left == right
    finally:
        mysql.drop_database(database)
        postgres.drop_database(database)
