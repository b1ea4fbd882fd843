"""Catalog snapshot -> asset specs -> one multi-asset per database pair (or per shard).

Three assets per table (`DB/csv/T` -> `DB/staged/T` -> `DB/postgres/T`), all in one subsettable
multi-asset step per database, as Dagster's own integrations do (dbt, sling, dlt): a run over
every table costs one step, not one process per table and stage, and any single table can
still be materialized alone. Each loaded table depends on the loaded tables its foreign keys
name, so the lineage mirrors the schema. On a cluster, MIGRATION_SHARDS splits a database's
tables into that many steps of about equal size; the assets and the lineage stay the same.
"""

# No `from __future__ import annotations`: Dagster reads the context and resource annotations.
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import dagster as dg

from alkemio_assets.catalog import TableSpec
from alkemio_assets.catalog_assets import catalog_asset, catalog_key
from alkemio_assets.graph import Edge, load_order
from alkemio_assets.plan import ContractError, TablePlan, plan_database
from alkemio_assets.settings import DatabasePair, Settings
from alkemio_assets.snapshot import Snapshot, read_snapshot
from resources import MySQLResource, PostgresResource

Stage = Literal["csv", "staged", "postgres"]
STAGES: tuple[Stage, ...] = ("csv", "staged", "postgres")
STAGE_KINDS: dict[Stage, set[str]] = {"csv": {"mysql", "csv"}, "staged": {"duckdb"}, "postgres": {"postgres"}}
_KEY_PART = re.compile(r"[^A-Za-z0-9_]")


class AssetNameError(ValueError):
    """Two table names that become the same asset key."""


@dataclass(frozen=True)
class TableAssets:
    """A table's three asset keys; the translator's single source of key names."""

    table: str
    keys: dict[Stage, dg.AssetKey]


def key_part(name: str) -> str:
    return _KEY_PART.sub("_", name)


def table_assets(pair: DatabasePair, tables: list[TableSpec]) -> dict[str, TableAssets]:
    seen: dict[str, str] = {}
    out = {}
    for table in tables:
        part = key_part(table.name)
        if part in seen:
            raise AssetNameError(
                f"{pair.name}: tables {seen[part]!r} and {table.name!r} both become asset key {part!r}"
            )
        seen[part] = table.name
        out[table.name] = TableAssets(table.name, {s: dg.AssetKey([pair.name, s, part]) for s in STAGES})
    return out


def _broken_description(edges: list[Edge]) -> str:
    if not edges:
        return ""
    listed = "; ".join(e.describe() for e in edges)
    return f" Foreign keys left out of the lineage (self reference or cycle, loaded all the same): {listed}."


def get_asset_specs(pair: DatabasePair, snapshot: Snapshot, plans: dict[str, TablePlan] | None) -> list[dg.AssetSpec]:
    """The translator: every table of the snapshot, minus exclusions, as three specs."""
    tables = [t for t in snapshot.source.tables if t.name not in pair.exclude]
    assets = table_assets(pair, tables)
    order = load_order(tables)
    broken = {t.name: [e for e in order.broken if e.table == t.name] for t in tables}
    specs = []
    for table in tables:
        keys = assets[table.name].keys
        plan = plans.get(table.name) if plans else None
        version = plan.code_version if plan else None
        columns = len(table.columns)
        specs += [
            dg.AssetSpec(
                keys["csv"],
                deps=[catalog_key(pair)],
                group_name=pair.name,
                kinds=STAGE_KINDS["csv"],
                code_version=version,
                description=f"MySQL `{pair.source_database}`.`{table.name}` ({columns} columns) as an RFC 4180 CSV file.",
            ),
            dg.AssetSpec(
                keys["staged"],
                deps=[keys["csv"]],
                group_name=pair.name,
                kinds=STAGE_KINDS["staged"],
                code_version=version,
                description=f"`{table.name}` read by DuckDB with declared types, every value validated and cast "
                "for the target; kept as a DuckDB table and a load-ready CSV file.",
            ),
            dg.AssetSpec(
                keys["postgres"],
                deps=[keys["staged"], *(assets[d].keys["postgres"] for d in order.dependencies(table.name))],
                group_name=pair.name,
                kinds=STAGE_KINDS["postgres"],
                code_version=version,
                description=f"PostgreSQL `{pair.target_database}`.`{table.name}`, loaded atomically with COPY."
                + _broken_description(broken[table.name]),
            ),
        ]
    return specs


def get_check_specs(specs: list[dg.AssetSpec], plans: Mapping[str, TablePlan] | None) -> list[dg.AssetCheckSpec]:
    """The checklist items that hold per table, on each loaded table; ERROR ones block."""
    from checks.table_checks import table_checks_for

    by_part = {key_part(name): plan for name, plan in (plans or {}).items()}
    return [
        dg.AssetCheckSpec(name, asset=spec.key, description=text, blocking=severity == dg.AssetCheckSeverity.ERROR)
        for spec in specs
        if spec.key.path[1] == "postgres"
        for name, (_, severity, text) in table_checks_for(by_part.get(spec.key.path[2])).items()
    ]


def build_pair_definitions(pair: DatabasePair, settings: Settings) -> dg.Definitions:
    """The factory: the catalog asset, and once a snapshot exists, the table assets and jobs."""
    catalog = catalog_asset(pair, settings.catalog_dir)
    snapshot = read_snapshot(pair.name, settings.catalog_dir)
    if snapshot is None:
        return dg.Definitions(assets=[catalog])
    try:
        plans = plan_database(pair, snapshot.source, snapshot.target)
    except ContractError as exc:
        # Still show the graph; a run re-plans against the live schemas and stops on this.
        warnings.warn(f"{pair.name}: {exc}", stacklevel=2)
        plans = None
    specs = get_asset_specs(pair, snapshot, plans)
    tables = [t.name for t in snapshot.source.tables if t.name not in pair.exclude]
    shards = shard_tables(tables, snapshot.sizes, settings.shards)
    steps = []
    for i, shard in enumerate(shards):
        parts = {key_part(table) for table in shard}  # a spec's key is [database, stage, part]
        mine = [spec for spec in specs if spec.key.path[-1] in parts]
        steps.append(tables_step(pair, settings, snapshot, mine, plans, step_name(pair, i, len(shards))))

    from alkemio_assets.verification import verified_asset

    postgres_keys = [s.key for s in specs if s.key.path[1] == "postgres"]
    return dg.Definitions(assets=[catalog, *steps, verified_asset(pair, settings, postgres_keys, snapshot)])


def shard_tables(tables: list[str], sizes: Mapping[str, int], shards: int) -> list[list[str]]:
    """Tables in at most `shards` groups of about equal source bytes: largest first into the
    lightest group (then the one with fewest tables), each group in the catalog's table order."""
    groups: list[tuple[int, int, list[str]]] = [(0, 0, []) for _ in range(max(1, min(shards, len(tables))))]
    for name in sorted(tables, key=lambda t: (-sizes.get(t, 0), t)):
        i = min(range(len(groups)), key=lambda g: groups[g][:2])
        size, count, members = groups[i]
        groups[i] = (size + sizes.get(name, 0), count + 1, [*members, name])
    position = {t: i for i, t in enumerate(tables)}
    return [sorted(members, key=position.__getitem__) for _, _, members in groups]


def step_name(pair: DatabasePair, index: int, shards: int) -> str:
    base = f"migrate_{key_part(pair.name)}_tables"
    return base if shards == 1 else f"{base}_{index + 1}_of_{shards}"


def tables_step(
    pair: DatabasePair,
    settings: Settings,
    snapshot: Snapshot,
    specs: list[dg.AssetSpec],
    plans: Mapping[str, TablePlan] | None,
    name: str,
) -> dg.AssetsDefinition:
    """One subsettable step for some tables of a database (all of them unless sharded). Where the
    foreign-key lineage crosses between shards, Dagster splits a shard's step in two or more
    steps itself, so that a load waits for the loads of its parents in the other shards."""

    @dg.multi_asset(
        name=name,
        specs=specs,
        check_specs=get_check_specs(specs, plans),
        can_subset=True,
        op_tags={"alkemio/target": pair.target_database},
        description=f"Export, stage and load tables of {pair.name}, many tables at once in one step.",
    )
    def tables(context: dg.AssetExecutionContext, mysql: MySQLResource, postgres: PostgresResource):
        """Move the selected tables of one database pair from MySQL to PostgreSQL."""
        from alkemio_assets.migrate import run_pair

        yield from run_pair(context, pair, settings, snapshot, mysql, postgres)

    return tables
