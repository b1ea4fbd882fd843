"""The CSV files: RFC 4180, NULL apart from "", every character kept, bytes exact, and bytes
hiding in a text column refused with the override to use."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from alkemio_assets.catalog.contract import plan_table
from alkemio_assets.catalog.source import read_mysql_catalog
from alkemio_assets.catalog.target import TargetColumn, TargetTable
from alkemio_assets.core.errors import MigrationDataError
from alkemio_assets.stages.export import (
    KeyRange,
    chunk_count,
    csv_field,
    export_in_ranges,
    export_table,
    integer_bounds,
    key_ranges,
    uuid_bounds,
)
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
            "db.w, row id=2 (CSV record 3, the header being record 1)",
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


# -- a big table in key ranges -----------------------------------------------------------------


def test_how_many_ranges_a_table_takes():
    assert chunk_count(200_000_000, 64_000_000, 4) == 4
    assert chunk_count(100_000_000, 64_000_000, 4) == 2
    assert chunk_count(200_000_000, 64_000_000, 2) == 2  # never more processes than workers
    assert chunk_count(1_000, 64_000_000, 4) == 1
    assert chunk_count(200_000_000, 0, 4) == 1  # MIGRATION_CHUNK_MB=0: never split


def test_bounds_split_the_key_space_evenly():
    assert uuid_bounds(4) == ["400", "800", "c00"]
    assert uuid_bounds(3) == ["555", "aaa"]
    assert integer_bounds(1, 100, 4) == [26, 51, 76]
    assert integer_bounds(5, 6, 4) == [6]  # fewer keys than parts: no empty duplicates
    assert KeyRange("id", None, "400").where() == ("`id` < %s", ["400"])
    assert KeyRange("id", "400", "800").where() == ("`id` >= %s AND `id` < %s", ["400", "800"])
    assert KeyRange("id", 76, None).where() == ("`id` >= %s", [76])


def _uuid_table(mysql: MySQLResource, db: str, rows: list[tuple[str, str | None]], charset: str = "utf8mb4"):
    mysql.execute_script(
        db, [f"CREATE TABLE u (id char(36) NOT NULL PRIMARY KEY, v text CHARACTER SET {charset} NULL)"]
    )
    with mysql.connect(db) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO u VALUES (%s, %s)", rows)
        source = read_mysql_catalog(conn, db).table("u")
    id_target = TargetColumn("id", "uuid", "uuid", True, False, None, None, None, None, (), None, False)
    plan = plan_table("db", source, TargetTable("u", (id_target, _text_target("v")), ("id",), (("id",),), ()), {}, [])
    assert plan is not None
    return plan


def test_ranges_join_into_the_file_the_whole_table_makes(mysql: MySQLResource, unique_name: str, tmp_path: Path):
    """Four processes over four key ranges: the same header, the same rows (in key order), every
    row once, and the manifest's size and SHA-256 are the joined file's."""
    import hashlib
    import uuid

    db = f"{unique_name}_ranges"
    mysql.create_database(db)
    try:
        keys = sorted(str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15 << 64) % (1 << 128) | i)) for i in range(1, 400))
        plan = _uuid_table(mysql, db, [(k, VALUES[i % len(VALUES)]) for i, k in enumerate(keys)])
        with mysql.connect(db, raw=True) as conn:
            whole = export_table(conn, plan, tmp_path / "whole.csv")
            ranges = key_ranges(conn, plan, 4)
        assert [r.describe() for r in ranges] == [
            "id in [, '400')",
            "id in ['400', '800')",
            "id in ['800', 'c00')",
            "id in ['c00', )",
        ]
        joined = export_in_ranges(mysql, db, plan, tmp_path / "u.csv", ranges)
        assert joined.rows == whole.rows == len(keys)
        data = joined.path.read_bytes()
        assert len(data) == joined.bytes and hashlib.sha256(data).hexdigest() == joined.sha256
        whole_lines = whole.path.read_bytes().split(b"\r\n")
        joined_lines = data.split(b"\r\n")
        assert joined_lines[0] == whole_lines[0] == b"id,v"
        assert sorted(joined_lines) == sorted(whole_lines)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["u.csv", "whole.csv"]  # no part left behind
    finally:
        mysql.drop_database(db)


def test_a_bad_value_in_a_later_range_is_named_at_its_row_in_the_file(
    mysql: MySQLResource, unique_name: str, tmp_path: Path
):
    db = f"{unique_name}_rangebad"
    mysql.create_database(db)
    try:
        rows = [(f"{h}0000000-0000-4000-8000-00000000000{i}", "ok") for h in "0123456789abcdef" for i in range(2)]
        plan = _uuid_table(mysql, db, rows, charset="latin1")
        with mysql.connect(db) as conn, conn.cursor() as cur:
            # the 4th row of the range from 'c00' (c0, c1, d0, d1) is the 28th of the file, record 29
            cur.execute("UPDATE u SET v = _binary'x\\0\\1' WHERE id = 'd0000000-0000-4000-8000-000000000001'")
        with mysql.connect(db, raw=True) as conn:
            ranges = key_ranges(conn, plan, 4)
        with pytest.raises(MigrationDataError) as err:
            export_in_ranges(mysql, db, plan, tmp_path / "u.csv", ranges)
        assert "db.u, row id='d0000000-0000-4000-8000-000000000001' (CSV record 29," in str(err.value)
        assert "column v" in str(err.value)
        assert list(tmp_path.iterdir()) == []  # nothing of the table written
    finally:
        mysql.drop_database(db)
