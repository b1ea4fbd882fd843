"""Shared fixtures: the real MariaDB and PostgreSQL of the environment, and per-test databases
with unique names that are dropped afterwards, so tests run in any order and twice."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql

# Local servers use trust/empty passwords; an environment that sets them keeps its own.
for _var in ("DATABASE_PASSWORD", "MYSQL_ROOT_PASSWORD", "DAGSTER_PG_PASSWORD"):
    os.environ.setdefault(_var, "")

from alkemio_assets.core.settings import REPO_ROOT, Settings, load_settings  # noqa: E402
from fixtures import (  # noqa: E402
    FIXTURE_DATABASES,
    HANDWRITTEN,
    HANDWRITTEN_CONFIG,
    REAL,
    apply_source_schema,
    apply_target_schema,
)
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


@contextmanager
def _fixture_databases(server, apply, unique_name: str, root: Path) -> Iterator[dict[str, str]]:
    """Both fixture databases of `root` on one server, schema applied; dropped afterwards."""
    names = {name: f"{unique_name}_{name}" for name in FIXTURE_DATABASES}
    try:
        for name, database in names.items():
            server.create_database(database)
            apply(server, name, database, root)
        yield names
    finally:
        for database in names.values():
            server.drop_database(database)


def use_storage_database(
    monkeypatch: pytest.MonkeyPatch, postgres: PostgresResource, database: str, artifacts: Path
) -> None:
    """The environment dagster.yaml reads (DAGSTER_PG_*, DAGSTER_ARTIFACTS_DIR), pointed at a
    storage database of the test's own on the target server."""
    for var, value in {
        "DAGSTER_PG_HOST": postgres.host,
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USERNAME": postgres.user,
        "DAGSTER_PG_PASSWORD": postgres.password,
        "DAGSTER_PG_DB": database,
        "DAGSTER_ARTIFACTS_DIR": str(artifacts),
    }.items():
        monkeypatch.setenv(var, value)


def fixture_sources(mysql: MySQLResource, unique_name: str, root: Path):
    return _fixture_databases(mysql, apply_source_schema, unique_name, root)


def fixture_targets(postgres: PostgresResource, unique_name: str, root: Path):
    return _fixture_databases(postgres, apply_target_schema, unique_name, root)


@pytest.fixture
def source_databases(mysql: MySQLResource, unique_name: str) -> Iterator[dict[str, str]]:
    """Both hand-written fixture databases on MySQL, schema applied, empty but for the schema's seed rows."""
    with fixture_sources(mysql, unique_name, HANDWRITTEN) as names:
        yield names


@pytest.fixture
def target_databases(postgres: PostgresResource, unique_name: str) -> Iterator[dict[str, str]]:
    """Both hand-written fixture databases on PostgreSQL with the baseline schema."""
    with fixture_targets(postgres, unique_name, HANDWRITTEN) as names:
        yield names


@pytest.fixture
def real_source_databases(mysql: MySQLResource, unique_name: str) -> Iterator[dict[str, str]]:
    """Alkemio's and Kratos's real MySQL schemas (from their migrations), empty but for what those write."""
    with fixture_sources(mysql, unique_name, REAL) as names:
        yield names


@pytest.fixture
def real_target_databases(postgres: PostgresResource, unique_name: str) -> Iterator[dict[str, str]]:
    """Alkemio's PostgreSQL baseline and Kratos's PostgreSQL migrations, empty but for what those write."""
    with fixture_targets(postgres, unique_name, REAL) as names:
        yield names


@pytest.fixture
def generated_source(
    mysql: MySQLResource, source_databases: dict[str, str]
) -> tuple[dict[str, str], list[TableReport]]:
    """The fixture source filled at the test scale."""
    return source_databases, generate(mysql, source_databases, TEST_SCALE)


# -- running the migration through Dagster's API ------------------------------------------------

import dagster as dg  # noqa: E402

from alkemio_assets.definitions import build_definitions  # noqa: E402


def run_environment(
    databases: dict[str, str],
    workdir: str,
    targets: dict[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What a run over the per-test databases reads from its environment (or a `.env`): `base`
    (this process's environment unless given) with each pair's database names (the same on both
    servers unless `targets` names the PostgreSQL ones) and work files in `workdir`."""
    env = dict(os.environ if base is None else base)
    targets = targets or databases
    for name, database in databases.items():
        env[f"{name.upper()}_MYSQL_DATABASE"] = database
        env[f"{name.upper()}_DATABASE_NAME"] = targets[name]
    # the seed's names, which win over ALKEMIO_* for the alkemio pair
    for seed, side in (("MYSQL_DATABASE", databases), ("DATABASE_NAME", targets)):
        if "alkemio" in side:
            env[seed] = side["alkemio"]
        else:
            env.pop(seed, None)
    # per-test copies: no backup to prove, nobody else writing, no shared hydra/synapse databases
    # (tests/operations/test_preflight.py drills each of these)
    return env | {
        "MIGRATION_WORKDIR": workdir,
        "MIGRATION_BACKUP": "none",
        "MIGRATION_QUIET_SECONDS": "0",
        "MIGRATION_EXTRA_DATABASES": "",
    }


def migration_settings(
    databases: dict[str, str], workdir: str, config_path=None, targets: dict[str, str] | None = None
) -> Settings:
    """Settings for the per-test databases (same name on both servers, unless `targets` names
    the PostgreSQL ones), work files in `workdir`."""
    env = run_environment(databases, workdir, targets)
    return load_settings(env, config_path=config_path or HANDWRITTEN_CONFIG)


def run_job(settings: Settings, instance: dg.DagsterInstance, job: str, selection: list[str] | None = None):
    """Build the definitions from the current snapshots and run a job (or a subset of it)."""
    defs = build_definitions(settings)
    job_def = defs.resolve_job_def(job)
    keys = None if selection is None else [dg.AssetKey.from_user_string(s) for s in selection]
    return job_def.execute_in_process(instance=instance, raise_on_error=False, asset_selection=keys)


def failure_message(result) -> str:
    """The error messages of a failed run, joined."""
    texts = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if event.is_step_failure and error is not None:
            texts.append(error.message)
            cause = error.cause
            while cause is not None:
                texts.append(cause.message)
                cause = cause.cause
    return "\n".join(texts)


def failed_error_checks(result) -> list[tuple[str, str]]:
    """(asset, check) of every ERROR-severity check of a run that did not pass."""
    return [
        (e.asset_key.to_user_string(), e.check_name)
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def materialize_all(settings: Settings, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """What the UI's "Materialize all" does: every asset of the code location, twice the first
    time (the first run takes the catalog snapshot the table assets are built from)."""
    for _ in range(2):
        defs = build_definitions(settings)
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
        assert result.success
    return result


@pytest.fixture
def migrated(generated_source, target_databases, tmp_path, instance: dg.DagsterInstance):
    """The hand-written fixture migrated for one test that changes the source or runs again."""
    databases, _ = generated_source
    assert databases == target_databases  # same names on both servers
    settings = migration_settings(databases, str(tmp_path))
    result = materialize_all(settings, instance)
    return settings, databases, result


@contextmanager
def migrated_fixture(
    mysql: MySQLResource, postgres: PostgresResource, root: Path, workdir: str, config: Path, scale: float = TEST_SCALE
):
    """A fixture's schemas (`root`) filled at `scale` and migrated with `config`."""
    unique_name = f"t{uuid.uuid4().hex[:12]}"
    with (
        fixture_sources(mysql, unique_name, root) as databases,
        fixture_targets(postgres, unique_name, root),
        dg.DagsterInstance.ephemeral() as instance,
    ):
        generate(mysql, databases, scale)
        settings = migration_settings(databases, workdir, config_path=config)
        yield settings, databases, materialize_all(settings, instance)


@pytest.fixture(scope="module")
def migrated_once(mysql: MySQLResource, postgres: PostgresResource, tmp_path_factory: pytest.TempPathFactory):
    """The hand-written fixture migrated once for a module's tests that only read it."""
    workdir = str(tmp_path_factory.mktemp("migrated"))
    with migrated_fixture(mysql, postgres, HANDWRITTEN, workdir, HANDWRITTEN_CONFIG) as migrated:
        yield migrated


@pytest.fixture
def migrated_copy(migrated_once, postgres: PostgresResource, unique_name: str):
    """The module's migrated targets copied for one test to break (CREATE DATABASE … TEMPLATE, a
    file copy), with the settings pointed at the copies; the MySQL source and the work files are
    the module's, which the test only reads. Yields (settings, the copies by name, the result)."""
    settings, sources, result = migrated_once
    copies = {name: f"{unique_name}_{name}" for name in sources}
    try:
        for name, copy in copies.items():
            copy_database(postgres, sources[name], copy)
        yield migration_settings(sources, str(settings.workdir), targets=copies), copies, result
    finally:
        for copy in copies.values():
            postgres.drop_database(copy)


def copy_database(postgres: PostgresResource, template: str, copy: str) -> None:
    """`copy` as a file copy of `template`, which no session may use meanwhile."""
    with postgres.connect(autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (template,),
        )
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(copy), sql.Identifier(template)))


def target_state(postgres: PostgresResource, database: str) -> dict[str, object]:
    """What "left exactly as it was" means for a target database: every table's row count and
    content hash, every constraint validated, every trigger enabled, and no relation, prepared
    transaction or session of ours more or less than before."""
    with postgres.connect(database) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        content = {}
        for table in tables:
            ident = '"' + table.replace('"', '""') + '"'
            content[table] = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {ident} t"
            ).fetchone()
        return {
            "tables": content,
            "relations": conn.execute(
                "SELECT relname, relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
                "AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1, 2"
            ).fetchall(),
            "unvalidated_constraints": conn.execute(
                "SELECT conname FROM pg_constraint WHERE NOT convalidated ORDER BY 1"
            ).fetchall(),
            "disabled_triggers": conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgenabled <> 'O' ORDER BY 1"
            ).fetchall(),
            "prepared_transactions": conn.execute(
                "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
            ).fetchall(),
            "sessions_of_ours": conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'alkemio-migration %' AND pid <> pg_backend_pid()"
            ).fetchone(),
        }


# --- A checkout of the scripts as a newcomer has it (tests/ui) ----------------------------------
OWN = {".env", "var", ".git"}  # the checkout's own: its settings and its work files


@dataclass(frozen=True)
class Checkout:
    root: Path
    port: int  # DAGSTER_PORT, for scripts/ui
    storage: str  # the Dagster storage database its .env names

    def configure(self, **settings: str) -> None:
        """Lines added to its .env (later lines win, for the scripts' shell and for Dagster)."""
        with (self.root / ".env").open("a") as env:
            env.writelines(f"{name}={value}\n" for name, value in settings.items())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def checkout(tmp_path: Path, postgres: PostgresResource, unique_name: str) -> Iterator[Checkout]:
    """The repository's files linked into a folder of its own, with the `.env` scripts/bootstrap
    makes from `.env.example`, but for a Dagster storage database of the test's (dropped afterwards)."""
    root = tmp_path / "checkout"
    root.mkdir()
    for entry in REPO_ROOT.iterdir():
        if entry.name not in OWN:
            (root / entry.name).symlink_to(entry)
    storage = f"{unique_name}_dagster"
    settings = (REPO_ROOT / ".env.example").read_text().replace("DAGSTER_PG_DB=dagster", f"DAGSTER_PG_DB={storage}")
    assert storage in settings
    (root / ".env").write_text(settings)
    checkout = Checkout(root, free_port(), storage)
    checkout.configure(DAGSTER_PORT=str(checkout.port))
    try:
        yield checkout
    finally:
        postgres.drop_database(storage)
