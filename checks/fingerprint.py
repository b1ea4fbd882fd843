"""Content fidelity: an order-independent fingerprint of every row, canonicalised the same way on
the MySQL side (raw values) and on the PostgreSQL side (loaded values), in bounded memory.

Each row becomes one canonical string, hashed to 64 bits (60 in SQL); a table's fingerprint is
the row count and the sum of those hashes, kept in 256 buckets by key. When the sums differ, a
second pass over only the differing buckets names the keys of the differing rows.

Where every column's canonical text can be written in SQL on both sides (SQL_CANONICAL), each
server hashes and sums its own rows and only 256 bucket sums travel; json documents are compared
byte for byte there, as PostgreSQL's json keeps them. Columns whose text forms differ between the
servers and need parsing (doubles, jsonb, base64, non-UTF-8 text) are canonicalised here, in
Python, row by row.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg import sql

from alkemio_assets.catalog.contract import ColumnPlan, TablePlan, select_list
from alkemio_assets.core.fetch import DEFAULT, Fetch
from alkemio_assets.core.sql import mysql_ident, pg_ident
from resources import MySQLResource, PostgresResource

BUCKETS = 256
_NULL = "\x00NULL"
_SEPARATOR = "\x1f"
_MASK = (1 << 64) - 1


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f") if value == value.to_integral_value() else str(value.normalize())
    return "0" if text in ("-0", "0E+0") else text


# A number as a marked string (jsonb cannot hold \u0000, so no JSON string looks like one),
# normalised by value: 1, 1.0, 1.00 and 1e0 are one number, as they are to MySQL and jsonb.
def _json_int(text: str) -> str:
    return "\x00" + str(int(text))


def _json_float(text: str) -> str:
    return "\x00" + _number(Decimal(text))


def _parse_json(text: str) -> str:
    """JSON with keys sorted and numbers by value: MySQL's, MariaDB's and jsonb's forms agree.
    Parsed and written by the json module's C code; only numbers call back into Python."""
    value = json.loads(text, parse_int=_json_int, parse_float=_json_float)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


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
    # the stored text's characters are the bytes; PostgreSQL holds their base64
    "latin1_base64": (
        lambda raw: bytes(raw).decode("utf-8").encode("latin-1").hex(),
        lambda v: base64.b64decode(v).hex(),
    ),
    "text": (lambda raw: raw, lambda v: v),
    "enum": (lambda raw: raw, lambda v: v),
}


# MySQL's decimal text with the trailing fractional zeros removed, as PostgreSQL's trim_scale
_MYSQL_TRIM_SCALE = (
    "IF(LOCATE('.', CAST({v} AS CHAR)) > 0, "
    "TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST({v} AS CHAR))), CAST({v} AS CHAR))"
)
_MYSQL_MOMENT, _PG_MOMENT = "DATE_FORMAT({v}, '%Y-%m-%d %H:%i:%s.%f')", "to_char({v}, 'YYYY-MM-DD HH24:MI:SS.US')"

# rule name -> (MySQL expression, PostgreSQL expression) giving the same text for the same value
SQL_CANONICAL: dict[str, tuple[str, str]] = {
    "flag": ("CAST({v} AS CHAR)", "CASE {v} WHEN true THEN '1' WHEN false THEN '0' END"),  # NULL stays NULL
    "integer": ("CAST({v} + 0 AS CHAR)", "{v}::text"),  # + 0: ZEROFILL's padding is not the value
    "integer_numeric": ("CAST({v} + 0 AS CHAR)", "{v}::text"),
    "year": ("CAST({v} + 0 AS CHAR)", "{v}::text"),
    "decimal": (_MYSQL_TRIM_SCALE, "trim_scale({v}::numeric)::text"),
    "decimal_text": (_MYSQL_TRIM_SCALE, "trim_scale({v}::numeric)::text"),
    "timestamp": (_MYSQL_MOMENT, _PG_MOMENT),
    "timestamptz": (_MYSQL_MOMENT, _PG_MOMENT.replace("{v}", "({v} AT TIME ZONE 'UTC')")),
    "date": ("DATE_FORMAT({v}, '%Y-%m-%d')", "to_char({v}, 'YYYY-MM-DD')"),
    "time": ("TIME_FORMAT({v}, '%H:%i:%s.%f')", "to_char({v}, 'HH24:MI:SS.US')"),
    "uuid": ("LOWER({v})", "{v}::text"),
    "bytea": ("LOWER(HEX({v}))", "encode({v}, 'hex')"),
    "text": ("{v}", "{v}::text"),  # character(n) and MySQL char both drop the trailing blanks
    "enum": ("{v}", "{v}::text"),
    # json keeps the text it is given, byte for byte: the document as MySQL writes it must arrive
    # as it is (stricter than equal by value; jsonb rewrites its input and is compared in Python)
    "json": ("{v}", "{v}::text"),
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
    # per text column: rows holding U+FFFD, counted in the same scan (the servers' fingerprint)
    replacements: dict[str, int] = field(default_factory=dict)

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


def _key_columns(plan: TablePlan) -> list[ColumnPlan]:
    return [plan.columns[i] for i in _key_indexes(plan)]


def _hashed_in_sql(column: ColumnPlan) -> bool:
    return column.rule.name in SQL_CANONICAL and column.export_as != "charset_text"


@dataclass(frozen=True)
class _Split:
    """A table whose rows are hashed partly in SQL and partly here."""

    plan: TablePlan
    in_sql: tuple[ColumnPlan, ...]  # canonicalised and hashed (MD5) by the server
    here: tuple[ColumnPlan, ...]  # fetched and canonicalised in Python

    @property
    def key_in_sql(self) -> bool:
        return bool(self.plan.source.primary_key) and all(_hashed_in_sql(c) for c in _key_columns(self.plan))

    def rows(self, fetched: Iterator[tuple[Any, ...]], side: int) -> Iterator[tuple[str, str]]:
        """(key, canonical row): the server's MD5 of its part, then the canonical values of ours.
        A key the server cannot write (no primary key, or a key of JSON) is the row itself."""
        converters = [canonical(c)[side] for c in self.here]
        for key, digest, *values in fetched:
            row = _SEPARATOR.join(
                [digest, *(_NULL if v is None else f(v) for f, v in zip(converters, values, strict=True))]
            )
            yield (key if self.key_in_sql else row), row


def _split(plan: TablePlan) -> _Split:
    return _Split(
        plan,
        tuple(c for c in plan.columns if _hashed_in_sql(c)),
        tuple(c for c in plan.columns if not _hashed_in_sql(c)),
    )


def source_rows(
    mysql: MySQLResource, database: str, plan: TablePlan, fetch: Fetch = DEFAULT
) -> Iterator[tuple[str, str]]:
    split = _split(plan)
    key = _key_sql(MYSQL, plan) if split.key_in_sql else "''"
    digest = MYSQL.md5.format(t=_row_sql(MYSQL, split.in_sql))
    columns = ", ".join([key, digest, *([select_list(split.here)] if split.here else [])])
    with mysql.connect(database, raw=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM {mysql_ident(plan.name)}")
        yield from split.rows(fetch.rows_from(cur), 0)


def target_select(columns: tuple[ColumnPlan, ...]) -> sql.Composable:
    """The loaded columns as the canonical functions take them: json and jsonb as their text."""
    return sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(c.target.name))
        if c.target.data_type in ("json", "jsonb")
        else sql.Identifier(c.target.name)
        for c in columns
    )


def target_rows(
    postgres: PostgresResource, database: str, plan: TablePlan, fetch: Fetch = DEFAULT
) -> Iterator[tuple[str, str]]:
    split = _split(plan)
    key = _key_sql(POSTGRES, plan) if split.key_in_sql else "''"
    digest = POSTGRES.md5.format(t=_row_sql(POSTGRES, split.in_sql))
    parts = [sql.SQL(key), sql.SQL(digest)] + ([target_select(split.here)] if split.here else [])
    with postgres.connect(database) as conn, conn.cursor(name="fingerprint") as cur:
        cur.itersize = fetch.count
        cur.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(parts), sql.Identifier(plan.name)))
        yield from split.rows(iter(cur), 1)


def fingerprint(rows: Iterator[tuple[str, str]]) -> Fingerprint:
    result = Fingerprint()
    for key, row in rows:
        result.add(key, row)
    return result


def mysql_rows_fingerprint(mysql: MySQLResource, database: str, plan: TablePlan, fetch: Fetch = DEFAULT) -> Fingerprint:
    return fingerprint(source_rows(mysql, database, plan, fetch))


def postgres_rows_fingerprint(
    postgres: PostgresResource, database: str, plan: TablePlan, fetch: Fetch = DEFAULT
) -> Fingerprint:
    return fingerprint(target_rows(postgres, database, plan, fetch))


def _in_process(side: str, connection: dict[str, Any], database: str, plan: TablePlan, fetch: Fetch) -> Fingerprint:
    if side == "mysql":
        return mysql_rows_fingerprint(MySQLResource(**connection), database, plan, fetch)
    return postgres_rows_fingerprint(PostgresResource(**connection), database, plan, fetch)


def both_in_processes(
    mysql: MySQLResource,
    source: str,
    postgres: PostgresResource,
    target: str,
    plan: TablePlan,
    fetch: Fetch = DEFAULT,
) -> tuple[Fingerprint, Fingerprint]:
    """Both Python-bound fingerprints at once, each in a process of its own: threads would share
    one interpreter lock and take turns on one core. The password travels through the pipe
    to the child, never through its arguments or environment."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["checks.fingerprint"])
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        left = pool.submit(_in_process, "mysql", mysql.connection_fields(), source, plan, fetch)
        right = pool.submit(_in_process, "postgres", postgres.connection_fields(), target, plan, fetch)
        return left.result(), right.result()


def rows_in(rows: Iterator[tuple[str, str]], buckets: set[int]) -> dict[str, str]:
    """Second pass over the differing buckets only: key -> canonical row."""
    return {key: row for key, row in rows if _bucket(key) in buckets}


def differing_keys(left: dict[str, str], right: dict[str, str], limit: int = 20) -> list[str]:
    """The keys whose rows are not the same on both sides (missing on one side included)."""
    keys = sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))
    return [k.replace(_SEPARATOR, ", ") for k in keys[:limit]]


def in_sql(plan: TablePlan) -> bool:
    """Every column has a canonical text both servers can write (and none is non-UTF-8 text)."""
    return all(_hashed_in_sql(c) for c in plan.columns)


def _mysql_value(column: ColumnPlan) -> str:
    expression = SQL_CANONICAL[column.rule.name][0].format(v=mysql_ident(column.name))
    # one character set and collation for every part, so that MD5 hashes UTF-8 as PostgreSQL does
    return f"CONVERT({expression} USING utf8mb4) COLLATE utf8mb4_bin"


def _pg_value(column: ColumnPlan) -> str:
    return SQL_CANONICAL[column.rule.name][1].format(v=pg_ident(column.target.name).as_string(None))


@dataclass(frozen=True)
class Dialect:
    """How one server writes the fingerprint's SQL."""

    value: Callable[[ColumnPlan], str]  # a column's canonical text
    table: Callable[[str], str]  # a quoted table name
    concat: str  # concat_ws, skipping nothing: every value is flagged
    flagged: str  # {v} flagged v, or n for NULL
    md5: str  # hex MD5 of {t}
    bucket: str  # 0-255 from the key {k}
    hash60: str  # the row {r} hashed to a 60-bit integer (sums stay exact in both servers)
    replaced: str  # 1 when the text {v} holds U+FFFD, else 0 (NULL: 0)


MYSQL = Dialect(
    _mysql_value,
    mysql_ident,
    "CONCAT_WS",
    "IFNULL(CONCAT('v', {v}), 'n')",
    "MD5({t})",
    "CONV(LEFT(MD5({k}), 2), 16, 10)",
    "CAST(CONV(LEFT(MD5({r}), 15), 16, 10) AS UNSIGNED)",
    "IFNULL(LOCATE(_utf8mb4 X'EFBFBD', {v}) > 0, 0)",
)
POSTGRES = Dialect(
    _pg_value,
    lambda name: pg_ident(name).as_string(None),
    "concat_ws",
    "coalesce('v' || {v}, 'n')",
    "md5({t})",
    "get_byte(decode(md5({k}), 'hex'), 0)",
    "('x' || left(md5({r}), 15))::bit(60)::bigint",
    "coalesce((strpos({v}, chr(65533)) > 0)::int, 0)",
)


def _key_sql(d: Dialect, plan: TablePlan) -> str:
    return f"{d.concat}('{_SEPARATOR}', {', '.join(d.value(c) for c in _key_columns(plan))})"


def _row_sql(d: Dialect, columns: tuple[ColumnPlan, ...]) -> str:
    """The columns' canonical text, each value flagged, in one string."""
    if not columns:
        return "''"
    return f"{d.concat}('{_SEPARATOR}', {', '.join(d.flagged.format(v=d.value(c)) for c in columns)})"


def text_columns(plan: TablePlan) -> tuple[ColumnPlan, ...]:
    """The columns that are text on the target: where U+FFFD replacement characters could appear."""
    return tuple(c for c in plan.columns if c.target.data_type in ("text", "character varying", "character"))


def fingerprint_sql(d: Dialect, plan: TablePlan) -> str:
    """Per bucket: rows, the sum of their hashes, and per text column the rows holding U+FFFD,
    computed by the server in one scan."""
    bucket, row = d.bucket.format(k=_key_sql(d, plan)), d.hash60.format(r=_row_sql(d, plan.columns))
    replaced = "".join(f", SUM({d.replaced.format(v=d.value(c))})" for c in text_columns(plan))
    return f"SELECT {bucket}, COUNT(*), SUM({row}){replaced} FROM {d.table(plan.name)} GROUP BY 1"


def digests_sql(d: Dialect, plan: TablePlan, buckets: set[int]) -> str:
    """Key and MD5 of the canonical row, for the rows in `buckets`."""
    key = _key_sql(d, plan)
    wanted = ", ".join(str(int(b)) for b in sorted(buckets))
    return (
        f"SELECT {key}, {d.md5.format(t=_row_sql(d, plan.columns))} FROM {d.table(plan.name)} "
        f"WHERE {d.bucket.format(k=key)} IN ({wanted})"
    )


def _from_buckets(plan: TablePlan, rows: list[tuple[Any, ...]]) -> Fingerprint:
    texts = [c.name for c in text_columns(plan)]
    result = Fingerprint(replacements=dict.fromkeys(texts, 0))
    for bucket, count, total, *replaced in rows:
        result.rows += int(count)
        result.total = (result.total + int(total)) & _MASK
        result.buckets[int(bucket)] = int(total) & _MASK
        for name, n in zip(texts, replaced, strict=True):
            result.replacements[name] += int(n)
    return result


def _mysql_query(mysql: MySQLResource, database: str, query: str) -> list[tuple[Any, ...]]:
    with mysql.connect(database, raw=True) as conn, conn.cursor() as cur:
        cur.execute(query)
        return list(cur.fetchall())


def _pg_query(postgres: PostgresResource, database: str, query: str) -> list[tuple[Any, ...]]:
    with postgres.connect(database) as conn:
        return conn.execute(query).fetchall()


def mysql_fingerprint(mysql: MySQLResource, database: str, plan: TablePlan) -> Fingerprint:
    return _from_buckets(plan, _mysql_query(mysql, database, fingerprint_sql(MYSQL, plan)))


def postgres_fingerprint(postgres: PostgresResource, database: str, plan: TablePlan) -> Fingerprint:
    return _from_buckets(plan, _pg_query(postgres, database, fingerprint_sql(POSTGRES, plan)))


def mysql_row_digests(mysql: MySQLResource, database: str, plan: TablePlan, buckets: set[int]) -> dict[str, str]:
    return dict(_mysql_query(mysql, database, digests_sql(MYSQL, plan, buckets)))


def postgres_row_digests(
    postgres: PostgresResource, database: str, plan: TablePlan, buckets: set[int]
) -> dict[str, str]:
    return dict(_pg_query(postgres, database, digests_sql(POSTGRES, plan, buckets)))
