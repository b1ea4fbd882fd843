"""The seed's prerequisite "Backup of MySQL databases", as the preflight holds it (MIGRATION_BACKUP):

- a path: proof of the operator's own backup, a file or a folder (its newest file), no older than
  MIGRATION_BACKUP_MAX_HOURS and not empty;
- `take`: `mysqldump --single-transaction` of every source database into the run folder,
  gzip-compressed and SHA-256 checksummed as it streams; the password reaches mysqldump in its
  environment (MYSQL_PWD), never on its command line;
- `none`: no backup, said as a warning: for a rehearsal on a copy of production only.

Unset is an error that says these three. What was found or taken is written to the run folder
(`backup.json`) for the report.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from resources import MySQLResource

BACKUP_RECORD = "backup.json"
DUMP_FILE = "mysql-backup.sql.gz"
DUMP_PROGRAMS = ("mysqldump", "mariadb-dump")  # MySQL's client, MariaDB's name for the same
CHUNK = 1 << 20
UNSET = (
    "no MySQL backup (the seed's prerequisite): set MIGRATION_BACKUP to your backup's file or folder, "
    "to `take` for a mysqldump into the run folder, or to `none` for a rehearsal on a copy"
)


@dataclass(frozen=True)
class Backup:
    """A MySQL backup the run may fall back on: where, how big, its checksum, when it was made."""

    path: str
    bytes: int
    sha256: str | None  # of the file (a backup we took; another's is not read whole)
    made_at: str  # UTC, ISO 8601
    how: str  # "taken" by this run, or "found"

    def describe(self) -> str:
        checksum = f", SHA-256 {self.sha256}" if self.sha256 else ""
        return f"{self.how} {self.path}: {self.bytes / 1e6:.1f} MB, made {self.made_at}{checksum}"


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def newest_file(path: Path) -> Path | None:
    """The file itself, or the newest file anywhere under a folder."""
    if path.is_file():
        return path
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return max(files, key=lambda p: p.stat().st_mtime, default=None)


def prove(path: Path, max_hours: int, now: datetime) -> tuple[Backup | None, str | None]:
    """The backup at `path`, or what is wrong with it as proof."""
    found = newest_file(path)
    if found is None:
        return None, f"MIGRATION_BACKUP={path}: no backup file there"
    stat = found.stat()
    age = (now.timestamp() - stat.st_mtime) / 3600
    if stat.st_size == 0:
        return None, f"MIGRATION_BACKUP: {found} is empty"
    if age > max_hours:
        return None, (
            f"MIGRATION_BACKUP: {found} is {age:.0f} hours old, older than MIGRATION_BACKUP_MAX_HOURS={max_hours}: "
            "take a new backup before the window"
        )
    return Backup(str(found), stat.st_size, None, _utc(stat.st_mtime), "found"), None


def dump_program() -> str | None:
    return next((found for name in DUMP_PROGRAMS if (found := shutil.which(name))), None)


def dump_command(program: str, mysql: MySQLResource, databases: Sequence[str]) -> list[str]:
    """mysqldump's arguments: a consistent snapshot per database (InnoDB), routines and triggers,
    binary values as hex; no password (it goes in the environment)."""
    return [
        program,
        "--single-transaction",
        "--quick",
        "--routines",
        "--triggers",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        f"--host={mysql.host}",
        f"--port={mysql.port}",
        "--protocol=TCP",
        f"--user={mysql.user}",
        "--databases",
        *databases,
    ]


def take(mysql: MySQLResource, databases: Sequence[str], folder: Path) -> Backup:
    """mysqldump of the source databases, one consistent snapshot per database, gzipped into
    `folder` with its SHA-256 beside it; raises with mysqldump's own words when it fails."""
    program = dump_program()
    if program is None:
        raise RuntimeError("MIGRATION_BACKUP=take needs mysqldump (apt-get install mariadb-client, or MySQL's client)")
    command = dump_command(program, mysql, databases)
    folder.mkdir(parents=True, exist_ok=True)
    target, digest = folder / DUMP_FILE, hashlib.sha256()
    with (
        tempfile.TemporaryFile() as errors,  # a file, not a pipe: many warnings cannot stall the dump
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={**os.environ, "MYSQL_PWD": mysql.password},  # never in the arguments a `ps` shows
        ) as dump,
        open(target, "wb") as raw,
    ):
        assert dump.stdout is not None
        with gzip.GzipFile(fileobj=_Hashing(raw, digest), mode="wb", compresslevel=3) as out:
            while chunk := dump.stdout.read(CHUNK):
                out.write(chunk)
        dump.wait()
        errors.seek(0)
        error = errors.read().decode("utf-8", "replace").strip()
    if dump.returncode != 0:
        target.unlink(missing_ok=True)
        raise RuntimeError(f"mysqldump of {mysql.describe()} failed (exit {dump.returncode}): {error}")
    checksum = digest.hexdigest()
    (folder / f"{DUMP_FILE}.sha256").write_text(f"{checksum}  {DUMP_FILE}\n")
    return Backup(str(target), target.stat().st_size, checksum, _utc(target.stat().st_mtime), "taken")


class _Hashing:
    """A binary file that hashes what is written to it."""

    def __init__(self, raw, digest) -> None:
        self.raw, self.digest = raw, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def write_record(folder: Path, backup: Backup | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BACKUP_RECORD).write_text(json.dumps(asdict(backup) if backup else None, indent=1) + "\n")


def read_record(folder: Path) -> Backup | None:
    path = folder / BACKUP_RECORD
    if not path.exists():
        return None
    body = json.loads(path.read_text(encoding="utf-8"))
    return Backup(**body) if body else None
