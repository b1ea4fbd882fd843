"""One moment of the source for a whole database's export, as mydumper takes it.

The step opens one MySQL connection per worker, takes a brief global read lock (`FLUSH TABLES
WITH READ LOCK`, which needs the RELOAD privilege), starts `START TRANSACTION WITH CONSISTENT
SNAPSHOT, READ ONLY` on every connection, and releases the lock: the tables are then read, in
parallel, as they all were at that moment, whatever the applications write meanwhile (InnoDB's
repeatable read). Without RELOAD the transactions start without the lock, each at its own
moment a few milliseconds apart: the run says so, and the source must be quiet (the runbook
stops the applications first; the content fingerprint proves every table afterwards).

A table exported in key ranges (MIGRATION_CHUNK_MB) reads on connections of its own, outside
the moment; so does a table's export retried after a lost connection. Both are logged.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pymysql

from resources import MySQLResource

ER_SPECIFIC_ACCESS_DENIED = 1227  # "Access denied; you need (at least one of) the RELOAD privilege(s)"


class ConsistentRead:
    """`size` connections to `database`, each inside a transaction that reads one moment."""

    def __init__(self, mysql: MySQLResource, database: str, size: int, log: Callable[[str], None]):
        self.mysql, self.database, self.size, self.log = mysql, database, size, log
        self.locked = False  # whether the moment was taken under the global read lock
        self._stack = ExitStack()
        self._idle: queue.Queue[Any] = queue.Queue()

    def __enter__(self) -> ConsistentRead:
        try:
            connections = [
                self._stack.enter_context(self.mysql.connect(self.database, raw=True)) for _ in range(self.size)
            ]
            with self.mysql.connect(self.database) as control, control.cursor() as cur:
                try:
                    cur.execute("FLUSH TABLES WITH READ LOCK")
                    self.locked = True
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] != ER_SPECIFIC_ACCESS_DENIED:
                        raise
                    self.log(
                        f"{self.database}: the MySQL user may not FLUSH TABLES WITH READ LOCK (RELOAD privilege): "
                        "each export connection reads its own moment; keep the source quiet"
                    )
                try:
                    for conn in connections:
                        with conn.cursor() as start:
                            start.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                            start.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                finally:
                    if self.locked:
                        cur.execute("UNLOCK TABLES")
        except BaseException:
            self._stack.close()
            raise
        for conn in connections:
            self._idle.put(conn)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection of the moment, for one table's export; back to the others afterwards."""
        conn = self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put(conn)
