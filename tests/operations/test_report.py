"""The report, alone, from a run folder: every database's manifest and recorded checks gathered,
a failed ERROR check named (a failed WARN check is not a refusal), and the manual checklist."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from alkemio_assets.operations import backup
from alkemio_assets.operations.report import (
    MANUAL_CHECKLIST,
    PREFLIGHT_RECORD,
    SUCCESS_CRITERIA,
    failed_errors,
    gather,
    main,
    render,
    suggested_statements,
    summary,
)
from alkemio_assets.operations.verified import VERIFICATION
from checks import check_result, recorded, suggested_sql


def _database(
    folder: Path,
    name: str,
    checks: dict,
    database_checks: dict,
    started: str = "2026-12-02T10:00:00.000+00:00",
    finished: str = "2026-12-02T10:07:30.000+00:00",
    excluded: dict[str, str] | None = None,
) -> None:
    (folder / name).mkdir(parents=True)
    manifest = {
        "database": name,
        "outcome": "succeeded",
        "started_at": started,
        "finished_at": finished,
        "versions": None,
        "source": f"mysql/{name}",
        "target": f"postgres/{name}",
        "whole": {"excluded": excluded or {}},
        "tables": {
            "user": {
                "rows": 3,
                "loaded_rows": 3,
                "load": "loaded",
                "checks": checks,
                "spans": {"export": [100.0, 101.25], "stage": [101.25, 101.5], "load": [101.5, 104.0]},
            }
        },
    }
    (folder / name / "migration_manifest.json").write_text(json.dumps(manifest))
    (folder / name / VERIFICATION).write_text(json.dumps(database_checks))


def test_a_failed_error_check_is_named_and_a_failed_warning_is_not(tmp_path: Path):
    _database(
        tmp_path,
        "alkemio",
        {"row_count": {"passed": True, "severity": "ERROR"}, "indexes": {"passed": False, "severity": "WARN"}},
        {"encoding": {"passed": True, "severity": "ERROR"}},
    )
    _database(
        tmp_path,
        "kratos",
        {"content_fingerprint": {"passed": False, "severity": "ERROR"}},
        {"kratos_network": {"passed": False, "severity": "ERROR"}},
    )
    databases = gather(tmp_path)
    assert sorted(databases) == ["alkemio", "kratos"]
    assert databases["alkemio"]["tables"]["user"]["rows"] == 3
    assert failed_errors(databases) == ["kratos.user: content_fingerprint", "kratos: kratos_network"]

    text = render(databases, "run-1")
    assert text.startswith("# Migration report, run run-1")
    assert "**Verdict: ERROR checks failed, cut-over blocked** (kratos.user: content_fingerprint" in text
    assert "| user | 3 | 3 | loaded | 1.2 | 0.2 | 2.5 | 1/2 | indexes (WARN) |" in text
    assert "kratos_network FAILED (ERROR)" in text
    assert all(f"- [ ] {item}" in text for items in MANUAL_CHECKLIST.values() for item in items)


def test_the_verdict_and_the_time_against_the_window(tmp_path: Path):
    passed = {"row_count": {"passed": True, "severity": "ERROR"}}
    _database(tmp_path, "alkemio", passed, {}, finished="2026-12-02T10:12:00.000+00:00")
    _database(tmp_path, "kratos", passed, {}, started="2026-12-02T10:00:30.000+00:00")
    text = render(gather(tmp_path), "run-2")
    assert "**Verdict: every ERROR check passed; the cut-over may go**" in text
    assert "Migration time: 12.0 minutes of the 30-minute window." in text  # first start to last end


def test_the_excluded_tables_are_listed_with_their_reasons(tmp_path: Path):
    passed = {"row_count": {"passed": True, "severity": "ERROR"}}
    ledger = {"migrations_typeorm": "TypeORM's migration ledger", "query-result-cache": "disposable"}
    _database(tmp_path, "alkemio", passed, {}, excluded=ledger)
    _database(tmp_path, "kratos", passed, {})
    text = render(gather(tmp_path), "run-5")
    alkemio, kratos = text.split("## alkemio")[1].split("## kratos")
    assert (
        "Excluded tables (2, by migration.toml; not moved, not checked):\n\n"
        "- `migrations_typeorm`: TypeORM's migration ledger\n- `query-result-cache`: disposable"
    ) in alkemio
    assert "Excluded tables: none." in kratos


def test_the_seeds_success_criteria_the_backup_and_what_is_left_by_hand(tmp_path: Path):
    _database(tmp_path, "alkemio", {"row_count": {"passed": False, "severity": "ERROR"}}, {})
    made = backup.Backup("var/runs/run-3/mysql-backup.sql.gz", 2_500_000, "ab" * 32, "2026-12-02T09:55:00Z", "taken")
    backup.write_record(tmp_path, made)
    findings = [
        {"item": "disk", "ok": True, "message": "plenty", "severity": "error"},
        {"item": "PostgreSQL version", "ok": False, "message": "PostgreSQL 15.20 works", "severity": "warning"},
        {"item": "window estimate", "ok": True, "message": "about 3 minutes", "severity": "error"},
    ]
    (tmp_path / PREFLIGHT_RECORD).write_text(json.dumps({"source_bytes": 1, "findings": findings}))
    text = render(gather(tmp_path), "run-3", folder=tmp_path)
    for criterion, _ in SUCCESS_CRITERIA:
        assert f"| {criterion} |" in text
    assert "| All critical data verification checks pass | FAILED: alkemio.user: row_count |" in text
    assert "| Performance is equal to or better than MySQL | open, for people:" in text
    assert (
        f"MySQL backup: taken var/runs/run-3/mysql-backup.sql.gz: 2.5 MB, made 2026-12-02T09:55:00Z, SHA-256 {'ab' * 32}."
        in text
    )
    assert "- warning: PostgreSQL version: PostgreSQL 15.20 works" in text and "plenty" not in text
    assert "- ok: window estimate: about 3 minutes" in text
    assert "## Left to do by hand" in text and "The way back is the job rollback." in text
    # a run without a backup says so
    other = tmp_path / "other"
    _database(other, "kratos", {}, {})
    assert "MySQL backup: none recorded for this run." in render(gather(other), "run-4", folder=other)


def test_the_sql_the_warn_checks_propose_is_gathered_into_one_file_per_database(tmp_path: Path):
    user = dg.AssetKey(["alkemio", "postgres", "user"])
    index = 'CREATE INDEX ON "user" ("email");'
    plan = 'CREATE INDEX ON "activity_log" ("collaborationID");'
    # as the step and DB/verified record them: the outcome with the SQL the check proposes
    table_check = recorded(check_result(user, "indexes", False, dg.AssetCheckSeverity.WARN, **suggested_sql([index])))
    database_check = recorded(
        check_result(user, "query_plans", False, dg.AssetCheckSeverity.WARN, **suggested_sql([plan]))
    )
    passed = recorded(check_result(user, "row_count", True, dg.AssetCheckSeverity.ERROR, **suggested_sql([])))
    assert table_check == {"passed": False, "severity": "WARN", "remedy": [index]} and "remedy" not in passed
    _database(tmp_path, "alkemio", {"indexes": table_check, "row_count": passed}, {"query_plans": database_check})

    db = gather(tmp_path)["alkemio"]
    assert suggested_statements(db) == ["-- user: indexes", index, "-- query_plans", plan]
    text = render({"alkemio": db}, "run-4")
    assert (
        "Suggested by the WARN checks: 2 statements in `alkemio/suggested.sql`; review them, then "
        "`psql -d alkemio -f alkemio/suggested.sql`" in text
    )


def test_a_headless_run_ends_with_the_per_table_summary(tmp_path: Path, capsys) -> None:
    """As pgloader ends: per table the rows on both sides, the seconds of each stage and the
    checks passed, a total per database; then the verdict, the time against the window, the WARN
    checks that failed and where the report is; printed from the run folder's report.json."""
    _database(
        tmp_path,
        "alkemio",
        {"row_count": {"passed": True, "severity": "ERROR"}, "indexes": {"passed": False, "severity": "WARN"}},
        {"query_plans": {"passed": False, "severity": "WARN"}},
    )
    databases = gather(tmp_path)
    lines = summary(databases).splitlines()
    assert lines[0].startswith("table") and "MySQL rows  PostgreSQL rows" in lines[0] and "export s" in lines[0]
    assert lines[2].split() == ["user", "3", "3", "loaded", "1.2", "0.2", "2.5", "1/2", "indexes", "(WARN)"]
    assert lines[4].split() == ["alkemio:", "1", "tables", "3", "succeeded"]

    (tmp_path / "report.json").write_text(json.dumps(databases))
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(summary(databases))
    assert out[len(summary(databases)) :].splitlines() == [
        "",
        "Verdict: every ERROR check passed; the cut-over may go (after the manual checklist below).",
        "Migration time: 7.5 minutes of the 30-minute window.",
        "WARN checks that failed (for people to decide, see the report): indexes on 1 table(s); query_plans on alkemio",
        f"Report (checks and the manual checklist): {tmp_path / 'report.md'}",
    ]
    (tmp_path / "cutover.env").write_text("DATABASE_TYPE=postgres\n")  # once the cut-over wrote its settings
    assert main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"Cut-over settings: {tmp_path / 'cutover.env'}"
    assert main([str(tmp_path / "nowhere")]) == 2
