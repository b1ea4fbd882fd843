"""Inside a database's step (one, or one per shard): contract first, then export -> stage -> load per table,
tables in parallel, each table's assets reported as soon as they are done, fail fast."""

from __future__ import annotations

import fcntl
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from alkemio_assets.assets import Stage, TableAssets, step_name, table_assets
from alkemio_assets.catalog import read_mysql_catalog
from alkemio_assets.export import chunk_count, export
from alkemio_assets.graph import LoadOrder, load_order
from alkemio_assets.load import load_table
from alkemio_assets.plan import ContractError, TablePlan, plan_database
from alkemio_assets.settings import DatabasePair, Settings
from alkemio_assets.snapshot import Snapshot
from alkemio_assets.sql import mysql_ident
from alkemio_assets.staging import prepare, stage_table
from alkemio_assets.target import read_pg_catalog
from alkemio_assets.versions import pair_versions
from checks import run_check
from checks.table_checks import TableCheckContext, table_checks_for
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
    versions: dict[str, Any] | None = None  # the application migrations each side held
    finished_at: str | None = None
    outcome: str = "running"
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, table: str, **entry: Any) -> None:
        with self.lock:
            self.tables.setdefault(table, {}).update(entry)

    def span(self, table: str, stage: str, started: float) -> None:
        """When a stage ran (epoch seconds), for the benchmark's phase timings."""
        with self.lock:
            self.tables.setdefault(table, {}).setdefault("spans", {})[stage] = [
                round(started, 3),
                round(time.time(), 3),
            ]

    def write(self, path: Path) -> None:
        """Write, merged with what the database's other steps of this run wrote there (a sharded
        database has several steps, one after the other or at once, on one machine or on a
        shared volume): each table's entry gathers its stages, whichever step ran them."""
        body = {k: v for k, v in self.__dict__.items() if k != "lock"}
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists() and (earlier := json.loads(path.read_text(encoding="utf-8")))["run_id"] == self.run_id:
                body = merged_manifest(earlier, body)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(body, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
            tmp.replace(path)


def _deep_merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in new.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def merged_manifest(earlier: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """Two steps' manifests of one database and run: the union of their tables, the earliest
    start, the latest end, failed if either failed, with every error."""
    errors = [e for e in (earlier.get("error"), step.get("error")) if e]
    return {
        **step,
        "tables": _deep_merge(earlier.get("tables", {}), step.get("tables", {})),
        "started_at": min(earlier["started_at"], step["started_at"]),
        "finished_at": max(filter(None, (earlier.get("finished_at"), step.get("finished_at"))), default=None),
        "outcome": "failed" if "failed" in (earlier.get("outcome"), step.get("outcome")) else step["outcome"],
        "error": "\n".join(errors) or None,
    }


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
    pair: DatabasePair,
    snapshot: Snapshot,
    mysql: MySQLResource,
    postgres: PostgresResource,
    tables: set[str],
    moving: set[str],
) -> dict[str, TablePlan]:
    """Re-read both schemas and plan `tables`. The tables this run moves must still be as in the
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
    return plan_database(pair, source, target, only=tables)


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
                            f"column is NOT NULL ({column.target.type_name})"
                        )
    return problems


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
                        "(" + ", ".join(repr(bytes(v).decode("utf-8", "replace")) for k, v in row.items() if k != "n") + ")"
                        f" {row['n']} times"
                        for row in duplicates[:5]
                    ]
                    more = " and more" if len(duplicates) > 5 else ""
                    problems.append(
                        f"{pair.name}.{plan.name}: the target is unique on ({', '.join(key)}), MySQL is not, and holds "
                        f"duplicates: {'; '.join(shown)}{more}. Remove the duplicates on MySQL (the application keeps one)"
                    )
    return problems


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
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    tables = [t for t in snapshot.source.tables if t.name not in pair.exclude]
    assets = table_assets(pair, tables)
    by_key = {key: (name, stage) for name, a in assets.items() for stage, key in a.keys.items()}
    selected: dict[str, set[Stage]] = {}
    for key in context.selected_asset_keys:
        name, stage = by_key[key]
        selected.setdefault(name, set()).add(stage)
    lineage = load_order(tables)
    order = [t for t in lineage.order if t in selected]
    postgres_keys = {a.keys["postgres"]: name for name, a in assets.items()}
    checked = {postgres_keys[c.asset_key] for c in context.selected_asset_check_keys}

    plans = check_live_schema(pair, snapshot, mysql, postgres, set(order) | checked, set(order))
    versions, problems = pair_versions(pair, mysql, postgres)
    exporting = [plans[t] for t in order if "csv" in selected[t]]
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
    step = context.op_execution_context.op_handle.name
    duck = duckdb.connect(
        str(folder / ("staging.duckdb" if step == step_name(pair, 0, 1) else f"staging.{step}.duckdb"))
        if any("staged" in stages for stages in selected.values())
        else ":memory:"
    )
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
            wall = time.time()
            parts = chunk_count(snapshot.sizes.get(name, 0), settings.chunk_bytes, settings.workers)
            exported, ranges = export(mysql, pair.source_database, plan, csv_path, parts)
            if ranges:
                manifest.record(name, key_ranges=[r.describe() for r in ranges])
            manifest.record(
                name,
                rows=exported.rows,
                file=str(csv_path.relative_to(folder)),
                bytes=exported.bytes,
                sha256=exported.sha256,
                longest_record=exported.longest_record,
            )
            manifest.span(name, "export", wall)
            results.append(
                dg.MaterializeResult(
                    asset_key=assets[name].keys["csv"],
                    metadata={
                        "rows": exported.rows,
                        "bytes": exported.bytes,
                        "sha256": exported.sha256,
                        "path": dg.MetadataValue.path(str(csv_path)),
                        "seconds": round(time.time() - wall, 3),
                    },
                )
            )
        if "staged" in stages:
            source_csv = csv_path if csv_path.exists() else latest_file(settings, pair, f"csv/{name}.csv", folder)
            if source_csv is None:
                raise FileNotFoundError(
                    f"{pair.name}.{name}: no CSV file to stage; materialize {assets[name].keys['csv'].to_user_string()} first"
                )
            wall = time.time()
            longest = manifest.tables[name].get("longest_record") if source_csv == csv_path else None
            staged = stage_table(
                duck.cursor(), plan, source_csv, staged_path, longest or longest_record(source_csv, name)
            )
            manifest.record(name, staged_file=str(staged_path.relative_to(folder)), staged_rows=staged.rows)
            manifest.span(name, "stage", wall)
            results.append(
                dg.MaterializeResult(
                    asset_key=assets[name].keys["staged"],
                    metadata={
                        "rows": staged.rows,
                        "path": dg.MetadataValue.path(str(staged_path)),
                        "duckdb_table": staged.staged_table,
                        "from": dg.MetadataValue.path(str(source_csv)),
                        "casts": dg.MetadataValue.json({c.name: c.describe() for c in plan.columns}),
                        "seconds": round(time.time() - wall, 3),
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
            wall = time.time()
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
            manifest.span(name, "load", wall)
            results.append(
                dg.MaterializeResult(
                    asset_key=assets[name].keys["postgres"],
                    metadata={
                        "rows": loaded.rows,
                        "outcome": loaded.outcome,
                        "sequences": dg.MetadataValue.json(loaded.sequences),
                        "target": f"{pair.target_database}.{name}",
                        "seconds": round(time.time() - wall, 3),
                    },
                )
            )
        return results

    # Dagster takes a multi-asset's results in topological order, and a table's checks need its
    # parents loaded: CSV and staged results go out when ready; each loaded table is reported,
    # with its checks, once every load of the run is done, parents first.
    loaded: dict[str, dg.MaterializeResult] = {}
    failure: BaseException | None = None
    try:
        with ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix=f"{pair.name}-table") as pool:
            pending: set[Future[list[dg.MaterializeResult]]] = {pool.submit(move, name) for name in order}
            while pending and failure is None:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    if (failure := future.exception()) is not None:
                        for other in pending:
                            other.cancel()
                        break
                    for result in future.result():
                        assert result.asset_key is not None  # every result here names its asset
                        name, stage = by_key[result.asset_key]
                        if stage == "postgres":
                            loaded[name] = result
                        else:
                            yield result
            if failure is None:
                evaluated = run_checks(pool, context, pair, plans, assets, lineage, mysql, postgres, manifest)
                for name in [t for t in lineage.order if t in loaded or t in evaluated]:
                    if name in loaded:
                        yield loaded[name]
                    yield from evaluated.get(name, [])
    finally:
        duck.close()
        manifest.finished_at = now()
        manifest.outcome = "failed" if failure else "succeeded"
        manifest.error = str(failure) if failure else None
        manifest.write(folder / MANIFEST)
    if failure is not None:
        context.log.error(f"manifest: {folder / MANIFEST}")
        raise failure


def run_checks(
    pool: ThreadPoolExecutor,
    context: dg.AssetExecutionContext,
    pair: DatabasePair,
    plans: dict[str, TablePlan],
    assets: dict[str, TableAssets],
    lineage: LoadOrder,
    mysql: MySQLResource,
    postgres: PostgresResource,
    manifest: Manifest,
) -> dict[str, list[dg.AssetCheckResult]]:
    """The selected table checks, tables in parallel; recorded in the manifest for the report."""
    wanted: dict[str, list[str]] = {}
    by_key = {a.keys["postgres"]: name for name, a in assets.items()}
    for check in context.selected_asset_check_keys:
        wanted.setdefault(by_key[check.asset_key], []).append(check.name)

    def evaluate(name: str) -> list[dg.AssetCheckResult]:
        ctx = TableCheckContext(
            plans[name],
            pair.source_database,
            pair.target_database,
            mysql,
            postgres,
            assets[name].keys["postgres"],
            lineage,
        )
        wall = time.time()
        checks = table_checks_for(plans[name])
        results = [
            run_check(checks[check][0], ctx, ctx.asset_key, check, checks[check][1]) for check in sorted(wanted[name])
        ]
        manifest.span(name, "checks", wall)
        manifest.record(
            name,
            checks={r.check_name: {"passed": r.passed, "severity": r.severity.value} for r in results if r.check_name},
        )
        return results

    futures = {name: pool.submit(evaluate, name) for name in wanted}
    return {name: future.result() for name, future in futures.items()}
