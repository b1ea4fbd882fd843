"""The fixture's two schemas: the MySQL source and the PostgreSQL baseline mirror each other
the way the applications' own migrations make them, with the type differences that matter."""

from __future__ import annotations

import pytest

from alkemio_assets.catalog import read_mysql_catalog
from resources import MySQLResource, PostgresResource

pytestmark = pytest.mark.e2e

PG_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
"""
PG_INDEXES = """
SELECT t.relname, i.indisunique, i.indisprimary,
       array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o)
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = 'public'
"""
PG_FOREIGN_KEYS = """
SELECT c.conrelid::regclass::text, c.confrelid::regclass::text,
       array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_constraint c WHERE c.contype = 'f'
"""

# (database, table, column, PostgreSQL type): the pairs the cast rules will have to honour.
EXPECTED_TYPES = [
    ("alkemio", "user", "id", "uuid"),
    ("alkemio", "user", "createdDate", "timestamp without time zone"),
    ("alkemio", "user", "serviceProfile", "boolean"),
    ("alkemio", "user", "settings", "json"),
    ("alkemio", "user", "nameID", "character varying(36)"),
    ("alkemio", "user", "rowId", "integer"),
    ("alkemio", "profile", "tagline", "character varying"),
    ("alkemio", "authorization_policy", "credentialRules", "jsonb"),
    ("alkemio", "notification", "state", "notification_state_enum"),
    ("alkemio", "space", "visibility", "character varying(128)"),
    ("alkemio", "document", "content", "bytea"),
    ("alkemio", "document", "size", "bigint"),
    ("alkemio", "whiteboard", "content", "text"),
    ("alkemio", "visual", "aspectRatio", "numeric(3,1)"),
    ("alkemio", "location", "latitude", "double precision"),
    ("alkemio", "activity_log", "messageID", "character(44)"),
    ("alkemio", "credential", "expires", "timestamp without time zone"),
    ("kratos", "identities", "id", "uuid"),
    ("kratos", "identities", "traits", "jsonb"),
    ("kratos", "identity_credentials", "config", "json"),
    ("kratos", "sessions", "active", "boolean"),
    ("kratos", "sessions", "expires_at", "timestamp without time zone"),
    ("kratos", "courier_messages", "template_data", "bytea"),
]


def _pg_catalog(postgres: PostgresResource, database: str):
    with postgres.connect(database) as conn:
        columns = {(r[0], r[1]): (r[2], r[3], r[4]) for r in conn.execute(PG_COLUMNS)}
        indexes = [(r[0], r[1], r[2], tuple(r[3])) for r in conn.execute(PG_INDEXES)]
        fks = {(r[0].strip('"'), r[1].strip('"'), tuple(r[2])) for r in conn.execute(PG_FOREIGN_KEYS)}
    return columns, indexes, fks


def test_target_server_is_supported(postgres: PostgresResource):
    assert postgres.server_version() >= 140000


@pytest.mark.parametrize("name", ["alkemio", "kratos"])
def test_baseline_mirrors_the_source(
    name: str,
    mysql: MySQLResource,
    postgres: PostgresResource,
    source_databases: dict[str, str],
    target_databases: dict[str, str],
):
    with mysql.connect() as conn:
        catalog = read_mysql_catalog(conn, source_databases[name])
    columns, indexes, fks = _pg_catalog(postgres, target_databases[name])
    for table in catalog.tables:
        assert {c for (t, c) in columns if t == table.name} == {c.name for c in table.columns}, table.name
        for key in table.unique_keys:
            assert any(t == table.name and unique and cols == key for t, unique, _, cols in indexes), (
                table.name,
                key,
            )
        for fk in table.foreign_keys:
            assert (table.name, fk.ref_table, fk.columns) in fks, (table.name, fk.name)


def test_baseline_lacks_the_fk_indexes_innodb_made(
    mysql: MySQLResource,
    postgres: PostgresResource,
    source_databases: dict[str, str],
    target_databases: dict[str, str],
):
    """InnoDB indexes every FK; the PostgreSQL baseline, like TypeORM's, does not."""
    with mysql.connect() as conn:
        catalog = read_mysql_catalog(conn, source_databases["alkemio"])
    _, indexes, _ = _pg_catalog(postgres, target_databases["alkemio"])
    missing = [
        (t.name, i.columns)
        for t in catalog.tables
        for i in t.indexes
        if not i.unique and not any(pt == t.name and cols[: len(i.columns)] == i.columns for pt, _, _, cols in indexes)
    ]
    assert ("comment", ("roomId",)) in missing
    assert ("credential", ("agentId",)) in missing


@pytest.mark.parametrize(("name", "table", "column", "expected"), EXPECTED_TYPES)
def test_baseline_types(
    name: str,
    table: str,
    column: str,
    expected: str,
    postgres: PostgresResource,
    target_databases: dict[str, str],
):
    columns, _, _ = _pg_catalog(postgres, target_databases[name])
    assert columns[(table, column)][0] == expected


def test_rowid_has_a_sequence_and_seed_rows_exist(postgres: PostgresResource, target_databases: dict[str, str]):
    columns, _, _ = _pg_catalog(postgres, target_databases["alkemio"])
    assert columns[("user", "rowId")][2].startswith("nextval(")
    with postgres.connect(target_databases["kratos"]) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM identity_credential_types")}
    assert {"password", "oidc", "totp", "webauthn"} <= names


def test_nullable_on_mysql_but_not_null_on_postgres(
    mysql: MySQLResource,
    postgres: PostgresResource,
    source_databases: dict[str, str],
    target_databases: dict[str, str],
):
    with mysql.connect() as conn:
        catalog = read_mysql_catalog(conn, source_databases["alkemio"])
    columns, _, _ = _pg_catalog(postgres, target_databases["alkemio"])
    assert catalog.table("user").column("accountUpn").nullable
    assert columns[("user", "accountUpn")][1] is True
