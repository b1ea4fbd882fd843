"""Compressed documents read as each application reads them: the proof that a whiteboard the
MySQL application could open, the PostgreSQL application opens too, with the same content.

Independent of the load path: the MySQL side follows the MySQL application (the stored text's
characters are the deflate bytes, Buffer.from(value, 'binary')), the PostgreSQL side follows
the PostgreSQL application's decompressText for what we write (base64 whose bytes start with a
valid zlib header), and both inflate with zlib.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Iterator
from typing import Any

from psycopg import sql

from alkemio_assets.catalog.contract import ColumnPlan, TablePlan
from alkemio_assets.core.fetch import DEFAULT, Fetch
from alkemio_assets.core.sql import mysql_ident
from checks.fingerprint import Fingerprint
from resources import MySQLResource, PostgresResource

COMPRESSED = frozenset({"latin1_base64"})
SAMPLE = 5


def compressed_columns(plan: TablePlan) -> tuple[ColumnPlan, ...]:
    return tuple(c for c in plan.columns if c.override is not None and c.override.cast in COMPRESSED)


def inflate_mysql(raw: bytes) -> bytes:
    """As the MySQL application: each character of the text is one byte of the deflate stream."""
    return zlib.decompress(raw.decode("utf-8").encode("latin-1"))


def inflate_postgres(text: str) -> bytes:
    """As the PostgreSQL application, for the format it writes: base64 of the deflate bytes."""
    data = base64.b64decode(text, validate=True)
    if len(data) < 2 or data[0] != 0x78 or (data[0] * 256 + data[1]) % 31:
        raise ValueError("no zlib header")
    return zlib.decompress(data)


class Documents:
    """Per column: an order-independent fingerprint of (key, inflated document), and the keys of
    the values that did not inflate."""

    def __init__(self) -> None:
        self.fingerprint = Fingerprint()
        self.failed = 0
        self.failed_keys: list[str] = []

    def add(self, key: str, document: bytes | None) -> None:
        self.fingerprint.add(key, hashlib.blake2b(document, digest_size=16).hexdigest() if document else "")

    def fail(self, key: str) -> None:
        self.failed += 1
        if len(self.failed_keys) < SAMPLE:
            self.failed_keys.append(key)


def _read(rows: Iterator[tuple[Any, ...]], inflate, documents: Documents) -> None:
    for key, value in rows:
        if value is None:
            documents.add(str(key), None)
            continue
        try:
            documents.add(str(key), inflate(value))
        except (ValueError, zlib.error, UnicodeError):
            documents.fail(str(key))


def mysql_documents(
    mysql: MySQLResource, database: str, plan: TablePlan, column: ColumnPlan, fetch: Fetch = DEFAULT
) -> Documents:
    found = Documents()
    key = mysql_ident(plan.source.primary_key[0])
    with mysql.connect(database, raw=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT LOWER({key}), CAST({mysql_ident(column.name)} AS BINARY) FROM {mysql_ident(plan.name)}")
        _read(fetch.rows_from(cur), inflate_mysql, found)
    return found


def postgres_documents(
    postgres: PostgresResource, database: str, plan: TablePlan, column: ColumnPlan, fetch: Fetch = DEFAULT
) -> Documents:
    found = Documents()
    with postgres.connect(database) as conn, conn.cursor(name="documents") as cur:
        cur.itersize = fetch.count
        cur.execute(
            sql.SQL("SELECT {}::text, {} FROM {}").format(
                sql.Identifier(plan.target.primary_key[0]),
                sql.Identifier(column.target.name),
                sql.Identifier(plan.name),
            )
        )
        _read(iter(cur), inflate_postgres, found)
    return found
