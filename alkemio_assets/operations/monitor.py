"""Post-migration monitoring (the seed: "run periodic integrity checks" for 24-48 hours): after
the cut-over the schedule `post_migration_monitoring` runs the job `monitor` every hour
(MIGRATION_MONITOR_CRON) for MIGRATION_MONITOR_HOURS (48), on the target as the applications now
use it. Per database two checks on `DB/verified`, so that a failure shows on the asset in the UI:

- `monitor_integrity` (ERROR): no orphan row for any foreign key, every owned sequence past its
  column's maximum (an insert would collide);
- `monitor_row_counts` (WARN): no table with fewer rows than the load wrote (the applications
  delete rows too: a person decides).

Each evaluation records its outcome in the run log (action `monitor`), against the migration run
the cut-over belongs to; the schedule skips, saying why, before a cut-over and after the window,
and records `completed` once when the window has ended.
"""

# No `from __future__ import annotations`: Dagster reads the context and resource annotations.
import json
from datetime import UTC, datetime, timedelta

import dagster as dg
from psycopg import sql

from alkemio_assets.catalog.snapshot import Snapshot
from alkemio_assets.catalog.violations import Orphans, target_orphans
from alkemio_assets.core.settings import DatabasePair, Settings
from alkemio_assets.core.sql import first
from alkemio_assets.operations.cutover import CUTOVER_KEY
from alkemio_assets.operations.rollback import exported_run
from alkemio_assets.operations.verified import verified_key
from alkemio_assets.stages.manifest import MANIFEST
from alkemio_assets.stages.run_log import RunEvent, read_events, record, run_log_path
from checks import check_result
from checks.table_checks import sequence_positions
from resources import PostgresResource

MONITOR_JOB = "monitor"
SCHEDULE = "post_migration_monitoring"
MONITOR_CHECKS = {
    "monitor_integrity": (
        dg.AssetCheckSeverity.ERROR,
        "After the cut-over, hourly: no orphan row for any foreign key, every owned sequence past its maximum.",
    ),
    "monitor_row_counts": (
        dg.AssetCheckSeverity.WARN,
        "After the cut-over, hourly: no table with fewer rows than the load wrote.",
    ),
}


def latest_cutover(settings: Settings) -> RunEvent | None:
    """The cut-over the applications run on: the newest `completed` event of the action."""
    done = [e for e in read_events(run_log_path(settings), action="cutover") if e.status == "completed"]
    return done[-1] if done else None


def _moment(event: RunEvent) -> datetime:
    return datetime.strptime(event.timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def monitoring_tick(settings: Settings, now: datetime) -> dg.RunRequest | dg.SkipReason:
    """What the schedule does at `now`: a run of `monitor` inside the window after the latest
    cut-over, else why not (and, once, the window's end in the run log)."""
    cut = latest_cutover(settings)
    if cut is None:
        return dg.SkipReason("no cut-over in the run log: nothing to monitor yet")
    end = _moment(cut) + timedelta(hours=settings.monitor_hours)
    if now <= end:
        return dg.RunRequest(tags={"alkemio/monitors": cut.run_id or ""})
    log = run_log_path(settings)
    watched = [e for e in read_events(log, cut.run_id, action="monitor") if _moment(e) >= _moment(cut)]
    if not any(e.status == "completed" for e in watched):
        failed = sum(e.status == "failed" for e in watched)
        record(
            log,
            "completed",
            f"monitoring ended: {settings.monitor_hours} hours after the cut-over, "
            f"{len(watched)} evaluations, {failed} with a failure",
            cut.run_id,
            action="monitor",
        )
    return dg.SkipReason(
        f"monitoring ended at {end:%Y-%m-%d %H:%M} UTC, {settings.monitor_hours} hours after the cut-over"
    )


def _loaded_rows(settings: Settings, pair: DatabasePair, run_id: str | None) -> dict[str, int]:
    manifest = exported_run(settings, run_id) / pair.name / MANIFEST
    if not manifest.exists():
        return {}
    tables = json.loads(manifest.read_text(encoding="utf-8"))["tables"]
    return {name: t["loaded_rows"] for name, t in tables.items() if "loaded_rows" in t}


def monitor_checks(pair: DatabasePair, settings: Settings, snapshot: Snapshot) -> dg.AssetChecksDefinition:
    key = verified_key(pair)
    tables = [t for t in snapshot.target.tables if t.name not in pair.exclude]

    @dg.multi_asset_check(
        name=f"{pair.name}_monitor",
        specs=[
            # after the cut-over, also in a "Materialize all" (a refused cut-over holds them back)
            dg.AssetCheckSpec(name, asset=key, description=text, blocking=False, additional_deps=[CUTOVER_KEY])
            for name, (_, text) in MONITOR_CHECKS.items()
        ],
    )
    def monitor(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
        """The target's integrity now, and its row counts against the load's."""
        cut = latest_cutover(settings)
        run_id = cut.run_id if cut else None
        loaded = _loaded_rows(settings, pair, run_id)
        orphans: list[Orphans] = []
        behind: dict[str, dict[str, int]] = {}
        fewer: dict[str, dict[str, int]] = {}
        with postgres.connect(pair.target_database) as conn:
            for table in tables:
                orphans += [o for o in target_orphans(conn, table, table.foreign_keys) if o.count]
                behind |= {s: v for s, v in sequence_positions(conn, table).items() if v["next"] <= v["max"]}
                if table.name in loaded:
                    now = first(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))))
                    if now < loaded[table.name]:
                        fewer[table.name] = {"loaded": loaded[table.name], "now": now}
        problems = [f"{pair.name}.{o.describe()}" for o in orphans] + [
            f"{pair.name}: sequence {s} gives {v['next']}, the column holds {v['max']} already"
            for s, v in behind.items()
        ]
        record(
            run_log_path(settings),
            "failed" if problems else "in_progress",
            f"monitor: {pair.name}: " + ("; ".join(problems) if problems else f"{len(tables)} tables hold"),
            run_id,
            pair.name,
            action="monitor",
            say=context.log.error,
        )
        yield check_result(
            key,
            "monitor_integrity",
            not problems,
            dg.AssetCheckSeverity.ERROR,
            problems=dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            tables=len(tables),
            since=cut.timestamp if cut else "no cut-over recorded",
        )
        rows = [f"| {name} | {v['loaded']} | {v['now']} |" for name, v in fewer.items()]
        yield check_result(
            key,
            "monitor_row_counts",
            not fewer,
            dg.AssetCheckSeverity.WARN,
            fewer_rows=dg.MetadataValue.md("\n".join(["| table | loaded | now |", "|---|---|---|", *rows]))
            if rows
            else dg.MetadataValue.md("none"),
            compared=len(loaded),
        )

    return monitor


def monitoring_schedule(settings: Settings, job: "dg.UnresolvedAssetJobDefinition") -> dg.ScheduleDefinition:
    @dg.schedule(
        name=SCHEDULE,
        cron_schedule=settings.monitor_cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,  # it skips until a cut-over exists
        description=f"After the cut-over: the monitor checks every tick for {settings.monitor_hours} hours.",
    )
    def post_migration_monitoring(context: dg.ScheduleEvaluationContext):
        return monitoring_tick(settings, context.scheduled_execution_time or datetime.now(UTC))

    return post_migration_monitoring
