"""The PostgreSQL target schema (made by the applications' own migrations), reflected.

Schema first: this is what the data must fit. Pure row-to-spec functions plus one reader.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TargetColumn:
    name: str
    data_type: str  # information_schema data_type; 'enum' for an enum type
    type_name: str  # format_type(): 'character varying(36)', 'notification_state_enum', ...
    not_null: bool
    has_default: bool
    char_max_length: int | None
    numeric_precision: int | None
    numeric_scale: int | None
    datetime_precision: int | None
    enum_labels: tuple[str, ...]
    sequence: str | None  # owned sequence (serial / identity), qualified name
    identity: bool


INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})


def integer_text(column: TargetColumn | None, value: Any) -> Any:
    """A value read back as text, as an int when its column is an integer (for naming a row)."""
    if column is not None and column.data_type in INTEGER_TYPES and isinstance(value, str):
        return int(value)
    return value


@dataclass(frozen=True)
class TargetForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class TargetTable:
    name: str
    columns: tuple[TargetColumn, ...]
    primary_key: tuple[str, ...]
    unique_keys: tuple[tuple[str, ...], ...]
    foreign_keys: tuple[TargetForeignKey, ...]
    indexes: tuple[tuple[str, ...], ...] = ()  # columns of every index, unique or not

    def column(self, name: str) -> TargetColumn | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class TargetCatalog:
    database: str
    server_version: int
    tables: tuple[TargetTable, ...]

    def table(self, name: str) -> TargetTable | None:
        return next((t for t in self.tables if t.name == name), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> TargetCatalog:
        raw = json.loads(text)
        return TargetCatalog(
            database=raw["database"],
            server_version=raw["server_version"],
            tables=tuple(
                TargetTable(
                    name=t["name"],
                    columns=tuple(TargetColumn(**{**c, "enum_labels": tuple(c["enum_labels"])}) for c in t["columns"]),
                    primary_key=tuple(t["primary_key"]),
                    unique_keys=tuple(tuple(k) for k in t["unique_keys"]),
                    foreign_keys=tuple(
                        TargetForeignKey(f["name"], tuple(f["columns"]), f["ref_table"], tuple(f["ref_columns"]))
                        for f in t["foreign_keys"]
                    ),
                    indexes=tuple(tuple(i) for i in t.get("indexes", ())),
                )
                for t in raw["tables"]
            ),
        )


_COLUMNS_SQL = """
SELECT c.table_name, c.column_name, c.data_type, format_type(a.atttypid, a.atttypmod) AS type_name,
       c.is_nullable = 'NO' AS not_null, c.column_default IS NOT NULL OR c.is_identity = 'YES' AS has_default,
       c.character_maximum_length, c.numeric_precision, c.numeric_scale, c.datetime_precision,
       pg_get_serial_sequence(format('%%I.%%I', c.table_schema, c.table_name), c.column_name) AS sequence,
       c.is_identity = 'YES' AS identity,
       CASE WHEN t.typtype = 'e' THEN
         array(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
       END AS enum_labels
FROM information_schema.columns c
JOIN pg_class k ON k.relname = c.table_name
JOIN pg_namespace n ON n.oid = k.relnamespace AND n.nspname = c.table_schema
JOIN pg_attribute a ON a.attrelid = k.oid AND a.attname = c.column_name
JOIN pg_type t ON t.oid = a.atttypid
WHERE c.table_schema = %s AND k.relkind IN ('r', 'p')
ORDER BY c.table_name, c.ordinal_position
"""
_KEYS_SQL = """
SELECT k.relname, x.contype,
       array(SELECT a.attname FROM unnest(x.conkey) WITH ORDINALITY u(n, o)
             JOIN pg_attribute a ON a.attrelid = x.conrelid AND a.attnum = u.n ORDER BY u.o) AS columns,
       f.relname AS ref_table,
       array(SELECT a.attname FROM unnest(x.confkey) WITH ORDINALITY u(n, o)
             JOIN pg_attribute a ON a.attrelid = x.confrelid AND a.attnum = u.n ORDER BY u.o) AS ref_columns,
       x.conname
FROM pg_constraint x JOIN pg_class k ON k.oid = x.conrelid
JOIN pg_namespace n ON n.oid = k.relnamespace
LEFT JOIN pg_class f ON f.oid = x.confrelid
WHERE n.nspname = %s AND x.contype IN ('p', 'u', 'f')
UNION ALL
SELECT k.relname, 'u', array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY u(n, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.n ORDER BY u.o),
       NULL, NULL, c.relname
FROM pg_index i JOIN pg_class k ON k.oid = i.indrelid JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = k.relnamespace
WHERE n.nspname = %s AND i.indisunique AND NOT i.indisprimary AND i.indpred IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_constraint x WHERE x.conindid = i.indexrelid)
ORDER BY 1, 6
"""


_INDEXES_SQL = """
SELECT t.relname, array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY u(n, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.n ORDER BY u.o)
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %s AND i.indpred IS NULL
ORDER BY 1, 2
"""


def column_from_row(row: tuple[Any, ...]) -> tuple[str, TargetColumn]:
    (
        table,
        name,
        data_type,
        type_name,
        not_null,
        has_default,
        length,
        precision,
        scale,
        dt_precision,
        sequence,
        identity,
        labels,
    ) = row
    return table, TargetColumn(
        name=name,
        data_type="enum" if labels is not None else data_type,
        type_name=type_name,
        not_null=bool(not_null),
        has_default=bool(has_default),
        char_max_length=length,
        numeric_precision=precision if data_type == "numeric" else None,
        numeric_scale=scale if data_type == "numeric" else None,
        datetime_precision=dt_precision if data_type.startswith("timestamp") else None,
        enum_labels=tuple(labels or ()),
        sequence=sequence,
        identity=bool(identity),
    )


def read_pg_catalog(connection: Any, database: str, schema: str = "public") -> TargetCatalog:
    """Reflect every table of `schema` through a psycopg connection to `database`."""
    columns: dict[str, list[TargetColumn]] = defaultdict(list)
    for row in connection.execute(_COLUMNS_SQL, (schema,)):
        table, column = column_from_row(row)
        columns[table].append(column)
    primary: dict[str, tuple[str, ...]] = {}
    unique: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    fks: dict[str, list[TargetForeignKey]] = defaultdict(list)
    for table, kind, cols, ref_table, ref_cols, name in connection.execute(_KEYS_SQL, (schema, schema)):
        if kind == "p":
            primary[table] = tuple(cols)
            unique[table].append(tuple(cols))
        elif kind == "u":
            unique[table].append(tuple(cols))
        else:
            fks[table].append(TargetForeignKey(name, tuple(cols), ref_table, tuple(ref_cols)))
    indexes: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for table, cols in connection.execute(_INDEXES_SQL, (schema,)):
        indexes[table].append(tuple(cols))
    version = connection.info.server_version
    return TargetCatalog(
        database=database,
        server_version=version,
        tables=tuple(
            TargetTable(
                name=name,
                columns=tuple(cols),
                primary_key=primary.get(name, ()),
                unique_keys=tuple(unique.get(name, ())),
                foreign_keys=tuple(fks.get(name, ())),
                indexes=tuple(indexes.get(name, ())),
            )
            for name, cols in sorted(columns.items())
        ),
    )
