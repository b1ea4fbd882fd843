"""Foreign-key graph of a catalog: a deterministic load order with cycles broken and named."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from alkemio_assets.catalog.source import ForeignKeySpec, TableSpec
from alkemio_assets.catalog.target import TargetForeignKey, TargetTable


@dataclass(frozen=True)
class Edge:
    """`table` depends on `ref_table` through foreign key `fk`."""

    table: str
    ref_table: str
    fk: ForeignKeySpec

    def describe(self) -> str:
        cols = ", ".join(self.fk.columns)
        return f"{self.table}({cols}) -> {self.ref_table} [{self.fk.name}]"


@dataclass(frozen=True)
class LoadOrder:
    order: tuple[str, ...]
    self_references: tuple[Edge, ...]
    broken_cycle_edges: tuple[Edge, ...]

    @property
    def broken(self) -> tuple[Edge, ...]:
        return self.self_references + self.broken_cycle_edges

    def dependencies(self, table: str) -> tuple[str, ...]:
        """The tables `table` must follow, broken edges left out."""
        return self._deps.get(table, ())

    def loads_first(self, table: str, ref_table: str) -> bool:
        """Whether `ref_table` is loaded before `table` in any run, however the tables are split
        into steps (or is `table` itself): then `table`'s foreign keys to it can be proven as
        soon as `table` is loaded."""
        return ref_table == table or ref_table in self.dependencies(table)

    _deps: dict[str, tuple[str, ...]]


def load_order(tables: tuple[TableSpec, ...] | list[TableSpec]) -> LoadOrder:
    """Parents before children. A cycle is broken at the edge with the smallest
    (table, constraint name) whose columns are all nullable, so it can be filled afterwards;
    a cycle of NOT NULL edges cannot be loaded at all and raises, naming it."""
    names = {t.name for t in tables}
    edges = [
        Edge(t.name, fk.ref_table, fk)
        for t in sorted(tables, key=lambda t: t.name)
        for fk in t.foreign_keys
        if fk.ref_table in names
    ]
    self_refs = tuple(e for e in edges if e.table == e.ref_table)
    active = [e for e in edges if e.table != e.ref_table]
    nullable = {(t.name, c.name): c.nullable for t in tables for c in t.columns}
    broken: list[Edge] = []
    order: list[str] = []
    remaining = set(names)
    while remaining:
        blocked = {e.table for e in active if e.table in remaining and e.ref_table in remaining}
        ready = sorted(remaining - blocked)
        if ready:
            order.extend(ready)
            remaining -= set(ready)
            continue
        inner = [e for e in active if e.table in remaining and e.ref_table in remaining]
        component = _component_of(inner)
        in_cycle = [e for e in inner if component[e.table] == component[e.ref_table]]
        candidates = sorted(
            (e for e in in_cycle if all(nullable[(e.table, c)] for c in e.fk.columns)),
            key=lambda e: (e.table, e.fk.name),
        )
        if not candidates:
            cycle = sorted(e.describe() for e in in_cycle)
            raise ValueError("foreign-key cycle with only NOT NULL columns cannot be loaded: " + "; ".join(cycle))
        broken.append(candidates[0])
        active.remove(candidates[0])
    deps: dict[str, tuple[str, ...]] = {}
    for e in active:
        deps[e.table] = tuple(sorted(set(deps.get(e.table, ())) | {e.ref_table}))
    return LoadOrder(tuple(order), self_refs, tuple(broken), deps)


def _component_of(edges: list[Edge]) -> dict[str, int]:
    """Strongly connected components (Tarjan), as a component number per table."""
    graph: dict[str, list[str]] = {}
    for e in edges:
        graph.setdefault(e.table, []).append(e.ref_table)
        graph.setdefault(e.ref_table, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    component: dict[str, int] = {}

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            number = len(set(component.values()))
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component[member] = number
                if member == node:
                    break

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return component


def deferred_foreign_keys(tables: Iterable[TargetTable], lineage: LoadOrder) -> dict[str, tuple[TargetForeignKey, ...]]:
    """The target's foreign keys of the moved tables whose parent is not loaded first (the edges
    that break a cycle, keys the source lacks): proven once the whole database is loaded."""
    moved = set(lineage.order)
    deferred = {
        t.name: tuple(fk for fk in t.foreign_keys if not lineage.loads_first(t.name, fk.ref_table))
        for t in tables
        if t.name in moved
    }
    return {name: fks for name, fks in deferred.items() if fks}
