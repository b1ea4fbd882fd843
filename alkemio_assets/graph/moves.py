"""The per-table move inside a step: what the step's tables share (StepRun), then one function
per stage, each calling its stage in stages/ and turning its outcome into the asset's
materialization and the manifest's record: export, staging, the load of the database's tables
in one transaction under way while they are staged (with the staged orphan check before it
commits), the loaded table's result."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg

from alkemio_assets.catalog.contract import TablePlan
from alkemio_assets.catalog.snapshot import Snapshot
from alkemio_assets.catalog.target import TargetCatalog
from alkemio_assets.catalog.violations import crossing_foreign_keys, target_orphans
from alkemio_assets.core.errors import OrphanRowsError
from alkemio_assets.core.settings import DatabasePair, Phase, Settings
from alkemio_assets.graph.keys import Stage
from alkemio_assets.graph.metadata import ROW_COUNT, file_metadata, preview, rate
from alkemio_assets.graph.progress import Progress
from alkemio_assets.graph.selection import Selection
from alkemio_assets.stages.consistent_read import ConsistentRead
from alkemio_assets.stages.export import ExportResult, KeyRange, chunk_count, export
from alkemio_assets.stages.faults import mysql_lost, postgres_lost, retried, verify_input
from alkemio_assets.stages.integrity import staged_orphans
from alkemio_assets.stages.load import LoadResult, StagedInput, load_tables
from alkemio_assets.stages.manifest import FileKind, Manifest, RecordedFile, earlier_file, recorded_file, run_manifests
from alkemio_assets.stages.run_log import Status
from alkemio_assets.stages.staging import stage_table
from checks import evidence
from resources import MySQLResource, PostgresResource

T = TypeVar("T")
Log = logging.Logger | logging.LoggerAdapter | dg.DagsterLogManager  # .warning, .error
Note = Callable[[Status, str], None]


# -- what a step shares between its tables --------------------------------------------------------


class MissingInputError(FileNotFoundError):
    """A stage's input was made by no run of this database that succeeded."""


@dataclass
class StepRun:
    """One step's run over its tables: where its files go, what it records, what it talks to.
    No Dagster context: a stage function runs on one of these alone, in a test as in a step."""

    run_id: str
    log: Log
    pair: DatabasePair
    settings: Settings
    snapshot: Snapshot
    mysql: MySQLResource
    postgres: PostgresResource
    chosen: Selection
    plans: dict[str, TablePlan]
    folder: Path
    manifest: Manifest
    duck: Any
    moment: ConsistentRead | None = None  # the export's connections, reading one moment of the source
    note: Note = lambda status, message: None  # an event for the run log
    progress: Progress | None = None  # told of each table through each phase, said at a steady rhythm
    committed: bool = False  # the load's transaction committed: the target holds this run's rows

    def through(self, phase: Phase, name: str) -> None:
        if self.progress is not None:
            self.progress.done(phase, name)

    def retried(self, action: Callable[[], T], is_lost: Callable[[BaseException], bool], server: str, where: str) -> T:
        """`action()`, again after a lost connection, as MIGRATION_RETRIES says; each retry logged."""
        return retried(
            action,
            is_lost,
            server,
            where,
            retries=self.settings.retries,
            backoff=self.settings.retry_seconds,
            log=self.log.warning,
        )

    def csv_path(self, name: str) -> Path:
        return self.folder / "csv" / f"{name}.csv"

    def staged_path(self, name: str) -> Path:
        return self.folder / "staged" / f"{name}.csv"

    @cached_property
    def manifests(self) -> list[dict[str, Any]]:
        """The database's run manifests, read once per step (not once per table)."""
        return run_manifests(self.settings, self.pair)

    def _csv(self, name: str) -> RecordedFile | None:
        """The table's CSV file: this run's, else the newest earlier succeeded run's."""
        return recorded_file(self.folder, self.run_id, self.manifest.tables.get(name, {}), "csv") or earlier_file(
            self.manifests, name, "csv", self.run_id
        )

    def longest_record(self, name: str) -> int | None:
        """Bytes of the longest record of the table's CSV file: what a reader's batch of its rows may cost."""
        found = self._csv(name)
        return None if found is None else found.longest_record

    def check_weight(self, name: str) -> int:
        """How long the table's checks take, as an order: minus its CSV bytes (the largest first)."""
        found = self._csv(name)
        return -((found.bytes or 0) if found else 0)

    def input(self, name: str, kind: FileKind, made_by: Stage) -> RecordedFile:
        """The table's file of `kind`: this step's, another step's of this run, or the newest
        earlier succeeded run's."""
        mine = recorded_file(self.folder, self.run_id, self.manifest.tables.get(name, {}), kind)
        if mine is not None and made_by in self.chosen.stages[name]:
            return mine
        earlier = earlier_file(self.manifests, name, kind, self.run_id)
        if earlier is None:
            key = self.chosen.assets[name].keys[made_by].to_user_string()
            raise MissingInputError(
                f"{self.pair.name}.{name}: no run of {self.pair.name} that succeeded has its {kind} file; "
                f"materialize {key} first"
            )
        return earlier


def _columns_entry(plan: TablePlan) -> list[dict[str, str]]:
    return [
        {"name": c.name, "mysql": c.source.column_type, "postgres": c.target.type_name, "rule": c.rule.name}
        for c in plan.columns
    ]


# -- per table: one function per stage -----------------------------------------------------------


def export_stage(run: StepRun, name: str) -> dg.MaterializeResult:
    plan, wall = run.plans[name], time.time()
    path = run.csv_path(name)
    parts = chunk_count(run.snapshot.sizes.get(name, 0), run.settings.chunk_bytes, run.settings.workers)
    attempts = 0

    def once() -> tuple[ExportResult, list[KeyRange]]:
        nonlocal attempts
        attempts += 1
        if run.moment is not None and attempts == 1:
            with run.moment.connection() as conn:
                return export(run.mysql, run.pair.source_database, plan, path, parts, conn, run.settings.fetch)
        if run.moment is not None:
            run.log.warning(f"{run.pair.name}.{name}: exported again outside the run's moment of the source")
        return export(run.mysql, run.pair.source_database, plan, path, parts, fetch=run.settings.fetch)

    exported, ranges = run.retried(once, mysql_lost, f"MySQL {run.mysql.describe()}", f"{run.pair.name}.{name} export")
    if ranges:
        run.manifest.record(name, key_ranges=[r.describe() for r in ranges])
        if run.moment is not None:
            run.log.warning(f"{run.pair.name}.{name}: read in key ranges, outside the run's moment of the source")
    run.manifest.record(name, consistent_read=run.moment is not None and attempts == 1 and not ranges)
    run.manifest.record(
        name,
        rows=exported.rows,
        file=str(path.relative_to(run.folder)),
        bytes=exported.bytes,
        sha256=exported.sha256,
        longest_record=exported.longest_record,
    )
    run.manifest.span(name, "export", wall)
    return dg.MaterializeResult(
        asset_key=run.chosen.assets[name].keys["csv"],
        metadata=file_metadata(path, exported.rows, exported.bytes, exported.sha256, time.time() - wall)
        | with_preview(run, path),
    )


def staging_stage(run: StepRun, name: str) -> dg.MaterializeResult:
    plan, wall = run.plans[name], time.time()
    source = run.input(name, "csv", "csv")
    verify_input(source.path, source.sha256, source.bytes, f"{run.pair.name}.{name} staging")
    path = run.staged_path(name)
    staged = stage_table(run.duck.cursor(), plan, source.path, path, source.longest_record or 64 << 20)
    size = path.stat().st_size
    run.manifest.record(
        name,
        staged_file=str(path.relative_to(run.folder)),
        staged_rows=staged.rows,
        staged_sha256=staged.sha256,
        staged_bytes=size,
        staged_from={
            "run_id": source.run_id,
            "file": str(source.path.relative_to(run.settings.workdir)),
            "sha256": source.sha256,
        },
    )
    run.manifest.span(name, "stage", wall)
    return dg.MaterializeResult(
        asset_key=run.chosen.assets[name].keys["staged"],
        metadata=file_metadata(path, staged.rows, size, staged.sha256, time.time() - wall)
        | with_preview(run, path)
        | {
            "duckdb_table": staged.staged_table,
            "from": dg.MetadataValue.path(str(source.path)),
            "input_run": source.run_id,
        },
    )


def with_preview(run: StepRun, path: Path) -> dict[str, dg.MetadataValue]:
    """The file's first rows for the asset's page (migration.toml [preview]), if any are shown."""
    shown = preview(run.duck.cursor(), path, run.settings.preview)
    return {} if shown is None else {"preview": shown}


def prepare_table(run: StepRun, name: str) -> list[dg.MaterializeResult]:
    """A table's export and staging, those of them that are selected."""
    run.manifest.record(name, columns=_columns_entry(run.plans[name]))
    stages = run.chosen.stages[name]
    results = []
    if "csv" in stages:
        results.append(export_stage(run, name))
    if "staged" in stages:
        results.append(staging_stage(run, name))
    return results


# -- the database: one transaction, under way while its tables are staged -----------------------


def staged_input(run: StepRun, name: str) -> StagedInput:
    file = run.input(name, "staged", "staged")
    return StagedInput(file.path, file.sha256, file.rows, file.run_id)


def check_staged_orphans(run: StepRun, inputs: dict[str, StagedInput]) -> None:
    """Before anything commits: every foreign key between tables this run loads, proven on the
    staged files."""
    wall = time.time()
    targets = {name: run.plans[name].target for name in inputs}
    found = staged_orphans(run.duck.cursor(), targets, {name: i.path for name, i in inputs.items()})
    run.manifest.note(orphan_check_seconds=round(time.time() - wall, 3))
    if found:
        raise OrphanRowsError(run.pair.name, [o.describe() for o in found])


class LoadAborted(RuntimeError):
    """The step failed elsewhere (an export, a staging, the staged orphans): the load rolls back."""


class Loading:
    """The database's load in one transaction (stages/load.py), on a thread and connection of its
    own, started before the exports: each table is copied as soon as its staged file is ready, in
    the order they become ready, while the other tables are still exported and staged. It commits
    only after `finish`: every table staged and copied, no orphan among the staged files (checked
    while the last COPYs run), the foreign keys crossing the run's edge proven. Any failure before,
    here or in the step (`abort`), rolls it back: nothing of the database is written. After a lost
    connection the whole load starts again on a new one, from the first ready table."""

    def __init__(self, run: StepRun, target: TargetCatalog, previously_loaded: set[str], names: list[str]):
        self.run, self.target, self.previously_loaded, self.names = run, target, previously_loaded, names
        self._state = threading.Condition()
        self._ready: list[str] = []
        self._all_ready = self._orphans_proven = False
        self._stop: BaseException | None = None
        self._result: dict[str, LoadResult] = {}
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._load, name=f"{run.pair.name}-load", daemon=True)
        self._thread.start()

    def ready(self, name: str) -> None:
        """The table's staged file is written (or, not staged in this run, an earlier run's is).
        A load that failed meanwhile (a row PostgreSQL refused) is raised here: the step stops
        exporting the rest."""
        if self._failure is not None:
            raise self._failure
        if name in self.names:
            with self._state:
                self._ready.append(name)
                self._state.notify_all()

    def finish(self) -> tuple[dict[str, StagedInput], dict[str, LoadResult]]:
        """Every table is ready: the orphans among the staged files, then the commit. After an
        abort: the load's own end (LoadAborted, the transaction rolled back)."""
        if self._stop is not None:
            self._thread.join()
            assert self._failure is not None
            raise self._failure
        with self._state:
            self._all_ready = True
            self._state.notify_all()
        try:
            inputs = {name: staged_input(self.run, name) for name in self.names}
            check_staged_orphans(self.run, inputs)
        except BaseException as exc:
            self.abort(exc)
            raise
        with self._state:
            self._orphans_proven = True
            self._state.notify_all()
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        return inputs, self._result

    def abort(self, error: BaseException) -> None:
        """The step failed: roll the transaction back, and wait until it is."""
        with self._state:
            self._stop = self._stop or error
            self._state.notify_all()
        self._thread.join()

    def _wait(self, until: Callable[[], bool]) -> None:
        with self._state:
            self._state.wait_for(lambda: self._stop is not None or until())
            if self._stop is not None:
                raise LoadAborted(f"{self.run.pair.name}: the step failed ({type(self._stop).__name__})")

    def _more_than(self, taken: int) -> bool:
        return taken < len(self._ready) or self._all_ready

    def _tables(self) -> Iterator[tuple[TablePlan, StagedInput]]:
        done = 0
        while True:
            self._wait(partial(self._more_than, done))
            with self._state:
                if done == len(self._ready):
                    return
                name = self._ready[done]
            done += 1
            self.run.through("load", name)
            yield self.run.plans[name], staged_input(self.run, name)

    def _load(self) -> None:
        try:
            self._result = load_database(self.run, self._tables, self.target, self.previously_loaded, self._proven)
        except BaseException as exc:
            self._failure = exc

    def _proven(self) -> None:
        self._wait(lambda: self._orphans_proven)


def load_database(
    run: StepRun,
    tables: Callable[[], Iterable[tuple[TablePlan, StagedInput]]],
    target: TargetCatalog,
    previously_loaded: set[str],
    before_commit: Callable[[], None] = lambda: None,
) -> dict[str, LoadResult]:
    """The run's tables (`tables()`: again from the first on a retry) in one transaction; then
    `before_commit()`, and the foreign keys crossing the run's edge (a parent or child this run
    does not load) proven inside it, before it commits."""
    wall = time.time()
    loading = {name: run.plans[name].target for name in run.chosen.having("postgres")}
    crossing = crossing_foreign_keys(loading, target.tables)

    def prove_crossing(cur: Any) -> None:
        before_commit()
        found = [
            orphans
            for table, fks in sorted(crossing.items())
            for orphans in target_orphans(cur, target.table(table) or loading[table], fks)
            if orphans.count
        ]
        if found:
            raise OrphanRowsError(run.pair.name, [o.describe() for o in found])

    def once() -> dict[str, LoadResult]:
        application = f"alkemio-migration load {run.run_id}"
        with run.postgres.connect(run.pair.target_database, application_name=application) as conn:
            return load_tables(
                conn,
                tables(),
                loaded_before=previously_loaded,
                replace_seeded=set(run.pair.replace_seeded),
                before_commit=prove_crossing,
            )

    results = run.retried(
        once,
        postgres_lost,
        f"PostgreSQL {run.postgres.describe()}/{run.pair.target_database}",
        f"{run.pair.name} load ({len(loading)} tables, nothing committed)",
    )
    for name, loaded in results.items():
        run.manifest.record(name, loaded_rows=loaded.rows, load=loaded.outcome, sequences=loaded.sequences)
        run.manifest.span(name, "load", *loaded.span)
    run.manifest.note(load_transaction_seconds=round(time.time() - wall, 3))
    return results


def loaded_result(run: StepRun, name: str, loaded: LoadResult, source: StagedInput) -> dg.MaterializeResult:
    seconds = loaded.span[1] - loaded.span[0]
    sequences = ({"sequence": s, "next_value": v} for s, v in sorted(loaded.sequences.items()))
    return dg.MaterializeResult(
        asset_key=run.chosen.assets[name].keys["postgres"],
        metadata={
            ROW_COUNT: loaded.rows,
            "outcome": loaded.outcome,
            "sequences": evidence(sequences, sequence="text", next_value="bigint"),
            "input_run": source.run_id,
            "sha256": source.sha256,
            "seconds": round(seconds, 3),
            "rows_per_second": rate(loaded.rows, seconds),
        },
    )


def start_load(run: StepRun, target: TargetCatalog, previously_loaded: set[str]) -> Loading | None:
    """The load of the tables to load, started now; those not staged in this run are ready at once."""
    names = run.chosen.having("postgres")
    if not names:
        return None
    loading = Loading(run, target, previously_loaded, names)
    for name in names:
        if "staged" not in run.chosen.stages[name]:
            loading.ready(name)
    return loading


def load_stage(
    run: StepRun, target: TargetCatalog, previously_loaded: set[str]
) -> tuple[dict[str, StagedInput], dict[str, LoadResult]]:
    """The tables to load, every staged file already written: the same load, every table ready."""
    loading = start_load(run, target, previously_loaded)
    if loading is None:
        return {}, {}
    for name in run.chosen.having("staged"):
        loading.ready(name)
    return loading.finish()
