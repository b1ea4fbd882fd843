"""A run's files and their record: the run folder, migration_manifest.json, and which earlier
run's file a stage may take as its input.

Every file a stage writes is recorded with its size, SHA-256 and rows. A stage reads a file of
its own run, or of the newest earlier run whose manifest says `succeeded` (a killed or failed
run's files are never inputs), and only after checking the file is still the one recorded.
"""

from __future__ import annotations

import fcntl
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from alkemio_assets.core.settings import DatabasePair, Settings

MANIFEST = "migration_manifest.json"

FileKind = Literal["csv", "staged"]
# the manifest entry's fields for each kind of file: path, SHA-256, bytes, rows
FILE_FIELDS: dict[FileKind, tuple[str, str, str, str]] = {
    "csv": ("file", "sha256", "bytes", "rows"),
    "staged": ("staged_file", "staged_sha256", "staged_bytes", "staged_rows"),
}


@dataclass
class Manifest:
    """migration_manifest.json: what this run moved, described without secrets."""

    run_id: str
    database: str
    source: str
    target: str
    started_at: str
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    whole: dict[str, Any] = field(default_factory=dict)  # facts of the database's run, not of a table
    versions: dict[str, Any] | None = None  # the application migrations each side held
    finished_at: str | None = None
    outcome: str = "running"
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, table: str, **entry: Any) -> None:
        with self.lock:
            self.tables.setdefault(table, {}).update(entry)

    def note(self, **entry: Any) -> None:
        with self.lock:
            self.whole.update(entry)

    def span(self, table: str, stage: str, started: float, ended: float | None = None) -> None:
        """When a stage ran (epoch seconds, until now unless `ended`), for the benchmark's phase timings."""
        with self.lock:
            self.tables.setdefault(table, {}).setdefault("spans", {})[stage] = [
                round(started, 3),
                round(time.time() if ended is None else ended, 3),
            ]

    def write(self, path: Path) -> None:
        """Write, merged with what the database's other steps of this run wrote there (a sharded
        database has several steps, one after the other or at once, on one machine or on a
        shared volume): each table's entry gathers its stages, whichever step ran them."""
        body = {k: v for k, v in self.__dict__.items() if k != "lock"}
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists() and (earlier := json.loads(path.read_text(encoding="utf-8")))["run_id"] == self.run_id:
                body = merged_manifest(earlier, body)
            tmp = path.with_suffix(".tmp")
            try:
                tmp.write_text(json.dumps(body, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            tmp.replace(path)


def _deep_merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in new.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def merged_manifest(earlier: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """Two steps' manifests of one database and run: the union of their tables, the earliest
    start, the latest end, failed if either failed, with every error."""
    errors = [e for e in (earlier.get("error"), step.get("error")) if e]
    return {
        **step,
        "tables": _deep_merge(earlier.get("tables", {}), step.get("tables", {})),
        "whole": _deep_merge(earlier.get("whole", {}), step.get("whole", {})),
        "started_at": min(earlier["started_at"], step["started_at"]),
        "finished_at": max(filter(None, (earlier.get("finished_at"), step.get("finished_at"))), default=None),
        "outcome": "failed" if "failed" in (earlier.get("outcome"), step.get("outcome")) else step["outcome"],
        "error": "\n".join(errors) or None,
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def run_folder(settings: Settings, run_id: str, pair: DatabasePair) -> Path:
    return settings.workdir / "runs" / run_id / pair.name


@dataclass(frozen=True)
class RecordedFile:
    """A file a stage wrote, as its run's manifest records it."""

    path: Path
    run_id: str
    sha256: str
    bytes: int | None
    rows: int
    longest_record: int | None = None


def recorded_file(folder: Path, run_id: str, entry: dict[str, Any], kind: FileKind) -> RecordedFile | None:
    """The file of `kind` that a table's manifest entry records, if it records one."""
    path, sha256, size, rows = FILE_FIELDS[kind]
    if not all(k in entry for k in (path, sha256, rows)):
        return None
    longest = entry.get("longest_record") if kind == "csv" else None
    return RecordedFile(folder / entry[path], run_id, entry[sha256], entry.get(size), int(entry[rows]), longest)


def run_manifests(settings: Settings, pair: DatabasePair) -> list[dict[str, Any]]:
    """Every readable manifest of the database's runs, each with its folder under `folder`."""
    found = []
    for path in (settings.workdir / "runs").glob(f"*/{pair.name}/{MANIFEST}"):
        try:
            found.append({**json.loads(path.read_text(encoding="utf-8")), "folder": path.parent})
        except (OSError, ValueError):
            continue  # an unreadable manifest proves nothing
    return found


def earlier_file(manifests: list[dict[str, Any]], table: str, kind: FileKind, run_id: str) -> RecordedFile | None:
    """The table's file of `kind` from another step of this run (a sharded database's steps,
    or the pieces Dagster splits a step into, hand files on within a run), else from the newest
    earlier run of the database that succeeded; `manifests` as run_manifests reads them."""
    found: list[tuple[bool, str, RecordedFile]] = []
    for body in manifests:
        this_run = body.get("run_id") == run_id
        if not this_run and body.get("outcome") != "succeeded":
            continue
        entry = body.get("tables", {}).get(table, {})
        if (file := recorded_file(body["folder"], body["run_id"], entry, kind)) and file.path.exists():
            found.append((this_run, body.get("finished_at") or "", file))
    return max(found, key=lambda f: f[:2])[2] if found else None
