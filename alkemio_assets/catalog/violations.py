"""What the contract forbids, asked of each side: NULLs into a NOT NULL column and duplicates
under a unique key only the target has (asked of MySQL before any data moves), and orphans on
the target (a child row whose foreign key names no parent row), each named by its key.

The step stops on them before it writes; the checks ask the same questions as proof.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from alkemio_assets.catalog.contract import TablePlan
from alkemio_assets.catalog.target import TargetForeignKey, TargetTable, integer_text
from alkemio_assets.core.errors import describe_key
from alkemio_assets.core.settings import DatabasePair
from alkemio_assets.core.sql import first, mysql_ident
from resources import MySQLResource

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


def orphan_sample(table: TargetTable, key: Sequence[str], fk: TargetForeignKey, row: Sequence[Any]) -> str:
    """`row id=7: parent_id=9 names no parent row`, integers as integers."""

    def named(columns: Sequence[str], values: Sequence[Any]) -> str:
        return describe_key({c: integer_text(table.column(c), v) for c, v in zip(columns, values, strict=True)})

    key_part = named(key, row[: len(key)]) if key else "a row without a key"
    return f"row {key_part}: {named(fk.columns, row[len(key) :])} names no parent row"


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
        found.append(Orphans(table.name, fk, count, tuple(orphan_sample(table, key, fk, row) for row in rows)))
    return found


def null_violations(mysql: MySQLResource, pair: DatabasePair, plans: list[TablePlan]) -> list[str]:
    """Columns nullable on MySQL but NOT NULL on PostgreSQL that hold NULLs: each would stop the
    load late, so a run stops on them before any data moves."""
    problems = []
    with mysql.connect(pair.source_database) as conn, conn.cursor() as cur:
        for plan in plans:
            for column in plan.columns:
                if column.source.nullable and column.target.not_null:
                    cur.execute(
                        f"SELECT COUNT(*) AS n FROM {mysql_ident(plan.name)} WHERE {mysql_ident(column.name)} IS NULL"
                    )
                    if n := cur.fetchone()["n"]:
                        problems.append(
                            f"{pair.name}.{plan.name}.{column.name}: {n} rows are NULL on MySQL but the target "
                            f"column is NOT NULL ({column.target.type_name}){_null_keys(cur, plan, column.name)}"
                        )
    return problems


def _null_keys(cur: Any, plan: TablePlan, column: str, limit: int = 5) -> str:
    """`: rows id=2, id=9`: the first rows (by key) whose `column` is NULL, named by their key."""
    keys = [c.name for c in plan.key_columns]
    if not keys:
        return ""
    listed = ", ".join(mysql_ident(k) for k in keys)
    cur.execute(
        f"SELECT {listed} FROM {mysql_ident(plan.name)} WHERE {mysql_ident(column)} IS NULL ORDER BY {listed} LIMIT {limit}"
    )
    return ": rows " + ", ".join(describe_key(row) for row in cur.fetchall())


def unique_violations(mysql: MySQLResource, pair: DatabasePair, plans: list[TablePlan]) -> list[str]:
    """Unique keys the target has and the source lacks (Kratos's session_devices on PostgreSQL),
    whose columns hold duplicates on MySQL: each would stop the load late, so a run stops on
    them first, naming the duplicated values. Compared as bytes (PostgreSQL's text equality, not
    MySQL's case-insensitive collation); a row with a NULL in the key is never a duplicate."""
    problems = []
    with mysql.connect(pair.source_database) as conn, conn.cursor() as cur:
        for plan in plans:
            source_keys = {frozenset(k) for k in plan.source.unique_keys}
            exported = {c.name for c in plan.columns}
            for key in plan.target.unique_keys:
                if frozenset(key) in source_keys or not set(key) <= exported:
                    continue
                columns = ", ".join(f"CAST({mysql_ident(c)} AS BINARY)" for c in key)
                not_null = " AND ".join(f"{mysql_ident(c)} IS NOT NULL" for c in key)
                cur.execute(
                    f"SELECT {columns}, COUNT(*) AS n FROM {mysql_ident(plan.name)} WHERE {not_null} "
                    f"GROUP BY {columns} HAVING COUNT(*) > 1 LIMIT 6"
                )
                if duplicates := cur.fetchall():
                    shown = [
                        "("
                        + ", ".join(repr(bytes(v).decode("utf-8", "replace")) for k, v in row.items() if k != "n")
                        + ")"
                        f" {row['n']} times"
                        for row in duplicates[:5]
                    ]
                    more = " and more" if len(duplicates) > 5 else ""
                    problems.append(
                        f"{pair.name}.{plan.name}: the target is unique on ({', '.join(key)}), MySQL is not, and holds "
                        f"duplicates: {'; '.join(shown)}{more}. Remove the duplicates on MySQL (the application keeps one)"
                    )
    return problems
