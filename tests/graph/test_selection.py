"""The step's selection, alone: the stages and checks asked of each table, the tables parents
first, and the order their results are reported in (Dagster's topological order)."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from alkemio_assets.catalog.snapshot import Snapshot
from alkemio_assets.catalog.source import Catalog, ColumnSpec, ForeignKeySpec, IndexSpec, TableSpec
from alkemio_assets.catalog.target import TargetCatalog
from alkemio_assets.core.settings import DatabasePair
from alkemio_assets.graph.keys import table_assets
from alkemio_assets.graph.selection import select

PAIR = DatabasePair("db", "db", "db", exclude={"schema_log": "the migration tool's own ledger"})


def _column(name: str) -> ColumnSpec:
    return ColumnSpec(name, 1, "int", "int", name != "id", None, None, 10, 0, None, None, False, False, False)


def _table(name: str, parent: str | None = None) -> TableSpec:
    columns = (_column("id"),) + ((_column("parent_id"),) if parent else ())
    fks = (ForeignKeySpec(f"fk_{name}", ("parent_id",), parent, ("id",), "CASCADE"),) if parent else ()
    return TableSpec("db", name, columns, (IndexSpec("PRIMARY", ("id",), True, True),), fks)


# catalog order is not load order: callout names space, contribution names callout
TABLES = (_table("contribution", "callout"), _table("callout", "space"), _table("space"), _table("schema_log"))
SNAPSHOT = Snapshot(Catalog("db", "test", TABLES), TargetCatalog("db", 170005, ()), datetime.now(UTC), "test")
KEYS = table_assets(PAIR, [t for t in TABLES if t.name != "schema_log"])


def test_each_table_gets_its_selected_stages_and_checks_parents_first():
    asked = [KEYS["contribution"].keys[s] for s in ("csv", "staged", "postgres")] + [KEYS["space"].keys["postgres"]]
    checks = [dg.AssetCheckKey(KEYS["contribution"].keys["postgres"], n) for n in ("row_count", "foreign_keys")]
    chosen = select(PAIR, SNAPSHOT, asked, checks)
    assert chosen.order == ["space", "contribution"]  # the selected tables in load order; callout not asked
    assert chosen.stages == {"contribution": {"csv", "staged", "postgres"}, "space": {"postgres"}}
    assert chosen.having("csv") == ["contribution"] and chosen.having("postgres") == ["space", "contribution"]
    assert chosen.checks == {"contribution": ["row_count", "foreign_keys"]} and chosen.checked == {"contribution"}
    assert list(chosen.lineage.order) == ["space", "callout", "contribution"]  # excluded tables are not in it


def test_loaded_tables_are_reported_parents_first_whatever_finished_first():
    chosen = select(PAIR, SNAPSHOT, [KEYS[t].keys["postgres"] for t in ("contribution", "callout", "space")], [])
    assert chosen.report_order(loaded={"contribution", "callout", "space"}) == ["space", "callout", "contribution"]
    assert chosen.report_order(loaded={"contribution", "space"}) == ["space", "contribution"]
    assert chosen.report_order(loaded=set()) == []
