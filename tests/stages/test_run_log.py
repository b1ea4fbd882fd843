"""The run log, as the seed's log_migration_run.sh kept it: one event per line with its status,
message, UTC timestamp, host and user; only the seed's five statuses; its owner's file alone;
and the operator's own events (a rollback) recorded from the command line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from alkemio_assets.stages.run_log import STATUSES, main, read_events, record


def test_events_are_lines_in_the_order_written(tmp_path: Path):
    path = tmp_path / "runs" / "migration_log.jsonl"
    record(path, "started", "alkemio: step migrate_alkemio_tables", run_id="r1", database="alkemio")
    record(path, "failed", "kratos: OrphanRowsError: kratos: rows whose...\n  - sessions.identity_id", "r1", "kratos")
    record(path, "started", "alkemio: again", run_id="r2", database="alkemio")
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["host"] and json.loads(line)["user"] for line in lines)
    assert [e.status for e in read_events(path)] == ["started", "failed", "started"]
    (first, failed) = read_events(path, run_id="r1")
    assert first.timestamp.endswith("Z") and len(first.timestamp) == len("2026-12-02T13:00:00Z")
    assert failed.database == "kratos" and failed.message.endswith("sessions.identity_id")  # the whole error, kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_only_the_seeds_statuses_are_taken(tmp_path: Path):
    assert STATUSES == ("started", "in_progress", "completed", "failed", "rolled_back")
    with pytest.raises(ValueError, match="'done' is not one of started, in_progress"):
        record(tmp_path / "log.jsonl", "done", "")  # type: ignore[arg-type]
    assert not (tmp_path / "log.jsonl").exists()


def test_the_operator_records_a_rollback_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("MIGRATION_WORKDIR", str(tmp_path))
    assert main(["rolled_back", "PostgreSQL login failures; MySQL restored", "--run-id", "r1"]) == 0
    (event,) = read_events(tmp_path / "runs" / "migration_log.jsonl")
    assert (event.status, event.message, event.run_id) == (
        "rolled_back",
        "PostgreSQL login failures; MySQL restored",
        "r1",
    )
    assert "migration rolled_back: PostgreSQL login failures" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["finished"])
