"""The cut-over: the applications' PostgreSQL settings (cutover.env), written only when every
ERROR check of the migration has passed on the data as it is now.

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
from alkemio_assets.operations.report import REPORT_KEY, report_folder
from alkemio_assets.stages.run_log import record, run_log_path

CUTOVER_KEY = dg.AssetKey(["migration", "cutover"])
SHOWN = 10  # refusals named in the message; the metadata lists them all


def refusals(instance: dg.DagsterInstance, gates: Sequence[dg.AssetCheckKey]) -> list[str]:
    """Each ERROR check whose latest evaluation does not let the cut-over go, and why."""
    found = []
    for key in gates:
        name = f"{key.asset_key.to_user_string()}:{key.name}"
        check = instance.get_latest_asset_check_evaluation_record(key)
        if check is None or check.status == AssetCheckExecutionRecordStatus.PLANNED:
            found.append(f"{name}: never evaluated")
        elif check.status != AssetCheckExecutionRecordStatus.SUCCEEDED:
            found.append(f"{name}: failed in run {check.run_id}")
        elif (latest := instance.get_latest_materialization_event(key.asset_key)) and latest.run_id != check.run_id:
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
            record(run_log_path(settings), "failed", message, context.run.run_id)
            raise dg.Failure(
                message,
                metadata={"refused": dg.MetadataValue.md("\n".join(f"- {r}" for r in refused))},
            )
        folder = report_folder(settings, context.run.run_id)
        target = settings.target
        lines = [
            "# Alkemio and Kratos on PostgreSQL (seed: 'Update application configuration').",
            "DATABASE_TYPE=postgres",
            f"DATABASE_HOST={target.host}",
            f"DATABASE_PORT={target.port}",
            f"DATABASE_USERNAME={target.user}",
            f"# DATABASE_PASSWORD=<the value of {target.password_env}>",
        ]
        for pair in settings.pairs:
            lines.append(f"# {pair.name}: database {pair.target_database}")
        (folder / "cutover.env").write_text("\n".join(lines) + "\n")
        return dg.MaterializeResult(
            metadata={
                "settings": dg.MetadataValue.path(str(folder / "cutover.env")),
                "rollback": "stop services; restore DATABASE_TYPE=mysql, DATABASE_HOST=mysql; verify MySQL (never written); restart",
            }
        )

    return cutover
