"""A step's progress, said at a steady rhythm (MIGRATION_PROGRESS_SECONDS) while it runs: a bar of
the step's share done, the tables exported, staged, handed to the load and checked, and the
export's bytes against MySQL's table sizes, with the rate and the time left. The line is a pure function; a thread of the step says it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from alkemio_assets.core.settings import Phase

COUNTED: tuple[tuple[Phase | str, str], ...] = (
    ("export", "exported"),
    ("stage", "staged"),
    ("load", "loading"),
    ("verify", "checked"),
)


def _mb(size: float) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size / 1e3:,.0f} kB"


BAR_WIDTH = 20


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """`[########------------] 40 %`: a headless run's progress bar, in a line of the log."""
    fraction = min(1.0, max(0.0, fraction))
    filled = int(width * fraction)
    return f"[{'#' * filled}{'-' * (width - filled)}] {int(100 * fraction)} %"


def share_done(done: Mapping[str, int], totals: Mapping[str, int], written: int, expected: int) -> float:
    """How much of the step's work is done: each table through each of its phases one part, an
    export under way counted by its bytes against MySQL's sizes."""
    total = sum(totals.get(phase, 0) for phase, _ in COUNTED)
    if not total:
        return 1.0
    exported: float = done.get("export", 0)
    if expected and exported < totals.get("export", 0):
        exported = max(exported, min(1.0, written / expected) * totals["export"])
    through = exported + sum(done.get(phase, 0) for phase, _ in COUNTED if phase != "export")
    return through / total


def progress_line(
    database: str,
    done: Mapping[str, int],
    totals: Mapping[str, int],
    written: int,
    expected: int,
    elapsed: float,
) -> str:
    """`alkemio [####----------------] 22 %: exported 12/34 tables, 120 MB of about 340 MB (35 %,
    12 MB/s, about 18 s left); staged 10/34; loading 8/34; checked 0/34` (phases without tables
    left out)."""
    parts = []
    for phase, verb in COUNTED:
        if not totals.get(phase):
            continue
        part = f"{verb} {done.get(phase, 0)}/{totals[phase]}"
        if phase == "export":
            part += " tables"
            if expected and done.get(phase, 0) < totals[phase]:
                percent = min(99, int(100 * written / expected))
                rate = written / elapsed if elapsed > 0 else 0
                left = f", about {max(0, expected - written) / rate:,.0f} s left" if rate else ""
                part += f", {_mb(written)} of about {_mb(expected)} ({percent} %, {_mb(rate)}/s{left})"
        parts.append(part)
    return f"{database} {bar(share_done(done, totals, written, expected))}: " + "; ".join(parts)


def bytes_in(folder: Path) -> int:
    """Bytes of the files in `folder`, those still being written included."""
    try:
        return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
    except FileNotFoundError:
        return 0


class Progress:
    """The tables through each phase, told by the step's threads; said every `every` seconds
    (0: never) from the moment the step enters it until it leaves."""

    def __init__(
        self,
        database: str,
        totals: Mapping[str, int],
        export_folder: Path,
        expected_bytes: int,
        say: Callable[[str], None],
        every: float,
    ):
        self.database, self.totals, self.folder, self.expected = database, dict(totals), export_folder, expected_bytes
        self._say, self._every = say, every
        self._done: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread: threading.Thread | None = None

    def done(self, phase: str, table: str) -> None:
        """`table` is through `phase` (told again after a retry, it counts once)."""
        with self._lock:
            self._done.setdefault(phase, set()).add(table)

    def line(self) -> str:
        with self._lock:
            done = {phase: len(tables) for phase, tables in self._done.items()}
        written = bytes_in(self.folder) if self.totals.get("export") else 0
        return progress_line(self.database, done, self.totals, written, self.expected, time.monotonic() - self._started)

    def __enter__(self) -> Progress:
        if self._every > 0:
            self._thread = threading.Thread(target=self._run, name=f"{self.database}-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._say(self.line())
