"""Preflight, before anything moves: each usual failure said as what it is (wrong password,
unknown database on either side, a missing grant named, MySQL 8's caching_sha2_password without
TLS), the versions said plainly, disk for the files, and the job that holds back the tables."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pymysql
import pytest
from conftest import failure_message, migration_settings, run_job

from alkemio_assets.operations import backup
from alkemio_assets.operations.preflight import (
    BENCHMARK_RATE,
    PREFLIGHT_RECORD,
    WRITE_COUNTERS,
    Finding,
    backup_finding,
    disk_space,
    explain_mysql,
    explain_postgres,
    extra_database,
    missing_extensions,
    mysql_version,
    postgres_version,
    preflight,
    quiet_source,
    rehearsal_rate,
    window_estimate,
    write_counters,
)
from alkemio_assets.stages.run_log import record, run_log_path
from resources import MySQLResource, PostgresResource


@pytest.mark.parametrize(
    ("version_num", "ok", "severity", "says"),
    [
        (130011, False, "error", "PostgreSQL 13.11: 14 or newer is required"),
        (150020, False, "warning", "PostgreSQL 15.20 works; 17.x (the seed: 17.5) is recommended"),
        (170005, True, "error", "PostgreSQL 17.5"),
    ],
)
def test_the_postgres_version_is_said_plainly(version_num: int, ok: bool, severity: str, says: str):
    finding = postgres_version(version_num)
    assert (finding.ok, finding.severity, finding.message) == (ok, severity, says)
    assert finding.blocks == (version_num < 140000)


def test_mysql_8_or_mariadb():
    assert mysql_version("8.0.36").ok and mysql_version("10.11.6-MariaDB-0+deb12u1").ok
    assert mysql_version("5.7.44").message == "MySQL 5.7.44: this tool reads MySQL 8 (or MariaDB)"


def test_disk_for_the_csv_and_the_staged_files(tmp_path: Path):
    short = disk_space(free=2_000_000_000, source_bytes=1_000_000_000, folder=tmp_path)
    assert not short.ok and short.message == f"2.0 GB free in {tmp_path}, 3.0 GB needed (3.0x the source data)"
    assert disk_space(free=3_000_000_000, source_bytes=1_000_000_000, folder=tmp_path).ok


def test_caching_sha2_password_without_tls_is_named_not_downgraded():
    # MariaDB (here) has no caching_sha2_password: the error is PyMySQL's own, as MySQL 8 causes it
    error = pymysql.err.OperationalError(
        2061, "Authentication plugin 'caching_sha2_password' reported error: Authentication requires secure connection."
    )
    message = explain_mysql(error, user="'migrator'", server="db:3306", database="alkemio", name="ALKEMIO")
    assert message.startswith("MySQL 8's caching_sha2_password needs TLS or the server's RSA key for 'migrator'")
    assert "no need to downgrade to mysql_native_password" in message


def test_tls_required_on_either_side_is_named():
    mysql_refusal = pymysql.err.OperationalError(
        3159, "Connections using insecure transport are prohibited while --require_secure_transport=ON."
    )
    said = explain_mysql(mysql_refusal, user="'migrator'", server="db:3306", database="alkemio", name="ALKEMIO")
    assert said.startswith("the server requires TLS for 'migrator' (require_secure_transport=ON): connect over TLS")
    postgres_refusal = psycopg.OperationalError(
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  no pg_hba.conf entry for '
        'host "10.0.0.9", user "migrator", database "alkemio", no encryption'
    )
    said = explain_postgres(postgres_refusal, user="'migrator'", server="pg:5432", database="alkemio", name="ALKEMIO")
    assert said.startswith("the server refuses 'migrator' without TLS (pg_hba.conf): set sslmode")
    assert said.endswith("no encryption)")


@pytest.mark.e2e
def test_a_wrong_password_and_unknown_databases_are_named(mysql: MySQLResource, postgres: PostgresResource, tmp_path):
    settings = migration_settings({"alkemio": "nowhere_a", "kratos": "nowhere_k"}, str(tmp_path))
    by_item = {f.item: f for f in preflight(settings, mysql, postgres, tmp_path / "run")}
    assert by_item["MySQL nowhere_a"].message.startswith("database nowhere_a does not exist on MySQL")
    assert "check ALKEMIO_MYSQL_DATABASE" in by_item["MySQL nowhere_a"].message
    assert by_item["PostgreSQL nowhere_k"].message == (
        "database nowhere_k does not exist on PostgreSQL: create it (job prepare_schema, runbook step 3), or check KRATOS_DATABASE_NAME"
        ' (PostgreSQL: database "nowhere_k" does not exist)'
    )
    assert all(f.blocks for name, f in by_item.items() if "nowhere" in name)

    wrong = MySQLResource(host=mysql.host, port=mysql.port, user=mysql.user, password="not-the-password")
    (finding, *_) = preflight(settings, wrong, postgres, tmp_path / "run")
    assert finding.message.startswith(f"wrong password for '{mysql.user}'") and "Access denied" in finding.message


@pytest.mark.e2e
def test_a_missing_grant_is_named(mysql: MySQLResource, postgres: PostgresResource, source_databases, tmp_path):
    user = f"pf{source_databases['alkemio'][-8:]}"
    with mysql.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{user}'")
    try:
        reader = MySQLResource(host=mysql.host, port=mysql.port, user=user, password=f"pw-{user}")
        settings = migration_settings(source_databases, str(tmp_path))
        (finding, *_) = preflight(settings, reader, postgres, tmp_path / "run")
        database = source_databases["alkemio"]
        assert not finding.ok and finding.message.startswith(
            f"'{user}' may not use database {database}: GRANT SELECT ON `{database}`.* TO '{user}'"
        )
    finally:
        with mysql.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP USER '{user}'@'%'")


@pytest.mark.e2e
def test_the_preflight_job_passes_on_good_servers_and_stops_on_bad_ones(
    source_databases, target_databases, tmp_path, instance: dg.DagsterInstance
):
    settings = migration_settings(source_databases, str(tmp_path))
    result = run_job(settings, instance, "preflight")
    assert result.success
    (materialization,) = result.asset_materializations_for_node("migration__preflight")
    table = materialization.metadata["findings"].value
    assert f"| ok | MySQL {source_databases['kratos']} |" in table and "| disk |" in table
    assert "| WARNING | MySQL backup | MIGRATION_BACKUP=none" in table and "| ok | window estimate | about " in table
    recorded = json.loads((tmp_path / "runs" / result.run_id / PREFLIGHT_RECORD).read_text())
    assert recorded["source_bytes"] > 0 and len(recorded["findings"]) == table.count("\n") - 1

    broken = migration_settings({"alkemio": "nowhere_a", "kratos": source_databases["kratos"]}, str(tmp_path))
    result = run_job(broken, instance, "preflight")
    assert not result.success
    assert "preflight: database nowhere_a does not exist on MySQL" in failure_message(result)


def test_no_backup_configured_is_refused_with_the_three_ways_out(settings, mysql: MySQLResource, tmp_path: Path):
    finding = backup_finding(replace(settings, backup=""), mysql, tmp_path)
    assert finding.blocks and finding.message == backup.UNSET
    rehearsal = backup_finding(replace(settings, backup="none"), mysql, tmp_path)
    assert not rehearsal.blocks and rehearsal.severity == "warning" and "rehearsal on a copy" in rehearsal.message
    assert backup.read_record(tmp_path) is None


def test_a_backup_as_proof_is_checked_for_age_and_size(settings, mysql: MySQLResource, tmp_path: Path):
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / "old.sql.gz").write_bytes(b"x" * 100)
    empty = backup.prove(folder / "nothing-here", 24, datetime.now(UTC))
    assert empty == (None, f"MIGRATION_BACKUP={folder / 'nothing-here'}: no backup file there")
    (folder / "new.sql.gz").write_bytes(b"")
    assert backup.prove(folder, 24, datetime.now(UTC))[1] == f"MIGRATION_BACKUP: {folder / 'new.sql.gz'} is empty"
    (folder / "new.sql.gz").write_bytes(b"y" * 2_000_000)
    two_days = datetime.now(UTC) + timedelta(hours=48)
    assert "is 48 hours old, older than MIGRATION_BACKUP_MAX_HOURS=24" in (backup.prove(folder, 24, two_days)[1] or "")

    finding = backup_finding(replace(settings, backup=str(folder)), mysql, tmp_path / "run")
    assert finding.ok and finding.message.startswith(f"found {folder / 'new.sql.gz'}: 2.0 MB, made ")
    assert backup.read_record(tmp_path / "run") == backup.prove(folder, 24, datetime.now(UTC))[0]


@pytest.mark.e2e
def test_a_backup_taken_is_a_checksummed_dump_and_the_password_never_an_argument(
    settings, mysql: MySQLResource, source_databases, tmp_path: Path
):
    user, password = f"bk{source_databases['alkemio'][-8:]}", "s3cret-for-the-dump"
    with mysql.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        for database in source_databases.values():
            cur.execute(f"GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES ON `{database}`.* TO '{user}'@'%'")
    try:
        reader = MySQLResource(host=mysql.host, port=mysql.port, user=user, password=password)
        assert password not in " ".join(backup.dump_command("mysqldump", reader, list(source_databases.values())))
        mine = replace(settings, backup="take", pairs=migration_settings(source_databases, str(tmp_path)).pairs)
        finding = backup_finding(mine, reader, tmp_path / "run")
        assert finding.ok, finding.message
        taken = backup.read_record(tmp_path / "run")
        assert taken is not None and taken.how == "taken" and finding.message == taken.describe()
        dump = Path(taken.path)
        assert hashlib.sha256(dump.read_bytes()).hexdigest() == taken.sha256
        assert (dump.parent / f"{dump.name}.sha256").read_text() == f"{taken.sha256}  {dump.name}\n"
        text = gzip.decompress(dump.read_bytes()).decode()
        assert all(f"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `{db}`" in text for db in source_databases.values())
        assert password not in text

        wrong = MySQLResource(host=mysql.host, port=mysql.port, user=user, password="not-it")
        refused = backup_finding(mine, wrong, tmp_path / "again")
        assert refused.blocks and "mysqldump of mysql://" in refused.message and "Access denied" in refused.message
        assert not (tmp_path / "again" / backup.DUMP_FILE).exists()
    finally:
        with mysql.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP USER '{user}'@'%'")


def test_a_source_still_written_to_is_refused_naming_the_counters(mysql: MySQLResource, source_databases):
    before = write_counters(mysql)
    assert set(before) == set(WRITE_COUNTERS)
    assert quiet_source(before, before, 10) == Finding("quiet source", True, "no row written on MySQL in 10 s")
    with mysql.connect(source_databases["kratos"]) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE writes (id int PRIMARY KEY) ENGINE=InnoDB")
        cur.execute("INSERT INTO writes VALUES (1), (2)")  # one statement
        conn.commit()
    finding = quiet_source(before, write_counters(mysql), 10)
    assert finding.blocks and finding.message.startswith("MySQL is still being written to (Com_insert +")
    assert "stop the applications (runbook step 5)" in finding.message


@pytest.mark.e2e
def test_the_applications_other_databases_are_created_when_the_role_may(postgres: PostgresResource, unique_name: str):
    name, role = f"{unique_name}_hydra", f"{unique_name}_nocreate"
    try:
        created = extra_database(postgres, name)
        assert (
            created.ok
            and created.message == f"database {name} created, empty: its application migrates it when it starts"
        )
        assert extra_database(postgres, name).message == f"database {name} exists"
        with postgres.connect(autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
        weak = PostgresResource(host=postgres.host, port=postgres.port, user=role, password=postgres.password)
        refused = extra_database(weak, f"{name}_other")
        assert refused.blocks and refused.message.startswith(
            f"database {name}_other does not exist and '{role}' may not create it: CREATE DATABASE {name}_other"
        )
    finally:
        postgres.drop_database(name)
        with postgres.connect(autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_the_window_estimate_uses_the_last_rehearsal_here_else_the_benchmark(settings, tmp_path: Path):
    mine = replace(settings, workdir=tmp_path)
    assert rehearsal_rate(mine) is None  # nothing rehearsed: the preflight takes the benchmark's rate
    fits = window_estimate(3_000_000_000, BENCHMARK_RATE, "the benchmark")
    assert (
        fits.ok and fits.message == "about 6 minutes for 3.00 GB at 8.5 MB/s (the benchmark), of the 30-minute window"
    )
    over = window_estimate(20_000_000_000, BENCHMARK_RATE, "the benchmark")
    assert (over.ok, over.severity) == (False, "warning") and "over it, plan a longer window" in over.message

    log = run_log_path(mine)
    (tmp_path / "runs" / "rehearsal").mkdir(parents=True)
    (tmp_path / "runs" / "rehearsal" / PREFLIGHT_RECORD).write_text(json.dumps({"source_bytes": 600_000_000}))
    for status, database in (("started", "alkemio"), ("completed", "alkemio"), ("completed", None)):
        record(log, status, "...", "rehearsal", database)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    events[0]["timestamp"] = "2026-12-01T10:00:00Z"  # the rehearsal took ten minutes
    events[2]["timestamp"] = "2026-12-01T10:10:00Z"
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert rehearsal_rate(mine) == (1_000_000.0, "the rehearsal rehearsal (2026-12-01T10:10:00Z)")


def test_an_extension_the_server_cannot_install_is_named(postgres: PostgresResource):
    with postgres.connect() as conn, conn.cursor() as cur:
        (finding,) = missing_extensions(cur, "PostgreSQL alkemio", ["uuid-ossp", "no_such_extension"])
    assert finding.blocks and finding.item == "PostgreSQL alkemio extension no_such_extension"
    assert finding.message == "the server has no no_such_extension extension: install postgresql-contrib"
