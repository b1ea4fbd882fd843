"""Inside the one step per database: contract first, then export -> stage -> load per table,
tables in parallel, each table's assets reported as soon as they are done, fail fast."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from alkemio_assets.assets import STAGES, Stage, table_assets
from alkemio_assets.catalog import read_mysql_catalog
from alkemio_assets.errors import MigrationDataError
from alkemio_assets.export import export_table
from alkemio_assets.graph import load_order
from alkemio_assets.load import load_table
from alkemio_assets.plan import ContractError, TablePlan, plan_database
from alkemio_assets.settings import DatabasePair, Settings
from alkemio_assets.snapshot import Snapshot
from alkemio_assets.sql import mysql_ident
from alkemio_assets.staging import prepare, stage_table
from alkemio_assets.target import read_pg_catalog
from resources import MySQLResource, PostgresResource

MANIFEST = "migration_manifest.json"


class StaleSnapshotError(RuntimeError):
    """The live schema is not the one the asset graph was built from."""


@dataclass
class Manifest:
    """migration_manifest.json: what this run moved, described without secrets."""

    run_id: str
    database: str
    source: str
    target: str
    started_at: str
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished_at: str | None = None
    outcome: str = "running"
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, table: str, **entry: Any) -> None:
        with self.lock:
            self.tables.setdefault(table, {}).update(entry)

    def write(self, path: Path) -> None:
        body = {k: v for k, v in self.__dict__.items() if k != "lock"}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def run_folder(settings: Settings, run_id: str, pair: DatabasePair) -> Path:
    return settings.workdir / "runs" / run_id / pair.name


def latest_file(settings: Settings, pair: DatabasePair, relative: str, before: Path) -> Path | None:
    """The newest earlier run's copy of `relative`, for a stage whose input this run did not make."""
    candidates = [
        p / pair.name / relative
        for p in (settings.workdir / "runs").glob("*")
        if (p / pair.name / relative).exists() and p / pair.name != before
    ]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def longest_record(csv_path: Path, table: str) -> int:
    """From the manifest of the earlier run that wrote the file."""
    manifest = csv_path.parent.parent / MANIFEST
    if manifest.exists():
        entry = json.loads(manifest.read_text(encoding="utf-8")).get("tables", {}).get(table, {})
        if "longest_record" in entry:
            return int(entry["longest_record"])
    return 64 << 20  # unknown: allow 64 MB records


def check_live_schema(
    pair: DatabasePair, snapshot: Snapshot, mysql: MySQLResource, postgres: PostgresResource, tables: set[str]
) -> dict[str, TablePlan]:
    """Re-read both schemas: they must be the snapshot's, and the contract must hold."""
    with mysql.connect() as conn:
        source = read_mysql_catalog(conn, pair.source_database)
    with postgres.connect(pair.target_database) as conn:
        target = read_pg_catalog(conn, pair.target_database)
    changed = sorted(
        name
        for name in tables
        if next((t for t in source.tables if t.name == name), None) != snapshot.source.table(name)
        or target.table(name) != snapshot.target.table(name)
    )
    if changed:
        raise StaleSnapshotError(
            f"{pair.name}: the schema of {changed} changed since the catalog snapshot of "
            f"{snapshot.taken_at:%Y-%m-%d %H:%M} UTC; run the job refresh_catalog, review, then migrate"
        )
    return plan_database(pair, source, target, only=tables)


def check_nulls_into_not_null(mysql: MySQLResource, pair: DatabasePair, plans: list[TablePlan]) -> None:
    """A column nullable on MySQL but NOT NULL on PostgreSQL: its NULLs would stop the load late."""
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
                            f"column is NOT NULL ({column.target.type_name})"
                        )
    if problems:
        raise ContractError(problems)


def _staged_value(path: Path, row: int, column: str) -> Any:
    with duckdb.connect() as duck:
        found = duck.execute(
            'SELECT "' + column.replace('"', '""') + '" FROM read_csv(?, header = true, all_varchar = true, '
            "quote = '\"', escape = '\"', nullstr = '', allow_quoted_nulls = false) LIMIT 1 OFFSET ?",
            [str(path), row - 1],
        ).fetchone()
    return None if found is None else found[0]


def run_pair(
    context: dg.AssetExecutionContext,
    pair: DatabasePair,
    settings: Settings,
    snapshot: Snapshot,
    mysql: MySQLResource,
    postgres: PostgresResource,
) -> Iterator[dg.MaterializeResult]:
    tables = [t for t in snapshot.source.tables if t.name not in pair.exclude]
    assets = table_assets(pair, tables)
    by_key = {key: (name, stage) for name, a in assets.items() for stage, key in a.keys.items()}
    selected: dict[str, set[Stage]] = {}
    for key in context.selected_asset_keys:
        name, stage = by_key[key]
        selected.setdefault(name, set()).add(stage)
    lineage = load_order(tables)
    order = [t for t in lineage.order if t in selected]

    plans = check_live_schema(pair, snapshot, mysql, postgres, set(order))
    check_nulls_into_not_null(mysql, pair, [plans[t] for t in order if "csv" in selected[t]])

    folder = run_folder(settings, context.run_id, pair)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(
        run_id=context.run_id,
        database=pair.name,
        source=f"{mysql.describe()}/{pair.source_database}",
        target=f"{postgres.describe()}/{pair.target_database}",
        started_at=now(),
    )
    for name, override in pair.overrides.items():
        manifest.record(name.partition(".")[0], overrides={name: {"cast": override.cast, "reason": override.reason}})
    duck = duckdb.connect(str(folder / "staging.duckdb"))
    prepare(duck)
    previously_loaded = {
        name
        for name in order
        if "postgres" in selected[name]
        and context.instance.get_latest_materialization_event(assets[name].keys["postgres"]) is not None
    }

    def move(name: str) -> list[dg.MaterializeResult]:
        plan, stages = plans[name], selected[name]
        results: list[dg.MaterializeResult] = []
        csv_path = folder / "csv" / f"{name}.csv"
        staged_path = folder / "staged" / f"{name}.csv"
        manifest.record(
            name,
            columns=[
                {"name": c.name, "mysql": c.source.column_type, "postgres": c.target.type_name, "rule": c.rule.name}
                for c in plan.columns
            ],
        )
        if "csv" in stages:
            started = time.monotonic()
            with mysql.connect(pair.source_database, raw=True) as conn:
                exported = export_table(conn, plan, csv_path)
            manifest.record(
                name,
                rows=exported.rows,
                file=str(csv_path.relative_to(folder)),
                bytes=exported.bytes,
                sha256=exported.sha256,
                longest_record=exported.longest_record,
            )
            results.append(
                dg.MaterializeResult(
                    asset_key=assets[name].keys["csv"],
                    metadata={
                        "rows": exported.rows,
                        "bytes": exported.bytes,
                        "sha256": exported.sha256,
                        "path": dg.MetadataValue.path(str(csv_path)),
                        "seconds": round(time.monotonic() - started, 3),
                    },
                )
            )
        if "staged" in stages:
            source_csv = csv_path if csv_path.exists() else latest_file(settings, pair, f"csv/{name}.csv", folder)
            if source_csv is None:
                raise FileNotFoundError(
                    f"{pair.name}.{name}: no CSV file to stage; materialize {assets[name].keys['csv'].to_user_string()} first"
                )
            started = time.monotonic()
            longest = manifest.tables[name].get("longest_record") if source_csv == csv_path else None
            staged = stage_table(
                duck.cursor(), plan, source_csv, staged_path, longest or longest_record(source_csv, name)
            )
            manifest.record(name, staged_file=str(staged_path.relative_to(folder)), staged_rows=staged.rows)
            results.append(
                dg.MaterializeResult(
                    asset_key=assets[name].keys["staged"],
                    metadata={
                        "rows": staged.rows,
                        "path": dg.MetadataValue.path(str(staged_path)),
                        "duckdb_table": staged.staged_table,
                        "from": dg.MetadataValue.path(str(source_csv)),
                        "casts": dg.MetadataValue.json({c.name: c.describe() for c in plan.columns}),
                        "seconds": round(time.monotonic() - started, 3),
                    },
                )
            )
        if "postgres" in stages:
            source_staged = (
                staged_path if staged_path.exists() else latest_file(settings, pair, f"staged/{name}.csv", folder)
            )
            if source_staged is None:
                raise FileNotFoundError(
                    f"{pair.name}.{name}: no staged file to load; materialize {assets[name].keys['staged'].to_user_string()} first"
                )
            started = time.monotonic()
            with postgres.connect(pair.target_database) as conn:
                loaded = load_table(
                    conn,
                    plan,
                    source_staged,
                    lambda row, column: _staged_value(source_staged, row, column),
                    loaded_before=name in previously_loaded,
                    replace_seeded=name in pair.replace_seeded,
                )
            manifest.record(name, loaded_rows=loaded.rows, load=loaded.outcome, sequences=loaded.sequences)
            results.append(
                dg.MaterializeResult(
                    asset_key=assets[name].keys["postgres"],
                    metadata={
                        "rows": loaded.rows,
                        "outcome": loaded.outcome,
                        "sequences": dg.MetadataValue.json(loaded.sequences),
                        "target": f"{pair.target_database}.{name}",
                        "seconds": round(time.monotonic() - started, 3),
                    },
                )
            )
        return results

    # Dagster takes a multi-asset's results in topological order: a loaded table is reported
    # once the loaded tables it depends on are; CSV and staged results go out when ready.
    loading = {name for name in order if "postgres" in selected[name]}
    held: dict[str, dg.MaterializeResult] = {}
    reported: set[str] = set()

    def release(results: list[dg.MaterializeResult]) -> Iterator[dg.MaterializeResult]:
        for result in results:
            assert result.asset_key is not None  # every result here names its asset
            name, stage = by_key[result.asset_key]
            if stage == "postgres":
                held[name] = result
            else:
                yield result
        progress = True
        while progress:
            progress = False
            for name in [n for n in order if n in held]:
                if all(d in reported or d not in loading for d in lineage.dependencies(name)):
                    yield held.pop(name)
                    reported.add(name)
                    progress = True

    failure: BaseException | None = None
    try:
        with ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix=f"{pair.name}-table") as pool:
            pending: set[Future[list[dg.MaterializeResult]]] = {pool.submit(move, name) for name in order}
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        failure = future.exception()
                        for other in pending:
                            other.cancel()
                        break
                    yield from release(future.result())
                if failure is not None:
                    break
    finally:
        duck.close()
        manifest.finished_at = now()
        manifest.outcome = "failed" if failure else "succeeded"
        manifest.error = str(failure) if failure else None
        manifest.write(folder / MANIFEST)
    if failure is not None:
        context.log.error(f"manifest: {folder / MANIFEST}")
        if isinstance(failure, MigrationDataError | ContractError):
            raise failure
        raise failure


__all__ = ["MANIFEST", "STAGES", "run_pair"]
