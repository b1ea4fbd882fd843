"""The checklist items that hold per table, as asset checks on `DB/postgres/T`.

Each function takes the table's context and returns an AssetCheckResult whose metadata is the
evidence an operator needs without a SQL console. ERROR checks block the report and cut-over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import dagster as dg
from psycopg import sql

from alkemio_assets.catalog.contract import ColumnPlan, TablePlan, select_list
from alkemio_assets.catalog.lineage import LoadOrder
from alkemio_assets.catalog.target import TargetForeignKey, TargetTable
from alkemio_assets.catalog.violations import target_orphans
from alkemio_assets.core.fetch import DEFAULT, Fetch
from alkemio_assets.core.sql import first, mysql_ident
from checks import check_result, evidence, suggested_sql
from checks.documents import compressed_columns, mysql_documents, postgres_documents
from checks.fingerprint import (
    BUCKETS,
    Fingerprint,
    both_in_processes,
    canonical,
    differing_keys,
    in_sql,
    mysql_fingerprint,
    mysql_row_digests,
    postgres_fingerprint,
    postgres_row_digests,
    rows_in,
    source_rows,
    target_rows,
    target_select,
    text_columns,
)
from resources import MySQLResource, PostgresResource

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
SAMPLE_ROWS = 3
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class TableCheckContext:
    """One evaluation of a table's checks: what several of them need from a whole-table scan (the
    fingerprints) is read once, by the first that asks; a later evaluation takes a new context."""

    plan: TablePlan
    source_database: str
    target_database: str
    mysql: MySQLResource
    postgres: PostgresResource
    asset_key: dg.AssetKey
    lineage: LoadOrder  # which parents are loaded before the table, in any run
    fetch: Fetch = DEFAULT  # how many of its rows a reader holds at once

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier(self.plan.name)

    @cached_property
    def fingerprints(self) -> tuple[Fingerprint, Fingerprint]:
        """Both sides' fingerprints, read once for the table's checks that use them."""
        return _fingerprints(self)


def _result(
    ctx: TableCheckContext, name: str, passed: bool, severity: dg.AssetCheckSeverity, **metadata
) -> dg.AssetCheckResult:
    return check_result(ctx.asset_key, name, passed, severity, **metadata)


def _mysql_count(ctx: TableCheckContext) -> int:
    with ctx.mysql.connect(ctx.source_database) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) AS n FROM {mysql_ident(ctx.plan.name)}")
        return int(cur.fetchone()["n"])


def row_count(ctx: TableCheckContext) -> dg.AssetCheckResult:
    """Exact COUNT(*) on both sides (the seed's table_rows and n_live_tup are estimates)."""
    source = _mysql_count(ctx)
    with ctx.postgres.connect(ctx.target_database) as conn:
        target = first(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ctx.table)))
    return _result(
        ctx, "row_count", source == target, ERROR, mysql_rows=source, postgres_rows=target, difference=target - source
    )


Rows = Callable[[set[int]], dict[str, str]]  # key -> canonical row (or its digest), in these buckets


def _fingerprints(ctx: TableCheckContext) -> tuple[Fingerprint, Fingerprint]:
    """Hashed by the servers where SQL can write every column's canonical text, else in two
    processes of ours (one per side, at once)."""
    plan, source, target = ctx.plan, ctx.source_database, ctx.target_database
    if in_sql(plan):
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"{plan.name}-fingerprint") as pool:
            left = pool.submit(mysql_fingerprint, ctx.mysql, source, plan)  # both servers at once
            right = pool.submit(postgres_fingerprint, ctx.postgres, target, plan)
            return left.result(), right.result()
    return both_in_processes(ctx.mysql, source, ctx.postgres, target, plan, ctx.fetch)


def _rows_in(ctx: TableCheckContext) -> tuple[Rows, Rows]:
    """The second pass, over the differing buckets only."""
    plan, mysql, postgres, fetch = ctx.plan, ctx.mysql, ctx.postgres, ctx.fetch
    source, target = ctx.source_database, ctx.target_database
    if in_sql(plan):
        return (
            lambda b: mysql_row_digests(mysql, source, plan, b),
            lambda b: postgres_row_digests(postgres, target, plan, b),
        )
    return (
        lambda b: rows_in(source_rows(mysql, source, plan, fetch), b),
        lambda b: rows_in(target_rows(postgres, target, plan, fetch), b),
    )


def content_fingerprint(ctx: TableCheckContext) -> dg.AssetCheckResult:
    """Every row, canonicalised on both sides: an order-independent fingerprint; on a mismatch
    the keys of the differing rows."""
    left, right = ctx.fingerprints
    passed = left.rows == right.rows and left.total == right.total
    metadata: dict = {
        "mysql": left.hex(),
        "postgres": right.hex(),
        "rows_compared": left.rows,
        "hashed_by": "the servers (SQL)" if in_sql(ctx.plan) else "Python, a process per side",
    }
    if not passed:
        buckets = {i for i in range(BUCKETS) if left.buckets[i] != right.buckets[i]}
        source, target = _rows_in(ctx)
        found = differing_keys(source(buckets), target(buckets))
        metadata["differing_keys"] = evidence(({"key": k} for k in found), key="text")
    return _result(ctx, "content_fingerprint", passed, ERROR, **metadata)


def orphans(
    conn: Any, table: TargetTable, fks: Iterable[TargetForeignKey]
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Per foreign key of `table`: rows whose key names no parent row, and up to five of them,
    each named by the child row's key and the parent key it names."""
    found = target_orphans(conn, table, fks)
    return {o.fk.name: o.count for o in found}, {o.fk.name: list(o.samples) for o in found if o.count}


def orphan_evidence(counts: dict[str, int], samples: dict[str, list[str]]) -> dict[str, Any]:
    """A foreign-key check's metadata: keys checked, and a table of the orphans per key with up
    to five of them (the child row's key and the parent key it names)."""
    rows = [{"foreign_key": fk, "orphans": n, "sample": samples.get(fk, [])} for fk, n in counts.items()]
    return {
        "foreign_keys": len(counts),
        "orphans": evidence(rows, foreign_key="text", orphans="integer", sample="text"),
    }


def foreign_keys(ctx: TableCheckContext) -> dg.AssetCheckResult:
    """For every foreign key of the target table whose parent is loaded first: zero orphan rows
    (the load bypassed them). The others wait for the whole database: `deferred_foreign_keys`."""
    now = [fk for fk in ctx.plan.target.foreign_keys if ctx.lineage.loads_first(ctx.plan.name, fk.ref_table)]
    with ctx.postgres.connect(ctx.target_database) as conn:
        counts, samples = orphans(conn, ctx.plan.target, now)
    metadata = orphan_evidence(counts, samples)
    if deferred := sorted(fk.name for fk in ctx.plan.target.foreign_keys if fk not in now):
        metadata["proven_on_verified"] = evidence(({"foreign_key": fk} for fk in deferred), foreign_key="text")
    return _result(ctx, "foreign_keys", not any(counts.values()), ERROR, **metadata)


def keys(ctx: TableCheckContext) -> dg.AssetCheckResult:
    """Every primary key and unique constraint of the source has a target counterpart."""
    target = set(ctx.plan.target.unique_keys)
    missing = [list(k) for k in ctx.plan.source.unique_keys if k not in target]
    return _result(
        ctx,
        "keys",
        not missing,
        ERROR,
        source_unique_keys=len(ctx.plan.source.unique_keys),
        missing=evidence(({"columns": k} for k in missing), columns="text"),
    )


def indexes(ctx: TableCheckContext) -> dg.AssetCheckResult:
    """Non-unique source indexes without a target index on the same leading columns. InnoDB
    indexes every foreign key by itself; PostgreSQL does not, so migrations written for it can
    lack them: named here with the CREATE INDEX to add."""
    covered = ctx.plan.target.indexes
    missing = [
        i.columns
        for i in ctx.plan.source.indexes
        if not i.unique and not any(t[: len(i.columns)] == i.columns for t in covered)
    ]
    statements = [
        sql.SQL("CREATE INDEX ON {} ({});")
        .format(ctx.table, sql.SQL(", ").join(sql.Identifier(c) for c in cols))
        .as_string(None)
        for cols in missing
    ]
    return _result(
        ctx,
        "indexes",
        not missing,
        WARN,
        missing=evidence(
            ({"columns": list(c), "suggested": s} for c, s in zip(missing, statements, strict=True)),
            columns="text",
            suggested="text",
        ),
        **suggested_sql(statements),
    )


def sequence_positions(conn: Any, table: TargetTable) -> dict[str, dict[str, int]]:
    """Per sequence owned by a column of a non-empty table: the column's maximum and the next
    value the sequence gives."""
    found: dict[str, dict[str, int]] = {}
    for column in table.columns:
        if column.sequence is None:
            continue
        top = first(
            conn.execute(
                sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column.name), sql.Identifier(table.name))
            )
        )
        owned = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = %s::regclass",
            (column.sequence,),
        ).fetchone()
        assert owned is not None, column.sequence
        schema, name = owned
        state = conn.execute(
            sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))
        ).fetchone()
        assert state is not None, column.sequence
        last, called = state
        if top is not None:  # an empty table has nothing to be past
            found[column.sequence] = {"max": top, "next": last + 1 if called else last}
    return found


def sequences(ctx: TableCheckContext) -> dg.AssetCheckResult:
    """Every sequence owned by a column is past the column's maximum."""
    with ctx.postgres.connect(ctx.target_database) as conn:
        found = sequence_positions(conn, ctx.plan.target)
    rows = [
        {"sequence": s, "column_max": v["max"], "next_value": v["next"], "behind": v["next"] <= v["max"]}
        for s, v in found.items()
    ]
    return _result(
        ctx,
        "sequences",
        not any(r["behind"] for r in rows),
        ERROR,
        sequences=evidence(rows, sequence="text", column_max="bigint", next_value="bigint", behind="boolean"),
    )


def postgres_replacements(conn: Any, table: sql.Identifier, columns: list[ColumnPlan]) -> dict[str, int]:
    """Per text column: rows holding U+FFFD, all columns counted in one scan of the table."""
    if not columns:
        return {}
    counts = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE strpos({}, %s) > 0)").format(sql.Identifier(c.target.name)) for c in columns
    )
    row = conn.execute(sql.SQL("SELECT {} FROM {}").format(counts, table), [REPLACEMENT] * len(columns)).fetchone()
    return {c.name: int(n) for c, n in zip(columns, row, strict=True)}


def mysql_replacements(conn: Any, table: str, columns: list[ColumnPlan]) -> dict[str, int]:
    """The same on MySQL: one scan for every column."""
    if not columns:
        return {}
    counts = ", ".join(
        f"COALESCE(SUM(LOCATE(%s, {mysql_ident(c.name)}) > 0), 0) AS c{i}" for i, c in enumerate(columns)
    )
    with conn.cursor() as cur:
        cur.execute(f"SELECT {counts} FROM {mysql_ident(table)}", [REPLACEMENT] * len(columns))
        row = cur.fetchone()
    return {c.name: int(row[f"c{i}"]) for i, c in enumerate(columns)}


def samples(ctx: TableCheckContext) -> dg.AssetCheckResult:
    """The seed's named samples as readable evidence: the first rows by key side by side (UUIDs,
    text with its newlines, timestamps to the microsecond, JSON, booleans from 0/1), and text
    that gained U+FFFD replacement characters on the way (counted per text column in the content
    fingerprint's scan where the servers hash the table, else by a scan of each side). Fewer rows
    where rows are long: as many as a batch of the table's rows may hold (MIGRATION_BATCH_MB), at
    least one."""
    plan, limit = ctx.plan, min(SAMPLE_ROWS, ctx.fetch.count)
    key = plan.source.primary_key or tuple(c.name for c in plan.columns)
    converters = [canonical(c) for c in plan.columns]
    mysql_order = ", ".join(mysql_ident(k) for k in key)
    with ctx.mysql.connect(ctx.source_database, raw=True) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {select_list(plan.columns)} FROM {mysql_ident(plan.name)} ORDER BY {mysql_order} LIMIT {limit}"
        )
        left = [
            [None if v is None else f(v) for (f, _), v in zip(converters, row, strict=True)] for row in cur.fetchall()
        ]
    columns = target_select(plan.columns)
    texts = list(text_columns(plan))
    with ctx.postgres.connect(ctx.target_database) as conn:
        rows = conn.execute(
            sql.SQL("SELECT {} FROM {} ORDER BY {} LIMIT %s").format(
                columns, ctx.table, sql.SQL(", ").join(sql.Identifier(k) for k in key)
            ),
            (limit,),
        ).fetchall()
        right = [[None if v is None else f(v) for (_, f), v in zip(converters, row, strict=True)] for row in rows]
    if in_sql(plan):  # counted by the servers in the fingerprint's scan
        replaced_source, replaced_target = (side.replacements for side in ctx.fingerprints)
    else:
        with ctx.postgres.connect(ctx.target_database) as conn:
            replaced_target = postgres_replacements(conn, ctx.table, texts)
        with ctx.mysql.connect(ctx.source_database) as conn:
            replaced_source = mysql_replacements(conn, plan.name, [c for c in texts if c.export_as == "value"])
    gained = {
        name: n - replaced_source.get(name, 0)
        for name, n in replaced_target.items()
        if n > replaced_source.get(name, 0)
    }
    positions = {c.name: i for i, c in enumerate(plan.columns)}
    side_by_side = [
        {
            "row": ", ".join(f"{k}={a[positions[k]]}" for k in plan.source.primary_key if k in positions) or f"#{n}",
            "column": c.name,
            "mysql": _short(a[i]),
            "postgres": _short(b[i]),
            "equal": a[i] == b[i],
        }
        for n, (a, b) in enumerate(zip(left, right, strict=False), 1)
        for i, c in enumerate(plan.columns)
    ]
    passed = left == right and not gained
    return _result(
        ctx,
        "samples",
        passed,
        ERROR,
        rows=len(left),
        side_by_side=evidence(side_by_side, row="text", column="text", mysql="text", postgres="text", equal="boolean"),
        replacement_characters_gained=evidence(
            ({"column": c, "rows": n} for c, n in gained.items()), column="text", rows="integer"
        ),
    )


def compressed_documents(ctx: TableCheckContext) -> dg.AssetCheckResult:
    """Every compressed document inflates on MySQL as the MySQL application reads it and on
    PostgreSQL as the PostgreSQL application reads it, and the inflated documents are equal."""
    found, passed = [], True
    for column in compressed_columns(ctx.plan):
        left = mysql_documents(ctx.mysql, ctx.source_database, ctx.plan, column, ctx.fetch)
        right = postgres_documents(ctx.postgres, ctx.target_database, ctx.plan, column, ctx.fetch)
        equal = (
            left.fingerprint.buckets == right.fingerprint.buckets and left.fingerprint.rows == right.fingerprint.rows
        )
        passed = passed and equal and not left.failed and not right.failed
        found.append(
            {
                "column": column.name,
                "inflated_mysql": left.fingerprint.rows,
                "inflated_postgres": right.fingerprint.rows,
                "not_inflating_mysql": left.failed,
                "not_inflating_postgres": right.failed,
                "sample_keys_not_inflating": left.failed_keys + right.failed_keys,
                "documents_equal": equal,
            }
        )
    columns = evidence(
        found,
        column="text",
        inflated_mysql="integer",
        inflated_postgres="integer",
        not_inflating_mysql="integer",
        not_inflating_postgres="integer",
        sample_keys_not_inflating="text",
        documents_equal="boolean",
    )
    return _result(ctx, "compressed_documents", passed, ERROR, columns=columns)


def _short(value: str | None, limit: int = 80) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[: limit - 10] + f"...({len(value)})"


TABLE_CHECKS: dict[str, tuple[Callable[[TableCheckContext], dg.AssetCheckResult], dg.AssetCheckSeverity, str]] = {
    "row_count": (row_count, ERROR, "Exact COUNT(*) equal on MySQL and PostgreSQL."),
    "content_fingerprint": (
        content_fingerprint,
        ERROR,
        "Every row equal after its documented conversion (order-independent fingerprint).",
    ),
    "foreign_keys": (
        foreign_keys,
        ERROR,
        "No orphan row for a foreign key whose parent loads first (the others: deferred_foreign_keys).",
    ),
    "keys": (keys, ERROR, "Every source primary key and unique constraint exists on the target."),
    "indexes": (indexes, WARN, "Source indexes missing on the target, with the CREATE INDEX to add."),
    "sequences": (sequences, ERROR, "Every owned sequence is past its column's maximum."),
    "samples": (samples, ERROR, "First rows side by side; no U+FFFD replacement characters gained."),
}

# Checks that hold only for some tables: the name, and which tables.
CONDITIONAL_TABLE_CHECKS: dict[
    str,
    tuple[Callable[[TableCheckContext], dg.AssetCheckResult], dg.AssetCheckSeverity, str, Callable[[TablePlan], bool]],
] = {
    "compressed_documents": (
        compressed_documents,
        ERROR,
        "Every compressed document inflates as each application reads it, to the same document on both sides.",
        lambda plan: bool(compressed_columns(plan)),
    ),
}


def table_checks_for(
    plan: TablePlan | None,
) -> dict[str, tuple[Callable[[TableCheckContext], dg.AssetCheckResult], dg.AssetCheckSeverity, str]]:
    """The checks of one table: every table's, and those that hold for it."""
    chosen = dict(TABLE_CHECKS)
    for name, (fn, severity, text, applies) in CONDITIONAL_TABLE_CHECKS.items():
        if plan is not None and applies(plan):
            chosen[name] = (fn, severity, text)
    return chosen
