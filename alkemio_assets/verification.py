"""After the load: the database-level checks, the report, and the cut-over they gate.

`DB/verified` carries the checklist items that hold per database or across databases;
`migration/report` gathers every check of the run into report.md / report.json with the
seed's manual checklist; `migration/cutover` writes the applications' PostgreSQL settings.
Blocking ERROR checks keep both from materializing in the run where a check fails, and the
report also refuses a run folder whose recorded checks failed.
"""

# No `from __future__ import annotations`: Dagster reads the context and resource annotations.
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from alkemio_assets.graph import deferred_foreign_keys, load_order
from alkemio_assets.settings import DatabasePair, Settings
from alkemio_assets.snapshot import Snapshot
from alkemio_assets.sql import first
from checks import run_check
from checks.database_checks import DatabaseCheckContext, checks_for
from resources import MySQLResource, PostgresResource

VERIFICATION = "verification.json"
REPORT_KEY = dg.AssetKey(["migration", "report"])
CUTOVER_KEY = dg.AssetKey(["migration", "cutover"])

# The seed's checklist items no machine can decide here: the report lists them for a person.
MANUAL_CHECKLIST = {
    "Authentication & authorization": [
        "Users can log in via Kratos",
        "Session management works correctly",
        "Authorization policies are enforced",
        "Role-based access control functions",
    ],
    "Core features": [
        "GraphQL API responds correctly",
        "Spaces are accessible",
        "User profiles load and display correctly",
        "Content creation/editing works",
        "File uploads/downloads function",
        "Search functionality operates",
        "Notifications are delivered",
    ],
    "Data relationships (spot checks in the application)": [
        "User-Space memberships are intact",
        "Organization hierarchies are correct",
        "Content ownership is preserved",
        "Comments are linked to correct posts",
        "Tags and references are maintained",
    ],
    "Connection pool and application metrics": [
        "Database connections are stable",
        "No connection pool exhaustion",
        "Query latency is acceptable",
        "API response times are within normal range",
        "Error rates are not elevated",
        "Memory usage is stable",
    ],
    "Kratos flows": ["Sessions can be created/validated", "Recovery flows work", "Verification flows work"],
}


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
        group_name=pair.name,
        kinds={"postgres"},
        check_specs=[
            dg.AssetCheckSpec(name, asset=key, description=text, blocking=severity == dg.AssetCheckSeverity.ERROR)
            for name, (_, severity, text) in chosen.items()
        ],
        description=f"PostgreSQL `{pair.target_database}` after the load, with the checks that hold per database.",
    )
    def verified(context: dg.AssetExecutionContext, mysql: MySQLResource, postgres: PostgresResource):
        """Run the database-level checklist items for one database pair."""
        ctx = DatabaseCheckContext(pair, settings, mysql, postgres, key, deferred)
        selected = {c.name for c in context.selected_asset_check_keys}
        results = [run_check(fn, ctx, key, name, severity) for name, (fn, severity, _) in chosen.items() if name in selected]
        folder = settings.workdir / "runs" / context.run.run_id / pair.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / VERIFICATION).write_text(
            json.dumps({r.check_name: {"passed": r.passed, "severity": r.severity.value} for r in results}, indent=1)
            + "\n"
        )
        with postgres.connect(pair.target_database) as conn:
            tables = first(conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
        yield dg.MaterializeResult(metadata={"tables": tables, "checks": len(results)})
        yield from results

    return verified


def _run_folder(settings: Settings, run_id: str) -> Path:
    folder = settings.workdir / "runs" / run_id
    if folder.exists():
        return folder
    runs = sorted((settings.workdir / "runs").glob("*/"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"no run folder under {settings.workdir / 'runs'}: migrate first")
    return runs[-1]


def gather(folder: Path) -> dict:
    """Every database's manifest and recorded checks in one run folder."""
    databases = {}
    for manifest_path in sorted(folder.glob("*/migration_manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        verification = manifest_path.parent / VERIFICATION
        databases[manifest["database"]] = {
            "outcome": manifest["outcome"],
            "versions": manifest.get("versions"),
            "source": manifest["source"],
            "target": manifest["target"],
            "tables": {
                name: {
                    "rows": t.get("rows"),
                    "loaded_rows": t.get("loaded_rows"),
                    "load": t.get("load"),
                    "checks": t.get("checks", {}),
                }
                for name, t in sorted(manifest["tables"].items())
            },
            "database_checks": json.loads(verification.read_text()) if verification.exists() else {},
        }
    return databases


def failed_errors(databases: dict) -> list[str]:
    failed = []
    for name, db in databases.items():
        for table, entry in db["tables"].items():
            failed += [
                f"{name}.{table}: {c}"
                for c, r in entry["checks"].items()
                if not r["passed"] and r["severity"] == "ERROR"
            ]
        failed += [
            f"{name}: {c}" for c, r in db["database_checks"].items() if not r["passed"] and r["severity"] == "ERROR"
        ]
    return failed


def render(databases: dict, run: str, seed_names: Mapping[str, Mapping[str, str]] | None = None) -> str:
    lines = [f"# Migration report, run {run}", "", f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.", ""]
    for name, db in databases.items():
        lines += [
            f"## {name}",
            "",
            f"{db['source']} -> {db['target']}: {db['outcome']}",
            "",
        ]
        if versions := db.get("versions"):
            lines += [
                f"Application migrations: MySQL at `{versions['source']}` ({versions['source_count']} in its ledger), "
                f"PostgreSQL at `{versions['target']}` ({versions['target_count']}).",
                "",
            ]
        renamed = (seed_names or {}).get(name, {})
        if renamed:
            lines += ["The seed's critical tables by their names in this schema:", ""]
            lines += [f"- `{seed}`: {meaning}" for seed, meaning in renamed.items()] + [""]
        lines += [
            "| table | MySQL rows | PostgreSQL rows | load | failed checks |",
            "|---|---|---|---|---|",
        ]
        for table, t in db["tables"].items():
            bad = ", ".join(f"{c} ({r['severity']})" for c, r in t["checks"].items() if not r["passed"]) or "none"
            lines.append(f"| {table} | {t['rows']} | {t['loaded_rows']} | {t['load']} | {bad} |")
        lines += [
            "",
            "Database checks: "
            + (
                ", ".join(
                    f"{c} {'passed' if r['passed'] else 'FAILED (' + r['severity'] + ')'}"
                    for c, r in db["database_checks"].items()
                )
                or "not run"
            ),
            "",
        ]
    lines += ["## Manual checklist (the seed's items no machine decides here)", ""]
    for group, items in MANUAL_CHECKLIST.items():
        lines += [f"**{group}**", ""] + [f"- [ ] {item}" for item in items] + [""]
    return "\n".join(lines)


def report_assets(settings: Settings, upstream: list[dg.AssetKey]) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=REPORT_KEY,
        deps=upstream,
        group_name="migration",
        kinds={"json"},
        description="Every check of the run with the manual checklist: report.md and report.json in the run folder.",
    )
    def report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Gather the run's checks into the migration report; refuse a run whose ERROR checks failed."""
        folder = _run_folder(settings, context.run.run_id)
        databases = gather(folder)
        (folder / "report.json").write_text(json.dumps(databases, indent=1, sort_keys=True) + "\n")
        seeds = {pair.name: pair.seed_names() for pair in settings.pairs}
        (folder / "report.md").write_text(render(databases, folder.name, seeds))
        if failed := failed_errors(databases):
            raise dg.Failure(
                f"ERROR checks failed, cut-over blocked: {failed}",
                metadata={"report": dg.MetadataValue.path(str(folder / "report.md"))},
            )
        return dg.MaterializeResult(
            metadata={"report": dg.MetadataValue.path(str(folder / "report.md")), "databases": len(databases)}
        )

    @dg.asset(
        key=CUTOVER_KEY,
        deps=[REPORT_KEY],
        group_name="migration",
        kinds={"postgres"},
        description="The applications' PostgreSQL settings (cutover.env), once every ERROR check passed.",
    )
    def cutover(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Write the settings the applications switch to; the password stays a variable reference."""
        folder = _run_folder(settings, context.run.run_id)
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

    return [report, cutover]
