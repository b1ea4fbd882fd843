"""scripts/runbook: the seed's script names, each a thin call into the same assets and jobs, its
--help saying which; the selections it passes to `dg launch` pick what the seed's script did."""

from __future__ import annotations

import re
import subprocess

import dagster as dg
import pytest
from conftest import migration_settings, run_job

from alkemio_assets.core.settings import REPO_ROOT
from alkemio_assets.definitions import build_definitions

RUNBOOK = REPO_ROOT / "scripts" / "runbook"
SEED_SCRIPTS = [
    "export_alkemio_mysql_to_csv.sh",
    "export_kratos_mysql_to_csv.sh",
    "import_csv_to_postgres_alkemio.sh",
    "import_csv_to_postgres_kratos.sh",
    "log_migration_run.sh",
]


def _help(name: str) -> str:
    done = subprocess.run([str(RUNBOOK / name), "--help"], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_every_seed_script_and_the_cutover_and_rollback_have_a_command_that_says_what_it_calls() -> None:
    names = sorted(p.name for p in RUNBOOK.iterdir() if not p.name.startswith("_"))
    assert names == sorted([*SEED_SCRIPTS, "cutover.sh", "rollback.sh"])
    for name in names:
        text = _help(name)
        assert text.startswith(f"usage: scripts/runbook/{name}") and "It calls" in text, name
    assert "dg launch --job rollback" in _help("rollback.sh")
    assert "-m alkemio_assets.stages.run_log" in _help("log_migration_run.sh")
    unknown = subprocess.run([str(RUNBOOK / "_runbook")], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "not one of the runbook's commands" in unknown.stderr


@pytest.mark.e2e
def test_export_and_import_select_one_databases_phases(source_databases, target_databases, tmp_path, instance):
    settings = migration_settings(source_databases, str(tmp_path))
    assert run_job(settings, instance, "refresh_catalog").success
    graph = build_definitions(settings).resolve_asset_graph()
    everything = graph.get_all_asset_keys()

    def selected(name: str) -> set[str]:
        (selection,) = re.findall(r"dg launch --assets '([^']+)'", _help(name))
        return {k.to_user_string() for k in dg.AssetSelection.from_string(selection).resolve(graph)}

    exported = selected("export_alkemio_mysql_to_csv.sh")
    assert exported == {k.to_user_string() for k in everything if k.path[:2] == ["alkemio", "csv"]}
    imported = selected("import_csv_to_postgres_kratos.sh")
    assert imported == {
        k.to_user_string()
        for k in everything
        if k.path[0] == "kratos" and k.path[1] in ("staged", "postgres", "verified")
    }
    assert selected("cutover.sh") == {"migration/report", "migration/cutover"}


def test_the_settings_check_of_runbook_step_1_loads_env_as_the_jobs_do() -> None:
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / "settings")], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.startswith("Settings(source=Endpoint(kind='mysql'") and "password_env=" in done.stdout
