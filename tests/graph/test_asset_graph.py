"""The asset graph a data engineer reads: three assets per table, lineage that mirrors the
foreign keys, broken edges named, exclusions honoured, and a graph that loads offline."""

from __future__ import annotations

import json
import multiprocessing
import sys
import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from conftest import failure_message, migration_settings, run_job

from alkemio_assets.catalog.contract import plan_database
from alkemio_assets.catalog.snapshot import (
    CatalogSnapshotWarning,
    Snapshot,
    read_snapshot,
    snapshot_path,
    write_snapshot,
)
from alkemio_assets.catalog.source import Catalog, ColumnSpec, IndexSpec, TableSpec
from alkemio_assets.catalog.target import TargetCatalog, TargetColumn, TargetTable
from alkemio_assets.core.settings import PHASES, DatabasePair
from alkemio_assets.definitions import build_definitions, pair_definitions
from alkemio_assets.graph.factory import shard_tables
from alkemio_assets.graph.keys import AssetNameError, step_name, table_assets
from alkemio_assets.graph.specs import get_asset_specs
from resources import MySQLResource


def _snapshot_of(settings, instance) -> None:
    assert run_job(settings, instance, "refresh_catalog").success


@pytest.fixture
def fixture_defs(source_databases, target_databases, tmp_path: Path, instance):
    settings = migration_settings(source_databases, str(tmp_path))
    _snapshot_of(settings, instance)
    return settings, build_definitions(settings)


@pytest.mark.e2e
def test_each_stage_says_in_dagsters_own_metadata_which_relation_it_is_and_its_columns(fixture_defs):
    """What the asset page's Columns and Storage show before any run: the PostgreSQL types with
    the rule that casts each column into them, MySQL's types for the export; no raw Markdown in
    the descriptions the catalog lists."""
    settings, defs = fixture_defs
    graph = defs.resolve_asset_graph()
    pair = settings.pair("alkemio")
    loaded = graph.get(dg.AssetKey.from_user_string("alkemio/postgres/user")).metadata
    assert loaded["dagster/table_name"] == f"{pair.target_database}.public.user"
    columns = {c.name: c for c in loaded["dagster/column_schema"].columns}
    assert columns["email"].type == "character varying(512)" and columns["email"].tags == {"cast": "text"}
    assert columns["id"].type == "uuid" and columns["id"].constraints.nullable is False
    assert columns["id"].description.startswith("from MySQL char(36) by the rule uuid: ")
    exported = graph.get(dg.AssetKey.from_user_string("alkemio/csv/user.csv")).metadata
    assert exported["dagster/table_name"] == f"mysql.{pair.source_database}.user"
    assert {c.name: c.type for c in exported["dagster/column_schema"].columns}["id"] == "char(36)"
    assert not [key for key in graph.get_all_asset_keys() if "`" in (graph.get(key).description or "")]


@pytest.mark.e2e
def test_three_assets_per_table_with_groups_and_kinds(fixture_defs):
    _, defs = fixture_defs
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for db, table in (("alkemio", "user"), ("kratos", "identities")):
        assert {f"{db}/csv/{table}.csv", f"{db}/staged/{table}.staged", f"{db}/postgres/{table}"} <= keys
    assert "alkemio/csv/migrations_typeorm.csv" not in keys and "kratos/csv/schema_migration.csv" not in keys
    assert len([k for k in keys if k.startswith("alkemio/")]) == 1 + 3 * 34 + 1  # catalog, tables, verified
    node = graph.get(dg.AssetKey.from_user_string("alkemio/postgres/user"))
    assert node.group_name == "alkemio_4_load" and node.kinds == {"postgres"}
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups >= {f"{db}_{n}_{phase}" for db in ("alkemio", "kratos") for n, phase in enumerate(PHASES, 1)}
    assert graph.get(dg.AssetKey.from_user_string("alkemio/csv/user.csv")).group_name == "alkemio_2_export"
    assert graph.get(dg.AssetKey.from_user_string("alkemio/csv/user.csv")).kinds == {"mysql", "csv"}
    assert graph.get(dg.AssetKey.from_user_string("alkemio/staged/user.staged")).kinds == {"duckdb"}
    assert {j.name for j in defs.resolve_all_job_defs()} >= {
        "migrate_alkemio",
        "migrate_kratos",
        "migrate_all",
        "refresh_catalog",
    }


@pytest.mark.e2e
def test_lineage_mirrors_the_foreign_keys(fixture_defs):
    _, defs = fixture_defs
    graph = defs.resolve_asset_graph()

    def parents(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey.from_user_string(key)).parent_keys}

    assert parents("alkemio/postgres/user") == {
        "alkemio/staged/user.staged",
        "alkemio/postgres/account",
        "alkemio/postgres/authorization_policy",
        "alkemio/postgres/profile",
        "alkemio/postgres/agent",
        "alkemio/postgres/storage_aggregator",
    }
    exports_after = {"alkemio/source_catalog", "migration/preflight"}
    assert parents("alkemio/csv/user.csv") == exports_after
    aggregator = graph.get(dg.AssetKey.from_user_string("alkemio/postgres/storage_aggregator"))
    assert "alkemio/postgres/storage_bucket" not in {k.to_user_string() for k in aggregator.parent_keys}
    assert "storage_aggregator(directStorageId) -> storage_bucket" in aggregator.description
    assert "storage_aggregator(parentStorageAggregatorId) -> storage_aggregator" in aggregator.description


def test_shards_balance_the_bytes_and_keep_every_table_once():
    tables = ["a", "b", "c", "d", "e", "f", "g"]
    sizes = {"a": 900, "b": 100, "c": 500, "d": 400, "e": 0, "f": 0, "g": 300}
    shards = shard_tables(tables, sizes, 3)
    assert sorted(t for shard in shards for t in shard) == tables
    assert shards == [["a"], ["b", "c", "e", "f"], ["d", "g"]]  # 900, 600, 700 bytes; catalog order inside
    assert shard_tables(tables, sizes, 3) == shards  # the same graph on every load
    # no empty steps: never more shards than tables, and at least one
    assert shard_tables(["a", "b"], sizes, 5) == [["a"], ["b"]]
    assert shard_tables(tables, {}, 1) == [tables]
    # tables of unknown size spread by count
    assert [len(s) for s in shard_tables(tables, {}, 3)] == [3, 2, 2]
    # a cycle's edge, left out of the lineage, keeps its two tables in one step
    kept = shard_tables(tables, sizes, 3, together=[("a", "g"), ("g", "b")])
    assert sorted(t for shard in kept for t in shard) == tables
    assert any({"a", "b", "g"} <= set(shard) for shard in kept)


def test_one_step_keeps_its_name_and_shards_are_numbered():
    pair = DatabasePair("alkemio", "alkemio", "alkemio")
    assert step_name(pair, 0, 1) == "migrate_alkemio_tables"
    assert [step_name(pair, i, 3) for i in range(3)] == [
        "migrate_alkemio_tables_1_of_3",
        "migrate_alkemio_tables_2_of_3",
        "migrate_alkemio_tables_3_of_3",
    ]


@pytest.mark.e2e
def test_sharded_steps_keep_the_assets_and_the_lineage(fixture_defs):
    """MIGRATION_SHARDS changes how the tables are grouped into steps, nothing a data engineer reads."""
    settings, one_step = fixture_defs
    sharded = build_definitions(replace(settings, shards=3))

    def lineage(defs: dg.Definitions) -> dict[dg.AssetKey, set[dg.AssetKey]]:
        graph = defs.resolve_asset_graph()
        return {key: set(graph.get(key).parent_keys) for key in graph.get_all_asset_keys()}

    assert lineage(sharded) == lineage(one_step)
    steps = {
        a.node_def.name: a
        for a in sharded.resolve_asset_graph().assets_defs
        if a.node_def.name.startswith("migrate_") and a.node_def.name.endswith("_of_3")
    }
    assert sorted(steps) == [f"migrate_{db}_tables_{i}_of_3" for db in ("alkemio", "kratos") for i in (1, 2, 3)]
    for name, step in steps.items():
        pair = settings.pair(name.split("_")[1])
        snapshot = read_snapshot(pair.name, settings.catalog_dir)
        assert snapshot is not None
        assets = table_assets(pair, [t for t in snapshot.source.tables if t.name not in pair.exclude])
        tables = {t for t, a in assets.items() if a.keys["csv"] in step.keys}
        # a table's three assets and its checks travel together
        assert step.keys == {key for t in tables for key in assets[t].keys.values()}
        assert {c.asset_key for c in step.check_keys} <= {assets[t].keys["postgres"] for t in tables}
    # the cycle storage_aggregator <-> storage_bucket (an edge the lineage leaves out) stays in one step
    (holder,) = [s for s in steps.values() if dg.AssetKey(["alkemio", "postgres", "storage_aggregator"]) in s.keys]
    assert dg.AssetKey(["alkemio", "postgres", "storage_bucket"]) in holder.keys
    # where lineage crosses shards Dagster splits the steps, so a job has more steps than shards
    job = sharded.resolve_job_def("migrate_all")
    assert len(job.graph.node_defs) > len(steps)


def _tiny_catalog(n: int) -> tuple[Catalog, TargetCatalog]:
    column = ColumnSpec("id", 1, "int", "int", False, None, None, 10, 0, None, None, False, False, False)
    target_column = TargetColumn("id", "integer", "integer", True, False, None, None, None, None, (), None, False)
    tables = tuple(
        TableSpec("db", f"t{i}", (column,), (IndexSpec("PRIMARY", ("id",), True, True),), ()) for i in range(n)
    )
    targets = tuple(TargetTable(f"t{i}", (target_column,), ("id",), (("id",),), ()) for i in range(n))
    return Catalog("db", "test", tables), TargetCatalog("db", 170005, targets)


def test_a_hundred_and_fifty_tables_build_offline(tmp_path: Path):
    source, target = _tiny_catalog(150)
    write_snapshot("alkemio", source, target, "test", tmp_path / "catalog")
    settings = migration_settings({"alkemio": "db", "kratos": "db2"}, str(tmp_path), None)
    settings = replace(
        settings, catalog_dir=tmp_path / "catalog", pairs=(replace(settings.pair("alkemio"), overrides={}),)
    )
    defs = build_definitions(settings)
    # catalog, three per table, verified, preflight, report, cut-over
    assert len(defs.resolve_asset_graph().get_all_asset_keys()) == 1 + 3 * 150 + 1 + 3


def test_code_version_follows_the_columns():
    source, target = _tiny_catalog(1)
    pair = DatabasePair("db", "db", "db")
    before = plan_database(pair, source, target)["t0"].code_version
    wider = replace(
        source.tables[0], columns=(replace(source.tables[0].columns[0], column_type="bigint", data_type="bigint"),)
    )
    after = plan_database(pair, replace(source, tables=(wider,)), target)["t0"].code_version
    assert before != after


def test_a_tables_three_nodes_read_what_each_stage_is():
    """The UI labels a node by its key's last part: the export's file, the staged file, the
    table, so that a table's three nodes differ; the UI cuts a long label in the middle, which
    keeps the table's name in front and the stage at the end."""
    source, _ = _tiny_catalog(1)
    long = replace(source.tables[0], name="identity_credential_identifiers")
    keys = table_assets(DatabasePair("db", "db", "db"), [long])[long.name].keys
    assert {stage: key.path for stage, key in keys.items()} == {
        "csv": ["db", "csv", "identity_credential_identifiers.csv"],
        "staged": ["db", "staged", "identity_credential_identifiers.staged"],
        "postgres": ["db", "postgres", "identity_credential_identifiers"],
    }


def test_names_that_collide_as_keys_are_refused():
    source, _ = _tiny_catalog(1)
    a = replace(source.tables[0], name="query-result")
    b = replace(source.tables[0], name="query_result")
    with pytest.raises(AssetNameError, match="'query-result' and 'query_result'"):
        table_assets(DatabasePair("db", "db", "db"), [a, b])


def test_a_missing_snapshot_is_said_once_by_the_process_a_person_started_not_by_each_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    settings = migration_settings({"alkemio": "alkemio", "kratos": "kratos"}, str(tmp_path))
    pair = settings.pair("alkemio")
    with pytest.warns(CatalogSnapshotWarning, match="no catalog snapshot for 'alkemio'"):
        pair_definitions(pair, settings)
    # not to the person whose command takes the snapshot
    for command in (
        ["dg", "launch", "--job", "refresh_catalog"],
        ["dg", "launch", "--assets", "alkemio/source_catalog"],
    ):
        monkeypatch.setattr(sys, "argv", command)
        with warnings.catch_warnings():
            warnings.simplefilter("error", CatalogSnapshotWarning)
            pair_definitions(pair, settings)
    monkeypatch.undo()

    said: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()

    def as_a_step_process() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pair_definitions(pair, settings)
        said.put([str(w.message) for w in caught if issubclass(w.category, CatalogSnapshotWarning)])

    child = multiprocessing.get_context("fork").Process(target=as_a_step_process)
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert said.get(timeout=5) == []


def test_missing_and_stale_snapshots_warn(tmp_path: Path):
    with pytest.warns(CatalogSnapshotWarning, match="no catalog snapshot for 'alkemio'"):
        assert read_snapshot("alkemio", tmp_path) is None
    source, target = _tiny_catalog(1)
    path = write_snapshot("alkemio", source, target, "test", tmp_path)
    body = json.loads(path.read_text())
    body["taken_at"] = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    path.write_text(json.dumps(body))
    with pytest.warns(CatalogSnapshotWarning, match="more than 7 days ago"):
        assert isinstance(read_snapshot("alkemio", tmp_path), Snapshot)
    assert snapshot_path("alkemio", tmp_path) == path
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body["taken_at"] = datetime.now(UTC).isoformat()
        path.write_text(json.dumps(body))
        read_snapshot("alkemio", tmp_path)  # fresh: no warning


@pytest.mark.e2e
def test_a_schema_changed_since_the_snapshot_stops_the_run(
    fixture_defs, mysql: MySQLResource, source_databases, instance
):
    settings, _ = fixture_defs
    mysql.execute_script(source_databases["alkemio"], ["ALTER TABLE reference ADD COLUMN extra int"])
    result = run_job(settings, instance, "migrate_alkemio", ["alkemio/csv/reference.csv"])
    assert not result.success
    assert "the schema of ['reference'] changed since the catalog snapshot" in failure_message(result)


def test_definitions_need_no_server_and_validate_per_asset():
    source, target = _tiny_catalog(2)
    specs = get_asset_specs(DatabasePair("db", "db", "db"), Snapshot(source, target, datetime.now(UTC), "test"), None)
    assert [s.key.to_user_string() for s in specs][:3] == [
        "db/csv/t0.csv",
        "db/staged/t0.staged",
        "db/postgres/t0",
    ]
