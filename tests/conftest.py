"""Shared fixtures: the real MariaDB and PostgreSQL of the environment, and per-test databases
with unique names that are dropped afterwards, so tests run in any order and twice."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

# Local servers use trust/empty passwords; an environment that sets them keeps its own.
for _var in ("DATABASE_PASSWORD", "MYSQL_ROOT_PASSWORD", "DAGSTER_PG_PASSWORD"):
    os.environ.setdefault(_var, "")

from alkemio_assets.settings import Settings, load_settings  # noqa: E402
from fixtures import FIXTURE_DATABASES, apply_source_schema, apply_target_schema  # noqa: E402
from fixtures.generator import TableReport, generate  # noqa: E402
from resources import MySQLResource, PostgresResource  # noqa: E402

TEST_SCALE = 0.001


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def mysql(settings: Settings) -> MySQLResource:
    s = settings.source
    return MySQLResource(host=s.host, port=s.port, user=s.user, password=s.password())


@pytest.fixture(scope="session")
def postgres(settings: Settings) -> PostgresResource:
    t = settings.target
    return PostgresResource(host=t.host, port=t.port, user=t.user, password=t.password())


@pytest.fixture
def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def source_databases(mysql: MySQLResource, unique_name: str) -> Iterator[dict[str, str]]:
    """Both fixture databases on MySQL, schema applied, empty but for the schema's seed rows."""
    names = {name: f"{unique_name}_{name}" for name in FIXTURE_DATABASES}
    try:
        for name, database in names.items():
            mysql.create_database(database)
            apply_source_schema(mysql, name, database)
        yield names
    finally:
        for database in names.values():
            mysql.drop_database(database)


@pytest.fixture
def target_databases(postgres: PostgresResource, unique_name: str) -> Iterator[dict[str, str]]:
    """Both fixture databases on PostgreSQL with the baseline schema."""
    names = {name: f"{unique_name}_{name}" for name in FIXTURE_DATABASES}
    try:
        for name, database in names.items():
            postgres.create_database(database)
            apply_target_schema(postgres, name, database)
        yield names
    finally:
        for database in names.values():
            postgres.drop_database(database)


@pytest.fixture
def generated_source(
    mysql: MySQLResource, source_databases: dict[str, str]
) -> tuple[dict[str, str], list[TableReport]]:
    """The fixture source filled at the test scale."""
    return source_databases, generate(mysql, source_databases, TEST_SCALE)
