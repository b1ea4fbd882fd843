"""Which application migrations each side holds, read from the applications' own ledgers.

A migration is safe only between the versions the target schema was made for: MySQL at the
application's last MySQL migration, PostgreSQL at the migration the target schema comes from
(Alkemio's baseline; for Kratos the same version on both sides). The ledger's kind says how to
read its newest entry; the expected versions are configuration (migration.toml `versions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pymysql
from psycopg import sql

from alkemio_assets.core.ledgers import LEDGERS
from alkemio_assets.core.settings import DatabasePair
from alkemio_assets.core.sql import mysql_ident


@dataclass(frozen=True)
class Versions:
    """The newest migration and the count of migrations in each side's ledger."""

    source: str | None
    source_count: int
    target: str | None
    target_count: int


def _newest(rows: list[tuple[Any, Any]]) -> str | None:
    return None if not rows else str(max(rows, key=lambda r: r[0])[1])


def read_source(connection: Any, database: str, table: str, kind: str) -> tuple[str | None, int]:
    """The newest migration in a MySQL ledger, and how many it holds (PyMySQL DictCursor)."""
    ledger = LEDGERS[kind]
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {mysql_ident(ledger.order)} AS o, {mysql_ident(ledger.name)} AS n "
            f"FROM {mysql_ident(database)}.{mysql_ident(table)}"
        )
        rows = [(r["o"], r["n"]) for r in cur.fetchall()]
    return _newest(rows), len(rows)


def read_target(connection: Any, table: str, kind: str) -> tuple[str | None, int]:
    """The newest migration in a PostgreSQL ledger, and how many it holds (psycopg)."""
    ledger = LEDGERS[kind]
    rows = connection.execute(
        sql.SQL("SELECT {}, {} FROM {}").format(
            sql.Identifier(ledger.order), sql.Identifier(ledger.name), sql.Identifier(table)
        )
    ).fetchall()
    return _newest(rows), len(rows)


def read_versions(
    mysql: Any, postgres: Any, source_database: str, target_database: str, ledger: str, kind: str
) -> Versions:
    """Both sides' newest application migration (resources: MySQLResource, PostgresResource).
    A missing ledger reads as no migration at all."""
    try:
        with mysql.connect() as conn:
            source, source_count = read_source(conn, source_database, ledger, kind)
    except pymysql.err.ProgrammingError:  # no such table
        source, source_count = None, 0
    with postgres.connect(target_database) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f'public."{ledger}"',)).fetchone()[0] is None:
            target, target_count = None, 0
        else:
            target, target_count = read_target(conn, ledger, kind)
    return Versions(source, source_count, target, target_count)


def mismatches(pair_name: str, found: Versions, source: str, target: str) -> list[str]:
    """What is wrong with the versions found, against the versions the configuration fits."""
    problems = []
    if found.source != source:
        problems.append(
            f"{pair_name}: MySQL holds application migration {found.source!r} ({found.source_count} in its ledger), "
            f"the configuration fits {source!r}; the PostgreSQL side holds {found.target!r}. Bring MySQL to "
            f"{source!r} with the application's own migrations first, or regenerate the configuration for its version"
        )
    if found.target != target:
        problems.append(
            f"{pair_name}: PostgreSQL holds application migration {found.target!r} ({found.target_count} in its "
            f"ledger), the configuration fits {target!r}; the MySQL side holds {found.source!r}. Make the target "
            f"schema with the application's migrations up to {target!r} and nothing later (later migrations run "
            "after the load)"
        )
    return problems


def pair_versions(pair: DatabasePair, mysql: Any, postgres: Any) -> tuple[Versions | None, list[str]]:
    """The versions both sides hold, and what is wrong with them, for a pair that pins them."""
    pin = pair.versions
    if pin is None:
        return None, []
    found = read_versions(mysql, postgres, pair.source_database, pair.target_database, pin.ledger, pin.kind)
    return found, mismatches(pair.name, found, pin.source, pin.target)
