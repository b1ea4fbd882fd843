"""Inside a database's step (one, or one per shard), the database is the unit of failure:

1. the contract: both live schemas as in the snapshot, the application versions, and what would
   stop the load late (NULLs into NOT NULL, duplicates under a target-only unique key);
2. export and stage, tables in parallel, each CSV and staged asset reported when it is ready;
   every input checked against the manifest of the run that wrote it;
3. the load, meanwhile: every table in one PostgreSQL transaction (stages/load.py), each copied
   as soon as it is staged (graph/moves.py's Loading);
4. once all are staged: orphans among the staged files, in DuckDB, while the last COPYs run, then
   the foreign keys that cross the run's edge, inside the transaction; it commits whole or not
   at all;
5. every loaded table reported, parents first, while the table checks run; each table's checks
   reported as they finish.

One run per target database at a time (stages/run_lock.py). The first error stops the step and
is the one reported; the manifest records it, and before the commit each table to load is told
it is unchanged (an observation on its page: the UI shows its checks as "Execution failed"). The stage functions are graph/moves.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from contextlib import nullcontext
from dataclasses import asdict
from typing import TypeVar

import dagster as dg
import duckdb

from alkemio_assets.catalog.contract import ContractError, TablePlan
from alkemio_assets.catalog.live import check_live_schema
from alkemio_assets.catalog.snapshot import Snapshot
from alkemio_assets.catalog.target import TargetCatalog
from alkemio_assets.catalog.versions import Versions, pair_versions
from alkemio_assets.catalog.violations import null_violations, unique_violations
from alkemio_assets.core.settings import DatabasePair, Settings
from alkemio_assets.graph.keys import STAGE_PHASES, key_part, step_name
from alkemio_assets.graph.moves import Note, StepRun, loaded_result, prepare_table, start_load
from alkemio_assets.graph.progress import Progress
from alkemio_assets.graph.selection import Selection, select
from alkemio_assets.stages.consistent_read import ConsistentRead
from alkemio_assets.stages.faults import disk_full, is_disk_full
from alkemio_assets.stages.manifest import MANIFEST, Manifest, now, run_folder
from alkemio_assets.stages.run_lock import migration_lock
from alkemio_assets.stages.run_log import Status, record, run_log_path
from alkemio_assets.stages.staging import prepare
from checks import recorded, run_check
from checks.table_checks import TableCheckContext, table_checks_for
from resources import MySQLResource, PostgresResource

T = TypeVar("T")
Results = Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetObservation]


def run_pair(
    context: dg.AssetExecutionContext,
    pair: DatabasePair,
    settings: Settings,
    snapshot: Snapshot,
    mysql: MySQLResource,
    postgres: PostgresResource,
) -> Results:
    """The step: its selection, under the target database's lock the contract, then the move."""
    step = context.op_execution_context.op_handle.name
    chosen = select(pair, snapshot, context.selected_asset_keys, context.selected_asset_check_keys)
    note = run_events(context, settings, pair)
    note("started", f"step {step}: {len(chosen.order)} tables, {len(chosen.checks)} of them checked")
    run: StepRun | None = None
    try:
        with migration_lock(postgres, pair.target_database, step, context.run.run_id):
            plans, target, versions = check_contract(pair, snapshot, mysql, postgres, chosen)
            run = open_run(context, pair, settings, snapshot, mysql, postgres, chosen, plans, versions, step)
            run.note = note
            yield from move(run, target, previously_loaded(context, chosen))
    except GeneratorExit:
        raise
    except BaseException as exc:
        note("failed", f"step {step}: {type(exc).__name__}: {exc}")
        if run is None or not run.committed:
            yield from unchanged_targets(pair, chosen, exc)  # yielded: log_event's would be lost with the error
        raise
    note("completed", f"step {step}: {len(chosen.order)} tables")


def run_events(context: dg.AssetExecutionContext, settings: Settings, pair: DatabasePair) -> Note:
    """How the step records its events: in the run log, and as the run's tag `alkemio/DB`. A log
    that cannot be written (a full disk) is said in the step's output and never replaces the
    step's own outcome or error; the manifest stays the record of what moved."""
    path = run_log_path(settings)

    def note(status: Status, message: str) -> None:
        record(path, status, f"{pair.name}: {message}", context.run.run_id, pair.name, say=context.log.error)
        context.instance.add_run_tags(context.run.run_id, {f"alkemio/{key_part(pair.name)}": status})

    return note


def unchanged_targets(pair: DatabasePair, chosen: Selection, failure: BaseException) -> list[dg.AssetObservation]:
    """What a failed step leaves on each table it was to load, before its transaction committed:
    the target table as it was. Dagster shows the checks such a run planned as "Execution failed"
    (it plans every check of a run at launch and resolves those a failed run left to that); the
    observation on the table's own page says what is true of its data, and why."""
    cause = dg.MetadataValue.text(f"{type(failure).__name__}: {failure}")
    not_judged = dg.MetadataValue.text("not run (Execution failed in the UI): the data was not judged")

    def metadata(name: str) -> dict[str, dg.TextMetadataValue]:
        written = f"{pair.target_database}.{name} as before this run: nothing of {pair.name} was written"
        checks = {"checks": not_judged} if name in chosen.checks else {}
        return {"target": dg.MetadataValue.text(written), "cause": cause} | checks

    return [
        dg.AssetObservation(
            asset_key=chosen.assets[name].keys["postgres"],
            description=f"Unchanged: the run of {pair.name} failed before its one transaction committed.",
            metadata=metadata(name),
        )
        for name in chosen.having("postgres")
    ]


# -- 1. the contract ----------------------------------------------------------------------------


def check_contract(
    pair: DatabasePair, snapshot: Snapshot, mysql: MySQLResource, postgres: PostgresResource, chosen: Selection
) -> tuple[dict[str, TablePlan], TargetCatalog, Versions | None]:
    """Both live schemas as in the snapshot, the application versions, and what would stop the
    load late: any problem stops the step before a file is written."""
    plans, target = check_live_schema(
        pair, snapshot, mysql, postgres, set(chosen.order) | chosen.checked, set(chosen.order)
    )
    versions, problems = pair_versions(pair, mysql, postgres)
    exporting = [plans[t] for t in chosen.having("csv")]
    if problems := problems + null_violations(mysql, pair, exporting) + unique_violations(mysql, pair, exporting):
        raise ContractError(problems)
    return plans, target, versions


def staging_file(pair: DatabasePair, step: str) -> str:
    """One DuckDB file per step that stages: a sharded database's steps may run at once."""
    return "staging.duckdb" if step == step_name(pair, 0, 1) else f"staging.{step}.duckdb"


def open_run(
    context: dg.AssetExecutionContext,
    pair: DatabasePair,
    settings: Settings,
    snapshot: Snapshot,
    mysql: MySQLResource,
    postgres: PostgresResource,
    chosen: Selection,
    plans: dict[str, TablePlan],
    versions: Versions | None,
    step: str,
) -> StepRun:
    """The step's run folder, its manifest and its DuckDB database."""
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
    manifest.note(excluded=dict(pair.exclude))  # the tables not moved, each with its reason
    for name, override in pair.overrides.items():
        manifest.record(name.partition(".")[0], overrides={name: {"cast": override.cast, "reason": override.reason}})
    duck = duckdb.connect(str(folder / staging_file(pair, step)) if chosen.having("staged") else ":memory:")
    prepare(duck, settings.staging_memory_mb)
    return StepRun(
        context.run.run_id,
        context.log,
        pair,
        settings,
        snapshot,
        mysql,
        postgres,
        chosen,
        plans,
        folder,
        manifest,
        duck,
    )


# -- 2.-5. the move -----------------------------------------------------------------------------


def move(run: StepRun, target: TargetCatalog, loaded_before: set[str]) -> Results:
    """Export and stage the tables in parallel, then load the database in one transaction, then
    the checks; the loaded tables reported parents first. The manifest is written however it ends."""
    failure: BaseException | None = None
    chosen = run.chosen
    run.progress = Progress(
        run.pair.name,
        {
            "export": len(chosen.having("csv")),
            "stage": len(chosen.having("staged")),
            "load": len(chosen.having("postgres")),
        }
        | {"verify": len(chosen.checks)},
        run.folder / "csv",
        sum(run.snapshot.sizes.get(name, 0) for name in chosen.having("csv")),
        run.log.info,
        run.settings.progress_seconds,
    )
    try:
        with (
            run.progress,
            ThreadPoolExecutor(max_workers=run.settings.workers, thread_name_prefix=f"{run.pair.name}-table") as pool,
        ):
            loading = start_load(run, target, loaded_before)
            try:
                yield from prepare_tables(run, pool, loading.ready if loading else lambda name: None)
                run.note(
                    "in_progress",
                    f"exported {len(run.chosen.having('csv'))}, staged {len(run.chosen.having('staged'))} tables",
                )
                inputs, loaded = loading.finish() if loading else ({}, {})
                run.committed = loading is not None
            except BaseException as exc:
                if loading is not None:
                    loading.abort(exc)  # rolled back before the step reports its error
                raise
            run.note("in_progress", f"loaded {len(loaded)} tables in one transaction")
            checking = start_checks(pool, run)
            for name in run.chosen.report_order(loaded):
                yield loaded_result(run, name, loaded[name], inputs[name])
            for future in as_completed(checking):
                yield from future.result()
    except BaseException as exc:
        failure = exc
        raise
    finally:
        run.duck.close()
        _finish(run, failure)


def previously_loaded(context: dg.AssetExecutionContext, chosen: Selection) -> set[str]:
    """The tables to load that a run materialized before: rows the target holds there are ours to
    replace; elsewhere the target's own migrations put them, and they are compared instead."""
    keys = {chosen.assets[name].keys["postgres"]: name for name in chosen.having("postgres")}
    latest = context.instance.get_latest_materialization_events(keys)  # one query for every table
    return {name for key, name in keys.items() if latest.get(key) is not None}


def prepare_tables(
    run: StepRun, pool: ThreadPoolExecutor, staged: Callable[[str], None]
) -> Iterator[dg.MaterializeResult]:
    """Every selected table's export and staging, tables in parallel, the exports reading one
    moment of the source; each result as it is ready, and `staged(name)` told (the load takes it)."""
    exporting = run.chosen.having("csv")
    with (
        ConsistentRead(run.mysql, run.pair.source_database, min(run.settings.workers, len(exporting)), run.log.warning)
        if exporting
        else nullcontext() as moment
    ):
        run.moment = moment
        if moment is not None:
            run.manifest.note(source_moment="global read lock" if moment.locked else "per connection")

        def prepared(name: str) -> list[dg.MaterializeResult]:
            results = prepare_table(run, name)
            for stage, phase in STAGE_PHASES.items():
                if stage in run.chosen.stages[name] and stage != "postgres":
                    run.through(phase, name)
            if "staged" in run.chosen.stages[name]:
                staged(name)  # the load takes it now, not once Dagster has written the events before it
            return results

        for results in in_parallel(pool, prepared, run.chosen.order):
            yield from results
    run.moment = None


def start_checks(pool: ThreadPoolExecutor, run: StepRun) -> list[Future[list[dg.AssetCheckResult]]]:
    """The selected table checks, tables in parallel, each table's results recorded in the
    manifest for the report; taken as each table is done, while the step reports the loads."""

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
            run_check(checks[check][0], ctx, ctx.asset_key, check, checks[check][1])
            for check in sorted(run.chosen.checks[name])
        ]
        run.manifest.span(name, "checks", wall)
        run.through("verify", name)
        run.manifest.record(
            name,
            checks={r.check_name: recorded(r) for r in results if r.check_name},
        )
        return results

    # the longest first: the last table to finish decides when the step does
    return [pool.submit(evaluate, name) for name in sorted(run.chosen.checks, key=run.check_weight)]


def in_parallel(pool: ThreadPoolExecutor, work: Callable[[str], T], names: Iterable[str]) -> Iterator[T]:
    """`work(name)` for every name at once, each result as soon as it comes; the first error
    stops the rest (those not started are cancelled) and is raised."""
    pending: set[Future[T]] = {pool.submit(work, name) for name in names}
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        if error := next((e for f in done if (e := f.exception()) is not None), None):
            for other in pending:
                other.cancel()
            raise error
        for future in done:
            yield future.result()


def _finish(run: StepRun, failure: BaseException | None) -> None:
    """Write the manifest. Should that fail too (a full disk), the first error stays the one
    raised and the manifest's own failure is logged."""
    manifest = run.manifest
    manifest.finished_at = now()
    manifest.outcome = "failed" if failure else "succeeded"
    manifest.error = None if failure is None else f"{type(failure).__name__}: {failure}"
    path = run.folder / MANIFEST
    try:
        manifest.write(path)
    except OSError as exc:
        error = disk_full(path, f"{manifest.database} manifest", exc) if is_disk_full(exc) else exc
        if failure is None:
            raise error from exc
        run.log.error(f"the manifest could not be written either: {error}")
        return
    if failure is not None:
        run.log.error(f"manifest: {path}")
