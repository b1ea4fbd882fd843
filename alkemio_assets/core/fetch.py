"""How many rows a reader holds at once: memory per batch bounded by the configuration
(MIGRATION_BATCH_MB), whatever the table's values are, so that a 16 MB value costs a batch of
one row, not 5,000 rows' worth of memory.

A MySQL stream (PyMySQL's unbuffered cursor) is measured row by row: a batch ends at `rows` rows
or once its values hold `budget` bytes. A PostgreSQL cursor fetches a count of rows, so its count
comes from the longest record the table's export wrote (the manifest's `longest_record`), or, when
no export recorded one, from the largest row MySQL sends (its `max_allowed_packet`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ROWS = 5_000
BUDGET = 16_000_000
LARGEST_ROW = 64 << 20  # MySQL 8's default max_allowed_packet: no row it sends is longer


def row_bytes(row: tuple[Any, ...]) -> int:
    """The characters (text) or bytes of a raw row's values: None and '' count nothing."""
    return sum(map(len, filter(None, row)))


@dataclass(frozen=True)
class Fetch:
    rows: int = ROWS
    budget: int = BUDGET  # a batch takes no more rows once its values hold this many bytes
    longest: int = LARGEST_ROW  # bytes of the longest record of the table, when an export measured it

    def batches(self, cursor: Any) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of a PyMySQL unbuffered cursor's result in batches of at most `rows` rows
        that stop taking rows once they hold `budget` bytes (so at most `budget` and one row)."""
        fetch = cursor.fetchone
        while True:
            batch: list[tuple[Any, ...]] = []
            held = 0
            while len(batch) < self.rows and held < self.budget:
                row = fetch()
                if row is None:
                    if batch:
                        yield batch
                    return
                batch.append(row)
                held += row_bytes(row)
            yield batch

    def rows_from(self, cursor: Any) -> Iterator[tuple[Any, ...]]:
        """The same rows one by one."""
        for batch in self.batches(cursor):
            yield from batch

    @property
    def count(self) -> int:
        """Rows per fetch of a cursor that takes a count (PostgreSQL's named cursor's itersize)."""
        return max(1, min(self.rows, self.budget // max(1, self.longest)))

    def sized(self, longest: int | None) -> Fetch:
        """The same limits for a table whose longest record is known."""
        return self if longest is None else Fetch(self.rows, self.budget, longest)


DEFAULT = Fetch()  # the defaults of MIGRATION_BATCH_MB, for a table no export measured
