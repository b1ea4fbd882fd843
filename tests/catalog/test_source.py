"""Reflection of the MySQL source: pure functions over information_schema rows, and the fixture."""

from __future__ import annotations

import pytest

from alkemio_assets.catalog.source import (
    Catalog,
    foreign_keys_from_rows,
    indexes_from_rows,
    json_columns_from_checks,
    read_mysql_catalog,
)
from resources import MySQLResource


def test_mariadb_json_columns_are_recovered_from_their_check():
    checks = [("user", "json_valid(`settings`)"), ("odd", "json_valid(`we``ird`)"), ("t", "`a` > 0")]
    assert json_columns_from_checks(checks) == {("user", "settings"), ("odd", "we`ird")}


def test_indexes_are_grouped_in_column_order():
    rows = [
        {"TABLE_NAME": "t", "INDEX_NAME": "IDX_ab", "NON_UNIQUE": 1, "SEQ_IN_INDEX": 2, "COLUMN_NAME": "b"},
        {"TABLE_NAME": "t", "INDEX_NAME": "IDX_ab", "NON_UNIQUE": 1, "SEQ_IN_INDEX": 1, "COLUMN_NAME": "a"},
        {"TABLE_NAME": "t", "INDEX_NAME": "PRIMARY", "NON_UNIQUE": 0, "SEQ_IN_INDEX": 1, "COLUMN_NAME": "id"},
    ]
    primary, ab = indexes_from_rows(rows)["t"]
    assert (primary.primary, primary.unique, primary.columns) == (True, True, ("id",))
    assert (ab.primary, ab.unique, ab.columns) == (False, False, ("a", "b"))


def test_foreign_keys_keep_their_delete_rule():
    rows = [
        {
            "TABLE_NAME": "c",
            "CONSTRAINT_NAME": "FK_c_p",
            "COLUMN_NAME": "pId",
            "ORDINAL_POSITION": 1,
            "REFERENCED_TABLE_NAME": "p",
            "REFERENCED_COLUMN_NAME": "id",
            "DELETE_RULE": "CASCADE",
        }
    ]
    (fk,) = foreign_keys_from_rows(rows)["c"]
    assert (fk.columns, fk.ref_table, fk.ref_columns, fk.on_delete) == (("pId",), "p", ("id",), "CASCADE")


@pytest.fixture
def alkemio_catalog(mysql: MySQLResource, source_databases: dict[str, str]) -> Catalog:
    with mysql.connect() as conn:
        return read_mysql_catalog(conn, source_databases["alkemio"])


def test_fixture_catalog_has_the_application_conventions(alkemio_catalog: Catalog):
    names = {t.name for t in alkemio_catalog.tables}
    assert {"user", "space", "authorization_policy", "activity_log", "migrations_typeorm"} <= names
    user = alkemio_catalog.table("user")
    assert user.primary_key == ("id",)
    assert user.column("id").column_type == "char(36)"
    assert user.column("rowId").auto_increment
    assert user.column("settings").is_json
    assert user.column("serviceProfile").data_type == "tinyint"
    assert user.column("createdDate").datetime_precision == 6
    assert ("profileId",) in user.unique_keys
    assert alkemio_catalog.table("space").column("visibility").enum_labels == (
        "active",
        "archived",
        "demo",
        "inactive",
    )
    assert alkemio_catalog.table("whiteboard").column("content").charset == "latin1"
    parent = alkemio_catalog.table("authorization_policy").foreign_keys[0]
    assert parent.ref_table == "authorization_policy"


def test_snapshot_round_trips(alkemio_catalog: Catalog):
    assert Catalog.from_json(alkemio_catalog.to_json()) == alkemio_catalog


def test_missing_database_is_named(mysql: MySQLResource, unique_name: str):
    with mysql.connect() as conn, pytest.raises(LookupError, match=unique_name):
        read_mysql_catalog(conn, unique_name)
