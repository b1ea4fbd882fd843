"""The run log: every migration event as one JSON line in `runs/migration_log.jsonl`, beside the
run folders, as the seed's `log_migration_run.sh` kept `migration_log.json` (status, message, UTC
timestamp, host, user), and with the run and the database it belongs to.

The step writes `started`, `in_progress` after each phase, then `completed` or `failed`; the
report writes the run's verdict; the cut-over, the rollback and the monitoring schedule write
theirs with their `action` (a refused cut-over `failed`, a rollback `rolled_back`);
an operator's own event comes from `.venv/bin/python -m alkemio_assets.stages.run_log STATUS
"MESSAGE"`. Several steps append at once: each event is one write of one line to a file opened
for appending.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, cast, get_args

from alkemio_assets.core.settings import Settings, load_settings

Status = Literal["started", "in_progress", "completed", "failed", "rolled_back"]
STATUSES: tuple[Status, ...] = get_args(Status)
RUN_LOG = "migration_log.jsonl"
# what wrote an event besides a migration's own steps: the jobs around the load
Action = Literal["migration", "schema", "cutover", "rollback", "monitor"]


@dataclass(frozen=True)
class RunEvent:
    """One line of the run log."""

    timestamp: str  # UTC, ISO 8601 to the second, as the seed's script writes it
    status: Status
    message: str
    host: str
    user: str
    run_id: str | None = None
    database: str | None = None
    action: Action = "migration"


def run_log_path(settings: Settings) -> Path:
    return settings.workdir / "runs" / RUN_LOG


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return str(os.getuid())


def record(
    path: Path,
    status: Status,
    message: str,
    run_id: str | None = None,
    database: str | None = None,
    action: Action = "migration",
    say: Callable[[str], None] | None = None,
) -> RunEvent:
    """Append one event; the file is its owner's alone (it names hosts, users and databases).
    With `say` (a run's logger), a log that cannot be written (a full disk) is said there and
    never replaces the run's own outcome: the manifests stay the record of what moved."""
    if status not in STATUSES:
        raise ValueError(f"run log: status {status!r} is not one of {', '.join(STATUSES)}")
    event = RunEvent(
        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        status,
        message,
        socket.gethostname(),
        _user(),
        run_id,
        database,
        action,
    )
    line = (json.dumps(asdict(event), ensure_ascii=False) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        if say is None:
            raise
        say(f"the run log {path} could not be written ({status}): {exc}")
    return event


def read_events(path: Path, run_id: str | None = None, action: Action | None = None) -> list[RunEvent]:
    """The log's events in the order they were written (of one run, of one action, if given)."""
    if not path.is_file():
        return []
    events = [RunEvent(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [e for e in events if (run_id is None or e.run_id == run_id) and (action is None or e.action == action)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alkemio_assets.stages.run_log",
        description="Record a migration event in the run log (MIGRATION_WORKDIR/runs/migration_log.jsonl), "
        "as the seed's log_migration_run.sh did; the migration's own steps record theirs themselves.",
    )
    parser.add_argument("status", choices=STATUSES)
    parser.add_argument("message", nargs="?", default="")
    parser.add_argument("--run-id", help="the Dagster run the event belongs to")
    parser.add_argument("--database", help="the database pair it concerns (alkemio, kratos, ...)")
    args = parser.parse_args(argv)
    path = run_log_path(load_settings())
    event = record(path, cast(Status, args.status), args.message, args.run_id, args.database)
    print(f"[{event.timestamp}] migration {event.status}: {event.message}\nlogged to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
