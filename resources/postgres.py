"""The PostgreSQL target."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql


class PostgresResource(dg.ConfigurableResource):
    """Connections to the PostgreSQL target, client encoding UTF8 on every one."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""

    def describe(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}"

    def connection_fields(self) -> dict[str, Any]:
        """What another process needs to connect (a resource itself does not pickle)."""
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password}

    @contextmanager
    def connect(
        self, dbname: str = "postgres", *, autocommit: bool = False, application_name: str = "alkemio-migration"
    ) -> Iterator[psycopg.Connection]:
        """Hand out one connection; the caller's `with conn.transaction()` decides what commits.
        `application_name` is what pg_stat_activity shows for it (a run names itself there)."""
        conn = psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=dbname,
            client_encoding="UTF8",
            application_name=application_name[:63],
            autocommit=autocommit,
        )
        try:
            yield conn
            if not autocommit:
                conn.commit()
        finally:
            conn.close()

    def server_version(self) -> int:
        with self.connect(autocommit=True) as conn:
            return conn.info.server_version

    def execute_script(self, dbname: str, script: str) -> None:
        with self.connect(dbname) as conn:
            conn.execute(script)  # type: ignore[arg-type]

    def create_database(self, dbname: str, *, drop_existing: bool = False) -> None:
        with self.connect(autocommit=True) as conn:
            if drop_existing:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(sql.Identifier(dbname))
            )

    def drop_database(self, dbname: str) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))

    def table_count(self, dbname: str) -> int | None:
        """How many tables and views `dbname` holds outside the system schemas; None when there
        is no such database."""
        if not self.database_exists(dbname):
            return None
        with self.connect(dbname, autocommit=True) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
                " AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"
            ).fetchone()
            return int(row[0]) if row else 0

    def database_exists(self, dbname: str) -> bool:
        with self.connect(autocommit=True) as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None
