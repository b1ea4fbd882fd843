"""The checklist items that hold per database (or across the two), as asset checks on `DB/verified`,
and the schema contract on `DB/source_catalog`."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace

import dagster as dg
from psycopg import sql

from alkemio_assets.catalog.contract import plan_tables
from alkemio_assets.catalog.source import Catalog
from alkemio_assets.catalog.target import TargetCatalog, TargetForeignKey, read_pg_catalog
from alkemio_assets.catalog.versions import pair_versions
from alkemio_assets.catalog.violations import null_violations, unique_violations
from alkemio_assets.core.settings import DatabasePair, Settings
from alkemio_assets.core.sql import first, mysql_ident
from checks import check_result, evidence, suggested_sql
from checks.table_checks import orphan_evidence, orphans
from resources import MySQLResource, PostgresResource

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
BIG_TABLES = 5


@dataclass(frozen=True)
class DatabaseCheckContext:
    pair: DatabasePair
    settings: Settings
    mysql: MySQLResource
    postgres: PostgresResource
    asset_key: dg.AssetKey
    # foreign keys whose parent may load after their table (graph.deferred_foreign_keys)
    deferred: Mapping[str, tuple[TargetForeignKey, ...]] = field(default_factory=dict)

    def target_catalog(self) -> TargetCatalog:
        with self.postgres.connect(self.pair.target_database) as conn:
            return read_pg_catalog(conn, self.pair.target_database)


def _result(
    ctx: DatabaseCheckContext, name: str, passed: bool, severity: dg.AssetCheckSeverity, **metadata
) -> dg.AssetCheckResult:
    return check_result(ctx.asset_key, name, passed, severity, **metadata)


def _count(ctx: DatabaseCheckContext, table: str) -> int:
    with ctx.postgres.connect(ctx.pair.target_database) as conn:
        return first(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))))


def critical_tables(ctx: DatabaseCheckContext) -> dg.AssetCheckResult:
    """The seed's critical tables (migration.toml critical_tables) exist and have rows."""
    target = ctx.target_catalog()
    rows = {t: (_count(ctx, t) if target.table(t) else None) for t in ctx.pair.critical_tables}
    failing = sorted(t for t, n in rows.items() if not n)
    return _result(
        ctx,
        "critical_tables",
        not failing,
        ERROR,
        rows=evidence(({"table": t, "rows": n} for t, n in rows.items()), table="text", rows="bigint"),
        missing_or_empty=evidence(({"table": t} for t in failing), table="text"),
        seed_names=evidence(
            ({"seed": seed, "here": here} for seed, here in ctx.pair.seed_names().items()), seed="text", here="text"
        ),
    )


def encoding(ctx: DatabaseCheckContext) -> dg.AssetCheckResult:
    """UTF-8 everywhere: the target database stores UTF8 (so all its text is valid UTF-8) and
    both connections speak UTF-8."""
    with ctx.postgres.connect(ctx.pair.target_database) as conn:
        server = first(conn.execute("SHOW server_encoding"))
        client = first(conn.execute("SHOW client_encoding"))
    with ctx.mysql.connect(ctx.pair.source_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@character_set_client AS c, @@character_set_results AS r, @@character_set_connection AS n")
        mysql = cur.fetchone()
    passed = server == "UTF8" and client == "UTF8" and all(v == "utf8mb4" for v in mysql.values())
    return _result(
        ctx,
        "encoding",
        passed,
        ERROR,
        postgres_server_encoding=server,
        postgres_client_encoding=client,
        mysql_connection=evidence(({"setting": k, "value": v} for k, v in mysql.items()), setting="text", value="text"),
    )


def kratos_identities(ctx: DatabaseCheckContext) -> dg.AssetCheckResult:
    """Identities and credentials as many as on MySQL; identities without credentials listed
    (the seed expects none; an installation may have some)."""
    counts = {}
    with ctx.mysql.connect(ctx.pair.source_database) as conn, conn.cursor() as cur:
        for table in ("identities", "identity_credentials"):
            cur.execute(f"SELECT COUNT(*) AS n FROM {mysql_ident(table)}")
            counts[table] = {"mysql": int(cur.fetchone()["n"]), "postgres": _count(ctx, table)}
    with ctx.postgres.connect(ctx.pair.target_database) as conn:
        bare = [
            r[0]
            for r in conn.execute(
                "SELECT i.id::text FROM identities i WHERE NOT EXISTS (SELECT 1 FROM identity_credentials c WHERE c.identity_id = i.id) ORDER BY 1"
            )
        ]
    equal = all(c["mysql"] == c["postgres"] for c in counts.values())
    return _result(
        ctx,
        "kratos_identities",
        equal and not bare,
        WARN,
        counts=evidence(({"table": t} | c for t, c in counts.items()), table="text", mysql="bigint", postgres="bigint"),
        identities_without_credentials=len(bare),
        sample=evidence(({"identity": i} for i in bare[:20]), identity="text"),
    )


def kratos_network(ctx: DatabaseCheckContext) -> dg.AssetCheckResult:
    """Exactly one networks row, and every nid names it: identities under another nid cannot log
    in (a Kratos started against the empty target makes a network of its own)."""
    with ctx.postgres.connect(ctx.pair.target_database) as conn:
        networks = [r[0] for r in conn.execute("SELECT id::text FROM networks ORDER BY 1")]
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'nid' ORDER BY 1"
            )
        ]
        foreign = {}
        for table in tables:
            n = first(
                conn.execute(
                    sql.SQL(
                        "SELECT count(*) FROM {} WHERE nid IS DISTINCT FROM (SELECT id FROM networks LIMIT 1)"
                    ).format(sql.Identifier(table))
                )
            )
            if n:
                foreign[table] = n
    passed = len(networks) == 1 and not foreign
    return _result(
        ctx,
        "kratos_network",
        passed,
        ERROR,
        networks=evidence(({"network": n} for n in networks), network="text"),
        rows_under_other_nid=evidence(
            ({"table": t, "rows": n} for t, n in foreign.items()), table="text", rows="bigint"
        ),
    )


def cross_database_references(ctx: DatabaseCheckContext) -> dg.AssetCheckResult:
    """References between databases that no foreign key can hold (Alkemio user.authId ->
    Kratos identities.id), from migration.toml: every value that is set names a row."""
    found = {}
    for ref in ctx.pair.references:
        other = ctx.settings.pair(ref.database).target_database
        table, column = ref.column.split(".")
        ref_table, ref_column = ref.names.split(".")
        with ctx.postgres.connect(ctx.pair.target_database) as conn:
            values = {
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT DISTINCT {}::text FROM {} WHERE {} IS NOT NULL").format(
                        sql.Identifier(column), sql.Identifier(table), sql.Identifier(column)
                    )
                )
            }
        with ctx.postgres.connect(other) as conn:
            known = {
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT {}::text FROM {}").format(sql.Identifier(ref_column), sql.Identifier(ref_table))
                )
            }
        dangling = sorted(values - known)
        found[f"{ref.column} -> {ref.database}.{ref.names}"] = {
            "set": len(values),
            "dangling": len(dangling),
            "sample": dangling[:10],
        }
    passed = all(v["dangling"] == 0 for v in found.values())
    references = evidence(
        ({"reference": r} | v for r, v in found.items()),
        reference="text",
        set="bigint",
        dangling="bigint",
        sample="text",
    )
    return _result(ctx, "cross_database_references", passed, ERROR, references=references)


def deferred_foreign_keys(ctx: DatabaseCheckContext) -> dg.AssetCheckResult:
    """The foreign keys no table's own check can prove (its parent may load after it: the edge
    that breaks a cycle), once every table is loaded: zero orphan rows."""
    counts: dict[str, int] = {}
    samples: dict[str, list[str]] = {}
    catalog = ctx.target_catalog()
    with ctx.postgres.connect(ctx.pair.target_database) as conn:
        for table, fks in sorted(ctx.deferred.items()):
            target = catalog.table(table)
            assert target is not None, f"{table} is in the deferred foreign keys, so on the target"
            found, shown = orphans(conn, target, fks)
            counts.update({f"{table}.{name}": n for name, n in found.items()})
            samples.update({f"{table}.{name}": keys for name, keys in shown.items()})
    return _result(ctx, "deferred_foreign_keys", not any(counts.values()), ERROR, **orphan_evidence(counts, samples))


def query_plans(ctx: DatabaseCheckContext) -> dg.AssetCheckResult:
    """The seed's EXPLAIN: configured lookups (user by email) and the foreign-key columns of the
    largest tables can use an index (sequential scans disabled to ask the question)."""
    target = ctx.target_catalog()
    with ctx.postgres.connect(ctx.pair.target_database) as conn:
        sizes = dict(conn.execute("SELECT relname, reltuples FROM pg_class WHERE relkind = 'r'").fetchall())
        big = sorted((t for t in target.tables), key=lambda t: -sizes.get(t.name, 0))[:BIG_TABLES]
        probes = [tuple(p.split(".")) for p in ctx.pair.lookups] + [
            (t.name, fk.columns[0]) for t in big for fk in t.foreign_keys
        ]
        plans, unindexed = {}, []
        conn.execute("SET enable_seqscan = off")
        for table, column in probes:
            if target.table(table) is None:
                plans[f"{table}.{column}"] = "no such table"
                continue
            # a value from the table, as an InitPlan parameter: the planner cannot fold it away
            plan = first(
                conn.execute(
                    sql.SQL("EXPLAIN (FORMAT JSON) SELECT * FROM {t} WHERE {c} = (SELECT {c} FROM {t} LIMIT 1)").format(
                        t=sql.Identifier(table), c=sql.Identifier(column)
                    )
                )
            )
            node = plan[0]["Plan"]["Node Type"] if isinstance(plan, list) else json.loads(plan)[0]["Plan"]["Node Type"]
            plans[f"{table}.{column}"] = node
            if "Index" not in node and "Bitmap" not in node:
                unindexed.append(f'CREATE INDEX ON "{table}" ("{column}");')
    return _result(
        ctx,
        "query_plans",
        not unindexed,
        WARN,
        plans=evidence(({"lookup": k, "plan": v} for k, v in plans.items()), lookup="text", plan="text"),
        **suggested_sql(unindexed),
    )


PARITY_RUNS = 7  # timed runs per query and side, after one to warm the caches
SLOWER = 1.2  # PostgreSQL is slower when its median passes MySQL's by this factor ...
NOISE_MS = 1.0  # ... and by more than this many milliseconds


@dataclass(frozen=True)
class Timing:
    """One query's medians on both sides and the rows each returned."""

    name: str
    mysql_ms: float
    postgres_ms: float
    mysql_rows: int
    postgres_rows: int
    plan: str = ""  # PostgreSQL's plan when it is slower

    @property
    def slower(self) -> bool:
        return self.postgres_ms > self.mysql_ms * SLOWER and self.postgres_ms - self.mysql_ms > NOISE_MS

    @property
    def verdict(self) -> str:
        if self.mysql_rows != self.postgres_rows:
            return "different answer"  # a read the application relies on returns other rows
        return "slower on PostgreSQL" if self.slower else "as fast or faster"


def _median_ms(run: Callable[[], int]) -> tuple[float, int]:
    rows = run()  # warm-up
    times = []
    for _ in range(PARITY_RUNS):
        started = time.perf_counter()
        rows = run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), rows


def side_by_side(timings: list[Timing]) -> str:
    rows = [
        f"| {t.name} | {t.mysql_ms:.2f} | {t.postgres_ms:.2f} | {t.mysql_rows} / {t.postgres_rows} | {t.verdict} |"
        for t in timings
    ]
    return "\n".join(["| query | MySQL ms | PostgreSQL ms | rows | |", "|---|---|---|---|---|", *rows])


def query_parity(ctx: DatabaseCheckContext) -> dg.AssetCheckResult:
    """The seed's "performance equal to or better than MySQL": each configured read timed on both
    sides (median of PARITY_RUNS); a slower one named with PostgreSQL's plan and the index
    suggestions of the checks query_plans and indexes."""
    timings = []
    with (
        ctx.mysql.connect(ctx.pair.source_database) as my,
        my.cursor() as cur,
        ctx.postgres.connect(ctx.pair.target_database) as pg,
    ):
        for query in ctx.pair.queries:
            cur.execute(query.sample)
            found = cur.fetchone()
            if found is None:
                continue  # nothing to look up: the sample found no row
            value = next(iter(found.values()))

            def on_mysql(q: str = query.mysql, v: object = value) -> int:
                cur.execute(q, (v,))
                return len(cur.fetchall())

            def on_postgres(q: str = query.postgres, v: object = value) -> int:
                return len(pg.execute(q, (v,)).fetchall())  # type: ignore[call-overload]

            (mysql_ms, mysql_rows), (postgres_ms, postgres_rows) = _median_ms(on_mysql), _median_ms(on_postgres)
            timing = Timing(query.name, mysql_ms, postgres_ms, mysql_rows, postgres_rows)
            if timing.slower:
                plan = pg.execute(f"EXPLAIN {query.postgres}", (value,)).fetchall()  # type: ignore[call-overload]
                timing = replace(timing, plan="\n".join(row[0] for row in plan))
            timings.append(timing)
    slow = [t for t in timings if t.slower]
    return _result(
        ctx,
        "query_parity",
        all(t.verdict == "as fast or faster" for t in timings),
        WARN,
        side_by_side=dg.MetadataValue.md(side_by_side(timings)),
        slower=dg.MetadataValue.md(
            "\n\n".join(
                f"**{t.name}**: {t.postgres_ms:.2f} ms against {t.mysql_ms:.2f} ms on MySQL. PostgreSQL's plan:\n\n"
                + "\n".join(f"    {line}" for line in t.plan.splitlines())
                for t in slow
            )
            + (
                "\n\nThe CREATE INDEX statements of the checks query_plans and indexes are the first remedy."
                if slow
                else ""
            )
            or "none"
        ),
    )


VERSION_COLUMNS = {"source": "text", "source_count": "integer", "target": "text", "target_count": "integer"}


def schema_contract(
    pair: DatabasePair,
    source: Catalog,
    target: TargetCatalog,
    mysql: MySQLResource,
    postgres: PostgresResource,
    asset_key: dg.AssetKey,
) -> dg.AssetCheckResult:
    """Before any data moves: both sides hold the application migrations the configuration fits,
    every source table and column has its target, every type pair a cast rule, every target
    NOT NULL column without default a source, no column that is nullable on MySQL but NOT NULL
    on PostgreSQL holds NULLs, and no unique key only the target has meets duplicates."""
    plans, problems = plan_tables(pair, source, target)
    versions, wrong = pair_versions(pair, mysql, postgres)
    planned = list(plans.values())
    problems = wrong + problems + null_violations(mysql, pair, planned) + unique_violations(mysql, pair, planned)
    metadata = {} if versions is None else {"versions": evidence([asdict(versions)], **VERSION_COLUMNS)}
    return check_result(
        asset_key,
        "schema_contract",
        not problems,
        ERROR,
        tables=len(plans),
        problems=evidence(({"problem": p} for p in problems), problem="text"),
        **metadata,
    )


DATABASE_CHECKS: dict[str, tuple[Callable[[DatabaseCheckContext], dg.AssetCheckResult], dg.AssetCheckSeverity, str]] = {
    "critical_tables": (critical_tables, ERROR, "The configured critical tables exist and have rows."),
    "encoding": (encoding, ERROR, "UTF8 target and UTF-8 connections on both sides."),
    "query_plans": (query_plans, WARN, "Configured lookups and big tables' FK columns can use an index."),
}
# Checks that apply only where the schema has what they look at.
KRATOS_CHECKS = {
    "kratos_identities": (
        kratos_identities,
        WARN,
        "Identities and credentials as on MySQL; identities without credentials listed.",
    ),
    "kratos_network": (kratos_network, ERROR, "Exactly one networks row and every nid names it."),
}
DEFERRED_CHECK = {
    "deferred_foreign_keys": (
        deferred_foreign_keys,
        ERROR,
        "No orphan row for the foreign keys whose parent loads after their table (cycle edges).",
    ),
}
PARITY_CHECK = {
    "query_parity": (query_parity, WARN, "Representative reads as fast on PostgreSQL as on MySQL (median of runs)."),
}
REFERENCE_CHECK = {
    "cross_database_references": (cross_database_references, ERROR, "References into another database resolve."),
}


def checks_for(
    pair: DatabasePair, tables: set[str], deferred: bool = False
) -> dict[str, tuple[Callable[[DatabaseCheckContext], dg.AssetCheckResult], dg.AssetCheckSeverity, str]]:
    chosen = dict(DATABASE_CHECKS)
    if deferred:
        chosen.update(DEFERRED_CHECK)
    if {"identities", "identity_credentials", "networks"} <= tables:
        chosen.update(KRATOS_CHECKS)
    if pair.references:
        chosen.update(REFERENCE_CHECK)
    if pair.queries:
        chosen.update(PARITY_CHECK)
    return chosen
