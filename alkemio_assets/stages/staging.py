"""Staging: DuckDB reads each CSV file with declared types, validates every value against its
cast rule and writes the load-ready CSV file that PostgreSQL's COPY reads.

One streaming pass (read, validate, cast, write), in DuckDB's threads and bounded memory: a
value that fails its rule raises inside the pass. Only then is the file read into a table, to
find and name the first bad row. The run's DuckDB file keeps `raw.T` (the CSV file as read)
and `staged.T` (the load-ready file) as views, for inspection at no cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from alkemio_assets.catalog.contract import ColumnPlan, TablePlan
from alkemio_assets.core.errors import MigrationDataError, StagingMemoryError
from alkemio_assets.stages.faults import disk_full, is_disk_full, sha256_of

# Target types whose text must be quoted in the load-ready file: an unquoted `\.` line would be
# COPY's end-of-data marker, and quoting keeps "" (empty) apart from NULL in any case.
_UNQUOTED_TYPES = frozenset({"smallint", "integer", "bigint", "numeric", "double precision", "real", "boolean"})


@dataclass(frozen=True)
class StageResult:
    rows: int
    path: Path
    raw_table: str
    staged_table: str
    sha256: str  # of the load-ready file: the load refuses any other


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def prepare(duck: Any, memory_mb: int) -> None:
    """Once per staging database, before tables are staged in parallel. DuckDB takes 80 % of the
    machine by default; staging holds to MIGRATION_STAGING_MB and spills to its database file."""
    duck.execute(f"SET memory_limit = '{int(memory_mb)}MB'")
    duck.execute("CREATE SCHEMA IF NOT EXISTS raw; CREATE SCHEMA IF NOT EXISTS staged")


MIN_LINE = 2_000_000  # DuckDB's default max_line_size


def _line_size(longest_record: int) -> int:
    return max(longest_record + 2, MIN_LINE)


def _reader(plan: TablePlan, csv_path: Path, longest_record: int) -> str:
    line = _line_size(longest_record)
    columns = "{" + ", ".join(f"{_literal(c.target.name)}: {_literal(c.read_as)}" for c in plan.columns) + "}"
    return (
        f"read_csv({_literal(str(csv_path))}, header = true, auto_detect = false, columns = {columns}, delim = ',', "
        f"quote = '\"', escape = '\"', nullstr = '', allow_quoted_nulls = false, strict_mode = true, "
        f"max_line_size = {line}, buffer_size = {4 * line})"
    )


def _checks(plan: TablePlan) -> list[tuple[ColumnPlan, str]]:
    """(column, predicate true for a non-NULL value its rule refuses), for the columns that have one."""
    return [
        (c, f"({_quote(c.target.name)} IS NOT NULL AND ({predicate}))")
        for c in plan.columns
        if (predicate := c.invalid(_quote(c.target.name)))
    ]


def _first_invalid(duck: Any, plan: TablePlan, reader: str) -> MigrationDataError | None:
    """The first row (in file order) with a value its rule refuses, named by its key; None if
    there is none."""
    checks = _checks(plan)
    if not checks:
        return None
    raw = f"raw.{_quote(plan.name)}"
    duck.execute(f"CREATE OR REPLACE TABLE {raw} AS SELECT * FROM {reader}")
    flags = ", ".join(f"{predicate} AS f{i}" for i, (_, predicate) in enumerate(checks))
    found = duck.execute(
        f"SELECT rowid, {flags} FROM {raw} WHERE {' OR '.join(p for _, p in checks)} ORDER BY rowid LIMIT 1"
    ).fetchone()
    if found is None:
        return None
    rowid, *hits = found
    column = next(c for (c, _), hit in zip(checks, hits, strict=True) if hit)
    keys = plan.key_columns
    value_sql = _quote(column.target.name)
    key_sql = "".join(f", {_quote(k.target.name)}" for k in keys)
    value, why, *key = duck.execute(
        f"SELECT {value_sql}, {column.explain(value_sql)}{key_sql} FROM {raw} WHERE rowid = ?", [rowid]
    ).fetchone()
    return MigrationDataError(
        plan.database,
        plan.name,
        {k.name: v for k, v in zip(keys, key, strict=True)},
        column.name,
        value,
        f"{why} (rule {column.rule.name}: MySQL {column.source.column_type} -> PostgreSQL {column.target.type_name})",
        line=rowid + 2,
    )


def stage_table(
    duck: Any, plan: TablePlan, csv_path: Path, staged_path: Path, longest_record: int = MIN_LINE
) -> StageResult:
    """Read, validate and transform one table; raise MigrationDataError at the first bad value."""
    raw, staged = f"raw.{_quote(plan.name)}", f"staged.{_quote(plan.name)}"
    reader = _reader(plan, csv_path, longest_record)
    refused = {c.name: predicate for c, predicate in _checks(plan)}
    select = ", ".join(
        (
            f"CASE WHEN {refused[c.name]} THEN error({_literal('refused: ' + c.name)}) "
            f"ELSE {c.transform(_quote(c.target.name))} END"
            if c.name in refused
            else c.transform(_quote(c.target.name))
        )
        + f" AS {_quote(c.target.name)}"
        for c in plan.columns
    )
    quoted = ", ".join(_quote(c.target.name) for c in plan.columns if c.target.data_type not in _UNQUOTED_TYPES)
    staged_path.parent.mkdir(parents=True, exist_ok=True)
    options = "FORMAT csv, HEADER true, QUOTE '\"', ESCAPE '\"', NULLSTR ''" + (
        f", FORCE_QUOTE ({quoted})" if quoted else ""
    )
    partial = staged_path.with_suffix(".csv.part")
    try:
        (rows,) = duck.execute(
            f"COPY (SELECT {select} FROM {reader}) TO {_literal(str(partial))} ({options})"
        ).fetchone()
    except duckdb.Error as exc:
        partial.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(partial, f"{plan.database}.{plan.name} staging", exc) from None
        if isinstance(exc, duckdb.OutOfMemoryException):
            raise out_of_memory(duck, plan, longest_record, exc) from None
        # a refused value, or a cast that failed on one: find and name the first bad row
        if (error := _first_invalid(duck, plan, reader)) is not None:
            raise error from None
        raise
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(staged_path)
    duck.execute(f"CREATE OR REPLACE VIEW {raw} AS SELECT * FROM {reader}")
    duck.execute(
        f"CREATE OR REPLACE VIEW {staged} AS SELECT * FROM read_csv({_literal(str(staged_path))}, header = true, "
        f"all_varchar = true, nullstr = '', max_line_size = {_line_size(longest_record)})"
    )
    return StageResult(int(rows), staged_path, raw, staged, sha256_of(staged_path))


def out_of_memory(duck: Any, plan: TablePlan, longest_record: int, exc: BaseException) -> StagingMemoryError:
    """DuckDB holds 2,048 rows at a time in each of its threads: a table of long rows needs
    their bytes several times over."""
    (limit,) = duck.execute("SELECT current_setting('memory_limit')").fetchone()
    first_line = str(exc).splitlines()[0]
    return StagingMemoryError(
        f"{plan.database}.{plan.name} staging: DuckDB needs more than its memory limit of {limit} "
        f"(MIGRATION_STAGING_MB) for this table, whose longest record is {longest_record:,} bytes "
        f"(DuckDB holds 2,048 rows at a time in each thread): raise MIGRATION_STAGING_MB. Nothing was "
        f"written to PostgreSQL. DuckDB said: {first_line}"
    )


def staged_reader(path: Path) -> str:
    """DuckDB's reader of a load-ready file (or an exported one: the same conventions), every value
    as the text COPY reads (NULL apart from '')."""
    return (
        f"read_csv({_literal(str(path))}, header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"', "
        "nullstr = '', allow_quoted_nulls = false, max_line_size = 1000000000)"
    )


def staged_row(path: Path, line: int, columns: list[str]) -> dict[str, str | None]:
    """Some values of the record at `line` of a load-ready file (line 1 is the header), as text:
    the row a refusal of PostgreSQL's COPY names, read back to name it by its key."""
    if not columns:
        return {}
    with duckdb.connect() as duck:
        found = duck.execute(
            f"SELECT {', '.join(_quote(c) for c in columns)} FROM {staged_reader(path)} LIMIT 1 OFFSET ?", [line - 2]
        ).fetchone()
    return {} if found is None else dict(zip(columns, found, strict=True))
