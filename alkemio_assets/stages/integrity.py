"""Foreign keys proven where the rows are, before anything is written: in DuckDB over the staged
files of the tables a run loads. Parents or children the run does not load are proven in
PostgreSQL inside the load's transaction, and every table on the target after the load (the
foreign-key checks, as proof): catalog/violations.py asks those.

The load bypasses foreign-key triggers (load.py), so nothing else would stop an orphan: a child
row whose foreign key names no parent row. Each orphan is named by the child's table, key and
column(s), and the parent key it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alkemio_assets.catalog.target import TargetTable
from alkemio_assets.catalog.violations import SAMPLES, Orphans, orphan_sample
from alkemio_assets.stages.staging import staged_reader


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
            found.append(Orphans(table.name, fk, count, tuple(orphan_sample(table, key, fk, row) for row in rows)))
    for name in names.values():
        duck.execute(f"DROP TABLE {name}")
    return found
