"""Rollback, the seed's way back to MySQL: point the applications' env file back at MySQL
(operations/app_env.py), prove MySQL still holds what the migration exported, record
`rolled_back` in the run log, and say the steps left to people.

The proof is exact: each table the run exported is read again as the export reads it, into a
scratch file that is deleted, and its rows and SHA-256 must be those the manifest recorded. A
row changed, added or deleted on MySQL since then is named by its table. Nothing is written to
MySQL or PostgreSQL.
"""

# No `from __future__ import annotations`: Dagster reads the context and resource annotations.
import json
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dagster as dg

from alkemio_assets.catalog.contract import plan_database
from alkemio_assets.catalog.live import live_catalogs
from alkemio_assets.core.settings import Settings
from alkemio_assets.operations.app_env import switch_to_mysql
from alkemio_assets.stages.export import export
from alkemio_assets.stages.manifest import MANIFEST
from alkemio_assets.stages.run_log import record, run_log_path
from resources import MySQLResource, PostgresResource

# the seed's rollback procedure, less what this job does (stop the services before it runs)
MANUAL_STEPS = (
    "Start Kratos and the Alkemio server on MySQL, and check that users can log in.",
    "Keep the run folder and the PostgreSQL databases as they are, for the investigation.",
    "Document the issues for the investigation and the next attempt.",
)
# without MIGRATION_APP_ENV_FILE the job cannot restore the settings: that step stays with people
RESTORE_BY_HAND = (
    "Restore the MySQL settings in the applications' env file: DATABASE_TYPE=mysql, DATABASE_HOST=<the MySQL host>."
)


@dataclass(frozen=True)
class TableProof:
    database: str
    table: str
    exported: tuple[int, str]  # rows and SHA-256 the manifest recorded
    now: tuple[int, str]

    @property
    def intact(self) -> bool:
        return self.exported == self.now

    def describe(self) -> str:
        if self.intact:
            return f"{self.database}.{self.table}: {self.now[0]} rows, as exported"
        return (
            f"{self.database}.{self.table} changed on MySQL since the export: {self.exported[0]} rows then, "
            f"{self.now[0]} now; SHA-256 {self.exported[1][:12]}… then, {self.now[1][:12]}… now"
        )


def exported_run(settings: Settings, run_id: str | None) -> Path:
    """The run folder to prove against: the one named, else the newest with a succeeded export."""
    runs = settings.workdir / "runs"
    if run_id:
        if not (runs / run_id).is_dir():
            raise FileNotFoundError(f"no run folder {runs / run_id}")
        return runs / run_id
    succeeded = [
        path.parent.parent
        for path in runs.glob(f"*/*/{MANIFEST}")
        if json.loads(path.read_text(encoding="utf-8")).get("outcome") == "succeeded"
    ]
    if not succeeded:
        raise FileNotFoundError(f"no run under {runs} has exported a database: nothing to prove MySQL against")
    return max(succeeded, key=lambda p: p.stat().st_mtime)


def prove_intact(
    settings: Settings, mysql: MySQLResource, postgres: PostgresResource, folder: Path
) -> list[TableProof]:
    """Every table the run exported, read again and compared with the manifest's record."""
    proofs = []
    for pair in settings.pairs:
        path = folder / pair.name / MANIFEST
        if not path.exists():
            continue
        recorded = {n: t for n, t in json.loads(path.read_text(encoding="utf-8"))["tables"].items() if "sha256" in t}
        plans = plan_database(pair, *live_catalogs(pair, mysql, postgres), only=set(recorded))
        with tempfile.TemporaryDirectory(dir=settings.workdir) as scratch:
            for name in sorted(recorded):
                scratch_file = Path(scratch) / f"{name}.csv"
                again, _ = export(mysql, pair.source_database, plans[name], scratch_file, 1)
                scratch_file.unlink()  # one table's copy at a time on the disk
                entry = recorded[name]
                proofs.append(TableProof(pair.name, name, (entry["rows"], entry["sha256"]), (again.rows, again.sha256)))
    return proofs


class RollbackConfig(dg.Config):
    run_id: str = ""  # the migration run to prove MySQL against; empty: the newest that exported


def rollback_job(settings: Settings) -> dg.JobDefinition:
    @dg.op(
        name="prove_mysql_intact",
        description="Prove MySQL still holds what the migration exported; record rolled_back.",
    )
    def rollback(
        context: dg.OpExecutionContext, config: RollbackConfig, mysql: MySQLResource, postgres: PostgresResource
    ) -> None:
        """Point the env file back at MySQL; read every exported table again and compare; record
        the rollback; list the manual steps."""
        folder = exported_run(settings, config.run_id or None)
        note = partial(record, run_log_path(settings), run_id=folder.name, action="rollback", say=context.log.error)
        if restored := switch_to_mysql(settings):
            note("in_progress", f"rollback: {restored}")
            context.log.info(f"env file back on MySQL: {restored}")
        proofs = prove_intact(settings, mysql, postgres, folder)
        changed = [p.describe() for p in proofs if not p.intact]
        manual = MANUAL_STEPS if restored else (RESTORE_BY_HAND, *MANUAL_STEPS)
        steps = "\n".join(f"{i}. {step}" for i, step in enumerate(manual, 1))
        if changed:
            message = f"MySQL is not as run {folder.name} exported it: " + "; ".join(changed)
            note("failed", f"rollback: {message}")
            raise dg.Failure(
                message + "\nInvestigate before starting the applications on MySQL.",
                metadata={"changed": dg.MetadataValue.md("\n".join(f"- {c}" for c in changed))},
            )
        note("rolled_back", f"MySQL intact: {len(proofs)} tables, rows and bytes as run {folder.name} exported them")
        context.log.info(
            f"MySQL is intact: {len(proofs)} tables, rows and bytes as run {folder.name} exported them. "
            f"Left to do by hand:\n{steps}"
        )

    @dg.job(
        name="rollback",
        description="The way back to MySQL: the env file pointed back, MySQL proved intact, rolled_back recorded.",
    )
    def rollback_run() -> None:
        rollback()

    return rollback_run
