"""The source catalog: frozen table and column specs read from MySQL's information_schema.

Reflection is a set of small functions from information_schema rows to typed values, so the
same specs serve the data generator, the asset factories and the snapshot on disk.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

_JSON_CHECK = re.compile(r"json_valid\(`(?P<column>(?:[^`]|``)+)`\)", re.IGNORECASE)


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    ordinal: int
    data_type: str  # information_schema DATA_TYPE, lower case: 'int', 'varchar', 'json', ...
    column_type: str  # full COLUMN_TYPE: 'int unsigned', "enum('a','b')", 'tinyint(4)'
    nullable: bool
    default: str | None
    char_max_length: int | None
    numeric_precision: int | None
    numeric_scale: int | None
    datetime_precision: int | None
    charset: str | None
    auto_increment: bool
    generated: bool
    is_json: bool
    on_update: bool = False  # ON UPDATE CURRENT_TIMESTAMP: any UPDATE rewrites it unless told not to

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type

    @property
    def enum_labels(self) -> tuple[str, ...]:
        if self.data_type not in ("enum", "set"):
            return ()
        body = self.column_type[self.column_type.index("(") + 1 : self.column_type.rindex(")")]
        return tuple(m.replace("''", "'") for m in re.findall(r"'((?:[^']|'')*)'", body))


@dataclass(frozen=True)
class IndexSpec:
    name: str
    columns: tuple[str, ...]
    unique: bool
    primary: bool


@dataclass(frozen=True)
class ForeignKeySpec:
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str


@dataclass(frozen=True)
class TableSpec:
    database: str
    name: str
    columns: tuple[ColumnSpec, ...]
    indexes: tuple[IndexSpec, ...]
    foreign_keys: tuple[ForeignKeySpec, ...]

    @property
    def primary_key(self) -> tuple[str, ...]:
        return next((i.columns for i in self.indexes if i.primary), ())

    @property
    def unique_keys(self) -> tuple[tuple[str, ...], ...]:
        return tuple(i.columns for i in self.indexes if i.unique)

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.database}.{self.name} has no column {name!r}")


@dataclass(frozen=True)
class Catalog:
    database: str
    server_version: str
    tables: tuple[TableSpec, ...]

    def table(self, name: str) -> TableSpec:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"{self.database} has no table {name!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Catalog:
        raw = json.loads(text)
        return Catalog(
            database=raw["database"],
            server_version=raw["server_version"],
            tables=tuple(
                TableSpec(
                    database=t["database"],
                    name=t["name"],
                    columns=tuple(ColumnSpec(**c) for c in t["columns"]),
                    indexes=tuple(
                        IndexSpec(i["name"], tuple(i["columns"]), i["unique"], i["primary"]) for i in t["indexes"]
                    ),
                    foreign_keys=tuple(
                        ForeignKeySpec(
                            f["name"],
                            tuple(f["columns"]),
                            f["ref_table"],
                            tuple(f["ref_columns"]),
                            f["on_delete"],
                        )
                        for f in t["foreign_keys"]
                    ),
                )
                for t in raw["tables"]
            ),
        )


# -- pure functions from information_schema rows -------------------------------------------


def json_columns_from_checks(check_clauses: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """MariaDB stores `json` as longtext with CHECK (json_valid(col)): recover (table, column)."""
    found = set()
    for table, clause in check_clauses:
        for m in _JSON_CHECK.finditer(clause):
            found.add((table, m.group("column").replace("``", "`")))
    return found


def column_from_row(row: Mapping[str, Any], json_columns: set[tuple[str, str]]) -> ColumnSpec:
    extra = (row["EXTRA"] or "").lower()
    data_type = row["DATA_TYPE"].lower()
    return ColumnSpec(
        name=row["COLUMN_NAME"],
        ordinal=int(row["ORDINAL_POSITION"]),
        data_type=data_type,
        column_type=row["COLUMN_TYPE"].lower(),
        nullable=row["IS_NULLABLE"] == "YES",
        default=row["COLUMN_DEFAULT"],
        char_max_length=_int_or_none(row["CHARACTER_MAXIMUM_LENGTH"]),
        numeric_precision=_int_or_none(row["NUMERIC_PRECISION"]),
        numeric_scale=_int_or_none(row["NUMERIC_SCALE"]),
        datetime_precision=_int_or_none(row["DATETIME_PRECISION"]),
        charset=row["CHARACTER_SET_NAME"],
        auto_increment="auto_increment" in extra,
        generated="generated" in extra or "persistent" in extra,
        is_json=data_type == "json" or (row["TABLE_NAME"], row["COLUMN_NAME"]) in json_columns,
        on_update="on update" in extra,
    )


def indexes_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[IndexSpec, ...]]:
    """STATISTICS rows (ordered by table, index, SEQ_IN_INDEX) to indexes per table."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        grouped[(r["TABLE_NAME"], r["INDEX_NAME"])].append(r)
    out: dict[str, list[IndexSpec]] = defaultdict(list)
    for (table, index), parts in grouped.items():
        parts.sort(key=lambda p: int(p["SEQ_IN_INDEX"]))
        out[table].append(
            IndexSpec(
                name=index,
                columns=tuple(p["COLUMN_NAME"] for p in parts),
                unique=int(parts[0]["NON_UNIQUE"]) == 0,
                primary=index == "PRIMARY",
            )
        )
    return {t: tuple(sorted(v, key=lambda i: (not i.primary, i.name))) for t, v in out.items()}


def foreign_keys_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[ForeignKeySpec, ...]]:
    """KEY_COLUMN_USAGE joined with REFERENTIAL_CONSTRAINTS rows to foreign keys per table."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        grouped[(r["TABLE_NAME"], r["CONSTRAINT_NAME"])].append(r)
    out: dict[str, list[ForeignKeySpec]] = defaultdict(list)
    for (table, name), parts in grouped.items():
        parts.sort(key=lambda p: int(p["ORDINAL_POSITION"]))
        out[table].append(
            ForeignKeySpec(
                name=name,
                columns=tuple(p["COLUMN_NAME"] for p in parts),
                ref_table=parts[0]["REFERENCED_TABLE_NAME"],
                ref_columns=tuple(p["REFERENCED_COLUMN_NAME"] for p in parts),
                on_delete=parts[0]["DELETE_RULE"],
            )
        )
    return {t: tuple(sorted(v, key=lambda f: f.name)) for t, v in out.items()}


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


# -- reading a live server --------------------------------------------------------------------

_COLUMNS_SQL = """
SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE,
       COLUMN_DEFAULT, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE,
       DATETIME_PRECISION, CHARACTER_SET_NAME, EXTRA
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s
ORDER BY TABLE_NAME, ORDINAL_POSITION
"""
_TABLES_SQL = """
SELECT TABLE_NAME FROM information_schema.TABLES
WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME
"""
_STATISTICS_SQL = """
SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME
FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s
ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX
"""
_FOREIGN_KEYS_SQL = """
SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.ORDINAL_POSITION,
       k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.DELETE_RULE
FROM information_schema.KEY_COLUMN_USAGE k
JOIN information_schema.REFERENTIAL_CONSTRAINTS r
  ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME
 AND r.TABLE_NAME = k.TABLE_NAME
WHERE k.TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL
ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION
"""
# MariaDB only: MySQL 8 reports DATA_TYPE 'json' itself.
_JSON_CHECKS_SQL = """
SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = %s AND CHECK_CLAUSE LIKE '%%json_valid%%'
"""


def read_table_sizes(connection: Any, database: str) -> dict[str, int]:
    """Bytes of data per base table (InnoDB's estimate): how tables are balanced over shards
    and when a big one is exported in key ranges."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME AS name, COALESCE(DATA_LENGTH, 0) AS bytes FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
            (database,),
        )
        return {r["name"]: int(r["bytes"]) for r in cur.fetchall()}


def read_mysql_catalog(connection: Any, database: str) -> Catalog:
    """Reflect every base table of `database` through a PyMySQL DictCursor connection."""
    with connection.cursor() as cur:
        cur.execute("SELECT VERSION() AS v")
        version = cur.fetchone()["v"]
        cur.execute(_TABLES_SQL, (database,))
        names = [r["TABLE_NAME"] for r in cur.fetchall()]
        if not names:
            cur.execute("SELECT COUNT(*) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,))
            if cur.fetchone()["n"] == 0:
                raise LookupError(f"MySQL database {database!r} does not exist")
        json_columns: set[tuple[str, str]] = set()
        if "mariadb" in version.lower():
            cur.execute(_JSON_CHECKS_SQL, (database,))
            json_columns = json_columns_from_checks((r["TABLE_NAME"], r["CHECK_CLAUSE"]) for r in cur.fetchall())
        cur.execute(_COLUMNS_SQL, (database,))
        columns: dict[str, list[ColumnSpec]] = defaultdict(list)
        for r in cur.fetchall():
            columns[r["TABLE_NAME"]].append(column_from_row(r, json_columns))
        cur.execute(_STATISTICS_SQL, (database,))
        indexes = indexes_from_rows(cur.fetchall())
        cur.execute(_FOREIGN_KEYS_SQL, (database,))
        fks = foreign_keys_from_rows(cur.fetchall())
    tables = tuple(
        TableSpec(
            database=database,
            name=name,
            columns=tuple(columns[name]),
            indexes=indexes.get(name, ()),
            foreign_keys=fks.get(name, ()),
        )
        for name in names
    )
    return Catalog(database=database, server_version=version, tables=tables)
