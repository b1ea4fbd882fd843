"""Foreign keys proven where the rows are: in DuckDB over the staged files before anything is
written, in PostgreSQL inside the load's transaction for parents or children that this run does
not load, and on the target after the load (the foreign-key checks, as proof).

The load bypasses foreign-key triggers (load.py), so nothing else would stop an orphan: a child
row whose foreign key names no parent row. Each orphan is named by the child's table, key and
column(s), and the parent key it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql

from alkemio_assets.errors import describe_key
from alkemio_assets.sql import first
from alkemio_assets.staging import staged_reader
from alkemio_assets.target import TargetForeignKey, TargetTable, integer_text

SAMPLES = 5


@dataclass(frozen=True)
class Orphans:
    """One foreign key's orphans: how many, and the first few named."""

    table: str
    fk: TargetForeignKey
    count: int
    samples: tuple[str, ...]

    def describe(self) -> str:
        cols = ", ".join(self.fk.columns)
        more = f" ({self.count:,} rows in all)" if self.count > len(self.samples) else ""
        return (
            f"{self.table}.{cols} -> {self.fk.ref_table}({', '.join(self.fk.ref_columns)}) "
            f"[{self.fk.name}]: {'; '.join(self.samples)}{more}"
        )


def _sample(table: TargetTable, key: Sequence[str], fk: TargetForeignKey, row: Sequence[Any]) -> str:
    """`row id=7: parent_id=9 names no parent row`, integers as integers."""

    def named(columns: Sequence[str], values: Sequence[Any]) -> str:
        return describe_key({c: integer_text(table.column(c), v) for c, v in zip(columns, values, strict=True)})

    key_part = named(key, row[: len(key)]) if key else "a row without a key"
    return f"row {key_part}: {named(fk.columns, row[len(key) :])} names no parent row"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def staged_orphans(duck: Any, tables: Mapping[str, TargetTable], paths: Mapping[str, Path]) -> list[Orphans]:
    """Orphans among the staged files of `tables` (the run's loads), for every foreign key whose
    child and parent both load: the columns each key needs are read once per file, then joined.
    Compared as text: the staged values are what COPY reads, in the canonical text of their
    target type (UUIDs lower case), so text equality is PostgreSQL's equality of those values."""
    fks = [(t, fk) for t in tables.values() for fk in t.foreign_keys if fk.ref_table in tables]
    needed: dict[str, set[str]] = {}
    for table, fk in fks:
        needed.setdefault(table.name, set()).update(table.primary_key, fk.columns)
        needed.setdefault(fk.ref_table, set()).update(fk.ref_columns)
    names = {table: f"fk_{i}" for i, table in enumerate(sorted(needed))}
    for name, columns in needed.items():
        duck.execute(
            f"CREATE OR REPLACE TEMP TABLE {names[name]} AS SELECT {', '.join(_quote(c) for c in sorted(columns))} "
            f"FROM {staged_reader(paths[name])}"
        )
    found = []
    for table, fk in fks:
        cols = [_quote(c) for c in fk.columns]
        key = table.primary_key
        match = " AND ".join(f"p.{_quote(r)} = c.{c}" for c, r in zip(cols, fk.ref_columns, strict=True))
        shown = ", ".join([*(f"c.{_quote(k)}" for k in key), *(f"c.{c}" for c in cols)])
        query = (
            f"SELECT {shown} FROM {names[table.name]} c WHERE {' AND '.join(f'c.{c} IS NOT NULL' for c in cols)} "
            f"AND NOT EXISTS (SELECT 1 FROM {names[fk.ref_table]} p WHERE {match})"
        )
        (count,) = duck.execute(f"SELECT count(*) FROM ({query})").fetchone()
        if count:
            rows = duck.execute(f"{query} ORDER BY ALL LIMIT {SAMPLES}").fetchall()
            found.append(Orphans(table.name, fk, count, tuple(_sample(table, key, fk, row) for row in rows)))
    for name in names.values():
        duck.execute(f"DROP TABLE {name}")
    return found


def crossing_foreign_keys(
    loading: Mapping[str, TargetTable], catalog: Iterable[TargetTable]
) -> dict[str, list[TargetForeignKey]]:
    """Per target table: its foreign keys that cross the edge of the run, child loaded and parent
    not, or parent loaded and child not. The staged files cannot prove those: the target can,
    inside the load's transaction."""
    crossing: dict[str, list[TargetForeignKey]] = {}
    for table in catalog:
        for fk in table.foreign_keys:
            if (table.name in loading) != (fk.ref_table in loading):
                crossing.setdefault(table.name, []).append(fk)
    return crossing


def _target_query(table: str, key: Sequence[str], fk: TargetForeignKey) -> sql.Composed:
    cols = [sql.Identifier(c) for c in fk.columns]
    match = sql.SQL(" AND ").join(
        sql.SQL("p.{} = c.{}").format(sql.Identifier(r), sql.Identifier(c))
        for c, r in zip(fk.columns, fk.ref_columns, strict=True)
    )
    shown = [sql.SQL("c.{}::text").format(sql.Identifier(k)) for k in key] + [
        sql.SQL("c.{}::text").format(c) for c in cols
    ]
    return sql.SQL(
        "SELECT {shown} FROM {t} c WHERE {present} AND NOT EXISTS (SELECT 1 FROM {r} p WHERE {match})"
    ).format(
        shown=sql.SQL(", ").join(shown),
        t=sql.Identifier(table),
        present=sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(c) for c in cols),
        r=sql.Identifier(fk.ref_table),
        match=match,
    )


def target_orphans(conn: Any, table: TargetTable, fks: Iterable[TargetForeignKey]) -> list[Orphans]:
    """Per foreign key of the target table: its orphan rows on PostgreSQL, named by its key."""
    found = []
    key = table.primary_key
    for fk in fks:
        query = _target_query(table.name, key, fk)
        count = first(conn.execute(sql.SQL("SELECT count(*) FROM ({}) o").format(query)))
        rows = conn.execute(sql.SQL("{} LIMIT {}").format(query, sql.Literal(SAMPLES))).fetchall() if count else []
        found.append(Orphans(table.name, fk, count, tuple(_sample(table, key, fk, row) for row in rows)))
    return found
