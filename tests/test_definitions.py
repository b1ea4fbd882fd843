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
from conftest import migration_settings, run_job, use_storage_database

from alkemio_assets.catalog.snapshot import read_snapshot
from alkemio_assets.core.settings import REPO_ROOT, DatabasePair, Settings
from alkemio_assets.graph.catalog_asset import catalog_asset
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
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        assert config[storage]["config"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert config["event_log_storage"]["class"] == "PooledPostgresEventLogStorage"
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
    use_storage_database(monkeypatch, postgres, storage_db, tmp_path / "artifacts")
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


def test_the_kubernetes_example_loads_with_the_definitions(
    monkeypatch, source_databases, target_databases, tmp_path: Path, instance
):
    """examples/kubernetes: the instance file is valid for K8sRunLauncher and the run config for
    k8s_job_executor on the same definitions, without a cluster (nothing is launched)."""
    from dagster._config import process_config, resolve_to_config_type
    from dagster._core.instance.config import dagster_instance_config
    from dagster_k8s import K8sRunLauncher, k8s_job_executor

    from alkemio_assets.definitions import build_definitions

    settings = migration_settings(source_databases, str(tmp_path))
    assert run_job(settings, instance, "refresh_catalog").success  # the snapshots the table assets need
    example = REPO_ROOT / "examples" / "kubernetes"
    for name in ("MIGRATION_IMAGE", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "5432" if name.endswith("PORT") else "example")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-a-kubernetes-secret")
    instance, _ = dagster_instance_config(str(example))
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s.launcher", "K8sRunLauncher")
    # as the instance checks a configurable class's config when it builds it (env values resolved)
    checked = process_config(resolve_to_config_type(K8sRunLauncher.config_type()), launcher["config"])
    assert checked.success, checked.errors
    assert checked.value["job_image"] == "example"
    # the password is a reference to a variable that a Kubernetes Secret fills, never a value
    assert instance["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}

    # the launcher's environment (MIGRATION_EXECUTOR, MIGRATION_SHARDS) is what the steps build from
    for name, _, value in (variable.partition("=") for variable in launcher["config"]["env_vars"]):
        monkeypatch.setenv(name, value)
    settings = migration_settings(source_databases, str(tmp_path))
    assert settings.shards > 1
    defs = build_definitions(settings, engine="kubernetes")
    run_config = yaml.safe_load((example / "run_config.yaml").read_text())
    for job_name in ("migrate_all", "migrate_alkemio", "migrate_kratos"):
        job = defs.resolve_job_def(job_name)
        assert job.executor_def is k8s_job_executor
        assert any(node.name.endswith(f"_of_{settings.shards}") for node in job.graph.node_defs)
        dg.validate_run_config(job, run_config)  # raises DagsterInvalidConfigError when it does not fit
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(defs.resolve_job_def("migrate_all"), {"execution": {"config": {"max_concurent": 4}}})


def test_an_unknown_engine_is_refused(tmp_path: Path):
    from alkemio_assets.core.settings import SettingsError
    from alkemio_assets.definitions import build_definitions

    settings = migration_settings({"alkemio": "unused", "kratos": "unused"}, str(tmp_path))
    with pytest.raises(SettingsError, match=r"MIGRATION_EXECUTOR='spark'.*multiprocess, kubernetes"):
        build_definitions(settings, engine="spark")
