"""Inside a database's step (one, or one per shard), the database is the unit of failure:

1. the contract: both live schemas as in the snapshot, the application versions, and what would
   stop the load late (NULLs into NOT NULL, duplicates under a target-only unique key);
2. export and stage, tables in parallel, each CSV and staged asset reported when it is ready;
   every input checked against the manifest of the run that wrote it;
3. orphans among the staged files, in DuckDB, before anything is written;
4. the load: every table in one PostgreSQL transaction (load.py), the foreign keys that cross
   the run's edge proven inside it; it commits whole or not at all;
5. the table checks, then every loaded table reported, parents first.

One run per target database at a time (run_lock.py). The first error stops the step and is the
one reported; the manifest records it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import duckdb

from alkemio_assets.assets import Stage, TableAssets, step_name, table_assets
from alkemio_assets.catalog import read_mysql_catalog
from alkemio_assets.consistent_read import ConsistentRead
from alkemio_assets.errors import OrphanRowsError, describe_key
from alkemio_assets.export import ExportResult, KeyRange, chunk_count, export
from alkemio_assets.faults import disk_full, is_disk_full, mysql_lost, postgres_lost, retried, verify_input
from alkemio_assets.graph import LoadOrder, load_order
from alkemio_assets.integrity import crossing_foreign_keys, staged_orphans, target_orphans
from alkemio_assets.load import LoadResult, StagedInput, load_tables
from alkemio_assets.manifest import (
    MANIFEST,
    FileKind,
    Manifest,
    RecordedFile,
    earlier_file,
    now,
    recorded_file,
    run_folder,
    run_manifests,
)
from alkemio_assets.plan import ContractError, TablePlan, plan_database
from alkemio_assets.run_lock import migration_lock
from alkemio_assets.settings import DatabasePair, Settings
from alkemio_assets.snapshot import Snapshot
from alkemio_assets.sql import mysql_ident
from alkemio_assets.staging import prepare, stage_table
from alkemio_assets.target import TargetCatalog, read_pg_catalog
from alkemio_assets.versions import pair_versions
from checks import run_check
from checks.table_checks import TableCheckContext, table_checks_for
from resources import MySQLResource, PostgresResource

T = TypeVar("T")


class StaleSnapshotError(RuntimeError):
    """The live schema is not the one the asset graph was built from."""


class MissingInputError(FileNotFoundError):
    """A stage's input was made by no run of this database that succeeded."""


def check_live_schema(
    pair: DatabasePair,
    snapshot: Snapshot,
    mysql: MySQLResource,
    postgres: PostgresResource,
    tables: set[str],
    moving: set[str],
) -> tuple[dict[str, TablePlan], TargetCatalog]:
    """Re-read both schemas and plan `tables`, with the live target catalog. The tables this run moves must still be as in the
    snapshot the graph was built from; tables only checked may differ (that is what checks see)."""
    with mysql.connect() as conn:
        source = read_mysql_catalog(conn, pair.source_database)
    with postgres.connect(pair.target_database) as conn:
        target = read_pg_catalog(conn, pair.target_database)
    changed = sorted(
        name
        for name in moving
        if next((t for t in source.tables if t.name == name), None) != snapshot.source.table(name)
        or target.table(name) != snapshot.target.table(name)
    )
    if changed:
        raise StaleSnapshotError(
            f"{pair.name}: the schema of {changed} changed since the catalog snapshot of "
            f"{snapshot.taken_at:%Y-%m-%d %H:%M} UTC; run the job refresh_catalog, review, then migrate"
        )
    return plan_database(pair, source, target, only=tables), target


def null_violations(mysql: MySQLResource, pair: DatabasePair, plans: list[TablePlan]) -> list[str]:
    """Columns nullable on MySQL but NOT NULL on PostgreSQL that hold NULLs: each would stop the
    load late, so a run stops on them before any data moves."""
    problems = []
    with mysql.connect(pair.source_database) as conn, conn.cursor() as cur:
        for plan in plans:
            for column in plan.columns:
                if column.source.nullable and column.target.not_null:
                    cur.execute(
                        f"SELECT COUNT(*) AS n FROM {mysql_ident(plan.name)} WHERE {mysql_ident(column.name)} IS NULL"
                    )
                    if n := cur.fetchone()["n"]:
                        problems.append(
                            f"{pair.name}.{plan.name}.{column.name}: {n} rows are NULL on MySQL but the target "
                            f"column is NOT NULL ({column.target.type_name}){_null_keys(cur, plan, column.name)}"
                        )
    return problems


def _null_keys(cur: Any, plan: TablePlan, column: str, limit: int = 5) -> str:
    """`: rows id=2, id=9`: the first rows (by key) whose `column` is NULL, named by their key."""
    keys = [c.name for c in plan.key_columns]
    if not keys:
        return ""
    listed = ", ".join(mysql_ident(k) for k in keys)
    cur.execute(
        f"SELECT {listed} FROM {mysql_ident(plan.name)} WHERE {mysql_ident(column)} IS NULL ORDER BY {listed} LIMIT {limit}"
    )
    return ": rows " + ", ".join(describe_key(row) for row in cur.fetchall())


def unique_violations(mysql: MySQLResource, pair: DatabasePair, plans: list[TablePlan]) -> list[str]:
    """Unique keys the target has and the source lacks (Kratos's session_devices on PostgreSQL),
    whose columns hold duplicates on MySQL: each would stop the load late, so a run stops on
    them first, naming the duplicated values. Compared as bytes (PostgreSQL's text equality, not
    MySQL's case-insensitive collation); a row with a NULL in the key is never a duplicate."""
    problems = []
    with mysql.connect(pair.source_database) as conn, conn.cursor() as cur:
        for plan in plans:
            source_keys = {frozenset(k) for k in plan.source.unique_keys}
            exported = {c.name for c in plan.columns}
            for key in plan.target.unique_keys:
                if frozenset(key) in source_keys or not set(key) <= exported:
                    continue
                columns = ", ".join(f"CAST({mysql_ident(c)} AS BINARY)" for c in key)
                not_null = " AND ".join(f"{mysql_ident(c)} IS NOT NULL" for c in key)
                cur.execute(
                    f"SELECT {columns}, COUNT(*) AS n FROM {mysql_ident(plan.name)} WHERE {not_null} "
                    f"GROUP BY {columns} HAVING COUNT(*) > 1 LIMIT 6"
                )
                if duplicates := cur.fetchall():
                    shown = [
                        "("
                        + ", ".join(repr(bytes(v).decode("utf-8", "replace")) for k, v in row.items() if k != "n")
                        + ")"
                        f" {row['n']} times"
                        for row in duplicates[:5]
                    ]
                    more = " and more" if len(duplicates) > 5 else ""
                    problems.append(
                        f"{pair.name}.{plan.name}: the target is unique on ({', '.join(key)}), MySQL is not, and holds "
                        f"duplicates: {'; '.join(shown)}{more}. Remove the duplicates on MySQL (the application keeps one)"
                    )
    return problems


# -- the selection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """What a step was asked for: per table, its selected stages; the tables in load order."""

    assets: dict[str, TableAssets]
    stages: dict[str, set[Stage]]
    lineage: LoadOrder
    order: list[str]  # the selected tables, parents first
    checked: set[str]  # tables whose checks are selected

    def having(self, stage: Stage) -> list[str]:
        return [t for t in self.order if stage in self.stages[t]]


def select(context: dg.AssetExecutionContext, pair: DatabasePair, snapshot: Snapshot) -> Selection:
    tables = [t for t in snapshot.source.tables if t.name not in pair.exclude]
    assets = table_assets(pair, tables)
    by_key = {key: (name, stage) for name, a in assets.items() for stage, key in a.keys.items()}
    stages: dict[str, set[Stage]] = {}
    for key in context.selected_asset_keys:
        name, stage = by_key[key]
        stages.setdefault(name, set()).add(stage)
    lineage = load_order(tables)
    checked = {by_key[c.asset_key][0] for c in context.selected_asset_check_keys}
    return Selection(assets, stages, lineage, [t for t in lineage.order if t in stages], checked)


# -- what a step shares between its tables --------------------------------------------------------


@dataclass
class StepRun:
    """One step's run over its tables: where its files go, what it records, what it talks to."""

    context: dg.AssetExecutionContext
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

    @property
    def run_id(self) -> str:
        return self.context.run.run_id

    def retried(self, action: Callable[[], T], is_lost: Callable[[BaseException], bool], server: str, where: str) -> T:
        """`action()`, again after a lost connection, as MIGRATION_RETRIES says; each retry logged."""
        return retried(
            action,
            is_lost,
            server,
            where,
            retries=self.settings.retries,
            backoff=self.settings.retry_seconds,
            log=self.context.log.warning,
        )

    def csv_path(self, name: str) -> Path:
        return self.folder / "csv" / f"{name}.csv"

    def staged_path(self, name: str) -> Path:
        return self.folder / "staged" / f"{name}.csv"

    @cached_property
    def manifests(self) -> list[dict[str, Any]]:
        """The database's run manifests, read once per step (not once per table)."""
        return run_manifests(self.settings, self.pair)

    def longest_record(self, name: str) -> int | None:
        """Bytes of the longest record of the table's CSV file (this run's, else the newest
        earlier succeeded run's): what a reader's batch of its rows may cost."""
        found = recorded_file(self.folder, self.run_id, self.manifest.tables.get(name, {}), "csv") or earlier_file(
            self.manifests, name, "csv", self.run_id
        )
        return None if found is None else found.longest_record

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
            run.context.log.warning(f"{run.pair.name}.{name}: exported again outside the run's moment of the source")
        return export(run.mysql, run.pair.source_database, plan, path, parts, fetch=run.settings.fetch)

    exported, ranges = run.retried(once, mysql_lost, f"MySQL {run.mysql.describe()}", f"{run.pair.name}.{name} export")
    if ranges:
        run.manifest.record(name, key_ranges=[r.describe() for r in ranges])
        if run.moment is not None:
            run.context.log.warning(
                f"{run.pair.name}.{name}: read in key ranges, outside the run's moment of the source"
            )
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
        metadata={
            "rows": exported.rows,
            "bytes": exported.bytes,
            "sha256": exported.sha256,
            "path": dg.MetadataValue.path(str(path)),
            "seconds": round(time.time() - wall, 3),
        },
    )


def staging_stage(run: StepRun, name: str) -> dg.MaterializeResult:
    plan, wall = run.plans[name], time.time()
    source = run.input(name, "csv", "csv")
    verify_input(source.path, source.sha256, source.bytes, f"{run.pair.name}.{name} staging")
    path = run.staged_path(name)
    staged = stage_table(run.duck.cursor(), plan, source.path, path, source.longest_record or 64 << 20)
    run.manifest.record(
        name,
        staged_file=str(path.relative_to(run.folder)),
        staged_rows=staged.rows,
        staged_sha256=staged.sha256,
        staged_bytes=path.stat().st_size,
        staged_from={
            "run_id": source.run_id,
            "file": str(source.path.relative_to(run.settings.workdir)),
            "sha256": source.sha256,
        },
    )
    run.manifest.span(name, "stage", wall)
    return dg.MaterializeResult(
        asset_key=run.chosen.assets[name].keys["staged"],
        metadata={
            "rows": staged.rows,
            "sha256": staged.sha256,
            "path": dg.MetadataValue.path(str(path)),
            "duckdb_table": staged.staged_table,
            "from": dg.MetadataValue.path(str(source.path)),
            "input_run": source.run_id,
            "casts": dg.MetadataValue.json({c.name: c.describe() for c in plan.columns}),
            "seconds": round(time.time() - wall, 3),
        },
    )


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


# -- the database: orphans first, then one transaction -------------------------------------------


def staged_inputs(run: StepRun, names: list[str]) -> dict[str, StagedInput]:
    inputs = {}
    for name in names:
        file = run.input(name, "staged", "staged")
        inputs[name] = StagedInput(file.path, file.sha256, file.rows, file.run_id)
    return inputs


def check_staged_orphans(run: StepRun, inputs: dict[str, StagedInput]) -> None:
    """Before anything is written: every foreign key between tables this run loads, proven on
    the staged files."""
    wall = time.time()
    targets = {name: run.plans[name].target for name in inputs}
    found = staged_orphans(run.duck.cursor(), targets, {name: i.path for name, i in inputs.items()})
    run.manifest.note(orphan_check_seconds=round(time.time() - wall, 3))
    if found:
        raise OrphanRowsError(run.pair.name, [o.describe() for o in found])


def load_database(
    run: StepRun, inputs: dict[str, StagedInput], target: TargetCatalog, previously_loaded: set[str]
) -> dict[str, LoadResult]:
    """Every table of the run in one transaction; the foreign keys crossing the run's edge (a
    parent or child this run does not load) are proven inside it, before it commits."""
    wall = time.time()
    order = [run.plans[name] for name in inputs]
    loading = {plan.name: plan.target for plan in order}
    crossing = crossing_foreign_keys(loading, target.tables)

    def prove_crossing(cur: Any) -> None:
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
                order,
                inputs,
                loaded_before=previously_loaded,
                replace_seeded=set(run.pair.replace_seeded),
                before_commit=prove_crossing,
            )

    results = run.retried(
        once,
        postgres_lost,
        f"PostgreSQL {run.postgres.describe()}/{run.pair.target_database}",
        f"{run.pair.name} load ({len(order)} tables, nothing committed)",
    )
    for name, loaded in results.items():
        run.manifest.record(name, loaded_rows=loaded.rows, load=loaded.outcome, sequences=loaded.sequences)
        run.manifest.span(name, "load", *loaded.span)
    run.manifest.note(load_transaction_seconds=round(time.time() - wall, 3))
    return results


def loaded_result(run: StepRun, name: str, loaded: LoadResult, source: StagedInput) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=run.chosen.assets[name].keys["postgres"],
        metadata={
            "rows": loaded.rows,
            "outcome": loaded.outcome,
            "sequences": dg.MetadataValue.json(loaded.sequences),
            "target": f"{run.pair.target_database}.{name}",
            "input_run": source.run_id,
            "sha256": source.sha256,
            "seconds": round(loaded.span[1] - loaded.span[0], 3),
        },
    )


# -- the step ------------------------------------------------------------------------------------


def in_parallel(pool: ThreadPoolExecutor, work: Callable[[str], T], names: Iterable[str]) -> Iterator[T]:
    """`work(name)` for every name at once, results as they come; the first error stops the
    rest (those not started are cancelled) and is raised."""
    pending: set[Future[T]] = {pool.submit(work, name) for name in names}
    while pending:
        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
        for future in done:
            if (error := future.exception()) is not None:
                for other in pending:
                    other.cancel()
                raise error
            yield future.result()


def run_pair(
    context: dg.AssetExecutionContext,
    pair: DatabasePair,
    settings: Settings,
    snapshot: Snapshot,
    mysql: MySQLResource,
    postgres: PostgresResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    step = context.op_execution_context.op_handle.name
    with migration_lock(postgres, pair.target_database, step, context.run.run_id):
        yield from _run_locked(
            context, pair, settings, snapshot, mysql, postgres, select(context, pair, snapshot), step
        )


def _run_locked(
    context: dg.AssetExecutionContext,
    pair: DatabasePair,
    settings: Settings,
    snapshot: Snapshot,
    mysql: MySQLResource,
    postgres: PostgresResource,
    chosen: Selection,
    step: str,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    plans, target = check_live_schema(
        pair, snapshot, mysql, postgres, set(chosen.order) | chosen.checked, set(chosen.order)
    )
    versions, problems = pair_versions(pair, mysql, postgres)
    exporting = [plans[t] for t in chosen.having("csv")]
    if problems := problems + null_violations(mysql, pair, exporting) + unique_violations(mysql, pair, exporting):
        raise ContractError(problems)

    folder = run_folder(settings, context.run.run_id, pair)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(
        run_id=context.run.run_id,
        database=pair.name,
        source=f"{mysql.describe()}/{pair.source_database}",
        target=f"{postgres.describe()}/{pair.target_database}",
        started_at=now(),
        versions=None if versions is None else asdict(versions),
    )
    for name, override in pair.overrides.items():
        manifest.record(name.partition(".")[0], overrides={name: {"cast": override.cast, "reason": override.reason}})
    # one DuckDB file per step that stages: a sharded database's steps may run at once
    duck = duckdb.connect(
        str(folder / ("staging.duckdb" if step == step_name(pair, 0, 1) else f"staging.{step}.duckdb"))
        if chosen.having("staged")
        else ":memory:"
    )
    prepare(duck, settings.staging_memory_mb)
    run = StepRun(context, pair, settings, snapshot, mysql, postgres, chosen, plans, folder, manifest, duck)
    loading = chosen.having("postgres")
    previously_loaded = {
        name
        for name in loading
        if context.instance.get_latest_materialization_event(chosen.assets[name].keys["postgres"]) is not None
    }
    failure: BaseException | None = None
    try:
        with ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix=f"{pair.name}-table") as pool:
            exporting_now = chosen.having("csv")
            with (
                ConsistentRead(
                    mysql, pair.source_database, min(settings.workers, len(exporting_now)), context.log.warning
                )
                if exporting_now
                else nullcontext() as moment
            ):
                run.moment = moment
                if moment is not None:
                    manifest.note(source_moment="global read lock" if moment.locked else "per connection")
                for results in in_parallel(pool, lambda name: prepare_table(run, name), chosen.order):
                    yield from results
            run.moment = None
            inputs = staged_inputs(run, loading)
            loaded: dict[str, LoadResult] = {}
            if inputs:
                check_staged_orphans(run, inputs)
                loaded = load_database(run, inputs, target, previously_loaded)
            evaluated = run_checks(pool, run)
        # Dagster takes a multi-asset's results in topological order, and a table's checks need
        # its parents loaded: each loaded table is reported, with its checks, parents first.
        for name in [t for t in chosen.lineage.order if t in loaded or t in evaluated]:
            if name in loaded:
                yield loaded_result(run, name, loaded[name], inputs[name])
            yield from evaluated.get(name, [])
    except BaseException as exc:
        failure = exc
        raise
    finally:
        duck.close()
        _finish(context, manifest, folder, failure)


def _finish(context: dg.AssetExecutionContext, manifest: Manifest, folder: Path, failure: BaseException | None) -> None:
    """Write the manifest. Should that fail too (a full disk), the first error stays the one
    raised and the manifest's own failure is logged."""
    manifest.finished_at = now()
    manifest.outcome = "failed" if failure else "succeeded"
    manifest.error = None if failure is None else f"{type(failure).__name__}: {failure}"
    path = folder / MANIFEST
    try:
        manifest.write(path)
    except OSError as exc:
        error = disk_full(path, f"{manifest.database} manifest", exc) if is_disk_full(exc) else exc
        if failure is None:
            raise error from exc
        context.log.error(f"the manifest could not be written either: {error}")
        return
    if failure is not None:
        context.log.error(f"manifest: {path}")


def run_checks(pool: ThreadPoolExecutor, run: StepRun) -> dict[str, list[dg.AssetCheckResult]]:
    """The selected table checks, tables in parallel; recorded in the manifest for the report."""
    wanted: dict[str, list[str]] = {}
    by_key = {a.keys["postgres"]: name for name, a in run.chosen.assets.items()}
    for check in run.context.selected_asset_check_keys:
        wanted.setdefault(by_key[check.asset_key], []).append(check.name)

    def evaluate(name: str) -> list[dg.AssetCheckResult]:
        ctx = TableCheckContext(
            run.plans[name],
            run.pair.source_database,
            run.pair.target_database,
            run.mysql,
            run.postgres,
            run.chosen.assets[name].keys["postgres"],
            run.chosen.lineage,
            run.settings.fetch.sized(run.longest_record(name)),
        )
        wall = time.time()
        checks = table_checks_for(run.plans[name])
        results = [
            run_check(checks[check][0], ctx, ctx.asset_key, check, checks[check][1]) for check in sorted(wanted[name])
        ]
        run.manifest.span(name, "checks", wall)
        run.manifest.record(
            name,
            checks={r.check_name: {"passed": r.passed, "severity": r.severity.value} for r in results if r.check_name},
        )
        return results

    futures = {name: pool.submit(evaluate, name) for name in wanted}
    return {name: future.result() for name, future in futures.items()}
