"""After the load: `DB/verified` carries the checklist items that hold per database or across
databases (checks/database_checks.py) and records their outcome for the report. Blocking ERROR
checks keep the report and the cut-over from materializing in the run where one fails."""

# No `from __future__ import annotations`: Dagster reads the context and resource annotations.
import json

import dagster as dg

from alkemio_assets.catalog.lineage import deferred_foreign_keys, load_order
from alkemio_assets.catalog.snapshot import Snapshot
from alkemio_assets.core.settings import DatabasePair, Settings
from alkemio_assets.core.sql import first
from checks import recorded, run_check
from checks.database_checks import DatabaseCheckContext, checks_for
from resources import MySQLResource, PostgresResource

VERIFICATION = "verification.json"


def verified_key(pair: DatabasePair) -> dg.AssetKey:
    return dg.AssetKey([pair.name, "verified"])


def verified_asset(
    pair: DatabasePair, settings: Settings, loaded: list[dg.AssetKey], snapshot: Snapshot
) -> dg.AssetsDefinition:
    key = verified_key(pair)
    lineage = load_order([t for t in snapshot.source.tables if t.name not in pair.exclude])
    deferred = deferred_foreign_keys(snapshot.target.tables, lineage)
    chosen = checks_for(pair, {t.name for t in snapshot.target.tables}, deferred=bool(deferred))

    @dg.asset(
        key=key,
        deps=loaded,
        group_name=pair.group("verify"),
        kinds={"postgres"},
        check_specs=[
            dg.AssetCheckSpec(name, asset=key, description=text, blocking=severity == dg.AssetCheckSeverity.ERROR)
            for name, (_, severity, text) in chosen.items()
        ],
        description=f"Runs the checks that hold per database on PostgreSQL {pair.target_database} once its tables are loaded.",
    )
    def verified(context: dg.AssetExecutionContext, mysql: MySQLResource, postgres: PostgresResource):
        """Run the database-level checklist items for one database pair."""
        ctx = DatabaseCheckContext(pair, settings, mysql, postgres, key, deferred)
        selected = {c.name for c in context.selected_asset_check_keys}
        results = [
            run_check(fn, ctx, key, name, severity) for name, (fn, severity, _) in chosen.items() if name in selected
        ]
        folder = settings.workdir / "runs" / context.run.run_id / pair.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / VERIFICATION).write_text(json.dumps({r.check_name: recorded(r) for r in results}, indent=1) + "\n")
        with postgres.connect(pair.target_database) as conn:
            tables = first(conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
        yield dg.MaterializeResult(metadata={"tables": tables, "checks": len(results)})
        yield from results

    return verified
