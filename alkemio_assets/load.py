"""Load: one staged file into its PostgreSQL table with COPY, in one transaction.

Atomic and repeatable: the table's old rows are deleted and the new ones copied in the same
transaction, so a reader sees the old rows or the new ones, never a part, and a failure leaves
the table as it was. Foreign-key triggers are bypassed for the transaction
(session_replication_role = replica): tables load in any order, cycles need no second pass,
and deleting a parent's rows cascades into no other table. Every foreign key is then proven by
the foreign-key asset checks. NOT NULL, UNIQUE, CHECK and types are enforced by COPY itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from alkemio_assets.errors import MigrationDataError
from alkemio_assets.plan import TablePlan

COPY_CHUNK = 1 << 20
_LINE = re.compile(r"line (\d+)")
_COLUMN = re.compile(r'column (?:"([^"]+)"|(\w+))')
_KEY = re.compile(r"Key \(([^)]*)\)=\((.*)\)")

Outcome = Literal["loaded", "verified_identical", "replaced_seeded"]


@dataclass(frozen=True)
class LoadResult:
    rows: int
    outcome: Outcome
    sequences: dict[str, int]


class SeededTableDiffers(RuntimeError):
    """A table the target's migrations filled holds other rows than the source."""


def _one(cur: Any) -> Any:
    row = cur.fetchone()
    assert row is not None, "a one-row query returned no row"
    return row[0]


def _table(plan: TablePlan) -> sql.Identifier:
    return sql.Identifier(plan.name)


def _columns(plan: TablePlan) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c.target.name) for c in plan.columns)


def _copy_file(cur: Any, target: sql.Composable, plan: TablePlan, path: Path) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true)").format(target, _columns(plan))
    with cur.copy(statement) as copy, open(path, "rb") as f:
        while chunk := f.read(COPY_CHUNK):
            copy.write(chunk)


def _differing_keys(cur: Any, plan: TablePlan, path: Path, limit: int = 20) -> list[str]:
    """Keys of rows that are in the staged file or in the target table but not in both."""
    cur.execute(sql.SQL("CREATE TEMP TABLE _incoming (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(_table(plan)))
    _copy_file(cur, sql.Identifier("_incoming"), plan, path)
    key = plan.target.primary_key or tuple(c.target.name for c in plan.columns)
    # compared as text: json has no equality operator, and identical input gives identical text
    cols = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c.target.name)) for c in plan.columns)
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in key)
    cur.execute(
        sql.SQL(
            "SELECT DISTINCT {keys} FROM ((SELECT {cols} FROM _incoming EXCEPT SELECT {cols} FROM {t}) "
            "UNION ALL (SELECT {cols} FROM {t} EXCEPT SELECT {cols} FROM _incoming)) d ORDER BY 1 LIMIT %s"
        ).format(keys=keys, cols=cols, t=_table(plan)),
        (limit,),
    )
    return [", ".join(str(v) for v in row) for row in cur.fetchall()]


def load_table(
    connection: psycopg.Connection,
    plan: TablePlan,
    staged_path: Path,
    staged_value: Any,
    *,
    loaded_before: bool,
    replace_seeded: bool,
) -> LoadResult:
    """Replace the table's rows with the staged file's. `staged_value(row, column)` returns the
    staged value for an error message. A table that holds rows we did not load (the target's own
    migrations filled it) is compared instead: identical content is verified and skipped;
    differing content raises SeededTableDiffers unless `replace_seeded`."""
    outcome: Outcome = "loaded"
    try:
        with connection.transaction(), connection.cursor() as cur:
            _bypass_foreign_keys(cur)
            cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(_table(plan)))
            has_rows = _one(cur)
            if has_rows and not loaded_before:
                differing = _differing_keys(cur, plan, staged_path)
                if not differing:
                    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(_table(plan)))
                    return LoadResult(_one(cur), "verified_identical", {})
                if not replace_seeded:
                    raise SeededTableDiffers(
                        f"{plan.database}.{plan.name}: the target already holds rows that differ from the source "
                        f"(keys {differing[:10]}); the target's migrations filled it. Add the table to "
                        f"databases.{plan.database}.replace_seeded in migration.toml to replace them."
                    )
                outcome = "replaced_seeded"
            if has_rows:
                cur.execute(sql.SQL("DELETE FROM {}").format(_table(plan)))
            with _secondary_indexes_built_after(cur, plan):
                _copy_file(cur, _table(plan), plan, staged_path)
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(_table(plan)))
            rows = _one(cur)
            sequences = _advance_sequences(cur, plan)
    except psycopg.errors.Error as exc:
        if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.AdminShutdown):
            raise
        raise _data_error(plan, exc, staged_value) from exc
    return LoadResult(rows, outcome, sequences)


@contextmanager
def _secondary_indexes_built_after(cur: Any, plan: TablePlan) -> Iterator[None]:
    """Non-unique indexes that no constraint owns are dropped for the COPY and built once after
    it, from their own definitions (pg_get_indexdef), in the same transaction: no reader sees
    the table without them, and the `indexes` check proves them. Measured on activity_log at
    scale 1: 1.19 s with its two such indexes kept, 0.94 s built after. Unique indexes stay,
    so that a duplicate key fails the COPY on its own line."""
    cur.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = %s::regclass AND NOT i.indisunique AND NOT i.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1",
        (_table(plan).as_string(cur),),
    )
    definitions = cur.fetchall()
    for name, _ in definitions:
        cur.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(name)))
    yield
    for _, definition in definitions:
        cur.execute(definition)


class LoadPermissionError(RuntimeError):
    """The target user may not bypass foreign-key triggers for the load."""


def _bypass_foreign_keys(cur: Any) -> None:
    try:
        with cur.connection.transaction():
            cur.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege as exc:
        user = sql.Identifier(cur.connection.info.user).as_string(cur.connection)
        raise LoadPermissionError(
            f"the load sets session_replication_role = replica to bypass foreign-key triggers, which the target "
            f"user {cur.connection.info.user!r} may not: it needs a superuser, rds_superuser, or on PostgreSQL 15+ "
            f"GRANT SET ON PARAMETER session_replication_role TO {user} ({exc.diag.message_primary})"
        ) from None


def _advance_sequences(cur: Any, plan: TablePlan) -> dict[str, int]:
    """Set each owned sequence so that its next value is past the loaded maximum."""
    values: dict[str, int] = {}
    for column in plan.columns:
        if column.target.sequence is None:
            continue
        cur.execute(
            sql.SQL("SELECT setval(%s, COALESCE(max({c}), 0) + 1, false) FROM {t}").format(
                c=sql.Identifier(column.target.name), t=_table(plan)
            ),
            (column.target.sequence,),
        )
        values[column.target.sequence] = _one(cur)
    return values


def _data_error(plan: TablePlan, exc: psycopg.errors.Error, staged_value: Any) -> MigrationDataError:
    diag = exc.diag
    context = diag.context or ""
    line = _LINE.search(context)
    row = int(line.group(1)) - 1 if line else None  # COPY counts the header as line 1
    column = diag.column_name
    if column is None and (m := _COLUMN.search(context)):
        column = m.group(1) or m.group(2)
    if column is None and (m := _KEY.search(diag.message_detail or "")):
        column = m.group(1)
    value = None
    if row is not None and column is not None and "," not in column:
        try:
            value = staged_value(row, column)
        except Exception:
            value = None  # the message is still useful without the value
    elif m := _KEY.search(diag.message_detail or ""):
        value = m.group(2)
    message = diag.message_primary or str(exc)
    if diag.message_detail:
        message += f" ({diag.message_detail})"
    return MigrationDataError(
        plan.database,
        plan.name,
        row,
        column,
        value,
        f"PostgreSQL refused the row: {message}",
        "nothing of the table was written",
    )
