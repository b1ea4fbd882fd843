"""The CSV files: RFC 4180, NULL apart from "", every character kept, bytes exact, and bytes
hiding in a text column refused with the override to use."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from alkemio_assets.catalog import read_mysql_catalog
from alkemio_assets.errors import MigrationDataError
from alkemio_assets.export import csv_field, export_table
from alkemio_assets.plan import plan_table
from alkemio_assets.target import TargetColumn, TargetTable
from resources import MySQLResource


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (None, ""),
        ("", '""'),
        ("plain", "plain"),
        ("a,b", '"a,b"'),
        ('say "hi"', '"say ""hi"""'),
        ("line\nbreak", '"line\nbreak"'),
        ("crlf\r\n", '"crlf\r\n"'),
        ("tab\there", "tab\there"),
        ("\\N", "\\N"),
        (" padded ", '" padded "'),
        (b"\x00\xff", "\\x00ff"),
        (b"", "\\x"),
    ],
)
def test_csv_field(value, field):
    assert csv_field(value) == field


VALUES = [
    "",
    None,
    "line1\nline2",
    "crlf\r\nx",
    'q"uote',
    "a,b",
    "tab\t",
    "back\\slash",
    "\\N",
    "🚀 Ünï",
    " pad ",
    "NULL",
]


def _text_target(name: str) -> TargetColumn:
    return TargetColumn(name, "text", "text", False, False, None, None, None, None, (), None, False)


def test_every_character_survives_the_round_trip(mysql: MySQLResource, unique_name: str, tmp_path: Path):
    db = f"{unique_name}_csv"
    mysql.create_database(db)
    try:
        mysql.execute_script(db, ["CREATE TABLE t (id int PRIMARY KEY, v text NULL, b blob NULL)"])
        with mysql.connect(db) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO t VALUES (%s, %s, %s)", [(i, v, bytes([i, 0, 255])) for i, v in enumerate(VALUES)]
            )
            source = read_mysql_catalog(conn, db).table("t")
        int_target = TargetColumn("id", "integer", "integer", True, False, None, None, None, None, (), None, False)
        blob_target = TargetColumn("b", "bytea", "bytea", False, False, None, None, None, None, (), None, False)
        target = TargetTable("t", (int_target, _text_target("v"), blob_target), ("id",), (("id",),), ())
        problems: list[str] = []
        plan = plan_table("db", source, target, {}, problems)
        assert problems == [] and plan is not None
        with mysql.connect(db, raw=True) as conn:
            result = export_table(conn, plan, tmp_path / "t.csv")
        assert result.rows == len(VALUES)
        with duckdb.connect() as duck:
            rows = duck.execute(
                "SELECT v, b FROM read_csv(?, header = true, auto_detect = false, columns = {'id': 'INTEGER', 'v': 'VARCHAR', 'b': 'VARCHAR'}, "
                "quote = '\"', escape = '\"', nullstr = '', allow_quoted_nulls = false) ORDER BY id",
                [str(result.path)],
            ).fetchall()
        assert [r[0] for r in rows] == VALUES
        assert [r[1] for r in rows] == ["\\x" + bytes([i, 0, 255]).hex() for i in range(len(VALUES))]
    finally:
        mysql.drop_database(db)


def test_bytes_in_a_latin1_text_column_need_an_override(mysql: MySQLResource, unique_name: str, tmp_path: Path):
    db = f"{unique_name}_bytes"
    mysql.create_database(db)
    try:
        mysql.execute_script(
            db, ["CREATE TABLE w (id int PRIMARY KEY, content longtext CHARACTER SET latin1 NOT NULL)"]
        )
        with mysql.connect(db) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO w VALUES (1, 'café'), (2, _binary'x\\0\\1\\2 compressed')")
            source = read_mysql_catalog(conn, db).table("w")
        int_target = TargetColumn("id", "integer", "integer", True, False, None, None, None, None, (), None, False)
        plan = plan_table(
            "db", source, TargetTable("w", (int_target, _text_target("content")), ("id",), (), ()), {}, []
        )
        assert plan is not None
        with mysql.connect(db, raw=True) as conn, pytest.raises(MigrationDataError) as err:
            export_table(conn, plan, tmp_path / "w.csv")
        message = str(err.value)
        for part in [
            "db.w, CSV row 2",
            "column content",
            "bytes that are not latin1 text",
            'overrides] "w.content" = { cast = "base64"',
        ]:
            assert part in message
    finally:
        mysql.drop_database(db)


def test_generated_columns_are_not_exported(mysql: MySQLResource, unique_name: str, tmp_path: Path):
    db = f"{unique_name}_gen"
    mysql.create_database(db)
    try:
        mysql.execute_script(
            db,
            [
                "CREATE TABLE g (id int PRIMARY KEY, v varchar(10) NOT NULL, twice int AS (id * 2) VIRTUAL, "
                "upper_v varchar(10) AS (UPPER(v)) STORED)",
                "INSERT INTO g (id, v) VALUES (1, 'a'), (2, 'b')",
            ],
        )
        with mysql.connect(db) as conn:
            source = read_mysql_catalog(conn, db).table("g")
        assert source.column("twice").generated and source.column("upper_v").generated
        int_target = TargetColumn("id", "integer", "integer", True, False, None, None, None, None, (), None, False)
        target = TargetTable("g", (int_target, _text_target("v")), ("id",), (("id",),), ())
        plan = plan_table("db", source, target, {}, [])
        assert plan is not None and plan.skipped == ("twice", "upper_v")
        with mysql.connect(db, raw=True) as conn:
            result = export_table(conn, plan, tmp_path / "g.csv")
        assert result.path.read_text().splitlines() == ["id,v", "1,a", "2,b"]
    finally:
        mysql.drop_database(db)
