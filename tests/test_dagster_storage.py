"""The instance of dagster.yaml: run, event and schedule storage in PostgreSQL, the event log
over one held connection (resources/dagster_storage.py) instead of one per event."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest
from conftest import use_storage_database

from alkemio_assets.core.settings import REPO_ROOT
from resources import PostgresResource
from resources.dagster_storage import PooledPostgresEventLogStorage


@pytest.fixture
def repository_instance(
    monkeypatch: pytest.MonkeyPatch, tmp_path, postgres: PostgresResource, unique_name: str
) -> Iterator[dg.DagsterInstance]:
    """The repository's dagster.yaml on a storage database of the test's own."""
    postgres.create_database(unique_name)
    use_storage_database(monkeypatch, postgres, unique_name, tmp_path / "artifacts")
    instance = dg.DagsterInstance.from_config(str(REPO_ROOT))
    try:
        yield instance
    finally:
        instance.dispose()
        postgres.drop_database(unique_name)


def _connections(postgres: PostgresResource, database: str) -> int:
    with postgres.connect(autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()
        return int(row[0]) if row else 0


def test_events_are_written_over_one_held_connection(
    repository_instance: dg.DagsterInstance, postgres: PostgresResource, unique_name: str
) -> None:
    instance = repository_instance
    assert isinstance(instance.event_log_storage, PooledPostgresEventLogStorage)
    # a step process builds its instance from the run's reference: the same storage there
    assert isinstance(dg.DagsterInstance.from_ref(instance.get_ref()).event_log_storage, PooledPostgresEventLogStorage)

    key = dg.AssetKey(["alkemio", "postgres", "space"])
    for rows in range(20):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, metadata={"rows": rows}))

    latest = instance.get_latest_materialization_event(key)
    assert latest is not None and latest.asset_materialization is not None
    assert latest.asset_materialization.metadata["rows"] == dg.IntMetadataValue(19)
    # twenty events, and the connection they went over is still there, the only one
    assert _connections(postgres, unique_name) == 1
