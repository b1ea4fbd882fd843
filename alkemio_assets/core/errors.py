"""The errors a run raises: what, where (database, table, the row by its key, column), what to do.

A data error names the row as a person finds it on MySQL: by its primary-key value(s); the line
of the run's CSV file follows as a second locator. Faults of the machinery (a server gone, a
full disk, a file changed since it was written) have errors of their own, naming the server,
table and file, so that nobody reads a lost connection as a refused row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SHOWN_VALUE = 120


def shorten(value: object, limit: int = SHOWN_VALUE) -> str:
    """The value as Python writes it, cut to `limit`, with its true length when it has one."""
    if isinstance(value, str | bytes):
        unit = "characters" if isinstance(value, str) else "bytes"
        text = repr(value if len(value) <= limit else value[:limit])
        return f"{text}{'...' if len(value) > limit else ''} ({len(value):,} {unit})"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_key(key: Mapping[str, Any]) -> str:
    """`id=7` or `(a, b)=(1, 'x')`: how a row is named."""
    if len(key) == 1:
        ((column, value),) = key.items()
        return f"{column}={value!r}"
    return f"({', '.join(key)})=({', '.join(repr(v) for v in key.values())})"


class MigrationDataError(RuntimeError):
    """A value that cannot move. Nothing of the database has been written when this is raised."""

    def __init__(
        self,
        database: str,
        table: str,
        key: Mapping[str, Any] | None,
        column: str | None,
        value: object,
        problem: str,
        hint: str = "",
        line: int | None = None,
    ):
        self.database, self.table, self.key, self.column, self.value = database, table, key, column, value
        self.problem, self.hint, self.line = problem, hint, line
        where = f"{database}.{table}"
        if key:
            where += f", row {describe_key(key)}"
        if line is not None:
            where += f" (CSV record {line}, the header being record 1)"
        if column is not None:
            where += f", column {column}"
        shown = "" if value is None and column is None else f", value {shorten(value)}"
        message = f"{where}{shown}: {problem}"
        if hint:
            message += f". {hint}"
        super().__init__(message)

    def __reduce__(self):
        # raised in a process of its own (a key range's export), it travels back whole
        return type(self), (
            self.database,
            self.table,
            self.key,
            self.column,
            self.value,
            self.problem,
            self.hint,
            self.line,
        )

    def after(self, rows: int) -> MigrationDataError:
        """The same error, its file line counted after `rows` rows that come before it."""
        cls, (*head, line) = self.__reduce__()
        return cls(*head, None if line is None else line + rows)


class OrphanRowsError(RuntimeError):
    """Child rows whose foreign key names no parent row: found before anything was written."""

    def __init__(self, database: str, problems: list[str]):
        self.database, self.problems = database, problems
        super().__init__(
            f"{database}: rows whose foreign key names no parent row (nothing of the database was written):\n  - "
            + "\n  - ".join(problems)
        )


class ServerConnectionLost(RuntimeError):
    """A server went away (restarted, killed the session, the network dropped) during a stage."""


class DiskFullError(OSError):
    """The work folder's filesystem has no room for a file the run writes."""


class InputChangedError(RuntimeError):
    """A file a stage reads is not the one the run that wrote it recorded (size, SHA-256, rows)."""


class MigrationLockedError(RuntimeError):
    """Another migration holds the target database."""


class StagingMemoryError(MemoryError):
    """DuckDB needed more memory than MIGRATION_STAGING_MB to stage a table (its rows are long)."""
