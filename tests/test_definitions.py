"""The code location: it loads (offline), validates with Dagster's CLI, keeps secrets out of what
the UI shows, and runs on the PostgreSQL-backed instance that dagster.yaml describes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from alkemio_assets.catalog_assets import catalog_asset
from alkemio_assets.settings import REPO_ROOT, DatabasePair, Settings
from alkemio_assets.snapshot import read_snapshot
from resources import MySQLResource, PostgresResource


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_definitions_load_without_a_source_server():
    # An unreachable source: loading the definitions must not talk to it.
    result = _python(
        "from alkemio_assets.definitions import defs\n"
        "keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())\n"
        "print(keys); print(sorted(j.name for j in defs.resolve_all_job_defs()))",
        MYSQL_HOST="192.0.2.1",
        MYSQL_PORT="9",
    )
    assert result.returncode == 0, result.stderr
    assert "'alkemio/source_catalog'" in result.stdout and "'kratos/source_catalog'" in result.stdout
    assert "refresh_catalog" in result.stdout


def test_dagster_cli_validates_the_workspace(tmp_path: Path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alkemio_migration" in result.stdout + result.stderr


def test_passwords_never_reach_the_ui():
    result = _python(
        "from alkemio_assets.definitions import defs\n"
        "from dagster._core.remote_representation.external_data import RepositorySnap\n"
        "from dagster._serdes import serialize_value\n"
        "print(serialize_value(RepositorySnap.from_def(defs.get_repository_def())))",
        MYSQL_ROOT_PASSWORD="sentinel-mysql-pw",
        DATABASE_PASSWORD="sentinel-pg-pw",
    )
    assert result.returncode == 0, result.stderr
    assert "sentinel" not in result.stdout
    # what the UI shows instead is the variable's name
    assert "MYSQL_ROOT_PASSWORD" in result.stdout


def test_instance_config_is_postgres_with_a_run_queue():
    config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    assert set(config["storage"]["postgres"]["postgres_db"]["password"]) == {"env"}
    assert config["run_queue"]["max_concurrent_runs"] >= 1


@pytest.mark.e2e
def test_a_run_on_the_postgres_instance_refreshes_the_catalog(
    settings: Settings,
    postgres: PostgresResource,
    mysql: MySQLResource,
    source_databases: dict[str, str],
    target_databases: dict[str, str],
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    storage_db = f"{unique_name}_dagster"
    postgres.create_database(storage_db)
    monkeypatch.setenv("DAGSTER_PG_HOST", settings.target.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(settings.target.port))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", settings.target.user)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", settings.target.password())
    monkeypatch.setenv("DAGSTER_PG_DB", storage_db)
    monkeypatch.setenv("DAGSTER_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    try:
        with dg.DagsterInstance.from_config(str(REPO_ROOT)) as instance:
            pair = DatabasePair("alkemio", source_databases["alkemio"], target_databases["alkemio"])
            result = dg.materialize(
                [catalog_asset(pair, tmp_path)], instance=instance, resources={"mysql": mysql, "postgres": postgres}
            )
            assert result.success
            (run,) = instance.get_runs()
            assert run.run_id == result.run_id
            (event,) = result.get_asset_materialization_events()
            assert event.materialization.metadata["source_tables"].value == 36
            assert event.materialization.metadata["target_tables"].value == 36
        snapshot = read_snapshot("alkemio", tmp_path)
        assert snapshot is not None and len(snapshot.source.tables) == len(snapshot.target.tables) == 36
        assert snapshot.described.startswith("mysql://root@") and "postgresql://postgres@" in snapshot.described
    finally:
        postgres.drop_database(storage_db)
