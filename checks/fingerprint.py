"""Content fidelity: an order-independent fingerprint of every row, canonicalised the same way on
the MySQL side (raw values) and on the PostgreSQL side (loaded values), in bounded memory.

Each row becomes one canonical byte string, hashed to 64 bits; a table's fingerprint is the
row count and the sum of those hashes modulo 2^64, kept in 256 buckets by key. When the sums
differ, a second pass over only the differing buckets names the keys of the differing rows.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg import sql

from alkemio_assets.export import select_list
from alkemio_assets.plan import ColumnPlan, TablePlan
from alkemio_assets.sql import mysql_ident
from resources import MySQLResource, PostgresResource

BUCKETS = 256
FETCH = 5_000
_NULL = "\x00NULL"
_MASK = (1 << 64) - 1


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f") if value == value.to_integral_value() else str(value.normalize())
    return "0" if text in ("-0", "0E+0") else text


def _json(value: Any) -> str:
    """JSON with keys sorted and numbers by value: MySQL's, MariaDB's and jsonb's forms agree."""
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + _json(v) for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return _number(value)
    return json.dumps(value, ensure_ascii=False)


def _parse_json(text: str) -> str:
    return _json(json.loads(text, parse_float=Decimal, parse_int=Decimal))


def _timestamp(value: datetime | str) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(sep=" ", timespec="microseconds")


# rule name -> (canonical of MySQL's raw value, canonical of PostgreSQL's value)
CANONICAL: dict[str, tuple[Callable[[Any], str], Callable[[Any], str]]] = {
    "flag": (lambda raw: raw, lambda v: "1" if v else "0"),
    "integer": (lambda raw: str(int(raw)), str),
    "integer_numeric": (lambda raw: str(int(raw)), lambda v: str(int(v))),
    "year": (lambda raw: str(int(raw)), str),
    "decimal": (lambda raw: _number(Decimal(raw)), _number),
    "decimal_text": (lambda raw: _number(Decimal(raw)), _number),
    "float": (lambda raw: repr(float(raw)), repr),
    "timestamp": (_timestamp, _timestamp),
    "timestamptz": (_timestamp, _timestamp),
    "date": (lambda raw: raw, str),
    "time": (lambda raw: raw, str),
    "uuid": (lambda raw: raw.lower(), str),
    "json": (_parse_json, _parse_json),
    "jsonb": (_parse_json, _parse_json),
    "bytea": (lambda raw: bytes(raw).hex(), lambda v: bytes(v).hex()),
    "base64": (lambda raw: base64.b64encode(bytes(raw)).decode(), lambda v: v),
    "text": (lambda raw: raw, lambda v: v),
    "enum": (lambda raw: raw, lambda v: v),
}


def canonical(column: ColumnPlan) -> tuple[Callable[[Any], str], Callable[[Any], str]]:
    source, target = CANONICAL[column.rule.name]
    if column.export_as == "charset_text":
        codec = "cp1252" if column.source.charset == "latin1" else (column.source.charset or "utf-8")
        source = (lambda decode: lambda raw: decode(bytes(raw).decode(codec)))(source)
    if column.target.data_type == "character":
        target = (lambda inner: lambda v: inner(v.rstrip(" ")))(target)  # character(n) pads, MySQL char strips
    return source, target


@dataclass
class Fingerprint:
    rows: int = 0
    total: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, key: str, row: str) -> None:
        digest = int.from_bytes(hashlib.blake2b(row.encode(), digest_size=8).digest(), "big")
        self.rows += 1
        self.total = (self.total + digest) & _MASK
        bucket = _bucket(key)
        self.buckets[bucket] = (self.buckets[bucket] + digest) & _MASK

    def hex(self) -> str:
        return f"{self.rows}:{self.total:016x}"


def _bucket(key: str) -> int:
    return hashlib.blake2b(key.encode(), digest_size=1).digest()[0]


def _key_indexes(plan: TablePlan) -> list[int]:
    names = [c.name for c in plan.columns]
    key = plan.source.primary_key or tuple(names)
    return [names.index(k) for k in key]


def _rows(
    values: Iterator[tuple[Any, ...]], converters: list[Callable[[Any], str]], keys: list[int]
) -> Iterator[tuple[str, str]]:
    for row in values:
        fields = [_NULL if v is None else f(v) for f, v in zip(converters, row, strict=True)]
        yield "\x1f".join(fields[i] for i in keys), "\x1f".join(fields)


def source_rows(mysql: MySQLResource, database: str, plan: TablePlan) -> Iterator[tuple[str, str]]:
    converters = [canonical(c)[0] for c in plan.columns]
    with mysql.connect(database, raw=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {select_list(plan.columns)} FROM {mysql_ident(plan.name)}")

        def fetched() -> Iterator[tuple[Any, ...]]:
            while batch := cur.fetchmany(FETCH):
                yield from batch

        yield from _rows(fetched(), converters, _key_indexes(plan))


def target_select(plan: TablePlan) -> sql.Composable:
    """The loaded columns as the canonical functions take them: json and jsonb as their text."""
    return sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(c.target.name))
        if c.target.data_type in ("json", "jsonb")
        else sql.Identifier(c.target.name)
        for c in plan.columns
    )


def target_rows(postgres: PostgresResource, database: str, plan: TablePlan) -> Iterator[tuple[str, str]]:
    converters = [canonical(c)[1] for c in plan.columns]
    columns = target_select(plan)
    with postgres.connect(database) as conn, conn.cursor(name="fingerprint") as cur:
        cur.itersize = FETCH
        cur.execute(sql.SQL("SELECT {} FROM {}").format(columns, sql.Identifier(plan.name)))
        yield from _rows(iter(cur), converters, _key_indexes(plan))


def fingerprint(rows: Iterator[tuple[str, str]]) -> Fingerprint:
    result = Fingerprint()
    for key, row in rows:
        result.add(key, row)
    return result


def differing_keys(
    source: Callable[[], Iterator[tuple[str, str]]],
    target: Callable[[], Iterator[tuple[str, str]]],
    buckets: set[int],
    limit: int = 20,
) -> list[str]:
    """Second pass over the differing buckets only: the keys whose rows are not the same."""

    def collect(rows: Iterator[tuple[str, str]]) -> dict[str, str]:
        return {key: row for key, row in rows if _bucket(key) in buckets}

    left, right = collect(source()), collect(target())
    keys = sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))
    return [k.replace("\x1f", ", ") for k in keys[:limit]]
