"""Preflight, before anything else of a migration: both sides reachable by the configured users,
each usual failure said as what it is (wrong password, unknown database, MySQL 8's
caching_sha2_password without TLS or RSA key, a missing grant, named), the server versions,
the target databases there (the applications' others created when missing and the role may),
the extensions the target schema needs, disk for the files, a MySQL backup (proved or taken,
operations/backup.py), a quiet source (no row written for MIGRATION_QUIET_SECONDS), and the
estimate of the whole run against the 30-minute window from the last rehearsal's rate.

Every finding is one row of data; `migration/preflight` shows them all as a table and fails on
the first run that has any error among them, so the table assets after it never start.
"""

# No `from __future__ import annotations`: Dagster reads the context and resource annotations.
import json
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import psycopg
import pymysql

from alkemio_assets.catalog.source import read_table_sizes
from alkemio_assets.core.settings import Settings
from alkemio_assets.core.sql import mysql_ident
from alkemio_assets.operations import backup
from alkemio_assets.operations.report import PREFLIGHT_RECORD, WINDOW_MINUTES
from alkemio_assets.stages.load import LoadPermissionError, bypass_foreign_keys
from alkemio_assets.stages.run_log import read_events, run_log_path
from resources import MySQLResource, PostgresResource

PREFLIGHT_KEY = dg.AssetKey(["migration", "preflight"])
Severity = Literal["error", "warning"]
# the CSV files take about 1.5x the source data, the staged files as much again (the seed: 1.5x)
DISK_FACTOR = 3.0
REQUIRED_POSTGRES, RECOMMENDED_POSTGRES = 14, 17
EXTENSIONS = ("uuid-ossp",)  # Alkemio's baseline starts with CREATE EXTENSION "uuid-ossp"
# bytes of source data (DATA_LENGTH) per second for the whole verified run (export to last check),
# measured by the benchmark on this 2-core machine (README, Benchmark: 1,321 MB in 126.6-154.1 s on
# the real schemas, 2026-12-03), its slower end: the estimate before any rehearsal
BENCHMARK_RATE = 8.5e6
# MySQL's counters of writing statements, server-wide, on MySQL 8 and MariaDB alike (MariaDB has
# no Innodb_rows_*): unchanged over the interval means no application wrote
WRITE_COUNTERS = (
    "Com_insert",
    "Com_insert_select",
    "Com_replace",
    "Com_update",
    "Com_update_multi",
    "Com_delete",
    "Com_delete_multi",
    "Com_load",
)


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
    3159: "the server requires TLS for {user} (require_secure_transport=ON): connect over TLS",
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
        "database {database} does not exist on PostgreSQL: create it (job prepare_schema, runbook step 3), or check {name}_DATABASE_NAME",
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


def write_counters(mysql: MySQLResource) -> dict[str, int]:
    with mysql.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SHOW GLOBAL STATUS WHERE Variable_name IN (" + ", ".join(["%s"] * len(WRITE_COUNTERS)) + ")",
            WRITE_COUNTERS,
        )
        return {row["Variable_name"]: int(row["Value"]) for row in cur.fetchall()}


def quiet_source(before: dict[str, int], after: dict[str, int], seconds: int) -> Finding:
    """No row written on MySQL between the two readings: the applications are stopped."""
    moved = {name: after[name] - before[name] for name in before if after.get(name, 0) != before[name]}
    if moved:
        said = ", ".join(f"{name} +{n}" for name, n in moved.items())
        return Finding(
            "quiet source",
            False,
            f"MySQL is still being written to ({said} statements in {seconds} s): stop the applications (runbook step 5) "
            "before the export, or rows written now are lost",
        )
    return Finding("quiet source", True, f"no row written on MySQL in {seconds} s")


def rehearsal_rate(settings: Settings) -> tuple[float, str] | None:
    """Bytes of source data per second of the newest run on this installation that completed with
    its verdict: from its first step's start to the verdict (run log), over the source bytes its
    preflight measured."""
    events = read_events(run_log_path(settings))
    verdicts = [e for e in events if e.action == "migration" and e.database is None and e.status == "completed"]
    for verdict in reversed(verdicts):
        record = settings.workdir / "runs" / str(verdict.run_id) / PREFLIGHT_RECORD
        starts = [e.timestamp for e in events if e.run_id == verdict.run_id and e.status == "started"]
        if not record.exists() or not starts:
            continue
        seconds = (_moment(verdict.timestamp) - _moment(min(starts))).total_seconds()
        source_bytes = json.loads(record.read_text(encoding="utf-8"))["source_bytes"]
        if seconds > 0 and source_bytes:
            return source_bytes / seconds, f"the rehearsal {verdict.run_id} ({verdict.timestamp})"
    return None


def _moment(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def window_estimate(source_bytes: int, rate: float, basis: str) -> Finding:
    """The whole verified run at `rate`, against the 30-minute window; over it is a warning."""
    minutes = source_bytes / rate / 60
    message = (
        f"about {minutes:.0f} minutes for {source_bytes / 1e9:.2f} GB at {rate / 1e6:.1f} MB/s ({basis}), "
        f"of the {WINDOW_MINUTES}-minute window"
    )
    if minutes > WINDOW_MINUTES:
        return Finding("window estimate", False, message + ": over it, plan a longer window or more cores", "warning")
    return Finding("window estimate", True, message)


def backup_finding(settings: Settings, mysql: MySQLResource, folder: Path) -> Finding:
    """The MySQL backup the seed requires: proved, taken into the run folder, or knowingly none;
    recorded in the run folder for the report."""
    made: backup.Backup | None = None
    if not settings.backup:
        return Finding("MySQL backup", False, backup.UNSET)
    if settings.backup == "none":
        finding = Finding(
            "MySQL backup", False, "MIGRATION_BACKUP=none: no backup, for a rehearsal on a copy only", "warning"
        )
    elif settings.backup == "take":
        try:
            made = backup.take(mysql, [p.source_database for p in settings.pairs], folder)
        except (OSError, RuntimeError) as exc:
            return Finding("MySQL backup", False, str(exc))
        finding = Finding("MySQL backup", True, made.describe())
    else:
        made, problem = backup.prove(Path(settings.backup), settings.backup_max_hours, datetime.now(UTC))
        finding = Finding("MySQL backup", made is not None, made.describe() if made else str(problem))
    backup.write_record(folder, made)
    return finding


def extra_database(postgres: PostgresResource, name: str) -> Finding:
    """A database the applications need besides the migrated ones: there, or created empty when
    the role may create databases."""
    item = f"PostgreSQL {name}"
    try:
        with postgres.connect(autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return Finding(item, True, f"database {name} exists")
            row = conn.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
            if not (row and row[0]):
                return Finding(
                    item,
                    False,
                    f"database {name} does not exist and '{postgres.user}' may not create it: "
                    f"CREATE DATABASE {name} (runbook step 3), or leave it out of migration.toml [target]",
                )
            postgres.create_database(name)
            return Finding(item, True, f"database {name} created, empty: its application migrates it when it starts")
    except psycopg.Error as exc:
        where = {"user": f"'{postgres.user}'", "server": postgres.describe(), "database": name, "name": name.upper()}
        return Finding(item, False, explain_postgres(exc, **where))


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


def missing_extensions(cur: Any, item: str, names: Sequence[str]) -> list[Finding]:
    """The extensions the target schema needs that the server cannot install."""
    found = []
    for name in names:
        cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,))
        if cur.fetchone() is None:
            found.append(
                Finding(
                    f"{item} extension {name}", False, f"the server has no {name} extension: install postgresql-contrib"
                )
            )
    return found


def target_findings(settings: Settings, postgres: PostgresResource) -> list[Finding]:
    """Per target database: reachable; the right to bypass foreign-key triggers; the extensions;
    the server's version."""
    found = [extra_database(postgres, name) for name in settings.extra_databases]
    user, server, version = f"'{postgres.user}'", postgres.describe(), 0
    for pair in settings.pairs:
        item = f"PostgreSQL {pair.target_database}"
        try:
            with postgres.connect(pair.target_database) as conn:
                version = conn.info.server_version
                with conn.cursor() as cur:
                    bypass_foreign_keys(cur)
                    found += missing_extensions(cur, item, EXTENSIONS)
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


def preflight(settings: Settings, mysql: MySQLResource, postgres: PostgresResource, folder: Path) -> list[Finding]:
    """Every finding, in the order an operator reads them; the run folder `folder` gets the
    backup taken (MIGRATION_BACKUP=take) and the record the report and the next estimate read."""
    started = time.monotonic()
    before = write_counters(mysql) if settings.quiet_seconds else {}
    source, source_bytes = source_findings(settings, mysql)
    work = _existing(settings.workdir)
    found = [
        *source,
        *target_findings(settings, postgres),
        disk_space(shutil.disk_usage(work).free, source_bytes, work),
    ]
    if not any(f.blocks for f in found):  # a backup of servers that answer
        found.append(backup_finding(settings, mysql, folder))
    if settings.quiet_seconds:
        time.sleep(max(0.0, settings.quiet_seconds - (time.monotonic() - started)))
        found.append(quiet_source(before, write_counters(mysql), settings.quiet_seconds))
    rate, basis = rehearsal_rate(settings) or (BENCHMARK_RATE, "the benchmark's rate on 2 cores: no rehearsal here yet")
    found.append(window_estimate(source_bytes, rate, basis))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PREFLIGHT_RECORD).write_text(
        json.dumps({"source_bytes": source_bytes, "findings": [asdict(f) for f in found]}, indent=1) + "\n"
    )
    return found


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
        findings = preflight(settings, mysql, postgres, settings.workdir / "runs" / context.run.run_id)
        metadata = {"findings": dg.MetadataValue.md(findings_table(findings))}
        for finding in findings:
            if not finding.ok:
                (context.log.error if finding.blocks else context.log.warning)(f"preflight: {finding.message}")
        if blocking := [f.message for f in findings if f.blocks]:
            raise dg.Failure("preflight: " + "; ".join(blocking), metadata=metadata)
        return dg.MaterializeResult(metadata=metadata)

    return preflight_check
