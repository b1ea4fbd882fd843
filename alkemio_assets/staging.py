"""Staging: DuckDB reads each CSV file with declared types, validates every value against its
cast rule and writes the load-ready CSV file that PostgreSQL's COPY reads.

Both the raw table (as read) and the staged table (as loaded) stay in the run's DuckDB file,
and the load-ready file beside it, for inspection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alkemio_assets.errors import MigrationDataError
from alkemio_assets.plan import TablePlan

# Target types whose text must be quoted in the load-ready file: an unquoted `\.` line would be
# COPY's end-of-data marker, and quoting keeps "" (empty) apart from NULL in any case.
_UNQUOTED_TYPES = frozenset({"smallint", "integer", "bigint", "numeric", "double precision", "real", "boolean"})


@dataclass(frozen=True)
class StageResult:
    rows: int
    path: Path
    raw_table: str
    staged_table: str


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# DuckDB takes 80 % of the machine by default; staging spills to its database file instead.
MEMORY_LIMIT = "1GB"


def prepare(duck: Any) -> None:
    """Once per staging database, before tables are staged in parallel."""
    duck.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    duck.execute("CREATE SCHEMA IF NOT EXISTS raw; CREATE SCHEMA IF NOT EXISTS staged")


MIN_LINE = 2_000_000  # DuckDB's default max_line_size


def stage_table(
    duck: Any, plan: TablePlan, csv_path: Path, staged_path: Path, longest_record: int = MIN_LINE
) -> StageResult:
    """Read, validate and transform one table; raise MigrationDataError at the first bad value."""
    raw, staged = f"raw.{_quote(plan.name)}", f"staged.{_quote(plan.name)}"
    line = max(longest_record + 2, MIN_LINE)
    columns = "{" + ", ".join(f"{_literal(c.target.name)}: {_literal(c.read_as)}" for c in plan.columns) + "}"
    duck.execute(
        f"CREATE OR REPLACE TABLE {raw} AS SELECT * FROM read_csv({_literal(str(csv_path))}, header = true, "
        f"auto_detect = false, columns = {columns}, delim = ',', quote = '\"', escape = '\"', nullstr = '', "
        f"allow_quoted_nulls = false, strict_mode = true, max_line_size = {line}, buffer_size = {4 * line})"
    )
    checks = [
        (c, f"({_quote(c.target.name)} IS NOT NULL AND ({predicate}))")
        for c in plan.columns
        if (predicate := c.invalid(_quote(c.target.name)))
    ]
    if checks:
        flags = ", ".join(f"{predicate} AS f{i}" for i, (_, predicate) in enumerate(checks))
        found = duck.execute(
            f"SELECT rowid, {flags} FROM {raw} WHERE {' OR '.join(p for _, p in checks)} ORDER BY rowid LIMIT 1"
        ).fetchone()
        if found is not None:
            rowid, *hits = found
            column = next(c for (c, _), hit in zip(checks, hits, strict=True) if hit)
            (value,) = duck.execute(
                f"SELECT {_quote(column.target.name)} FROM {raw} WHERE rowid = ?", [rowid]
            ).fetchone()
            raise MigrationDataError(
                plan.database,
                plan.name,
                rowid + 1,
                column.name,
                value,
                f"{column.reason()} (rule {column.rule.name}: MySQL {column.source.column_type} -> "
                f"PostgreSQL {column.target.type_name})",
            )
    select = ", ".join(f"{c.transform(_quote(c.target.name))} AS {_quote(c.target.name)}" for c in plan.columns)
    duck.execute(f"CREATE OR REPLACE TABLE {staged} AS SELECT {select} FROM {raw} ORDER BY rowid")
    quoted = ", ".join(_quote(c.target.name) for c in plan.columns if c.target.data_type not in _UNQUOTED_TYPES)
    staged_path.parent.mkdir(parents=True, exist_ok=True)
    options = "FORMAT csv, HEADER true, QUOTE '\"', ESCAPE '\"', NULLSTR ''" + (
        f", FORCE_QUOTE ({quoted})" if quoted else ""
    )
    duck.execute(f"COPY {staged} TO {_literal(str(staged_path))} ({options})")
    (rows,) = duck.execute(f"SELECT count(*) FROM {staged}").fetchone()
    return StageResult(rows, staged_path, raw, staged)
