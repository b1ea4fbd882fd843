"""The data generator: every constraint holds, every hard case is there, the same seed gives
the same bytes, and the proportions are those of a real installation."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from alkemio_assets.catalog import Catalog, ColumnSpec, TableSpec, read_mysql_catalog
from alkemio_assets.sql import mysql_ident as q
from fixtures import FIXTURE_DATABASES, HANDWRITTEN, apply_source_schema, values
from fixtures.generator import (
    BINARY_TYPES,
    TEXT_TYPES,
    GeneratorError,
    TableReport,
    generate,
    make_plan,
)
from resources import MySQLResource

Generated = tuple[dict[str, str], list[TableReport]]


def _catalogs(mysql: MySQLResource, databases: dict[str, str]) -> dict[str, Catalog]:
    with mysql.connect() as conn:
        return {name: read_mysql_catalog(conn, db) for name, db in databases.items()}


def _scalar(mysql: MySQLResource, database: str, statement: str, params: tuple[Any, ...] = ()) -> Any:
    with mysql.connect(database) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        row = cur.fetchone()
        return None if row is None else next(iter(row.values()))


def _columns(catalogs: dict[str, Catalog]) -> Iterator[tuple[str, TableSpec, ColumnSpec]]:
    for name, catalog in catalogs.items():
        for table in catalog.tables:
            for column in table.columns:
                yield name, table, column


# -- constraints ------------------------------------------------------------------------------


def test_every_foreign_key_resolves(mysql: MySQLResource, generated_source: Generated):
    databases, _ = generated_source
    for name, catalog in _catalogs(mysql, databases).items():
        for table in catalog.tables:
            for fk in table.foreign_keys:
                (col,), (ref,) = fk.columns, fk.ref_columns
                orphans = _scalar(
                    mysql,
                    databases[name],
                    f"SELECT COUNT(*) FROM {q(table.name)} c LEFT JOIN {q(fk.ref_table)} p ON c.{q(col)} = p.{q(ref)} "
                    f"WHERE c.{q(col)} IS NOT NULL AND p.{q(ref)} IS NULL",
                )
                assert orphans == 0, f"{name}.{table.name}.{col} -> {fk.ref_table}: {orphans} orphans"


def test_one_to_one_references_have_distinct_parents_and_are_used(mysql: MySQLResource, generated_source: Generated):
    databases, _ = generated_source
    catalog = _catalogs(mysql, databases)["alkemio"]
    checked = 0
    for table in catalog.tables:
        for fk in table.foreign_keys:
            if fk.columns in table.unique_keys and fk.ref_table != table.name:
                col = q(fk.columns[0])
                total, distinct = (
                    _scalar(mysql, databases["alkemio"], f"SELECT COUNT({col}) FROM {q(table.name)}"),
                    _scalar(mysql, databases["alkemio"], f"SELECT COUNT(DISTINCT {col}) FROM {q(table.name)}"),
                )
                assert total == distinct, f"{table.name}.{fk.columns[0]}"
                checked += 1
    # every entity owns exactly one authorization policy: no policy is shared between tables
    owners = " UNION ALL ".join(
        f"SELECT authorizationId FROM {q(t.name)} WHERE authorizationId IS NOT NULL"
        for t in catalog.tables
        if any(c.name == "authorizationId" for c in t.columns)
    )
    shared = _scalar(
        mysql,
        databases["alkemio"],
        f"SELECT COUNT(*) FROM (SELECT authorizationId FROM ({owners}) o "
        "GROUP BY authorizationId HAVING COUNT(*) > 1) s",
    )
    assert checked > 40 and shared == 0


def test_cycle_and_self_references_are_filled(mysql: MySQLResource, generated_source: Generated):
    databases, _ = generated_source
    db = databases["alkemio"]
    assert _scalar(mysql, db, "SELECT COUNT(*) FROM storage_aggregator WHERE directStorageId IS NULL") == 0
    assert _scalar(mysql, db, "SELECT COUNT(*) FROM storage_bucket WHERE storageAggregatorId IS NULL") == 0
    assert (
        _scalar(mysql, db, "SELECT COUNT(*) FROM authorization_policy WHERE parentAuthorizationPolicyId IS NOT NULL")
        > 0
    )
    assert _scalar(mysql, db, "SELECT COUNT(*) FROM space WHERE parentSpaceId IS NOT NULL") > 0


def test_json_columns_hold_valid_json_and_not_null_has_no_null(mysql: MySQLResource, generated_source: Generated):
    databases, _ = generated_source
    for name, table, column in _columns(_catalogs(mysql, databases)):
        db, t, c = databases[name], q(table.name), q(column.name)
        if column.is_json:
            assert _scalar(mysql, db, f"SELECT COUNT(*) FROM {t} WHERE {c} IS NOT NULL AND NOT JSON_VALID({c})") == 0
        if not column.nullable:
            assert _scalar(mysql, db, f"SELECT COUNT(*) FROM {t} WHERE {c} IS NULL") == 0, f"{table.name}.{column.name}"


def test_across_the_two_databases(mysql: MySQLResource, generated_source: Generated):
    databases, _ = generated_source
    alk, kra = q(databases["alkemio"]), q(databases["kratos"])
    assert _scalar(mysql, databases["kratos"], "SELECT COUNT(*) FROM networks") == 1
    unknown_auth = _scalar(
        mysql,
        databases["alkemio"],
        f"SELECT COUNT(*) FROM {alk}.`user` u LEFT JOIN {kra}.identities i ON u.authId = i.id "
        "WHERE u.authId IS NOT NULL AND i.id IS NULL",
    )
    assert unknown_auth == 0
    assert _scalar(mysql, databases["alkemio"], "SELECT COUNT(authId) FROM `user`") > 0
    for table in _catalogs(mysql, {"kratos": databases["kratos"]})["kratos"].tables:
        if any(c.name == "nid" for c in table.columns):
            foreign = _scalar(
                mysql,
                databases["kratos"],
                f"SELECT COUNT(*) FROM {q(table.name)} WHERE nid IS NULL OR nid <> (SELECT id FROM networks)",
            )
            assert foreign == 0, table.name


def test_row_counts_are_the_plan(mysql: MySQLResource, generated_source: Generated):
    databases, reports = generated_source
    for report in reports:
        assert _scalar(mysql, databases[report.database], f"SELECT COUNT(*) FROM {q(report.table)}") == report.rows


# -- hard cases -------------------------------------------------------------------------------


def _is_text(c: ColumnSpec) -> bool:
    return (c.data_type in TEXT_TYPES or c.data_type == "varchar") and c.charset == "utf8mb4" and not c.is_json


def _is_bytes(c: ColumnSpec) -> bool:
    return c.data_type in BINARY_TYPES or (c.data_type in TEXT_TYPES and c.charset == "latin1")


def _found(mysql: MySQLResource, databases: dict[str, str], catalogs, accepts, value: Any) -> bool:
    """Is `value` stored, byte for byte, in some column that `accepts`?"""
    for name, table, column in _columns(catalogs):
        if not accepts(column):
            continue
        t, c = q(table.name), q(column.name)
        if isinstance(value, str | bytes):
            data = value.encode() if isinstance(value, str) else value
            statement = f"SELECT 1 FROM {t} WHERE CAST({c} AS BINARY) = %s LIMIT 1"
        else:
            statement, data = f"SELECT 1 FROM {t} WHERE {c} = %s LIMIT 1", value
        if _scalar(mysql, databases[name], statement, (data,)) is not None:
            return True
    return False


HARD_CASES: list[tuple[str, Any, Any]] = (
    [(name, _is_text, v) for name, v in values.HARD_TEXT]
    + [(name, _is_bytes, v) for name, v in values.HARD_BYTES]
    + [(name, lambda c: c.is_json, v) for name, v in values.HARD_JSON]
    + [
        (name, lambda c: c.data_type == "datetime" and c.datetime_precision == 6, values.format_datetime(v, 6))
        for name, v in values.HARD_DATETIME
    ]
    + [
        (name, lambda c: c.data_type == "timestamp", values.format_datetime(values.truncate_fraction(v, 0), 0))
        for name, v in values.HARD_TIMESTAMP
    ]
    + [
        (
            "one_mb_text",
            lambda c: c.data_type in ("mediumtext", "longtext") and _is_text(c),
            values.at_limit_text("longtext", None),
        ),
        ("text_at_64k_limit", lambda c: c.data_type == "text" and _is_text(c), values.at_limit_text("text", None)),
        ("varchar_at_limit_multibyte", lambda c: c.column_type == "varchar(128)", "é" * 128),
        ("one_mb_binary", lambda c: c.data_type == "mediumblob", values.megabyte_bytes()),
        ("int_max", lambda c: c.data_type == "int" and not c.unsigned, 2**31 - 1),
        ("int_min", lambda c: c.data_type == "int" and not c.unsigned, -(2**31)),
        ("int_unsigned_max", lambda c: c.data_type == "int" and c.unsigned, 2**32 - 1),
        ("bigint_max", lambda c: c.data_type == "bigint", 2**63 - 1),
        ("bigint_min", lambda c: c.data_type == "bigint", -(2**63)),
        ("decimal_max", lambda c: c.data_type == "decimal", Decimal("99.9")),
        ("double_max", lambda c: c.data_type == "double", 1.7976931348623157e308),
        ("double_tenth", lambda c: c.data_type == "double", 0.1),
    ]
)


@pytest.fixture
def generated_catalogs(mysql: MySQLResource, generated_source: Generated) -> tuple[dict[str, str], dict[str, Catalog]]:
    databases, _ = generated_source
    return databases, _catalogs(mysql, databases)


def test_every_hard_case_is_present(mysql: MySQLResource, generated_catalogs):
    databases, catalogs = generated_catalogs
    missing = [name for name, accepts, value in HARD_CASES if not _found(mysql, databases, catalogs, accepts, value)]
    assert missing == []


def test_null_and_empty_string_both_occur_in_one_column(mysql: MySQLResource, generated_catalogs):
    databases, _ = generated_catalogs
    db = databases["alkemio"]
    assert _scalar(mysql, db, "SELECT COUNT(*) FROM profile WHERE description IS NULL") > 0
    assert _scalar(mysql, db, "SELECT COUNT(*) FROM profile WHERE description = ''") > 0


def test_whiteboard_bytes_are_not_utf8(mysql: MySQLResource, generated_catalogs):
    databases, _ = generated_catalogs
    with mysql.connect(databases["alkemio"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT CAST(content AS BINARY) AS b FROM whiteboard")
        contents = [r["b"] for r in cur.fetchall()]

    def utf8(b: bytes) -> bool:
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    assert sum(not utf8(b) for b in contents) > len(contents) // 2


def test_every_enum_label_occurs(mysql: MySQLResource, generated_catalogs):
    databases, catalogs = generated_catalogs
    for name, table, column in _columns(catalogs):
        if column.data_type == "enum":
            stored = _scalar(mysql, databases[name], f"SELECT COUNT(DISTINCT {q(column.name)}) FROM {q(table.name)}")
            assert stored == len(column.enum_labels), f"{table.name}.{column.name}"


# -- determinism, proportions, errors -----------------------------------------------------------


def test_same_seed_same_bytes(mysql: MySQLResource, generated_source: Generated, unique_name: str):
    databases, _ = generated_source
    again = {name: f"{unique_name}_again_{name}" for name in FIXTURE_DATABASES}
    try:
        for name, db in again.items():
            mysql.create_database(db)
            apply_source_schema(mysql, name, db, HANDWRITTEN)
        generate(mysql, again, 0.001)
        for name, catalog in _catalogs(mysql, databases).items():
            for table in catalog.tables:
                with mysql.connect(databases[name]) as conn, conn.cursor() as cur:
                    cur.execute(f"CHECKSUM TABLE {q(table.name)} EXTENDED")
                    first = cur.fetchone()["Checksum"]
                with mysql.connect(again[name]) as conn, conn.cursor() as cur:
                    cur.execute(f"CHECKSUM TABLE {q(table.name)} EXTENDED")
                    second = cur.fetchone()["Checksum"]
                assert first == second, f"{name}.{table.name}"
    finally:
        for db in again.values():
            mysql.drop_database(db)


def test_proportions_of_a_real_installation(mysql: MySQLResource, source_databases: dict[str, str]):
    plan = make_plan(_catalogs(mysql, source_databases), 1, {})
    by_rows = [key[1] for key, t in sorted(plan.tables.items(), key=lambda kv: -kv[1].rows)]
    assert by_rows[:2] == ["authorization_policy", "activity_log"]
    assert {"tagset", "profile"} <= set(by_rows[:6])
    assert plan.tables[("kratos", "networks")].rows == 1
    assert plan.tables[("alkemio", "platform")].rows == 1


def test_a_value_the_schema_cannot_hold_is_an_error_naming_the_column(mysql: MySQLResource, unique_name: str):
    db = f"{unique_name}_tiny"
    mysql.create_database(db)
    try:
        mysql.execute_script(db, ["CREATE TABLE tiny (id char(36) PRIMARY KEY, email varchar(8) NOT NULL UNIQUE)"])
        with pytest.raises(GeneratorError, match=r"tiny\.email: unique value .* is longer than varchar\(8\)"):
            generate(mysql, {"alkemio": db}, 0.001)
    finally:
        mysql.drop_database(db)


@pytest.mark.slow
def test_scale_tenth_keeps_the_largest_tables(mysql: MySQLResource, source_databases: dict[str, str]):
    generate(mysql, source_databases, 0.1)
    with mysql.connect(source_databases["alkemio"]) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        for row in cur.fetchall():
            cur.execute(f"ANALYZE TABLE {q(next(iter(row.values())))}")
            cur.fetchall()
        cur.execute(
            "SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "ORDER BY DATA_LENGTH + INDEX_LENGTH DESC LIMIT 4",
            (source_databases["alkemio"],),
        )
        largest = {r["t"] for r in cur.fetchall()}
    assert largest == {"authorization_policy", "activity_log", "tagset", "profile"}
