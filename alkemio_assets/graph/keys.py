"""The translator's names: each table's three asset keys (`DB/csv/T.csv` -> `DB/staged/T.staged`
-> `DB/postgres/T`), their kinds, and the names of a database's steps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import dagster as dg

from alkemio_assets.catalog.source import TableSpec
from alkemio_assets.core.settings import DatabasePair, Phase

Stage = Literal["csv", "staged", "postgres"]
STAGES: tuple[Stage, ...] = ("csv", "staged", "postgres")
STAGE_KINDS: dict[Stage, set[str]] = {"csv": {"mysql", "csv"}, "staged": {"duckdb"}, "postgres": {"postgres"}}
# the phase (the UI's group, DatabasePair.group) each stage's assets belong to
STAGE_PHASES: dict[Stage, Phase] = {"csv": "export", "staged": "stage", "postgres": "load"}
# The last part of a stage's key, which the UI labels its node with: the table's name, then what
# it is on that stage (the export's file `T.csv`, the staged file `T.staged`, the table itself), so
# a table's three nodes differ and a long label, which the UI cuts in the middle, keeps both ends.
STAGE_NAMES: dict[Stage, str] = {"csv": "{}.csv", "staged": "{}.staged", "postgres": "{}"}
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


def stage_key(database: str, stage: Stage, table: str) -> dg.AssetKey:
    """A table's asset key on one stage: `[database, stage, what the asset is on it]`."""
    return dg.AssetKey([database, stage, STAGE_NAMES[stage].format(key_part(table))])


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
        out[table.name] = TableAssets(table.name, {s: stage_key(pair.name, s, table.name) for s in STAGES})
    return out


def step_name(pair: DatabasePair, index: int, shards: int) -> str:
    base = f"migrate_{key_part(pair.name)}_tables"
    return base if shards == 1 else f"{base}_{index + 1}_of_{shards}"


def catalog_key(pair: DatabasePair) -> dg.AssetKey:
    return dg.AssetKey([pair.name, "source_catalog"])
