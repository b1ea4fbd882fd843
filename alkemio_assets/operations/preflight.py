"""Preflight, before anything else of a migration: both sides reachable by the configured users,
each usual failure said as what it is (wrong password, unknown database, MySQL 8's
caching_sha2_password without TLS or RSA key, a missing grant, named), the server versions,
the target databases there, the extensions the target schema needs, and disk for the files.

Every finding is one row of data; `migration/preflight` shows them all as a table and fails on
the first run that has any error among them, so the table assets after it never start.
"""

# No `from __future__ import annotations`: Dagster reads the context and resource annotations.
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dagster as dg
import psycopg
import pymysql

from alkemio_assets.catalog.source import read_table_sizes
from alkemio_assets.core.settings import Settings
from alkemio_assets.core.sql import mysql_ident
from alkemio_assets.stages.load import LoadPermissionError, bypass_foreign_keys
from resources import MySQLResource, PostgresResource

PREFLIGHT_KEY = dg.AssetKey(["migration", "preflight"])
Severity = Literal["error", "warning"]
# the CSV files take about 1.5x the source data, the staged files as much again (the seed: 1.5x)
DISK_FACTOR = 3.0
REQUIRED_POSTGRES, RECOMMENDED_POSTGRES = 14, 17
EXTENSIONS = ("uuid-ossp",)  # Alkemio's baseline starts with CREATE EXTENSION "uuid-ossp"


@dataclass(frozen=True)
class Finding:
    """One item of the preflight: what was looked at, whether it holds, and what to do if not."""

    item: str
    ok: bool
    message: str
    severity: Severity = "error"

    @property
    def blocks(self) -> bool:
        return not self.ok and self.severity == "error"


# MySQL's error codes (PyMySQL's OperationalError.args[0]) as what they mean for the operator
MYSQL_ERRORS: dict[int, str] = {
    1045: "wrong password for {user} (or no such user): check MYSQL_ROOT_PASSWORD / MYSQL_USER",
    1044: "{user} may not use database {database}: GRANT SELECT ON `{database}`.* TO {user}",
    1049: "database {database} does not exist on MySQL: check {name}_MYSQL_DATABASE",
    1142: "{user} lacks SELECT on {database}: GRANT SELECT ON `{database}`.* TO {user}",
    2003: "no MySQL server answers at {server}: is it running, and are MYSQL_HOST / MYSQL_PORT right?",
    2059: "the server wants an authentication plugin PyMySQL cannot use for {user}",
}
# PyMySQL's message when MySQL 8's caching_sha2_password needs TLS or the server's RSA key
_SHA2 = re.compile(r"caching_sha2|sha256_password|RSA public key|secure connection", re.I)
# libpq's messages (psycopg gives no SQLSTATE for a refused connection) as what they mean
POSTGRES_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"password authentication failed"), "wrong password for {user}: check DATABASE_PASSWORD"),
    (re.compile(r'role "[^"]*" does not exist'), "no role {user} on PostgreSQL: check DATABASE_USERNAME"),
    (
        re.compile(r'database "[^"]*" does not exist'),
        "database {database} does not exist on PostgreSQL: create it (runbook step 1), or check {name}_DATABASE_NAME",
    ),
    (
        re.compile(r"no pg_hba.conf entry|SSL .*required|requires SSL", re.I),
        "the server refuses {user} without TLS (pg_hba.conf): set sslmode",
    ),
    (
        re.compile(r"Connection refused|could not translate host|timeout expired"),
        "no PostgreSQL server answers at {server}: is it running, and are DATABASE_HOST / DATABASE_PORT right?",
    ),
)


def explain_mysql(exc: pymysql.MySQLError, **where: str) -> str:
    """The operator's reading of a MySQL error, with MySQL's own words after it."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = str(exc.args[1] if len(exc.args) > 1 else exc)
    if _SHA2.search(text):
        meaning = (
            "MySQL 8's caching_sha2_password needs TLS or the server's RSA key for {user}: connect once over TLS "
            "(or with the RSA key) so the server caches it; no need to downgrade to mysql_native_password"
        )
    else:
        meaning = MYSQL_ERRORS.get(code or 0, "MySQL refused: {error}")
    return meaning.format(**where, error=text) + f" (MySQL: {text})"


def explain_postgres(exc: psycopg.Error, **where: str) -> str:
    """The operator's reading of a PostgreSQL error, with the server's (or libpq's) own words."""
    text = str(exc).strip()
    said = text.splitlines()[-1].split("FATAL:")[-1].strip() if text else type(exc).__name__
    meaning = next((m for pattern, m in POSTGRES_ERRORS if pattern.search(text)), "PostgreSQL refused: {error}")
    return meaning.format(**where, error=said) + f" (PostgreSQL: {said})"


def postgres_version(version_num: int) -> Finding:
    """PostgreSQL 14 or newer is required, 17 recommended (the seed: 17.5)."""
    major, shown = version_num // 10000, f"{version_num // 10000}.{version_num % 10000}"
    if major < REQUIRED_POSTGRES:
        return Finding("PostgreSQL version", False, f"PostgreSQL {shown}: {REQUIRED_POSTGRES} or newer is required")
    if major < RECOMMENDED_POSTGRES:
        return Finding(
            "PostgreSQL version",
            False,
            f"PostgreSQL {shown} works; {RECOMMENDED_POSTGRES}.x (the seed: 17.5) is recommended",
            "warning",
        )
    return Finding("PostgreSQL version", True, f"PostgreSQL {shown}")


def mysql_version(version: str) -> Finding:
    """MySQL 8 or MariaDB (which stands in for it here)."""
    if "mariadb" in version.lower() or version.split(".")[0] in {"8", "9"}:
        return Finding("MySQL version", True, f"MySQL {version}")
    return Finding("MySQL version", False, f"MySQL {version}: this tool reads MySQL 8 (or MariaDB)")


def disk_space(free: int, source_bytes: int, folder: Path) -> Finding:
    needed = int(source_bytes * DISK_FACTOR)
    message = f"{free / 1e9:.1f} GB free in {folder}, {needed / 1e9:.1f} GB needed ({DISK_FACTOR}x the source data)"
    return Finding("disk", free >= needed, message)


def _existing(folder: Path) -> Path:
    while not folder.exists():
        folder = folder.parent
    return folder


def source_findings(settings: Settings, mysql: MySQLResource) -> tuple[list[Finding], int]:
    """Per source database: reachable, readable; the server's version; the bytes of data."""
    found: list[Finding] = []
    total, versions = 0, set()
    user, server = f"'{mysql.user}'", mysql.describe()
    for pair in settings.pairs:
        where = {"user": user, "server": server, "database": pair.source_database, "name": pair.name.upper()}
        item = f"MySQL {pair.source_database}"
        try:
            with mysql.connect(pair.source_database) as conn:
                total += sum(read_table_sizes(conn, pair.source_database).values())
                with conn.cursor() as cur:
                    cur.execute("SELECT VERSION() AS v")
                    versions.add(cur.fetchone()["v"])
                    cur.execute(
                        "SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s LIMIT 1",
                        (pair.source_database,),
                    )
                    if first := cur.fetchone():  # the grant, tried where the export will need it
                        cur.execute(f"SELECT 1 FROM {mysql_ident(first['t'])} LIMIT 0")
        except pymysql.MySQLError as exc:
            found.append(Finding(item, False, explain_mysql(exc, **where)))
            continue
        found.append(Finding(item, True, f"{user} reads {pair.source_database} on {server}"))
    found += [mysql_version(v) for v in sorted(versions)]
    return found, total


def target_findings(settings: Settings, postgres: PostgresResource) -> list[Finding]:
    """Per target database: reachable; the right to bypass foreign-key triggers; the extensions;
    the server's version."""
    found: list[Finding] = []
    user, server, version = f"'{postgres.user}'", postgres.describe(), 0
    for pair in settings.pairs:
        item = f"PostgreSQL {pair.target_database}"
        try:
            with postgres.connect(pair.target_database) as conn:
                version = conn.info.server_version
                with conn.cursor() as cur:
                    bypass_foreign_keys(cur)
                    for name in EXTENSIONS:
                        cur.execute("SELECT installed_version FROM pg_available_extensions WHERE name = %s", (name,))
                        row = cur.fetchone()
                        if row is None:
                            found.append(
                                Finding(
                                    f"{item} extension {name}",
                                    False,
                                    f"the server has no {name} extension: install postgresql-contrib",
                                )
                            )
        except psycopg.Error as exc:
            where = {"user": user, "server": server, "database": pair.target_database, "name": pair.name.upper()}
            found.append(Finding(item, False, explain_postgres(exc, **where)))
            continue
        except LoadPermissionError as exc:
            found.append(Finding(item, False, str(exc)))
            continue
        found.append(Finding(item, True, f"{user} may load into {pair.target_database} on {server}"))
    if version:
        found.append(postgres_version(version))
    return found


def preflight(settings: Settings, mysql: MySQLResource, postgres: PostgresResource) -> list[Finding]:
    source, source_bytes = source_findings(settings, mysql)
    folder = _existing(settings.workdir)
    return [
        *source,
        *target_findings(settings, postgres),
        disk_space(shutil.disk_usage(folder).free, source_bytes, folder),
    ]


def findings_table(findings: list[Finding]) -> str:
    rows = [f"| {'ok' if f.ok else f.severity.upper()} | {f.item} | {f.message} |" for f in findings]
    return "\n".join(["| | item | finding |", "|---|---|---|", *rows])


def preflight_asset(settings: Settings) -> dg.AssetsDefinition:
    @dg.asset(
        key=PREFLIGHT_KEY,
        group_name="migration",
        kinds={"mysql", "postgres"},
        description="Before anything moves: both servers reachable by the configured users (each usual failure "
        "named), their versions, the target databases, the extensions, the grants, and disk for the files.",
    )
    def preflight_check(context: dg.AssetExecutionContext, mysql: MySQLResource, postgres: PostgresResource):
        """Look at both sides and the work folder; fail, listing every problem, if one blocks."""
        findings = preflight(settings, mysql, postgres)
        metadata = {"findings": dg.MetadataValue.md(findings_table(findings))}
        for finding in findings:
            if not finding.ok:
                (context.log.error if finding.blocks else context.log.warning)(f"preflight: {finding.message}")
        if blocking := [f.message for f in findings if f.blocks]:
            raise dg.Failure("preflight: " + "; ".join(blocking), metadata=metadata)
        return dg.MaterializeResult(metadata=metadata)

    return preflight_check
