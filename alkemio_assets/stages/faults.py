"""Faults of the machinery, told apart from bad data and named as what they are.

A server that went away, a full disk, a file changed since its run wrote it: each becomes the
error of core/errors.py that names the server or file, and the table it happened to. Connection
faults are retried a bounded number of times, with backoff, by the stage that can start over
(nothing of the table, or of the database, committed yet).
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg
import pymysql

from alkemio_assets.core.errors import DiskFullError, InputChangedError, ServerConnectionLost

T = TypeVar("T")

# MySQL client errors that mean the connection, not the statement, failed
_MYSQL_LOST = {2006, 2013, 2055, 1927, 2003}


def free_bytes(path: Path) -> int:
    """Free space of the filesystem holding `path` (or its nearest existing parent)."""
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return 0


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    text = str(exc).lower()
    return "no space left on device" in text or "file too large" in text


def disk_full(path: Path, what: str, exc: BaseException) -> DiskFullError:
    reason = (
        "the file size limit (ulimit -f) is reached"
        if (isinstance(exc, OSError) and exc.errno == errno.EFBIG) or "file too large" in str(exc).lower()
        else "the disk is full"
    )
    error = DiskFullError(
        errno.ENOSPC,
        f"{what}: no room to write {path}: {reason}, {free_bytes(path.parent):,} bytes left on its filesystem. "
        "Free space (or set MIGRATION_WORKDIR to a larger disk) and run again; the partial file was removed",
    )
    error.filename = str(path)
    return error


def mysql_lost(exc: BaseException) -> bool:
    """The MySQL connection itself failed (killed, server gone, network): not the statement."""
    if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return code in _MYSQL_LOST or isinstance(exc, pymysql.err.InterfaceError)
    # PyMySQL's unbuffered cursor reads from a connection it has already closed after a drop
    return isinstance(exc, AttributeError) and "'NoneType' object has no attribute" in str(exc)


def postgres_lost(exc: BaseException) -> bool:
    """The PostgreSQL connection failed (server restarted, session terminated, network)."""
    return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled)


def lost(server: str, where: str, exc: BaseException, attempts: int) -> ServerConnectionLost:
    tried = f" (tried {attempts} times)" if attempts > 1 else ""
    return ServerConnectionLost(f"{where}: the connection to {server} was lost{tried}: {exc}".rstrip(": "))


def retried(
    action: Callable[[], T],
    is_lost: Callable[[BaseException], bool],
    server: str,
    where: str,
    *,
    retries: int,
    backoff: float,
    log: Callable[[str], None] | None = None,
) -> T:
    """`action()`, again after a lost connection, up to `retries` more times, waiting `backoff`
    seconds and doubling; then ServerConnectionLost naming the server. Any other error is
    raised at once."""
    for attempt in range(retries + 1):
        try:
            return action()
        except Exception as exc:
            if not is_lost(exc):
                raise
            if attempt == retries:
                raise lost(server, where, exc, attempt + 1) from exc
            wait = backoff * 2**attempt
            if log:
                log(f"{where}: the connection to {server} was lost ({exc}); trying again in {wait:.0f} s")
            time.sleep(wait)
    raise AssertionError("unreachable")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_input(path: Path, sha256: str, size: int | None, what: str) -> None:
    """The file is byte for byte the one its run recorded, or InputChangedError."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise InputChangedError(
            f"{what}: {path} is {actual_size:,} bytes, its run wrote {size:,}: the file changed since it was "
            "written; materialize the stage that writes it again"
        )
    if (actual := sha256_of(path)) != sha256:
        raise InputChangedError(
            f"{what}: {path} has SHA-256 {actual[:16]}..., its run recorded {sha256[:16]}...: the file changed "
            "since it was written; materialize the stage that writes it again"
        )
