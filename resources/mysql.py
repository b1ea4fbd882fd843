"""The MySQL 8 / MariaDB source."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import dagster as dg
import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT


def _database(name: str) -> str:
    """A database name quoted for MySQL (resources import nothing of the pipeline's own, so the
    quoting of alkemio_assets.core.sql is not theirs to use)."""
    if "\x00" in name:
        raise ValueError(f"database name {name!r} contains NUL")
    return "`" + name.replace("`", "``") + "`"


class _Connection(pymysql.connections.Connection):
    """PyMySQL's connection with its default TLS context (PREFERRED: TLS when the server offers
    it, nothing verified, as PyMySQL does without TLS options) made once per process rather than
    for every connection: loading the system's CA bundle cost 20-30 ms of CPU per connection,
    and the table checks open several per table (most of a tiny database's check time)."""

    _preferred: ClassVar[ssl.SSLContext | None] = None

    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        if sslp:
            return super()._create_ssl_ctx(sslp)
        if _Connection._preferred is None:
            _Connection._preferred = super()._create_ssl_ctx({})
        return _Connection._preferred


class MySQLResource(dg.ConfigurableResource):
    """Connections to the MySQL source: utf8mb4 end to end, session time zone pinned to UTC."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    def describe(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}"

    def connection_fields(self) -> dict[str, Any]:
        """What another process needs to connect (a resource itself does not pickle)."""
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password}

    @contextmanager
    def connect(
        self,
        database: str | None = None,
        *,
        raw: bool = False,
        local_infile: bool = False,
        multi_statements: bool = False,
    ) -> Iterator[pymysql.connections.Connection]:
        """Hand out one connection, dict rows. `raw`: unbuffered tuples of values exactly as MySQL sends them (text as str, binary as bytes,
        numbers and dates as their MySQL text), for the export. `multi_statements`: a script of
        several statements in one execute, as an application's migration files are run."""
        # caching_sha2_password (MySQL 8's default) works through PyMySQL + cryptography, so no
        # user has to be downgraded to mysql_native_password as the seed once advised.
        conn = _Connection(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            charset="utf8mb4",
            cursorclass=pymysql.cursors.SSCursor if raw else pymysql.cursors.DictCursor,
            # raw: no conversion, so doubles, decimals and dates keep MySQL's exact text
            conv={} if raw else None,
            autocommit=True,
            local_infile=local_infile,
            client_flag=CLIENT.MULTI_STATEMENTS if multi_statements else 0,
            # TIMESTAMP values are shifted into the session zone: pin it so they read as stored.
            init_command="SET time_zone = '+00:00'",
        )
        try:
            yield conn
        finally:
            conn.close()

    def execute_script(self, database: str, statements: list[str]) -> None:
        with self.connect(database) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def create_database(self, database: str, *, drop_existing: bool = False) -> None:
        with self.connect() as conn, conn.cursor() as cur:
            if drop_existing:
                cur.execute(f"DROP DATABASE IF EXISTS {_database(database)}")
            cur.execute(f"CREATE DATABASE {_database(database)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")

    def drop_database(self, database: str) -> None:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {_database(database)}")

    def table_count(self, database: str) -> int | None:
        """How many tables and views `database` holds; None when there is no such database."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) AS n FROM information_schema.schemata WHERE schema_name = %s", (database,))
            if not cur.fetchone()["n"]:
                return None
            cur.execute("SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = %s", (database,))
            return int(cur.fetchone()["n"])
