"""Preflight, before anything moves: each usual failure said as what it is (wrong password,
unknown database on either side, a missing grant named, MySQL 8's caching_sha2_password without
TLS), the versions said plainly, disk for the files, and the job that holds back the tables."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pymysql
import pytest
from conftest import failure_message, migration_settings, run_job

from alkemio_assets.operations.preflight import (
    disk_space,
    explain_mysql,
    mysql_version,
    postgres_version,
    preflight,
)
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


@pytest.mark.e2e
def test_a_wrong_password_and_unknown_databases_are_named(mysql: MySQLResource, postgres: PostgresResource, tmp_path):
    settings = migration_settings({"alkemio": "nowhere_a", "kratos": "nowhere_k"}, str(tmp_path))
    by_item = {f.item: f for f in preflight(settings, mysql, postgres)}
    assert by_item["MySQL nowhere_a"].message.startswith("database nowhere_a does not exist on MySQL")
    assert "check ALKEMIO_MYSQL_DATABASE" in by_item["MySQL nowhere_a"].message
    assert by_item["PostgreSQL nowhere_k"].message == (
        "database nowhere_k does not exist on PostgreSQL: create it (runbook step 1), or check KRATOS_DATABASE_NAME"
        ' (PostgreSQL: database "nowhere_k" does not exist)'
    )
    assert all(f.blocks for name, f in by_item.items() if "nowhere" in name)

    wrong = MySQLResource(host=mysql.host, port=mysql.port, user=mysql.user, password="not-the-password")
    (finding, *_) = preflight(settings, wrong, postgres)
    assert finding.message.startswith(f"wrong password for '{mysql.user}'") and "Access denied" in finding.message


@pytest.mark.e2e
def test_a_missing_grant_is_named(mysql: MySQLResource, postgres: PostgresResource, source_databases, tmp_path):
    user = f"pf{source_databases['alkemio'][-8:]}"
    with mysql.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{user}'")
    try:
        reader = MySQLResource(host=mysql.host, port=mysql.port, user=user, password=f"pw-{user}")
        settings = migration_settings(source_databases, str(tmp_path))
        (finding, *_) = preflight(settings, reader, postgres)
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

    broken = migration_settings({"alkemio": "nowhere_a", "kratos": source_databases["kratos"]}, str(tmp_path))
    result = run_job(broken, instance, "preflight")
    assert not result.success
    assert "preflight: database nowhere_a does not exist on MySQL" in failure_message(result)
