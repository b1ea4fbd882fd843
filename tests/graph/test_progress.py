"""A step's progress line: a bar of its share done, tables through each phase, the export's bytes against MySQL's sizes,
the rate and the time left; said at the rhythm asked, each table counted once."""

from __future__ import annotations

import time
from pathlib import Path

from alkemio_assets.graph.progress import Progress, bar, progress_line, share_done


def test_the_line_says_tables_bytes_percent_rate_and_time_left() -> None:
    line = progress_line(
        "alkemio",
        {"export": 12, "stage": 10, "load": 8},
        {"export": 34, "stage": 34, "load": 34, "verify": 34},
        written=120_000_000,
        expected=340_000_000,
        elapsed=10,
    )
    assert line == (
        "alkemio [####----------------] 22 %: exported 12/34 tables, 120 MB of about 340 MB "
        "(35 %, 12 MB/s, about 18 s left); "
        "staged 10/34; loading 8/34; checked 0/34"
    )


def test_an_export_past_mysqls_estimate_says_99_percent_and_a_finished_one_no_bytes() -> None:
    totals = {"export": 2}
    assert "(99 %" in progress_line("kratos", {"export": 1}, totals, written=500, expected=400, elapsed=1)
    assert progress_line("kratos", {"export": 2}, totals, written=500, expected=400, elapsed=1) == (
        "kratos [####################] 100 %: exported 2/2 tables"
    )
    assert progress_line("kratos", {}, {"verify": 3}, written=0, expected=0, elapsed=1) == (
        "kratos [--------------------] 0 %: checked 0/3"
    )


def test_the_bar_counts_an_export_under_way_by_its_bytes() -> None:
    # one of two tables exported, the other half written: 1.5 of 2 exports, none of 2 loads
    assert share_done({"export": 1}, {"export": 2, "load": 2}, written=3_000, expected=4_000) == 0.375
    assert bar(0.375) == "[#######-------------] 37 %"
    assert share_done({}, {}, written=0, expected=0) == 1.0  # a step with nothing to count is done


def test_progress_is_said_at_its_rhythm_from_the_files_being_written(tmp_path: Path) -> None:
    (tmp_path / "user.csv.part").write_bytes(b"x" * 2_000)
    said: list[str] = []
    with Progress("alkemio", {"export": 2, "load": 2}, tmp_path, 4_000, said.append, every=0.05) as progress:
        progress.done("export", "user")
        progress.done("load", "user")
        progress.done("load", "user")  # a retried load hands the table again: counted once
        time.sleep(0.3)
    assert len(said) >= 2
    assert said[-1].startswith("alkemio [##########----------] 50 %: exported 1/2 tables, 2 kB of about 4 kB (50 %, ")
    assert said[-1].endswith("; loading 1/2")
    count = len(said)
    time.sleep(0.15)
    assert len(said) == count  # nothing said once the step is through

    quiet: list[str] = []
    with Progress("alkemio", {"export": 1}, tmp_path, 1, quiet.append, every=0):
        time.sleep(0.1)
    assert quiet == []
