"""The translator: every table of a catalog snapshot as three asset specs, with the lineage of
its foreign keys, and the table checks on each loaded table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from alkemio_assets.catalog.contract import TablePlan
from alkemio_assets.catalog.lineage import Edge, load_order
from alkemio_assets.catalog.snapshot import Snapshot
from alkemio_assets.core.settings import DatabasePair
from alkemio_assets.graph.keys import STAGE_KINDS, STAGE_PHASES, Stage, TableAssets, catalog_key, table_assets
from alkemio_assets.graph.metadata import definition_metadata
from checks.table_checks import table_checks_for


def _broken_description(edges: list[Edge]) -> str:
    if not edges:
        return ""
    listed = "; ".join(e.describe() for e in edges)
    return f" Foreign keys left out of the lineage (self reference or cycle, loaded all the same): {listed}."


def get_asset_specs(
    pair: DatabasePair, snapshot: Snapshot, plans: dict[str, TablePlan] | None, after: Sequence[dg.AssetKey] = ()
) -> list[dg.AssetSpec]:
    """The translator: every table of the snapshot, minus exclusions, as three specs; each export
    after the catalog and the assets `after` names."""
    tables = [t for t in snapshot.source.tables if t.name not in pair.exclude]
    assets = table_assets(pair, tables)
    order = load_order(tables)
    broken = {t.name: [e for e in order.broken if e.table == t.name] for t in tables}
    specs = []
    for table in tables:
        keys = assets[table.name].keys
        plan = plans.get(table.name) if plans else None

        def spec(stage: Stage, deps: Sequence[dg.AssetKey], description: str, table=table, plan=plan) -> dg.AssetSpec:
            return dg.AssetSpec(
                assets[table.name].keys[stage],
                deps=deps,
                group_name=pair.group(STAGE_PHASES[stage]),
                kinds=STAGE_KINDS[stage],
                code_version=plan.code_version if plan else None,
                description=description,
                metadata=definition_metadata(pair, table.name, plan, stage),
            )

        specs += [
            spec(
                "csv",
                [catalog_key(pair), *after],
                f"Exports MySQL {pair.source_database}.{table.name} ({len(table.columns)} columns) to an RFC 4180 "
                "CSV file in the run folder, read at the run's one moment of the source.",
            ),
            spec(
                "staged",
                [keys["csv"]],
                f"Reads the CSV file of {table.name} into DuckDB with its declared types, validates and casts "
                "every value for the target (each column's rule under Columns) and writes a load-ready CSV file.",
            ),
            spec(
                "postgres",
                [keys["staged"], *(assets[d].keys["postgres"] for d in order.dependencies(table.name))],
                f"Loads PostgreSQL {pair.target_database}.{table.name} with COPY, in the one transaction of its "
                "database's run: all of the database's tables commit, or none."
                + _broken_description(broken[table.name]),
            ),
        ]
    return specs


def get_check_specs(
    assets: Mapping[str, TableAssets], plans: Mapping[str, TablePlan] | None
) -> list[dg.AssetCheckSpec]:
    """The checklist items that hold per table, on each of these tables once loaded; ERROR ones block."""
    return [
        dg.AssetCheckSpec(
            name, asset=a.keys["postgres"], description=text, blocking=severity == dg.AssetCheckSeverity.ERROR
        )
        for table, a in assets.items()
        for name, (_, severity, text) in table_checks_for((plans or {}).get(table)).items()
    ]
