"""Memory per batch of rows is bounded by the configuration, whatever a table's values are: a
reader's batch takes no more rows once it holds MIGRATION_BATCH_MB (a 16 MB value is a batch of
one row, not of 5,000), a PostgreSQL cursor fetches as many rows as the longest record allows,
and DuckDB, which holds 2,048 rows at a time, stays within MIGRATION_STAGING_MB or says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from alkemio_assets.catalog.contract import TablePlan, plan_table
from alkemio_assets.catalog.source import read_mysql_catalog
from alkemio_assets.catalog.target import TargetColumn, TargetTable
from alkemio_assets.core.errors import StagingMemoryError
from alkemio_assets.core.fetch import Fetch, row_bytes
from alkemio_assets.stages.export import export_table
from alkemio_assets.stages.staging import prepare, stage_table
from resources import MySQLResource

# (id, characters of its value): small rows, then long ones, then small ones again
SIZES = [(i, 10) for i in range(1, 8)] + [(i, 1_000) for i in range(8, 12)] + [(i, 10) for i in range(12, 20)]


def _column(name: str, data_type: str, key: bool = False) -> TargetColumn:
    return TargetColumn(name, data_type, data_type, key, False, None, None, None, None, (), None, False)


@pytest.fixture
def long_rows(mysql: MySQLResource, unique_name: str) -> Iterator[tuple[str, TablePlan]]:
    db = f"{unique_name}_batch"
    mysql.create_database(db)
    try:
        mysql.execute_script(db, ["CREATE TABLE doc (id int PRIMARY KEY, body longtext NOT NULL)"])
        with mysql.connect(db) as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO doc VALUES (%s, %s)", [(i, "x" * n) for i, n in SIZES])
            source = read_mysql_catalog(conn, db).table("doc")
        target = TargetTable("doc", (_column("id", "integer", True), _column("body", "text")), ("id",), (("id",),), ())
        problems: list[str] = []
        plan = plan_table(db, source, target, {}, problems)
        assert problems == [] and plan is not None
        yield db, plan
    finally:
        mysql.drop_database(db)


def test_a_batch_takes_no_more_rows_once_it_holds_the_budget(mysql: MySQLResource, long_rows):
    db, _ = long_rows
    fetch = Fetch(rows=4, budget=1_500)
    with mysql.connect(db, raw=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, body FROM doc ORDER BY id")
        batches = list(fetch.batches(cur))
    assert [int(row[0]) for batch in batches for row in batch] == [i for i, _ in SIZES]  # every row, once, in order
    assert all(1 <= len(batch) <= 4 for batch in batches)
    assert all(sum(map(row_bytes, batch[:-1])) < 1_500 for batch in batches)  # full once over the budget
    # rows 8-11 are long: 9 and 10 fill a batch of two, where short rows make batches of four
    assert [[int(row[0]) for row in batch] for batch in batches] == [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
        [9, 10],
        [11, 12, 13, 14],
        [15, 16, 17, 18],
        [19],
    ]


def test_a_cursor_that_takes_a_count_is_sized_by_the_longest_record():
    assert Fetch(budget=16_000_000).sized(32_000_007).count == 1  # one 16 MB value, quotes doubled
    assert Fetch(budget=16_000_000).sized(3_000).count == 5_000  # short rows: the row limit
    assert Fetch(budget=16_000_000).sized(10_000).count == 1_600
    assert Fetch(budget=16_000_000).sized(None).count == 1  # unmeasured: MySQL's largest packet


def test_small_batches_write_the_same_file(mysql: MySQLResource, long_rows, tmp_path: Path):
    db, plan = long_rows
    with mysql.connect(db, raw=True) as conn:
        whole = export_table(conn, plan, tmp_path / "whole.csv")
    with mysql.connect(db, raw=True) as conn:
        small = export_table(conn, plan, tmp_path / "small.csv", fetch=Fetch(rows=3, budget=100))
    assert (small.rows, small.bytes, small.sha256) == (len(SIZES), whole.bytes, whole.sha256)
    assert small.longest_record == whole.longest_record >= 1_000


def test_staging_beyond_its_memory_limit_names_the_setting(long_rows, tmp_path: Path):
    _, plan = long_rows
    big = 16_000_000
    csv = tmp_path / "doc.csv"
    with open(csv, "w") as out:
        out.write("id,body\r\n")
        for i in range(1, 9):  # eight 16 MB values: 128 MB in one of DuckDB's vectors
            out.write(f"{i},{'y' * big}\r\n")
    staged = tmp_path / "staged" / "doc.csv"
    with duckdb.connect(str(tmp_path / "staging.duckdb")) as duck:
        prepare(duck, 100)
        with pytest.raises(StagingMemoryError) as err:
            stage_table(duck.cursor(), plan, csv, staged, big + 3)
    message = str(err.value)
    assert f"{plan.database}.doc staging" in message and "MIGRATION_STAGING_MB" in message
    assert "longest record is 16,000,003 bytes" in message and "Nothing was written to PostgreSQL" in message
    assert not staged.exists() and not staged.with_suffix(".csv.part").exists()
