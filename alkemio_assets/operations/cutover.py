"""The cut-over: the applications' PostgreSQL settings (cutover.env), written once the report
stands, that is once every ERROR check of the run passed."""

# No `from __future__ import annotations`: Dagster reads the context annotations.
import dagster as dg

from alkemio_assets.core.settings import Settings
from alkemio_assets.operations.report import REPORT_KEY, report_folder

CUTOVER_KEY = dg.AssetKey(["migration", "cutover"])


def cutover_asset(settings: Settings) -> dg.AssetsDefinition:
    @dg.asset(
        key=CUTOVER_KEY,
        deps=[REPORT_KEY],
        group_name="migration",
        kinds={"postgres"},
        description="The applications' PostgreSQL settings (cutover.env), once every ERROR check passed.",
    )
    def cutover(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Write the settings the applications switch to; the password stays a variable reference."""
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
