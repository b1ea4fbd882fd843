"""What a step was asked for, from the asset and check keys Dagster selected: per table its
stages and its checks, the tables in load order, and the order their results are reported in.
Pure functions of the keys: no server, no run."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import dagster as dg

from alkemio_assets.catalog.lineage import LoadOrder, load_order
from alkemio_assets.catalog.snapshot import Snapshot
from alkemio_assets.core.settings import DatabasePair
from alkemio_assets.graph.keys import Stage, TableAssets, table_assets


@dataclass(frozen=True)
class Selection:
    """What a step was asked for: per table, its selected stages; the tables in load order."""

    assets: dict[str, TableAssets]
    stages: dict[str, set[Stage]]
    lineage: LoadOrder
    order: list[str]  # the selected tables, parents first
    checks: dict[str, list[str]]  # per table, the names of its selected checks

    @property
    def checked(self) -> set[str]:
        """Tables whose checks are selected."""
        return set(self.checks)

    def having(self, stage: Stage) -> list[str]:
        return [t for t in self.order if stage in self.stages[t]]

    def report_order(self, loaded: Collection[str]) -> list[str]:
        """Dagster takes a multi-asset's materializations in topological order: the loaded
        tables, parents first. Their checks come after all of them, in any order."""
        return [t for t in self.lineage.order if t in loaded]


def select(
    pair: DatabasePair,
    snapshot: Snapshot,
    asset_keys: Iterable[dg.AssetKey],
    check_keys: Iterable[dg.AssetCheckKey],
) -> Selection:
    tables = [t for t in snapshot.source.tables if t.name not in pair.exclude]
    assets = table_assets(pair, tables)
    by_key = {key: (name, stage) for name, a in assets.items() for stage, key in a.keys.items()}
    stages: dict[str, set[Stage]] = {}
    for key in asset_keys:
        name, stage = by_key[key]
        stages.setdefault(name, set()).add(stage)
    checks: dict[str, list[str]] = {}
    for check in check_keys:
        checks.setdefault(by_key[check.asset_key][0], []).append(check.name)
    lineage = load_order(tables)
    return Selection(assets, stages, lineage, [t for t in lineage.order if t in stages], checks)
