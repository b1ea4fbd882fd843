"""Schema first (seed phase 1), and the application's later migrations after the load.

The job `prepare_schema` (before `refresh_catalog`; an op per database): the target database made if
missing (when the role may), refused when it already holds application data (rows in a critical
table) unless MIGRATION_REPLACE_TARGET=yes (its `public` schema is then dropped and made again),
the configured step applied (the application's own migration command, e.g. Alkemio's TypeORM CLI
or `kratos migrate sql -e --yes`, or a SQL file), then proved: the ledger at the migration the
configuration pins, and the schema contract whole.

`DB/later_migrations` (after `DB/verified`, before the report and the cut-over): the
application's migrations after the baseline (json -> jsonb, timestamp -> timestamptz, dropped
columns), then the data verified against MySQL again, with the live schema: every table's rows
counted on both sides and against the load, and every table the contract still plans compared
by content fingerprint under the cast table's rules for the new types. What the later
migrations changed in the contract (a dropped column, say) is listed, not refused. Its check
`content_after_later_migrations` is an ERROR check: the cut-over waits for it.

A command gets the target in its environment, as the applications read it (DATABASE_TYPE,
DATABASE_HOST, DATABASE_PORT, DATABASE_USERNAME, DATABASE_PASSWORD, DATABASE_NAME, and Kratos's
DSN): never on its command line.
"""

# No `from __future__ import annotations`: Dagster reads the context and resource annotations.
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import psycopg
from psycopg import sql

from alkemio_assets.catalog.contract import plan_database, plan_tables
from alkemio_assets.catalog.lineage import load_order
from alkemio_assets.catalog.live import live_catalogs
from alkemio_assets.catalog.source import Catalog
from alkemio_assets.catalog.target import TargetCatalog
from alkemio_assets.catalog.versions import read_target
from alkemio_assets.core.settings import REPO_ROOT, DatabasePair, SchemaStep, Settings
from alkemio_assets.core.sql import first, mysql_ident
from alkemio_assets.operations.preflight import extra_database
from alkemio_assets.operations.report import LATER_RECORD
from alkemio_assets.operations.rollback import exported_run
from alkemio_assets.operations.verified import verified_key
from alkemio_assets.stages.manifest import MANIFEST
from alkemio_assets.stages.run_log import record, run_log_path
from checks.table_checks import TableCheckContext, content_fingerprint
from resources import MySQLResource, PostgresResource

SHOWN = 400  # characters of a failed command's output in the error


class SchemaError(RuntimeError):
    """A schema step that failed or left the target other than the configuration fits."""


def later_key(pair: DatabasePair) -> dg.AssetKey:
    return dg.AssetKey([pair.name, "later_migrations"])


def target_environment(postgres: PostgresResource, database: str) -> dict[str, str]:
    """The environment a migration command runs in: the target as the applications read it."""
    credentials = f"{quote(postgres.user, safe='')}:{quote(postgres.password, safe='')}"
    return {
        **os.environ,
        "DATABASE_TYPE": "postgres",
        "DATABASE_HOST": postgres.host,
        "DATABASE_PORT": str(postgres.port),
        "DATABASE_USERNAME": postgres.user,
        "DATABASE_PASSWORD": postgres.password,
        "DATABASE_NAME": database,
        "DSN": f"postgres://{credentials}@{postgres.host}:{postgres.port}/{database}?sslmode=prefer",
    }


def apply_step(step: SchemaStep, postgres: PostgresResource, database: str, what: str) -> None:
    """Run the command or apply the file on `database`; SchemaError with its own words if it fails."""
    if step.file is not None:
        try:
            postgres.execute_script(database, step.file.read_text(encoding="utf-8"))
        except (OSError, psycopg.Error) as exc:
            raise SchemaError(f"{what}: {step.file} failed on PostgreSQL {database}: {exc}") from exc
        return
    try:
        done = subprocess.run(
            step.command,
            cwd=step.cwd or REPO_ROOT,
            env=target_environment(postgres, database),
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise SchemaError(f"{what}: {step.describe()} could not start: {exc}") from exc
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip())[-SHOWN:]
        if postgres.password:
            said = said.replace(postgres.password, "***")
        raise SchemaError(f"{what}: {step.describe()} exited with {done.returncode} on PostgreSQL {database}: {said}")


def _exists(conn: Any, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (f'public."{table}"',)).fetchone()[0] is not None


def application_rows(postgres: PostgresResource, pair: DatabasePair) -> dict[str, int]:
    """Rows in the pair's critical tables on the target: application data no baseline writes."""
    found = {}
    with postgres.connect(pair.target_database) as conn:
        for table in pair.critical_tables:
            if _exists(conn, table) and (
                n := first(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))))
            ):
                found[table] = n
    return found


def target_version(postgres: PostgresResource, pair: DatabasePair) -> str | None:
    """The newest migration in the target's ledger (None: no ledger, or none pinned)."""
    if pair.versions is None:
        return None
    with postgres.connect(pair.target_database) as conn:
        if not _exists(conn, pair.versions.ledger):
            return None
        return read_target(conn, pair.versions.ledger, pair.versions.kind)[0]


def prepare(pair: DatabasePair, settings: Settings, mysql: MySQLResource, postgres: PostgresResource) -> dict[str, Any]:
    """Make the empty target schema with the configured step and prove it; what happened."""
    if pair.schema is None:
        raise SchemaError(
            f"{pair.name}: no schema step: set {pair.name.upper()}_SCHEMA_COMMAND (the application's migrations) or "
            f"{pair.name.upper()}_SCHEMA_FILE, or databases.{pair.name}.schema in migration.toml"
        )
    database = pair.target_database
    made = extra_database(postgres, database)
    if made.blocks:
        raise SchemaError(f"{pair.name}: {made.message}")
    replaced: dict[str, int] = {}
    if rows := application_rows(postgres, pair):
        held = ", ".join(f"{t}: {n} rows" for t, n in rows.items())
        if not settings.replace_target:
            raise SchemaError(
                f"{pair.name}: PostgreSQL {database} already holds application data ({held}): nothing was changed. "
                "Set MIGRATION_REPLACE_TARGET=yes to replace it (its public schema is dropped and made again)"
            )
        with postgres.connect(database) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        replaced = rows
    before = target_version(postgres, pair)
    pin = pair.versions.target if pair.versions else None
    if pin is not None and before == pin:
        how = f"already at {pin}: {pair.schema.describe()} not run again"
    else:
        apply_step(pair.schema, postgres, database, f"{pair.name} schema")
        how = f"{pair.schema.describe()} applied"
    after = target_version(postgres, pair)
    if pin is not None and after != pin:
        raise SchemaError(
            f"{pair.name}: {pair.schema.describe()} left PostgreSQL {database} at migration {after!r}; the "
            f"configuration fits {pin!r} (the later migrations run after the load)"
        )
    plans = plan_database(pair, *live_catalogs(pair, mysql, postgres))  # the contract, whole
    return {
        "before": before,
        "after": after,
        "how": how,
        "replaced": replaced,
        "tables": len(plans),
        "database": made.message,
    }


def prepare_schema_job(settings: Settings) -> dg.JobDefinition:
    """One op per database pair; a job, not an asset, so that "Materialize all" (a rehearsal run
    again over loaded data) never reaches for the schema."""

    def prepare_op(pair: DatabasePair) -> dg.OpDefinition:
        @dg.op(
            name=f"{pair.name}_target_schema",
            description=f"Schema first: PostgreSQL {pair.target_database} made with the application's own "
            "migrations (or a SQL file), refused over application data, proved by its ledger and the schema contract.",
        )
        def target_schema(context: dg.OpExecutionContext, mysql: MySQLResource, postgres: PostgresResource):
            """Apply the configured schema step to the empty target and prove it."""
            note = partial(
                record,
                run_log_path(settings),
                run_id=context.run.run_id,
                database=pair.name,
                action="schema",
                say=context.log.error,
            )
            try:
                done = prepare(pair, settings, mysql, postgres)
            except (SchemaError, ValueError) as exc:
                note("failed", f"schema: {exc}")
                raise dg.Failure(str(exc)) from exc
            message = f"schema: {pair.name}: {done['how']}; ledger {done['before']!r} -> {done['after']!r}"
            note("completed", message)
            context.log.info(message)
            return dg.Output(
                None,
                metadata={
                    "step": done["how"],
                    "version_before": str(done["before"]),
                    "version_after": str(done["after"]),
                    "tables_in_contract": done["tables"],
                    "replaced": dg.MetadataValue.json(done["replaced"]),
                },
            )

        return target_schema

    ops = [prepare_op(pair) for pair in settings.pairs]

    @dg.job(
        name="prepare_schema",
        description="Schema first: each target made with its application's own migrations, and proved.",
    )
    def prepare_schema() -> None:
        for op in ops:
            op()

    return prepare_schema


def _count(conn: Any, table: str) -> int:
    return first(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))))


def without_dropped(source: Catalog, target: TargetCatalog) -> tuple[Catalog, list[str]]:
    """The source catalog less the columns the later migrations dropped on the target (and the
    indexes and foreign keys on them), so that the rest of each table is still compared; and
    those columns, named."""
    dropped, tables = [], []
    for table in source.tables:
        there = target.table(table.name)
        if there is None:
            tables.append(table)
            continue
        gone = {c.name for c in table.columns if there.column(c.name) is None}
        dropped += [f"{table.name}.{name}: dropped by the later migrations" for name in sorted(gone)]
        tables.append(
            replace(
                table,
                columns=tuple(c for c in table.columns if c.name not in gone),
                indexes=tuple(i for i in table.indexes if not gone & set(i.columns)),
                foreign_keys=tuple(f for f in table.foreign_keys if not gone & set(f.columns)),
            )
        )
    return replace(source, tables=tuple(tables)), dropped


def reverify(
    pair: DatabasePair, settings: Settings, mysql: MySQLResource, postgres: PostgresResource, folder: Path
) -> tuple[list[str], list[str], int]:
    """After the later migrations: every loaded table's rows on both sides and against the load,
    and the content of every table the contract still plans. Returns the problems, what the later
    migrations changed in the contract, and the tables compared by content."""
    manifest = json.loads((folder / pair.name / MANIFEST).read_text(encoding="utf-8"))
    loaded = {name: t["loaded_rows"] for name, t in manifest["tables"].items() if "loaded_rows" in t}
    source, target = live_catalogs(pair, mysql, postgres)
    kept, dropped = without_dropped(source, target)
    plans, gaps = plan_tables(pair, kept, target, only=set(loaded))
    changed = dropped + gaps
    problems = []
    with mysql.connect(pair.source_database) as my, my.cursor() as cur, postgres.connect(pair.target_database) as pg:
        for name, rows in sorted(loaded.items()):
            cur.execute(f"SELECT COUNT(*) AS n FROM {mysql_ident(name)}")
            on_mysql, on_postgres = int(cur.fetchone()["n"]), _count(pg, name)
            if not on_mysql == on_postgres == rows:
                problems.append(
                    f"{pair.name}.{name}: {on_postgres} rows on PostgreSQL after the later migrations, "
                    f"{on_mysql} on MySQL, {rows} loaded"
                )
    lineage = load_order([t for t in source.tables if t.name not in pair.exclude])

    def compare(name: str) -> str | None:
        ctx = TableCheckContext(
            plans[name], pair.source_database, pair.target_database, mysql, postgres, later_key(pair), lineage
        )
        result = content_fingerprint(ctx)
        if result.passed:
            return None
        keys = result.metadata.get("differing_keys")
        return f"{pair.name}.{name}: content differs from MySQL after the later migrations; keys {keys.value if keys else '?'}"

    with ThreadPoolExecutor(settings.workers) as pool:
        problems += [p for p in pool.map(compare, sorted(plans)) if p]
    return problems, changed, len(plans)


def later_migrations_asset(pair: DatabasePair, settings: Settings) -> dg.AssetsDefinition:
    key = later_key(pair)
    assert pair.later is not None

    @dg.asset(
        key=key,
        deps=[verified_key(pair)],
        group_name=pair.group("verify"),
        kinds={"postgres"},
        check_specs=[
            dg.AssetCheckSpec(
                "content_after_later_migrations",
                asset=key,
                blocking=True,
                description="After the later migrations: every table's rows and content equal to MySQL's again.",
            )
        ],
        description=f"The application's migrations after the baseline on {pair.target_database}, then the data "
        "verified against MySQL again with the new types.",
    )
    def later_migrations(context: dg.AssetExecutionContext, mysql: MySQLResource, postgres: PostgresResource):
        """Run the later migrations, then verify rows and content against MySQL again."""
        assert pair.later is not None
        folder = settings.workdir / "runs" / context.run.run_id
        if not (folder / pair.name / MANIFEST).exists():  # run alone: against the newest load
            folder = exported_run(settings, None)
        note = partial(  # under the migration whose data it changes
            record,
            run_log_path(settings),
            run_id=folder.name,
            database=pair.name,
            action="schema",
            say=context.log.error,
        )
        before = target_version(postgres, pair)
        try:
            apply_step(pair.later, postgres, pair.target_database, f"{pair.name} later migrations")
        except SchemaError as exc:
            note("failed", f"later migrations: {exc}")
            raise dg.Failure(str(exc)) from exc
        after = target_version(postgres, pair)
        problems, changed, compared = reverify(pair, settings, mysql, postgres, folder)
        (folder / pair.name / LATER_RECORD).write_text(
            json.dumps({"before": before, "after": after, "changed": changed, "problems": problems}, indent=1) + "\n"
        )
        outcome = "; ".join(problems) if problems else f"{compared} tables equal to MySQL again"
        note(
            "failed" if problems else "completed",
            f"later migrations: {pair.name}: ledger {before!r} -> {after!r}; {outcome}",
        )
        yield dg.MaterializeResult(
            metadata={
                "version_before": str(before),
                "version_after": str(after),
                "changed_by_later_migrations": dg.MetadataValue.md("\n".join(f"- {c}" for c in changed) or "nothing"),
            }
        )
        yield dg.AssetCheckResult(
            check_name="content_after_later_migrations",
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "tables_compared_by_content": compared,
                "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            },
        )

    return later_migrations
