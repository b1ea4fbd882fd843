"""Value-by-value comparison of a migrated table: MySQL (as stored) against PostgreSQL, each value
equal after the documented conversion of its cast rule. Used by the end-to-end tests."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import sql

from alkemio_assets.catalog.contract import ColumnPlan, TablePlan
from alkemio_assets.core.sql import mysql_ident
from resources import MySQLResource, PostgresResource


def _json(text: str) -> Any:
    # numbers as Decimal: 1.5e300 and jsonb's 15000...0 are the same number
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def _timestamp(mysql_text: str) -> datetime:
    return datetime.fromisoformat(mysql_text)


def expected(column: ColumnPlan) -> Callable[[Any], Any]:
    """MySQL's raw value (text, or bytes for binary reads) -> the value PostgreSQL must hold."""
    rule = column.rule.name
    if column.override is not None and column.override.cast == "base64":
        return lambda raw: base64.b64encode(raw).decode()
    if column.override is not None and column.override.cast == "latin1_base64":
        # the stored text's characters are the bytes (the application's Buffer#toString('binary'))
        return lambda raw: base64.b64encode(raw.decode("utf-8").encode("latin-1")).decode()
    conversions: dict[str, Callable[[Any], Any]] = {
        "flag": lambda raw: raw == "1",
        "integer": int,
        "integer_numeric": Decimal,
        "decimal": Decimal,
        "decimal_text": Decimal,
        "float": float,
        "timestamp": _timestamp,
        "uuid": lambda raw: raw.lower(),
        "json": _json,
        "jsonb": _json,
        "bytea": bytes,
    }
    return conversions.get(rule, lambda raw: raw)


def actual(column: ColumnPlan) -> Callable[[Any], Any]:
    rule = column.rule.name
    if rule in ("json", "jsonb"):
        return _json  # selected as text
    if rule == "uuid":
        return str
    if rule == "bytea":
        return bytes
    if column.target.data_type == "character":
        return lambda value: value.rstrip(" ")  # character(n) pads; MySQL char strips
    return lambda value: value


def compare_table(
    mysql: MySQLResource, source_db: str, postgres: PostgresResource, target_db: str, plan: TablePlan
) -> list[str]:
    """Every row and value of the table; returns the differences (empty when identical)."""
    key = plan.source.primary_key or tuple(c.name for c in plan.columns)
    select = ", ".join(
        f"CAST({mysql_ident(c.name)} AS BINARY)" if c.export_as != "value" else mysql_ident(c.name)
        for c in plan.columns
    )
    order = ", ".join(mysql_ident(k) for k in key)
    with mysql.connect(source_db, raw=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {select} FROM {mysql_ident(plan.name)} ORDER BY {order}")
        source_rows = list(cur.fetchall())
    columns = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(c.target.name))
        if c.target.data_type in ("json", "jsonb")
        else sql.Identifier(c.target.name)
        for c in plan.columns
    )
    with postgres.connect(target_db) as conn:
        target_rows = conn.execute(
            sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                columns, sql.Identifier(plan.name), sql.SQL(", ").join(sql.Identifier(k) for k in key)
            )
        ).fetchall()
    differences = []
    if len(source_rows) != len(target_rows):
        differences.append(f"{plan.name}: {len(source_rows)} rows on MySQL, {len(target_rows)} on PostgreSQL")
    convert = [(c, expected(c), actual(c)) for c in plan.columns]
    for source_row, target_row in zip(source_rows, target_rows, strict=False):
        for (column, want, got), raw, value in zip(convert, source_row, target_row, strict=True):
            left = None if raw is None else want(raw)
            right = None if value is None else got(value)
            if left != right:
                differences.append(
                    f"{plan.name}.{column.name} key {source_row[0]!r}: MySQL {str(left)[:80]!r} != PostgreSQL {str(right)[:80]!r}"
                )
    return differences
