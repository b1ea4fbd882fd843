"""The step's own pieces, alone: tables run side by side with the first error stopping the rest,
and each step of a sharded database stages into its own DuckDB file."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from alkemio_assets.core.settings import DatabasePair
from alkemio_assets.graph.keys import step_name
from alkemio_assets.graph.step import in_parallel, staging_file


def test_every_table_gives_its_result():
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert sorted(in_parallel(pool, str.upper, ["a", "b", "c"])) == ["A", "B", "C"]


def test_each_result_comes_as_soon_as_its_table_is_done():
    """The load takes a table as soon as it is staged: a slow table holds back no other."""
    release = threading.Event()

    def work(name: str) -> str:
        if name == "slow":
            assert release.wait(30)
        return name

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = in_parallel(pool, work, ["slow", "fast"])
        assert next(results) == "fast"  # while slow still runs
        release.set()
        assert list(results) == ["slow"]


def test_the_first_error_is_raised_and_the_tables_not_started_are_not():
    started: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> str:
        with lock:
            started.append(name)
        if name == "bad":
            raise ValueError(f"{name}: refused")
        return name

    with ThreadPoolExecutor(max_workers=1) as pool, pytest.raises(ValueError, match="bad: refused"):
        list(in_parallel(pool, work, ["bad", *(f"t{i}" for i in range(50))]))
    assert started[0] == "bad" and len(started) < 51  # the rest were cancelled before they started


def test_each_step_of_a_sharded_database_stages_into_its_own_file():
    pair = DatabasePair("alkemio", "alkemio", "alkemio")
    assert staging_file(pair, step_name(pair, 0, 1)) == "staging.duckdb"
    shards = {staging_file(pair, step_name(pair, i, 3)) for i in range(3)}
    assert shards == {f"staging.migrate_alkemio_tables_{i}_of_3.duckdb" for i in (1, 2, 3)}
