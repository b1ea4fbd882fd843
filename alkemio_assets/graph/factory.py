"""The factory: a catalog snapshot -> one multi-asset step per database pair (or per shard).

Three assets per table (`DB/csv/T.csv` -> `DB/staged/T.staged` -> `DB/postgres/T`), all in
one subsettable multi-asset step per database, as Dagster's own integrations do (dbt, sling,
dlt): a run over every table costs one step, not one process per table and stage, and any
single table can still be materialized alone. Each loaded table depends on the loaded tables its
foreign keys name, so the lineage mirrors the schema. On a cluster, MIGRATION_SHARDS splits a
database's tables into that many steps of about equal size; the assets and the lineage stay the
same.
"""

# No `from __future__ import annotations`: Dagster reads the context and resource annotations.
import warnings
from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

from alkemio_assets.catalog.contract import ContractError, plan_database
from alkemio_assets.catalog.lineage import load_order
from alkemio_assets.catalog.snapshot import Snapshot
from alkemio_assets.core.settings import DatabasePair, Settings
from alkemio_assets.graph.catalog_asset import catalog_asset
from alkemio_assets.graph.keys import step_name, table_assets
from alkemio_assets.graph.specs import get_asset_specs, get_check_specs
from alkemio_assets.graph.step import run_pair
from resources import MySQLResource, PostgresResource


def build_pair_definitions(
    pair: DatabasePair, settings: Settings, snapshot: Snapshot | None, after: Sequence[dg.AssetKey] = ()
) -> dg.Definitions:
    """The catalog asset, and once a snapshot exists, the table assets in their steps; every export
    comes `after` the given assets (the preflight) when a run has them."""
    catalog = catalog_asset(pair, settings.catalog_dir)
    if snapshot is None:
        return dg.Definitions(assets=[catalog])
    try:
        plans = plan_database(pair, snapshot.source, snapshot.target)
    except ContractError as exc:
        # Still show the graph; a run re-plans against the live schemas and stops on this.
        warnings.warn(f"{pair.name}: {exc}", stacklevel=2)
        plans = None
    specs = get_asset_specs(pair, snapshot, plans, after)
    specs_of = [t for t in snapshot.source.tables if t.name not in pair.exclude]
    cycles = [(e.table, e.ref_table) for e in load_order(specs_of).broken_cycle_edges]
    shards = shard_tables([t.name for t in specs_of], snapshot.sizes, settings.shards, cycles)
    assets = table_assets(pair, specs_of)
    steps = []
    for i, shard in enumerate(shards):
        keys = {key for table in shard for key in assets[table].keys.values()}
        mine = [spec for spec in specs if spec.key in keys]
        checks = get_check_specs({t: assets[t] for t in shard}, plans)
        steps.append(tables_step(pair, settings, snapshot, mine, checks, step_name(pair, i, len(shards))))
    return dg.Definitions(assets=[catalog, *steps])


def shard_tables(
    tables: list[str], sizes: Mapping[str, int], shards: int, together: Iterable[tuple[str, str]] = ()
) -> list[list[str]]:
    """Tables in at most `shards` groups of about equal source bytes: largest first into the
    lightest group (then the one with fewest tables), each group in the catalog's table order.
    Tables named `together` (a foreign key the lineage leaves out, a cycle's edge) share a group:
    no step order proves such a key across steps, the staged files of one step do."""
    unit = {t: t for t in tables}

    def root(name: str) -> str:
        while unit[name] != name:
            name = unit[name]
        return name

    for a, b in together:
        if a in unit and b in unit:
            unit[root(a)] = root(b)
    units: dict[str, list[str]] = {}
    for name in tables:
        units.setdefault(root(name), []).append(name)

    def size(members: list[str]) -> int:
        return sum(sizes.get(m, 0) for m in members)

    groups: list[tuple[int, int, list[str]]] = [(0, 0, []) for _ in range(max(1, min(shards, len(units))))]
    for members in sorted(units.values(), key=lambda u: (-size(u), u[0])):
        i = min(range(len(groups)), key=lambda g: groups[g][:2])
        total, count, placed = groups[i]
        groups[i] = (total + size(members), count + len(members), [*placed, *members])
    position = {t: i for i, t in enumerate(tables)}
    return [sorted(members, key=position.__getitem__) for _, _, members in groups]


def tables_step(
    pair: DatabasePair,
    settings: Settings,
    snapshot: Snapshot,
    specs: list[dg.AssetSpec],
    check_specs: list[dg.AssetCheckSpec],
    name: str,
) -> dg.AssetsDefinition:
    """One subsettable step for some tables of a database (all of them unless sharded). Where the
    foreign-key lineage crosses between shards, Dagster splits a shard's step in two or more
    steps itself, so that a load waits for the loads of its parents in the other shards."""

    @dg.multi_asset(
        name=name,
        specs=specs,
        check_specs=check_specs,
        can_subset=True,
        op_tags={"alkemio/target": pair.target_database},
        description=f"Export, stage and load tables of {pair.name}, many tables at once in one step.",
    )
    def tables(context: dg.AssetExecutionContext, mysql: MySQLResource, postgres: PostgresResource):
        """Move the selected tables of one database pair from MySQL to PostgreSQL."""
        yield from run_pair(context, pair, settings, snapshot, mysql, postgres)

    return tables
