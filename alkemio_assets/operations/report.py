"""The migration report: every database's manifest and recorded checks of one run gathered into
report.md and report.json, with the seed's manual checklist; it refuses a run whose ERROR checks
failed, so the cut-over behind it never comes."""

# No `from __future__ import annotations`: Dagster reads the context annotations.
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from alkemio_assets.core.settings import Settings
from alkemio_assets.operations import backup
from alkemio_assets.operations.verified import VERIFICATION
from alkemio_assets.stages.run_log import RunEvent, read_events, record, run_log_path

REPORT_KEY = dg.AssetKey(["migration", "report"])
LATER_RECORD = "later_migrations.json"  # what the later migrations changed, per database folder


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


# The seed's "Migration Success Criteria", each with who decides it: this run (from its checks),
# the monitoring schedule after the cut-over, or people (the checklist below).
SUCCESS_CRITERIA = (
    ("All critical data verification checks pass", "run"),
    ("All functional verification checks pass", "people: the manual checklist below"),
    ("Performance is equal to or better than MySQL", "people: time the seed's sample queries on both sides"),
    ("No critical errors in logs for 24 hours", "people: the applications' logs after the cut-over"),
    ("User-facing functionality works without issues", "people: the manual checklist below"),
    (
        "Monitoring shows stable system metrics",
        "the schedule post_migration_monitoring (integrity hourly for 48 hours after the cut-over) and people",
    ),
)
PREFLIGHT_RECORD = "preflight.json"  # the preflight's findings and source bytes, in the run folder


# after a run whose verdict lets the cut-over go (README, runbook steps 9 to 11)
AFTER_THE_RUN = (
    "Work through the manual checklist above; run the CREATE INDEX statements of `suggested.sql` (each database's "
    "folder), or accept the checks that proposed them.",
    "Materialize migration/cutover (it rewrites MIGRATION_APP_ENV_FILE), set DATABASE_PASSWORD there if PostgreSQL's "
    "differs, start Kratos and Alkemio.",
    "Watch the applications' logs and the monitor checks for 24-48 hours; keep the MySQL backup and the run folder "
    "until then. The way back is the job rollback.",
)


def success_criteria(databases: dict) -> list[str]:
    """The seed's success criteria as a table: what this run decided, and who decides the rest."""
    failed = failed_errors(databases)
    rows = []
    for criterion, decider in SUCCESS_CRITERIA:
        if decider == "run":
            state = "FAILED: " + ", ".join(failed) if failed else "met (every ERROR check passed)"
        else:
            state = f"open, for {decider}"
        rows.append(f"| {criterion} | {state} |")
    return ["| the seed's success criterion | state |", "|---|---|", *rows]


def preflight_lines(folder: Path) -> list[str]:
    """The backup the run may fall back on, and the preflight's findings that were not plain ok."""
    taken = backup.read_record(folder)
    lines = [f"MySQL backup: {taken.describe()}." if taken else "MySQL backup: none recorded for this run."]
    record_path = folder / PREFLIGHT_RECORD
    if record_path.exists():
        findings = json.loads(record_path.read_text(encoding="utf-8"))["findings"]
        lines += [""] + [
            f"- {'ok' if f['ok'] else f['severity']}: {f['item']}: {f['message']}"
            for f in findings
            if not f["ok"] or f["item"] == "window estimate"
        ]
    return lines


def report_folder(settings: Settings, run_id: str) -> Path:
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
        later = manifest_path.parent / LATER_RECORD
        databases[manifest["database"]] = {
            "outcome": manifest["outcome"],
            "started_at": manifest.get("started_at"),
            "finished_at": manifest.get("finished_at"),
            "versions": manifest.get("versions"),
            "source": manifest["source"],
            "target": manifest["target"],
            "tables": {
                name: {
                    "rows": t.get("rows"),
                    "loaded_rows": t.get("loaded_rows"),
                    "load": t.get("load"),
                    "seconds": {stage: round(end - start, 3) for stage, (start, end) in t.get("spans", {}).items()},
                    "checks": t.get("checks", {}),
                }
                for name, t in sorted(manifest["tables"].items())
            },
            "database_checks": json.loads(verification.read_text()) if verification.exists() else {},
            "later_migrations": json.loads(later.read_text()) if later.exists() else None,
            "excluded": manifest.get("whole", {}).get("excluded", {}),
        }
    return databases


# The per-table summary, as pgloader ends a run: one row of data per table, written as the
# report's Markdown table and as the text a headless run prints (`summary`)
SUMMARY_COLUMNS = (
    "table",
    "MySQL rows",
    "PostgreSQL rows",
    "load",
    "export s",
    "stage s",
    "load s",
    "checks",
    "failed",
)


def summary_rows(db: dict) -> list[tuple[str, ...]]:
    rows = []
    for table, t in db["tables"].items():
        seconds = t.get("seconds", {})
        checks = t["checks"]
        bad = ", ".join(f"{c} ({r['severity']})" for c, r in checks.items() if not r["passed"]) or "none"
        passed = sum(r["passed"] for r in checks.values())
        timed = [f"{seconds[s]:.1f}" if s in seconds else "-" for s in ("export", "stage", "load")]
        rows.append(
            (table, str(t["rows"]), str(t["loaded_rows"]), str(t["load"]), *timed, f"{passed}/{len(checks)}", bad)
        )
    return rows


def summary(databases: dict) -> str:
    """Every database's tables as a text table, with totals, for a terminal."""
    lines = []
    for name, db in databases.items():
        rows = summary_rows(db)
        loaded = sum(int(r[2]) for r in rows if r[2].isdigit())
        total = (f"{name}: {len(rows)} tables", "", str(loaded), db["outcome"], "", "", "", "", "")
        widths = [max(len(r[i]) for r in [SUMMARY_COLUMNS, *rows, total]) for i in range(len(SUMMARY_COLUMNS))]

        def line(row: tuple[str, ...], widths: list[int] = widths) -> str:
            return "  ".join(
                cell.rjust(w) if 0 < i < 7 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()

        rule = "  ".join("-" * w for w in widths)
        lines += [line(SUMMARY_COLUMNS), rule, *map(line, rows), rule, line(total), ""]
    return "\n".join(lines)


SUGGESTED_SQL = "suggested.sql"  # per database folder: the SQL the WARN checks propose
CUTOVER_SETTINGS = "cutover.env"  # in the run folder: the applications' PostgreSQL settings


def excluded_lines(excluded: Mapping[str, str]) -> list[str]:
    """The tables migration.toml leaves out of the move, each with its reason."""
    if not excluded:
        return ["Excluded tables: none."]
    return [
        f"Excluded tables ({len(excluded)}, by migration.toml; not moved, not checked):",
        "",
        *(f"- `{table}`: {reason}" for table, reason in sorted(excluded.items())),
    ]


def suggested_statements(db: dict) -> list[str]:
    """The SQL the checks of one database propose (the indexes and query_plans checks' CREATE
    INDEX), each under a comment naming the table and check it comes from."""
    found = [
        (f"{table}: {check}", r.get("remedy", []))
        for table, t in db["tables"].items()
        for check, r in t["checks"].items()
    ]
    found += [(check, r.get("remedy", [])) for check, r in db["database_checks"].items()]
    return [line for origin, statements in found if statements for line in (f"-- {origin}", *statements)]


def failed_checks(databases: dict, severity: str) -> list[tuple[str, str | None, str]]:
    """The checks of one severity that failed: (database, table or None for a database's, check)."""
    failed: list[tuple[str, str | None, str]] = []
    for name, db in databases.items():
        for table, entry in db["tables"].items():
            failed += [
                (name, table, c) for c, r in entry["checks"].items() if not r["passed"] and r["severity"] == severity
            ]
        failed += [
            (name, None, c) for c, r in db["database_checks"].items() if not r["passed"] and r["severity"] == severity
        ]
    return failed


def failed_errors(databases: dict) -> list[str]:
    return [
        f"{name}.{table}: {check}" if table else f"{name}: {check}"
        for name, table, check in failed_checks(databases, "ERROR")
    ]


WINDOW_MINUTES = 30  # the seed's target for hard downtime


def verdict(databases: dict) -> list[str]:
    """The report's first lines: may the cut-over go, and the time the migration took against
    the maintenance window (first step's start to last step's end)."""
    failed = failed_errors(databases)
    lines = [
        f"**Verdict: ERROR checks failed, cut-over blocked** ({', '.join(failed)})."
        if failed
        else "**Verdict: every ERROR check passed; the cut-over may go** (after the manual checklist below)."
    ]
    starts = [datetime.fromisoformat(db["started_at"]) for db in databases.values() if db.get("started_at")]
    ends = [datetime.fromisoformat(db["finished_at"]) for db in databases.values() if db.get("finished_at")]
    if starts and ends:
        minutes = (max(ends) - min(starts)).total_seconds() / 60
        lines.append(f"Migration time: {minutes:.1f} minutes of the {WINDOW_MINUTES}-minute window.")
    return lines


def warned(databases: dict) -> str | None:
    """The WARN checks that failed, each with how many tables (or which databases) it failed on."""
    tables: dict[str, int] = {}
    databases_of: dict[str, list[str]] = {}
    for name, table, check in failed_checks(databases, "WARN"):
        if table:
            tables[check] = tables.get(check, 0) + 1
        else:
            databases_of.setdefault(check, []).append(name)
    said = [f"{check} on {n} table(s)" for check, n in tables.items()]
    said += [f"{check} on {', '.join(names)}" for check, names in databases_of.items()]
    return "; ".join(said) or None


def closing(databases: dict, folder: Path) -> str:
    """What a headless run ends with, as pgloader's does: the per-table summary, the verdict and
    the time against the window, the WARN checks that failed, and where the report is."""
    lines = [summary(databases), *(line.replace("**", "") for line in verdict(databases))]
    if found := warned(databases):
        lines.append(f"WARN checks that failed (for people to decide, see the report): {found}")
    lines.append(f"Report (checks and the manual checklist): {folder / 'report.md'}")
    if (folder / CUTOVER_SETTINGS).exists():
        lines.append(f"Cut-over settings: {folder / CUTOVER_SETTINGS}")
    return "\n".join(lines) + "\n"


def events_table(events: list[RunEvent]) -> list[str]:
    """The run log's events of the run, as a Markdown table."""
    rows = [
        f"| {e.timestamp} | {e.status} | {e.database or ''} | {e.message.splitlines()[0] if e.message else ''} |"
        for e in events
    ]
    return ["| UTC | status | database | message |", "|---|---|---|---|", *rows]


def render(
    databases: dict,
    run: str,
    seed_names: Mapping[str, Mapping[str, str]] | None = None,
    events: list[RunEvent] | None = None,
    folder: Path | None = None,
) -> str:
    lines = [f"# Migration report, run {run}", "", f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.", ""]
    lines += [*verdict(databases), ""]
    lines += ["## Success criteria", "", *success_criteria(databases), ""]
    if folder is not None:
        lines += ["## Preflight", "", *preflight_lines(folder), ""]
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
        if later := db.get("later_migrations"):
            lines += [
                f"Later migrations: PostgreSQL from `{later['before']}` to `{later['after']}`, then verified against "
                f"MySQL again: {'; '.join(later['problems']) or 'every table equal'}.",
                *(f"- {change}" for change in later["changed"]),
                "",
            ]
        renamed = (seed_names or {}).get(name, {})
        if renamed:
            lines += ["The seed's critical tables by their names in this schema:", ""]
            lines += [f"- `{seed}`: {meaning}" for seed, meaning in renamed.items()] + [""]
        lines += ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
        lines += ["| " + " | ".join(row) + " |" for row in summary_rows(db)]
        lines += ["", *excluded_lines(db.get("excluded", {}))]
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
        for check, r in db["database_checks"].items():
            if "side_by_side" in r:
                lines += [f"{check}:", "", r["side_by_side"], ""]
        if suggested := [line for line in suggested_statements(db) if not line.startswith("--")]:
            database = db["target"].rpartition("/")[2]
            lines += [
                f"Suggested by the WARN checks: {len(suggested)} statements in `{name}/{SUGGESTED_SQL}`; review "
                f"them, then `psql -d {database} -f {name}/{SUGGESTED_SQL}`, or accept the checks as they are.",
                "",
            ]
    if events:
        lines += ["## Run log", "", *events_table(events), ""]
    lines += ["## Manual checklist (the seed's items no machine decides here)", ""]
    for group, items in MANUAL_CHECKLIST.items():
        lines += [f"**{group}**", ""] + [f"- [ ] {item}" for item in items] + [""]
    lines += ["## Left to do by hand", "", *(f"{i}. {step}" for i, step in enumerate(AFTER_THE_RUN, 1)), ""]
    return "\n".join(lines)


def report_asset(settings: Settings, upstream: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=REPORT_KEY,
        deps=upstream,
        group_name="migration",
        kinds={"markdown", "json"},
        description="Gathers every check of the run, the run log and the manual checklist into the report, shown "
        "on this asset's page and written as report.md and report.json to the run folder; fails when an ERROR "
        "check failed, which blocks the cut-over.",
    )
    def report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Gather the run's checks into the migration report; refuse a run whose ERROR checks failed."""
        folder = report_folder(settings, context.run.run_id)
        databases = gather(folder)
        log = run_log_path(settings)
        failed = failed_errors(databases)
        if failed:
            record(
                log,
                "failed",
                f"ERROR checks failed, cut-over blocked: {', '.join(failed)}",
                folder.name,
                say=context.log.error,
            )
        else:
            record(
                log,
                "completed",
                f"every ERROR check passed: {', '.join(databases)}",
                folder.name,
                say=context.log.error,
            )
        events = read_events(log, folder.name)  # the reported run's
        (folder / "report.json").write_text(json.dumps(databases, indent=1, sort_keys=True) + "\n")
        seeds = {pair.name: pair.seed_names() for pair in settings.pairs}
        for name, db in databases.items():
            if statements := suggested_statements(db):
                (folder / name / SUGGESTED_SQL).write_text("\n".join(statements) + "\n")
        text = render(databases, folder.name, seeds, events, folder)
        (folder / "report.md").write_text(text)
        metadata = {
            "report": dg.MetadataValue.md(text),  # the asset's page shows the report itself
            "report_file": dg.MetadataValue.path(str(folder / "report.md")),
        }
        if failed:
            raise dg.Failure(f"ERROR checks failed, cut-over blocked: {failed}", metadata=metadata)
        return dg.MaterializeResult(metadata={**metadata, "databases": len(databases)})

    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m alkemio_assets.operations.report RUN_FOLDER`: the run's closing lines."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / "report.json").is_file():
        print(
            "usage: python -m alkemio_assets.operations.report RUN_FOLDER  (a folder with report.json)", file=sys.stderr
        )
        return 2
    folder = Path(args[0])
    print(closing(json.loads((folder / "report.json").read_text(encoding="utf-8")), folder), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
