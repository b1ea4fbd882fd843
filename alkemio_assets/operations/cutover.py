"""The cut-over: the applications' PostgreSQL settings, written only when every ERROR check of
the migration has passed on the data as it is now: `cutover.env` in the run folder, and the
applications' own env file rewritten (operations/app_env.py) when MIGRATION_APP_ENV_FILE names it.

Dagster's blocking checks hold back only the assets of the same run: materialized alone, from
the UI or a later run, the cut-over would not wait for them. So it reads the latest evaluation
of every ERROR check itself and refuses on any that failed, never ran, or ran before its asset
was last materialized (it judged other data).
"""

# No `from __future__ import annotations`: Dagster reads the context annotations.
from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from alkemio_assets.core.settings import Settings
from alkemio_assets.operations.app_env import postgres_settings, switch_to_postgres
from alkemio_assets.operations.report import CUTOVER_SETTINGS, REPORT_KEY, report_folder
from alkemio_assets.stages.run_log import record, run_log_path

CUTOVER_KEY = dg.AssetKey(["migration", "cutover"])
SHOWN = 10  # refusals named in the message; the metadata lists them all


def refusals(instance: dg.DagsterInstance, gates: Sequence[dg.AssetCheckKey]) -> list[str]:
    """Each ERROR check whose latest evaluation does not let the cut-over go, and why. Two
    queries for all of them (a query per check took 8 s for the 900 checks of the real schemas)."""
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(gates))
    materialized = instance.get_latest_materialization_events({key.asset_key for key in gates})
    found = []
    for key in gates:
        name = f"{key.asset_key.to_user_string()}:{key.name}"
        check = checks.get(key)
        if check is None or check.status == AssetCheckExecutionRecordStatus.PLANNED:
            found.append(f"{name}: never evaluated")
        elif check.status != AssetCheckExecutionRecordStatus.SUCCEEDED:
            found.append(f"{name}: failed in run {check.run_id}")
        elif (latest := materialized.get(key.asset_key)) and latest.run_id != check.run_id:
            found.append(f"{name}: evaluated in run {check.run_id}, before the asset was materialized again")
    return found


def cutover_asset(settings: Settings, gates: Sequence[dg.AssetCheckKey] = ()) -> dg.AssetsDefinition:
    @dg.asset(
        key=CUTOVER_KEY,
        deps=[REPORT_KEY],
        group_name="migration",
        kinds={"postgres"},
        description="The applications' PostgreSQL settings (cutover.env), once every ERROR check passed.",
    )
    def cutover(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Write the settings the applications switch to, once every ERROR check passed; the
        password stays a variable reference."""
        if refused := refusals(context.instance, gates):
            more = f" and {len(refused) - SHOWN} more" if len(refused) > SHOWN else ""
            message = (
                f"cut-over refused, {len(refused)} of {len(gates)} ERROR checks do not allow it: "
                + "; ".join(refused[:SHOWN])
                + more
            )
            record(
                run_log_path(settings), "failed", message, context.run.run_id, action="cutover", say=context.log.error
            )
            raise dg.Failure(
                message,
                metadata={"refused": dg.MetadataValue.md("\n".join(f"- {r}" for r in refused))},
            )
        folder = report_folder(settings, context.run.run_id)
        values = postgres_settings(settings)
        lines = [
            "# Alkemio and Kratos on PostgreSQL (seed: 'Update application configuration').",
            *(f"{name}={value}" for name, value in values.items()),
            f"# DATABASE_PASSWORD=<the value of {settings.target.password_env}>",
        ]
        (folder / CUTOVER_SETTINGS).write_text("\n".join(lines) + "\n")
        metadata: dict[str, dg.RawMetadataValue] = {
            "settings": dg.MetadataValue.path(str(folder / CUTOVER_SETTINGS)),
            "lines": dg.MetadataValue.md("\n".join(f"- `{name}={value}`" for name, value in values.items())),
            "rollback": "job rollback: points the env file back at MySQL and proves MySQL intact",
        }
        if switched := switch_to_postgres(settings):
            env_file, backup = switched
            metadata |= {"env_file": dg.MetadataValue.path(str(env_file)), "backup": dg.MetadataValue.path(str(backup))}
            done = f"cut-over: {env_file} points at PostgreSQL ({len(values)} lines; as before in {backup.name})"
        else:
            done = f"cut-over: settings in {folder / CUTOVER_SETTINGS}; no MIGRATION_APP_ENV_FILE to rewrite"
        record(run_log_path(settings), "completed", done, folder.name, action="cutover", say=context.log.error)
        context.log.info(done)
        return dg.MaterializeResult(metadata=metadata)

    return cutover
