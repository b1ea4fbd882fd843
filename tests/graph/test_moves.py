"""The per-table move, one stage at a time, on the real servers and without Dagster: export
writes the CSV and records it, staging reads this run's file and casts it, the load puts the
database's tables in one transaction, and orphans among the staged files stop it first."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from conftest import migration_settings

from alkemio_assets.catalog.contract import plan_database
from alkemio_assets.catalog.live import live_catalogs
from alkemio_assets.catalog.snapshot import Snapshot
from alkemio_assets.catalog.target import TargetCatalog
from alkemio_assets.core.errors import OrphanRowsError
from alkemio_assets.core.settings import DatabasePair, Preview
from alkemio_assets.graph.keys import table_assets
from alkemio_assets.graph.moves import LoadAborted, StepRun, export_stage, load_stage, staging_stage, start_load
from alkemio_assets.graph.selection import select
from alkemio_assets.stages.manifest import Manifest, now, run_folder
from alkemio_assets.stages.staging import prepare
from resources import MySQLResource, PostgresResource

MYSQL = [
    "CREATE TABLE space (id char(36) NOT NULL PRIMARY KEY, visible tinyint NOT NULL)",
    "CREATE TABLE callout (id int NOT NULL PRIMARY KEY, spaceId char(36) NULL,"
    " CONSTRAINT fk_callout_space FOREIGN KEY (spaceId) REFERENCES space (id))",
    "INSERT INTO space VALUES ('5b0c5a43-93a4-4c3b-9d6b-2a4f1f7e0a01', 1), ('5b0c5a43-93a4-4c3b-9d6b-2a4f1f7e0a02', 0)",
    "INSERT INTO callout VALUES (1, '5b0c5a43-93a4-4c3b-9d6b-2a4f1f7e0a01'), (2, NULL)",
]
POSTGRES = """
CREATE TABLE space (id uuid PRIMARY KEY, visible boolean NOT NULL);
CREATE TABLE callout (id integer PRIMARY KEY, "spaceId" uuid NULL
  CONSTRAINT fk_callout_space REFERENCES space (id));
"""


@dataclass
class Moving:
    run: StepRun
    target: TargetCatalog
    database: str


@pytest.fixture
def moving(mysql: MySQLResource, postgres: PostgresResource, unique_name: str, tmp_path: Path) -> Iterator[Moving]:
    db = f"{unique_name}_move"
    mysql.create_database(db)
    postgres.create_database(db)
    try:
        mysql.execute_script(db, MYSQL)
        postgres.execute_script(db, POSTGRES)
        pair = DatabasePair("db", db, db)
        source, target = live_catalogs(pair, mysql, postgres)
        settings = migration_settings({}, str(tmp_path))
        settings = replace(settings, pairs=(pair,))
        snapshot = Snapshot(source, target, datetime.now(UTC), "test")
        assets = table_assets(pair, list(source.tables))
        chosen = select(pair, snapshot, [k for a in assets.values() for k in a.keys.values()], [])
        folder = run_folder(settings, "run-1", pair)
        folder.mkdir(parents=True)
        manifest = Manifest(run_id="run-1", database="db", source=db, target=db, started_at=now(), versions=None)
        duck = duckdb.connect(":memory:")
        prepare(duck, settings.staging_memory_mb)
        plans = plan_database(pair, source, target)
        log = logging.getLogger("test_moves")
        run = StepRun("run-1", log, pair, settings, snapshot, mysql, postgres, chosen, plans, folder, manifest, duck)
        yield Moving(run, target, db)
        duck.close()
    finally:
        mysql.drop_database(db)
        postgres.drop_database(db)


@pytest.mark.e2e
def test_each_stage_alone_moves_the_table_and_records_it(moving: Moving, postgres: PostgresResource):
    run = moving.run
    exported = export_stage(run, "space")
    assert exported.asset_key == run.chosen.assets["space"].keys["csv"]
    assert exported.metadata["dagster/row_count"] == 2 and run.manifest.tables["space"]["rows"] == 2
    csv = run.folder / "csv" / "space.csv"
    assert csv.read_text().splitlines()[0] == "id,visible"
    assert exported.metadata["bytes"] == csv.stat().st_size == run.manifest.tables["space"]["bytes"]
    assert exported.metadata["sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()
    assert exported.metadata["path"].value == str(csv) and exported.metadata["rows_per_second"] > 0
    preview = [record.data for record in exported.metadata["preview"].records]
    assert preview == [
        {"id": "5b0c5a43-93a4-4c3b-9d6b-2a4f1f7e0a01", "visible": "1"},
        {"id": "5b0c5a43-93a4-4c3b-9d6b-2a4f1f7e0a02", "visible": "0"},
    ]

    staged = staging_stage(run, "space")
    assert staged.metadata["dagster/row_count"] == 2 and staged.metadata["input_run"] == "run-1"  # this run's file
    assert [record.data["visible"] for record in staged.metadata["preview"].records] == ["true", "false"]
    assert "t" in (run.folder / "staged" / "space.csv").read_text()  # tinyint 1 became a boolean

    for name in ("callout",):
        export_stage(run, name)
        staging_stage(run, name)
    inputs, loaded = load_stage(run, moving.target, set())
    assert set(inputs) == set(loaded) == {"space", "callout"}
    assert loaded["space"].rows == 2 and loaded["callout"].rows == 2
    with postgres.connect(moving.database) as conn:
        rows = conn.execute("SELECT visible FROM space ORDER BY id").fetchall()
    assert rows == [(True,), (False,)]


@pytest.mark.e2e
def test_the_preview_shows_as_many_rows_as_configured_and_masks_the_named_columns(moving: Moving):
    run = moving.run
    run.settings = replace(run.settings, preview=Preview(rows=1, mask=("visible",)))
    (shown,) = export_stage(run, "space").metadata["preview"].records
    assert shown.data == {"id": "5b0c5a43-93a4-4c3b-9d6b-2a4f1f7e0a01", "visible": "masked"}
    run.settings = replace(run.settings, preview=Preview(rows=0))
    assert "preview" not in export_stage(run, "space").metadata
    # by default e-mails, names, hashes, tokens and Kratos's documents are never shown
    assert all(Preview().masks(c) for c in ("email", "firstName", "password_hash", "token", "traits", "config"))
    assert not any(Preview().masks(c) for c in ("id", "nameID", "createdDate", "visible"))


@pytest.mark.e2e
def test_orphans_in_the_staged_files_stop_the_load_before_it_writes(
    moving: Moving, mysql: MySQLResource, postgres: PostgresResource
):
    run = moving.run
    with mysql.connect(moving.database) as conn, conn.cursor() as cur:
        cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        cur.execute("INSERT INTO callout VALUES (3, '5b0c5a43-93a4-4c3b-9d6b-2a4f1f7e0a99')")
    for name in ("space", "callout"):
        export_stage(run, name)
        staging_stage(run, name)
    with pytest.raises(OrphanRowsError, match=r"callout\.spaceId -> space") as raised:
        load_stage(run, moving.target, set())
    assert "row id=3" in str(raised.value)
    with postgres.connect(moving.database) as conn:
        assert conn.execute("SELECT (SELECT count(*) FROM space) + (SELECT count(*) FROM callout)").fetchone() == (0,)


def _copied_by_the_load(postgres: PostgresResource, database: str) -> set[str]:
    """The tables the open load transaction has written (its locks), seen from another session."""
    with postgres.connect(database, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.application_name LIKE 'alkemio-migration load%%' "
            "AND l.mode = 'RowExclusiveLock' AND c.relkind = 'r'"
        ).fetchall()
    return {r[0] for r in rows}


@pytest.mark.e2e
def test_the_load_copies_a_table_while_the_next_is_staged_and_an_abort_writes_nothing(
    moving: Moving, postgres: PostgresResource
):
    run = moving.run
    export_stage(run, "space")
    staging_stage(run, "space")
    loading = start_load(run, moving.target, set())
    assert loading is not None
    loading.ready("space")
    deadline = time.monotonic() + 30
    while "space" not in _copied_by_the_load(postgres, moving.database) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _copied_by_the_load(postgres, moving.database) == {"space"}, "space is copied before callout is exported"
    export_stage(run, "callout")  # meanwhile, the next table
    loading.abort(RuntimeError("callout's staging failed"))
    with pytest.raises(LoadAborted):
        loading.finish()
    with postgres.connect(moving.database) as conn:
        assert conn.execute("SELECT (SELECT count(*) FROM space) + (SELECT count(*) FROM callout)").fetchone() == (0,)
    assert "loaded_rows" not in run.manifest.tables["space"]
