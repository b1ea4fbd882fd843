"""Load: the staged files of a database's tables into PostgreSQL with COPY, in one transaction.

The database is the unit of failure: every table of a run is loaded on one connection inside one
transaction, which commits only when every table is in and every foreign key that crosses the
run's edge is proven (catalog/violations.py). Any failure, a refused row, a lost connection, a killed
process, leaves every table as it was: PostgreSQL rolls the transaction back. Within it, a
table's old rows are deleted and the new ones copied, so a reader sees the old database or the
new one, never a part. Foreign-key triggers are bypassed for the transaction
(session_replication_role = replica): tables load in any order, cycles need no second pass, and
deleting a parent's rows cascades into no other table. NOT NULL, UNIQUE, CHECK and types are
enforced by COPY itself. Each file is hashed as COPY reads it; a file that is not the one its
run recorded (SHA-256 and rows) is refused before anything commits.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from alkemio_assets.catalog.contract import TablePlan
from alkemio_assets.core.errors import InputChangedError, MigrationDataError
from alkemio_assets.stages.faults import postgres_lost
from alkemio_assets.stages.staging import staged_row

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
    span: tuple[float, float] = (0.0, 0.0)  # when the table's load ran inside the transaction (epoch seconds)


# SQLSTATE classes of a row PostgreSQL refuses: data exception, integrity constraint violation
DATA_ERRORS = ("22", "23")


class LoadFailed(RuntimeError):
    """PostgreSQL stopped a load for a reason that is not the data (a privilege, a lock timeout)."""


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


@dataclass(frozen=True)
class StagedInput:
    """A load-ready file and what the run that wrote it recorded of it."""

    path: Path
    sha256: str
    rows: int
    run_id: str


def _copy_file(cur: Any, target: sql.Composable, plan: TablePlan, staged: StagedInput) -> int:
    """COPY the file into `target`, hashing it as it goes: raise InputChangedError (inside the
    caller's transaction, so nothing commits) unless it is the file its run recorded."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true)").format(target, _columns(plan))
    digest = hashlib.sha256()
    with cur.copy(statement) as copy, open(staged.path, "rb") as f:
        while chunk := f.read(COPY_CHUNK):
            digest.update(chunk)
            copy.write(chunk)
    rows = cur.rowcount
    if digest.hexdigest() != staged.sha256 or rows != staged.rows:
        raise InputChangedError(
            f"{plan.database}.{plan.name}: {staged.path} is not the file run {staged.run_id} staged "
            f"({rows:,} rows, SHA-256 {digest.hexdigest()[:16]}...; recorded {staged.rows:,} rows, "
            f"{staged.sha256[:16]}...): it changed since it was written. Nothing was committed; "
            "materialize the staged asset again"
        )
    return rows


def _differing_keys(cur: Any, plan: TablePlan, staged: StagedInput, limit: int = 20) -> list[str]:
    """Keys of rows that are in the staged file or in the target table but not in both."""
    cur.execute(sql.SQL("CREATE TEMP TABLE _incoming (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(_table(plan)))
    _copy_file(cur, sql.Identifier("_incoming"), plan, staged)
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
    found = [", ".join(str(v) for v in row) for row in cur.fetchall()]
    cur.execute("DROP TABLE _incoming")
    return found


def load_into(
    cur: Any, plan: TablePlan, staged: StagedInput, *, loaded_before: bool, replace_seeded: bool
) -> LoadResult:
    """Replace the table's rows with the staged file's, inside the caller's transaction (foreign
    keys bypassed). A table that holds rows we did not load (the target's own migrations filled
    it) is compared instead: identical content is verified and left; differing content raises
    SeededTableDiffers unless `replace_seeded`."""
    outcome: Outcome = "loaded"
    try:
        cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(_table(plan)))
        has_rows = _one(cur)
        if has_rows and not loaded_before:
            differing = _differing_keys(cur, plan, staged)
            if not differing:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(_table(plan)))
                return LoadResult(_one(cur), "verified_identical", {})
            if not replace_seeded:
                raise SeededTableDiffers(
                    f"{plan.database}.{plan.name}: the target already holds rows that differ from the source "
                    f"(keys {differing[:10]}); the target's migrations filled it. Add the table to "
                    f"databases.{plan.database}.replace_seeded in migration.toml to replace them. Nothing of "
                    f"{plan.database} was committed"
                )
            outcome = "replaced_seeded"
        if has_rows:
            cur.execute(sql.SQL("DELETE FROM {}").format(_table(plan)))
        with _secondary_indexes_built_after(cur, plan):
            rows = _copy_file(cur, _table(plan), plan, staged)
        sequences = _advance_sequences(cur, plan)
    except psycopg.errors.Error as exc:
        if postgres_lost(exc) or isinstance(exc, psycopg.errors.QueryCanceled):
            raise
        if (exc.sqlstate or "")[:2] in DATA_ERRORS:
            raise _data_error(plan, exc, staged.path) from exc
        raise LoadFailed(
            f"{plan.database}.{plan.name}: PostgreSQL stopped the load ({exc.sqlstate}): {exc}. "
            f"Nothing of {plan.database} was committed"
        ) from exc
    return LoadResult(rows, outcome, sequences)


def load_tables(
    connection: psycopg.Connection,
    tables: Iterable[tuple[TablePlan, StagedInput]],
    *,
    loaded_before: set[str],
    replace_seeded: set[str],
    before_commit: Callable[[Any], None] = lambda cur: None,
) -> dict[str, LoadResult]:
    """Every table of `tables` (which may still be staged as they are taken: the transaction
    waits for each), in one transaction that `before_commit(cur)` may still refuse by raising:
    then, as on any error, nothing is committed."""
    results = {}
    with connection.transaction(), connection.cursor() as cur:
        bypass_foreign_keys(cur)
        for plan, staged in tables:
            started = time.time()
            loaded = load_into(
                cur,
                plan,
                staged,
                loaded_before=plan.name in loaded_before,
                replace_seeded=plan.name in replace_seeded,
            )
            results[plan.name] = replace(loaded, span=(started, time.time()))
        before_commit(cur)
    return results


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


def bypass_foreign_keys(cur: Any) -> None:
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


def _data_error(plan: TablePlan, exc: psycopg.errors.Error, path: Path) -> MigrationDataError:
    """PostgreSQL's refusal, with the row named by its key (read back from the staged file)."""
    diag = exc.diag
    context = diag.context or ""
    line = _LINE.search(context)
    file_line = int(line.group(1)) if line else None  # COPY counts the header as line 1
    column = diag.column_name
    if column is None and (m := _COLUMN.search(context)):
        column = m.group(1) or m.group(2)
    if column is None and (m := _KEY.search(diag.message_detail or "")):
        column = m.group(1)
    target_names = {c.target.name: c.name for c in plan.columns}
    wanted = [c.target.name for c in plan.key_columns]
    if column in target_names:
        wanted.append(column)
    row: dict[str, Any] = {}
    if file_line is not None:
        try:
            row = staged_row(path, file_line, wanted)
        except Exception:
            row = {}  # the message is still useful without the row
    key = plan.row_key(row) if row and all(c.target.name in row for c in plan.key_columns) else None
    value = row.get(column) if column in row else None
    if value is None and (m := _KEY.search(diag.message_detail or "")):
        value = m.group(2)
    message = diag.message_primary or str(exc)
    if diag.message_detail:
        message += f" ({diag.message_detail})"
    return MigrationDataError(
        plan.database,
        plan.name,
        key,
        target_names.get(column or "", column),
        value,
        f"PostgreSQL refused the row: {message}",
        f"nothing of {plan.database} was committed",
        line=file_line,
    )
