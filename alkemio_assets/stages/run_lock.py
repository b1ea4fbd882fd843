"""One migration per target database at a time, however it is launched (the UI's queue, `dagster
job execute`, a second machine), with PostgreSQL advisory locks on the target database.

Every step of a run holds a shared lock keyed by its run for as long as it runs, on a connection
of its own whose application_name carries the run's id. A step takes it under a brief exclusive
gate lock, after making sure that no other run holds one: the steps of one run (a sharded
database has several, at once) go together, a second run refuses at once, naming the run that
holds the database. PostgreSQL drops the locks with the connection: a killed process leaves none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg

from alkemio_assets.core.errors import MigrationLockedError
from resources import PostgresResource

GATE = 0x416C6B  # "Alk": the gate, held only while a step checks and takes its run's lock
RUN = 0x416C6C  # a run's lock, shared by its steps
APPLICATION = "alkemio-migration run"


def lock_key(text: str) -> int:
    """A lock's second key: stable across processes and machines (Python's hash() is not)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


_OTHER_RUNS = (
    "SELECT a.application_name, a.client_addr::text, a.backend_start, a.pid FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid = %s AND l.objid <> %s AND l.objsubid = 2 ORDER BY a.backend_start LIMIT 1"
)


def _describe(row: tuple[Any, ...]) -> str:
    name, address, since, pid = row
    return f"{name!r} since {since:%Y-%m-%d %H:%M:%S %Z}, from {address or 'a local socket'} (server pid {pid})"


@contextmanager
def migration_lock(postgres: PostgresResource, database: str, step: str, run_id: str) -> Iterator[None]:
    """Hold the target database for run `run_id` while `step` runs, or raise MigrationLockedError."""
    mine = lock_key(run_id)
    with postgres.connect(database, autocommit=True, application_name=f"{APPLICATION} {run_id} {step}") as conn:
        conn.execute("SELECT pg_advisory_lock(%s, 0)", (GATE,))
        try:
            other = conn.execute(_OTHER_RUNS, (RUN, mine)).fetchone()
            if other is None:
                conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", (RUN, mine))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, 0)", (GATE,))
        if other is not None:
            raise MigrationLockedError(
                f"{database}: another migration is running on this target database, held by {_describe(other)}. "
                "Wait for it to end (the run id is in its application_name); this run changed nothing"
            )
        try:
            yield
        finally:
            with suppress(psycopg.Error):  # a connection that broke took its lock with it
                conn.execute("SELECT pg_advisory_unlock_shared(%s, %s)", (RUN, mine))
