"""The applications' env file: the cut-over points it at PostgreSQL, the rollback back at MySQL,
and every other line stays as the operator wrote it."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from alkemio_assets.core.settings import Settings
from alkemio_assets.operations.app_env import (
    backup_path,
    env_values,
    postgres_settings,
    rewrite_env,
    switch_to_mysql,
    switch_to_postgres,
)

# the seed's .env.docker on MySQL, shortened, with what an operator's file has besides
ON_MYSQL = """# Alkemio server
MYSQL_DATABASE=alkemio
MYSQL_ROOT_PASSWORD=toor

DATABASE_TYPE=mysql
DATABASE_HOST=mysql
export DATABASE_PORT=3306
DATABASE_USERNAME=root
DATABASE_PASSWORD=toor
AUTH_ORY_KRATOS_PUBLIC_BASE_URL=http://kratos:4433/
"""


def test_the_cutover_lines_name_both_applications_databases_and_no_password(settings: Settings):
    values = postgres_settings(settings)
    target = settings.target
    assert values["DATABASE_TYPE"] == "postgres" and values["DATABASE_HOST"] == target.host
    assert values["DATABASE_PORT"] == str(target.port) and values["DATABASE_USERNAME"] == target.user
    assert values["DATABASE_NAME"] == settings.pair("alkemio").target_database
    dsn = values["KRATOS_DSN"]
    assert dsn.startswith(f"postgres://{target.user}:${{DATABASE_PASSWORD}}@{target.host}:{target.port}/")
    assert f"/{settings.pair('kratos').target_database}?" in dsn
    assert "DATABASE_PASSWORD" not in values


def test_a_rewrite_changes_only_the_named_lines_and_appends_the_missing():
    text = rewrite_env(ON_MYSQL, {"DATABASE_TYPE": "postgres", "DATABASE_PORT": "5432", "DATABASE_NAME": "alkemio"})
    assert text.splitlines() == [
        "# Alkemio server",
        "MYSQL_DATABASE=alkemio",
        "MYSQL_ROOT_PASSWORD=toor",
        "",
        "DATABASE_TYPE=postgres",
        "DATABASE_HOST=mysql",
        "export DATABASE_PORT=5432",
        "DATABASE_USERNAME=root",
        "DATABASE_PASSWORD=toor",
        "AUTH_ORY_KRATOS_PUBLIC_BASE_URL=http://kratos:4433/",
        "DATABASE_NAME=alkemio",
    ]
    # None removes a line; a file without a final newline gets one before what is appended
    assert rewrite_env("A=1\nB=2", {"A": None, "C": "3"}) == "B=2\nC=3\n"
    assert rewrite_env("A=1\r\nB=2\r\n", {"B": "9"}) == "A=1\r\nB=9\r\n"


def test_cutover_then_rollback_gives_back_the_file_the_applications_ran_on(settings: Settings, tmp_path: Path):
    env_file = tmp_path / ".env.docker"
    env_file.write_text(ON_MYSQL)
    env_file.chmod(0o640)
    mine = replace(settings, app_env_file=env_file)

    assert switch_to_postgres(mine) == (env_file, backup_path(env_file))
    after = env_values(env_file.read_text())
    assert {k: after[k] for k in postgres_settings(mine)} == postgres_settings(mine)
    assert after["DATABASE_PASSWORD"] == "toor" and after["MYSQL_ROOT_PASSWORD"] == "toor"  # untouched
    assert backup_path(env_file).read_text() == ON_MYSQL
    assert os.stat(env_file).st_mode & 0o777 == 0o640  # the operator's mode, not ours
    # a second cut-over (a rehearsal) keeps the backup of the file on MySQL
    switch_to_postgres(mine)
    assert backup_path(env_file).read_text() == ON_MYSQL

    assert "as .env.docker.before-cutover has them" in (switch_to_mysql(mine) or "")
    assert env_file.read_text() == ON_MYSQL  # KRATOS_DSN and DATABASE_NAME, added, are gone again


def test_rollback_without_a_backup_sets_the_seeds_two_lines(settings: Settings, tmp_path: Path):
    env_file = tmp_path / "app.env"
    env_file.write_text("DATABASE_TYPE=postgres\nDATABASE_HOST=pg\nOTHER=1\n")
    restored = switch_to_mysql(replace(settings, app_env_file=env_file))
    assert "no app.env.before-cutover to restore from" in (restored or "")
    assert env_file.read_text() == f"DATABASE_TYPE=mysql\nDATABASE_HOST={settings.source.host}\nOTHER=1\n"


def test_no_env_file_configured_touches_nothing_and_a_missing_one_is_named(settings: Settings, tmp_path: Path):
    assert switch_to_postgres(replace(settings, app_env_file=None)) is None
    assert switch_to_mysql(replace(settings, app_env_file=None)) is None
    with pytest.raises(FileNotFoundError, match=r"MIGRATION_APP_ENV_FILE=.*nothere\.env: no such file"):
        switch_to_postgres(replace(settings, app_env_file=tmp_path / "nothere.env"))
