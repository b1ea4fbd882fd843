"""Load order: parents first, self references and cycles broken deterministically and named."""

from __future__ import annotations

import pytest

from alkemio_assets.catalog.lineage import deferred_foreign_keys, load_order
from alkemio_assets.catalog.source import ColumnSpec, ForeignKeySpec, IndexSpec, TableSpec, read_mysql_catalog
from alkemio_assets.catalog.target import TargetForeignKey, TargetTable
from resources import MySQLResource


def _col(name: str, nullable: bool = True) -> ColumnSpec:
    return ColumnSpec(name, 1, "char", "char(36)", nullable, None, 36, None, None, None, "utf8mb4", False, False, False)


def _table(name: str, *fks: tuple[str, str, bool]) -> TableSpec:
    cols = (_col("id", False), *(_col(c, nullable) for c, _, nullable in fks))
    return TableSpec(
        "db",
        name,
        cols,
        (IndexSpec("PRIMARY", ("id",), True, True),),
        tuple(ForeignKeySpec(f"FK_{name}_{c}", (c,), ref, ("id",), "CASCADE") for c, ref, _ in fks),
    )


def test_parents_come_first_and_order_is_stable():
    tables = [_table("child", ("pId", "parent", False)), _table("parent"), _table("other")]
    lo = load_order(tables)
    assert lo.order == ("other", "parent", "child")
    assert lo.dependencies("child") == ("parent",)
    assert load_order(list(reversed(tables))).order == lo.order


def test_cycle_is_broken_at_a_nullable_edge_and_named():
    tables = [_table("a", ("bId", "b", True)), _table("b", ("aId", "a", False))]
    lo = load_order(tables)
    assert [e.describe() for e in lo.broken_cycle_edges] == ["a(bId) -> b [FK_a_bId]"]
    assert lo.order == ("a", "b")


def test_not_null_cycle_cannot_load():
    tables = [_table("a", ("bId", "b", False)), _table("b", ("aId", "a", False))]
    with pytest.raises(ValueError, match=r"a\(bId\) -> b .*b\(aId\) -> a"):
        load_order(tables)


def _target(name: str, *refs: str) -> TargetTable:
    fks = tuple(TargetForeignKey(f"FK_{name}_{ref}", (f"{ref}Id",), ref, ("id",)) for ref in refs)
    return TargetTable(name, (), ("id",), (("id",),), fks)


def test_a_cycle_edge_is_proven_after_the_whole_database():
    """A table's own check proves the keys whose parent loads first; the edge that breaks a cycle
    (its parent loads after it, in another step when the tables are sharded) and a key the
    source lacks wait for the database check."""
    tables = [_table("a", ("bId", "b", True)), _table("b", ("aId", "a", False)), _table("c", ("cId", "c", True))]
    lo = load_order(tables)
    assert lo.loads_first("b", "a") and lo.loads_first("c", "c")
    assert not lo.loads_first("a", "b")
    targets = [_target("a", "b"), _target("b", "a"), _target("c", "c", "a"), _target("excluded", "a")]
    deferred = deferred_foreign_keys(targets, lo)
    assert {t: [fk.name for fk in fks] for t, fks in deferred.items()} == {"a": ["FK_a_b"], "c": ["FK_c_a"]}
    assert deferred_foreign_keys([_target("b", "a")], lo) == {}


def test_fixture_graph(mysql: MySQLResource, source_databases: dict[str, str]):
    with mysql.connect() as conn:
        catalog = read_mysql_catalog(conn, source_databases["alkemio"])
    lo = load_order(catalog.tables)
    assert [e.describe() for e in lo.broken_cycle_edges] == [
        "storage_aggregator(directStorageId) -> storage_bucket [FK_storage_aggregator_direct_storage]"
    ]
    assert {e.table for e in lo.self_references} == {"authorization_policy", "space", "storage_aggregator"}
    position = {t: i for i, t in enumerate(lo.order)}
    for table in catalog.tables:
        for dep in lo.dependencies(table.name):
            assert position[dep] < position[table.name], (table.name, dep)
